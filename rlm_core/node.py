"""One RLM run at one depth: its sandbox, its messages, its turn loop and its trajectory.

Rules this module keeps:

* The model never receives the contents of a variable: the first message carries the query
  and the namespace's names, types and sizes; after that only what its own code printed
  (cut to ``Limits.max_output_chars`` by the sandbox) goes back.
* A run ends when the code marks ``answer`` ready (``answer["ready"] = True``, ``FINAL(x)`` or
  ``FINAL_VAR(name)`` in code), or the reply carries ``FINAL(...)``/``FINAL_VAR(name)`` on a
  line outside code. Code blocks of a reply run first, in order; the turn stops at the first
  cell that makes the answer ready, and at the first cell that fails (the model is told which
  blocks did not run).
* When ``max_iterations`` turns pass without an answer, one last call (no code runs) asks for
  the best answer: its text is the answer (``stopped_by="final_call"``).
  ``IterationLimitError`` is raised only if that call fails or returns nothing.
* Every hard limit (tokens, cost, time, consecutive errors, depth when configured) raises its
  own ``RLMLimitError`` subclass carrying ``partial_answer`` (the content of ``answer`` when
  the code put something there, else None), the trajectory so far and a ``Result``. The budget
  is checked before every model call, after it, and after every cell. A limit stops further
  spending only: a complete text ``FINAL(...)`` written by the call that crossed it is kept.
* A child node stops at its next turn once the parent cell that started it is over (timed
  out, worker replaced): nobody reads its answer any more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from memory.errors import (
    CellTimeoutError,
    CostLimitError,
    ErrorLimitError,
    IterationLimitError,
    LMError,
    RLMLimitError,
    TokenLimitError,
)
from rlm_core.answers import (
    ANSWER_VAR,
    FINAL_SIGNATURES,
    PRELUDE,
    initial_answer,
    read_answer,
    text_final,
)
from rlm_core.limits import Budget
from rlm_core.lm import LM, Usage
from rlm_core.parsing import find_code_blocks, find_final, strip_code_blocks
from rlm_core.prompts import (
    describe_namespace,
    final_call_message,
    first_user_message,
    no_code_message,
    turn_message,
)
from rlm_core.results import Event, Result, UsageReport
from rlm_core.runconfig import RunConfig
from rlm_core.subcalls import SubCalls
from rlm_core.trajectory import CellRecord, IterationRecord, SubCallRecord, Trajectory

__all__ = ["BUILTIN_NAMES", "Node"]

BUILTIN_NAMES = frozenset({"llm_query", "llm_query_batched", "rlm_query", "FINAL", "FINAL_VAR"})


def _failed(cell: CellRecord) -> bool:
    return bool(cell.error or cell.timed_out or cell.worker_restarted)


class Node:
    """One RLM run at one depth: its sandbox, messages and trajectory."""

    def __init__(
        self,
        config: RunConfig,
        *,
        depth: int,
        budget: Budget,
        query: str,
        namespace: dict[str, Any],
        functions: Mapping[str, Callable[..., Any]],
        prelude: str,
        function_docs: Mapping[str, str] | None,
        parent: Node | None = None,
    ) -> None:
        self.config = config
        self.parent = parent
        # The parent's cell this child runs for; once that cell is over (timed out, worker
        # restarted) nobody waits for this child any more, and it must stop spending.
        self.parent_cell = parent.cell_serial if parent is not None else 0
        self.cell_serial: int = 0
        self.in_cell = False
        self.sandbox_limits = config.limits.sandbox_limits()
        self.depth = depth
        self.budget = budget
        self.query = query
        self.namespace = namespace
        self.user_functions = dict(functions)
        self.user_prelude = prelude
        self.function_docs = function_docs
        self.lm: LM = config.root if depth == 0 else config.sub
        self.role: Any = "root" if depth == 0 else "sub"
        self.traj = Trajectory(
            query=query,
            depth=depth,
            root_model=getattr(self.lm, "name", ""),
            sub_model=getattr(config.sub, "name", ""),
            limits=config.limits.to_dict(),
        )
        self.own_usage = Usage()
        self.sub_usage = Usage()
        self.own_cost = 0.0
        self.sub_cost = 0.0
        self._lock = threading.Lock()  # guards sub_usage / sub_cost, added from callback threads
        self.partial: str | None = None
        self.iteration = 0

    # --- the SubCallHost protocol (rlm_core.subcalls) ----------------------------------------

    def emit(self, kind: str, data: Any = None) -> None:
        if self.config.on_event is not None:
            self.config.on_event(Event(kind, self.depth, self.iteration, data))

    def clock(self) -> float:
        return self.traj.clock()

    def add_sub_call(self, rec: SubCallRecord) -> None:
        self.traj.add_sub_call(rec)
        with self._lock:
            self.sub_usage = self.sub_usage + rec.usage
            self.sub_cost += rec.cost_usd
        self.emit("sub_call", rec)

    def alive(self) -> bool:
        """False once the parent cell that started this node is over: its result has no reader."""
        p = self.parent
        return p is None or (p.in_cell and p.cell_serial == self.parent_cell and p.alive())

    def accepting_sub_calls(self) -> bool:
        return self.in_cell and self.alive()

    def _check_alive(self) -> None:
        if not self.alive():
            raise CellTimeoutError(
                "the parent cell that started this child RLM is over (it timed out or its worker "
                "was replaced), so the child stopped; raise Limits.cell_timeout_s for deep runs"
            )

    def spawn_child(self, prompt: str, context: Any) -> Result:
        child = Node(
            self.config,
            depth=self.depth + 1,
            budget=self.budget,
            query=prompt,
            namespace={} if context is None else {"context": context},
            functions=self.user_functions,
            prelude=self.user_prelude,
            function_docs=self.function_docs,
            parent=self,
        )
        return child.run()

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> Result:
        from rlm_core.sandbox.repl import Sandbox

        subcalls = SubCalls(self, lm=self.config.sub, limits=self.config.limits)
        functions = {**subcalls.functions(), **self.user_functions}
        variables = {**self.namespace, ANSWER_VAR: initial_answer()}
        prelude = PRELUDE + ("\n" + self.user_prelude if self.user_prelude else "")
        limits = self.config.limits
        try:
            with Sandbox(
                functions=functions,
                variables=variables,
                prelude=prelude,
                limits=self.sandbox_limits,
                callback_workers=max(16, limits.sub_concurrency * 2),
            ) as sandbox:
                shown = {**functions, **FINAL_SIGNATURES}
                entries = sandbox.describe()
                from_prelude = [
                    e for e in entries
                    if e.get("reserved") and e.get("type") == "function" and e.get("name") not in shown
                ]
                system = self.config.system_prompt_for(shown, self.function_docs, self.depth, from_prelude)
                namespace = describe_namespace(entries, set(shown) | {ANSWER_VAR})
                messages: list[dict[str, Any]] = [
                    {
                        "role": "user",
                        "content": first_user_message(
                            self.query, namespace, max_iterations=limits.max_iterations
                        ),
                    }
                ]
                return self._loop(sandbox, system, messages)
        finally:
            self._close_trajectory()

    def _loop(self, sandbox: Any, system: str, messages: list[dict[str, Any]]) -> Result:
        limits = self.config.limits
        consecutive_errors = 0
        for i in range(1, limits.max_iterations + 1):
            self.iteration = i
            self._check_alive()
            self._check_budget()
            it = IterationRecord(
                index=i,
                prompt_messages=len(messages),
                prompt_chars=len(system) + sum(len(str(m["content"])) for m in messages),
                started_s=self.traj.clock(),
            )
            self.traj.iterations.append(it)
            self.emit("iteration", it)
            reply = self._call_lm(messages, system, it)
            messages.append({"role": "assistant", "content": reply})
            blocks = find_code_blocks(reply)
            if self._spent():
                # This call crossed a limit: no more code runs, but an answer it already
                # wrote out in full is not thrown away.
                marker = None if blocks else find_final(reply)
                if marker is not None and marker.kind == "FINAL":
                    return self._answered(it, (marker.value, "FINAL"))
                self._check_budget()

            outputs: list[str] = []
            answer: tuple[str, str] | None = None
            note: str | None = None
            for n, code in enumerate(blocks, 1):
                cell = self._run_cell(sandbox, code)
                it.cells.append(cell)
                outputs.append(cell.output)
                self.emit("cell", cell)
                answer, partial = read_answer(sandbox)
                self.partial = partial or self.partial
                if answer is not None:
                    break
                self._check_budget()
                if _failed(cell) and n < len(blocks):
                    # Later blocks nearly always build on earlier ones; running them after a
                    # failure only buries the real error under NameErrors.
                    rest = f"Block {n + 1} was" if n + 1 == len(blocks) else f"Blocks {n + 1}-{len(blocks)} were"
                    note = f"{rest} not run because block {n} failed."
                    break
            if answer is None:
                answer, final_note = text_final(sandbox, reply)
                note = " ".join(x for x in (note, final_note) if x) or None
            it.note = note
            if answer is not None:
                return self._answered(it, answer)

            consecutive_errors = consecutive_errors + 1 if it.cells and _failed(it.cells[-1]) else 0
            it.duration_s = self.traj.clock() - it.started_s
            if consecutive_errors >= limits.max_consecutive_errors:
                self._raise(
                    ErrorLimitError,
                    f"{consecutive_errors} iterations in a row ended with a failing cell "
                    f"(Limits.max_consecutive_errors={limits.max_consecutive_errors}); the last "
                    "error is in the trajectory",
                )
            if outputs:
                msg = turn_message(outputs, iteration=i, max_iterations=limits.max_iterations, note=note)
            else:
                msg = no_code_message(iteration=i, max_iterations=limits.max_iterations, note=note)
            messages.append({"role": "user", "content": msg})
        return self._final_call(messages, system)

    def _answered(self, it: IterationRecord, answer: tuple[str, str]) -> Result:
        it.answer, it.answer_source = answer
        it.duration_s = self.traj.clock() - it.started_s
        self.emit("answer", it)
        return self._result(answer[0], "answer")

    def _spent(self) -> bool:
        return self.budget.fatal is not None or self.budget.exceeded() is not None

    def _call_lm(self, messages: list[dict[str, Any]], system: str, it: IterationRecord) -> str:
        t0 = time.perf_counter()
        chars = len(system) + sum(len(str(m["content"])) for m in messages)
        try:
            hold = self.budget.reserve(chars, getattr(self.lm, "max_tokens", None), self.lm)
        except (TokenLimitError, CostLimitError) as exc:
            self._raise(type(exc), str(exc))
        try:
            resp = self.lm.complete(messages, system=system, max_tokens=hold.max_output)
        finally:
            self.budget.release(hold)
        it.lm_s = time.perf_counter() - t0
        it.reply = resp.text
        it.usage = resp.usage
        it.cost_usd = resp.cost_usd
        self.budget.charge(resp.usage, resp.cost_usd, role=self.role)
        self.own_usage = self.own_usage + resp.usage
        self.own_cost += resp.cost_usd
        self.emit("reply", it)
        return resp.text

    def _run_cell(self, sandbox: Any, code: str) -> CellRecord:
        base = self.sandbox_limits
        remaining = self.budget.remaining_s()
        # A cell may not outlive the run's time budget: shorten its timeout to what is left.
        timeout = base.cell_timeout_s
        if remaining is not None and remaining < timeout:
            timeout = max(0.1, remaining)
        self.cell_serial += 1
        self.in_cell = True
        try:
            res = sandbox.run(code, timeout_s=timeout)
        finally:
            self.in_cell = False
        return CellRecord(
            code=code,
            output=res.render(),
            error=res.error,
            timed_out=bool(res.timed_out),
            worker_restarted=bool(res.worker_restarted),
            restart_reason=res.restart_reason,
            duration_s=float(res.duration_s),
            truncated_chars=int(res.truncated_chars or 0),
        )

    def _final_call(self, messages: list[dict[str, Any]], system: str) -> Result:
        limits = self.config.limits
        self._check_budget()
        ask = final_call_message(limits.max_iterations)
        last = messages[-1]
        # Two user messages in a row are refused by some providers: extend the last one.
        messages[-1] = {**last, "content": f"{last['content']}\n\n{ask}"}
        it = IterationRecord(
            index=limits.max_iterations + 1,
            kind="final_call",
            prompt_messages=len(messages),
            prompt_chars=len(system) + sum(len(str(m["content"])) for m in messages),
            started_s=self.traj.clock(),
        )
        self.traj.iterations.append(it)
        self.emit("final_call", it)
        try:
            reply = self._call_lm(messages, system, it)
        except LMError as exc:
            it.note = f"the final call failed: {exc}"
            self._raise(
                IterationLimitError,
                f"no answer after Limits.max_iterations={limits.max_iterations} turns and the "
                f"final call failed ({exc}); raise max_iterations or check the model",
            )
        marker = find_final(reply)
        text = marker.value if marker is not None and marker.kind == "FINAL" else strip_code_blocks(reply).strip()
        it.duration_s = self.traj.clock() - it.started_s
        if not text:
            self._raise(
                IterationLimitError,
                f"no answer after Limits.max_iterations={limits.max_iterations} turns and the "
                "final call returned no text; raise max_iterations",
            )
        it.answer, it.answer_source = text, "final_call"
        return self._result(text, "final_call")

    # --- endings ----------------------------------------------------------------------------

    def _check_budget(self) -> None:
        fatal = self.budget.fatal
        if fatal is not None:
            self._raise(type(fatal), str(fatal))
        spent = self.budget.exceeded()
        if spent is not None:
            err_cls, msg = spent
            self._raise(err_cls, msg)

    def _raise(self, cls: type[RLMLimitError], message: str) -> None:
        self.traj.error = f"{cls.__name__}: {message}"
        stopped = getattr(cls, "limit_name", "limit")
        result = self._result(self.partial or "", stopped)
        err = cls(message, partial_answer=self.partial, trajectory=self.traj, result=result)
        self.budget.record_fatal(err)
        self.emit("limit", err)
        raise err

    def _result(self, answer: str, stopped_by: str) -> Result:
        self.traj.answer = answer if stopped_by in ("answer", "final_call") else None
        self.traj.stopped_by = stopped_by
        self._close_trajectory()
        b = self.budget
        return Result(
            answer=answer,
            iterations=sum(1 for it in self.traj.iterations if it.kind == "iteration"),
            trajectory=self.traj,
            usage=UsageReport(root=b.root_usage, sub=b.sub_usage)
            if self.depth == 0
            else UsageReport(root=self.own_usage, sub=self.sub_usage),
            cost_usd=b.cost_usd if self.depth == 0 else self.own_cost + self.sub_cost,
            elapsed_s=self.traj.elapsed_s,
            depth=self.depth,
            stopped_by=stopped_by,
            sub_calls=len(self.traj.sub_calls),
        )

    def _close_trajectory(self) -> None:
        t = self.traj
        t.root_usage = self.own_usage
        t.sub_usage = self.sub_usage
        t.cost_usd = self.own_cost + self.sub_cost
        t.elapsed_s = t.clock()
