"""The sub-call functions an RLM node injects into its REPL: ``llm_query``,
``llm_query_batched`` and ``rlm_query``.

Rules this module keeps:

* They run in the parent process (the sandbox calls back into them from its callback thread
  pool), so the worker never holds an LM client or a key.
* Every call is admitted by the tree's shared ``Budget`` first: a spent hard limit (tokens,
  cost, time) raises that limit's error, which is also recorded on the budget so the engine
  stops the whole run after the cell, even if the model's code catches the exception. A spent
  ``max_sub_calls`` only refuses the call (``RuntimeError``), and the run goes on.
* Errors reach the model readably: ``llm_query`` and ``rlm_query`` raise (the sandbox re-raises
  them in the worker under the same class name, e.g. ``LMTransientError: ...``, catchable as
  ``RuntimeError`` or their builtin base);
  ``llm_query_batched`` returns ``"[error] ..."`` in the failed slot so one bad prompt does
  not throw away the answers that were already paid for.
* Every model call reserves its tokens first (``Budget.reserve``) and asks the model for no
  more output than it reserved, so concurrent calls cannot overspend ``max_tokens``; at most
  ``Limits.max_live_children`` child RLMs run at once.
* ``llm_query_batched`` runs at most ``Limits.sub_concurrency`` prompts at once per call.
* ``rlm_query`` at ``Limits.max_depth`` is answered by ``llm_query`` (recorded with
  ``fallback=True``) unless ``Limits.on_max_depth == "error"``, which raises
  ``DepthLimitError`` for the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from memory.errors import CellTimeoutError, DepthLimitError, RLMLimitError
from rlm_core.limits import Budget, Limits
from rlm_core.lm import LM
from rlm_core.results import Result
from rlm_core.trajectory import SubCallRecord, preview

__all__ = ["SubCallHost", "SubCalls"]

BATCH_ERROR_PREFIX = "[error] "


class SubCallHost(Protocol):
    """What the sub-call functions need of the RLM node they serve (``rlm_core.node.Node``)."""

    @property
    def depth(self) -> int: ...

    @property
    def budget(self) -> Budget: ...

    def clock(self) -> float:
        """Seconds since the node's run started (the trajectory's clock)."""
        ...

    def accepting_sub_calls(self) -> bool:
        """False once the cell that would read the answer is over."""
        ...

    def add_sub_call(self, rec: SubCallRecord) -> None:
        """Record a finished sub-call (from any thread)."""
        ...

    def spawn_child(self, prompt: str, context: Any) -> Result:
        """Run a child RLM one level deeper on the same budget."""
        ...


class SubCalls:
    """The sub-call functions of one RLM node, bound to its budget and trajectory."""

    def __init__(self, node: SubCallHost, *, lm: LM, limits: Limits) -> None:
        self.node = node
        self.lm = lm
        self.limits = limits

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {
            "llm_query": self.llm_query,
            "llm_query_batched": self.llm_query_batched,
            "rlm_query": self.rlm_query,
        }

    # --- admission --------------------------------------------------------------------------

    def _admit(self) -> None:
        if not self.node.accepting_sub_calls():
            # A callback still running after its cell ended (timeout, worker restart): its
            # answer has no reader, so it must not spend the budget.
            raise CellTimeoutError("sub-call refused: the cell that made it is over")
        budget = self.node.budget
        if budget.fatal is not None:
            raise type(budget.fatal)(f"{budget.fatal} (no more sub-calls in this run)")
        spent = budget.exceeded()
        if spent is not None:
            cls, msg = spent
            err = cls(msg)
            budget.record_fatal(err)
            raise err
        if not budget.take_sub_call():
            raise RuntimeError(
                f"sub-call refused: this run has used all Limits.max_sub_calls="
                f"{budget.limits.max_sub_calls} sub-calls; answer with what you have"
            )

    # --- llm_query --------------------------------------------------------------------------

    def llm_query(self, prompt: str) -> str:
        """Ask the sub model one question; returns its answer text."""
        return self._ask(prompt, "llm_query")

    def _ask(
        self, prompt: Any, kind: str, batch_index: int | None = None, *, fallback: bool = False
    ) -> str:
        if not isinstance(prompt, str):
            hint = " (use llm_query_batched for a list of prompts)" if isinstance(prompt, list) else ""
            raise TypeError(f"{kind}: prompt must be a str, got {type(prompt).__name__}{hint}")
        node = self.node
        rec = SubCallRecord(
            kind=kind,
            depth=node.depth,
            model=getattr(self.lm, "name", type(self.lm).__name__),
            prompt_preview=preview(prompt),
            prompt_chars=len(prompt),
            started_s=node.clock(),
            batch_index=batch_index,
            fallback=fallback,
        )
        t0 = time.perf_counter()
        hold = None
        try:
            self._admit()
            hold = node.budget.reserve(len(prompt), getattr(self.lm, "max_tokens", None), self.lm)
            resp = self.lm.complete([{"role": "user", "content": prompt}], max_tokens=hold.max_output)
        except BaseException as exc:
            node.budget.release(hold)
            if isinstance(exc, RLMLimitError):
                node.budget.record_fatal(exc)
            self._finish(rec, t0, error=exc)
            raise
        node.budget.charge(resp.usage, resp.cost_usd, role="sub")
        node.budget.release(hold)
        rec.response_preview = preview(resp.text)
        rec.response_chars = len(resp.text)
        rec.usage = resp.usage
        rec.cost_usd = resp.cost_usd
        self._finish(rec, t0)
        return resp.text

    def _finish(self, rec: SubCallRecord, t0: float, error: BaseException | None = None) -> None:
        rec.duration_s = time.perf_counter() - t0
        if error is not None:
            rec.error = f"{type(error).__name__}: {error}"
        self.node.add_sub_call(rec)

    # --- llm_query_batched ------------------------------------------------------------------

    def llm_query_batched(self, prompts: list[str]) -> list[str]:
        """Ask the sub model many questions concurrently; answers come back in prompt order."""
        if isinstance(prompts, str) or not isinstance(prompts, list | tuple):
            raise TypeError(
                f"llm_query_batched: prompts must be a list of str, got {type(prompts).__name__}"
                " (use llm_query for a single prompt)"
            )
        if not prompts:
            return []

        def run(i: int) -> str:
            try:
                return self._ask(prompts[i], "llm_query_batched", i)
            except Exception as exc:
                return f"{BATCH_ERROR_PREFIX}{type(exc).__name__}: {exc}"

        workers = min(self.limits.sub_concurrency, len(prompts))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rlm-batch") as pool:
            answers = list(pool.map(run, range(len(prompts))))
        fatal = self.node.budget.fatal
        if fatal is not None:
            # A hard limit was spent mid-batch: stop the cell, not just the failed slots.
            raise type(fatal)(str(fatal))
        return answers

    # --- rlm_query --------------------------------------------------------------------------

    def rlm_query(self, prompt: str, context: Any = None) -> str:
        """Start a child RLM with its own REPL (holding ``context``) to answer ``prompt``."""
        node = self.node
        limits = self.limits
        if node.depth + 1 > limits.max_depth:
            if limits.on_max_depth == "error":
                err = DepthLimitError(
                    f"rlm_query at depth {node.depth} would start a child at depth "
                    f"{node.depth + 1}, past Limits.max_depth={limits.max_depth}; raise max_depth "
                    "or set on_max_depth='llm_query'"
                )
                node.budget.record_fatal(err)
                raise err
            text = prompt if context is None else f"{prompt}\n\nContext:\n{context}"
            return self._ask(text, "rlm_query", fallback=True)
        if not isinstance(prompt, str):
            raise TypeError(f"rlm_query: prompt must be a str, got {type(prompt).__name__}")
        rec = SubCallRecord(
            kind="rlm_query",
            depth=node.depth,
            model=getattr(self.lm, "name", type(self.lm).__name__),
            prompt_preview=preview(prompt),
            prompt_chars=len(prompt),
            started_s=node.clock(),
        )
        t0 = time.perf_counter()
        try:
            self._admit()
            if not node.budget.enter_child():
                raise RuntimeError(
                    f"rlm_query refused: {limits.max_live_children} child RLMs are already running "
                    "(Limits.max_live_children); wait for them or use llm_query"
                )
            try:
                result = node.spawn_child(prompt, context)
            finally:
                node.budget.leave_child()
        except RLMLimitError as exc:
            rec.child = exc.trajectory
            node.budget.record_fatal(exc)
            self._finish(rec, t0, error=exc)
            raise
        except BaseException as exc:
            self._finish(rec, t0, error=exc)
            raise
        rec.child = result.trajectory
        rec.response_preview = preview(result.answer)
        rec.response_chars = len(result.answer)
        rec.usage = result.trajectory.total_usage
        rec.cost_usd = result.trajectory.cost_usd
        self._finish(rec, t0)
        return result.answer
