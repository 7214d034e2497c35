"""``RLM``: the public entry point of the recursive engine.

Rules this module keeps:

* ``RLM`` holds configuration only (models, limits, prompt, where trajectories go); every
  ``completion`` freezes it into a ``RunConfig`` and builds a fresh tree of ``Node`` runs
  (``rlm_core.node``) on it, each with its own sandbox, all sharing one ``Budget``, so
  concurrent completions on one ``RLM`` do not mix. Dependencies run one way only:
  engine -> node -> subcalls; node knows a ``RunConfig``, subcalls a ``SubCallHost``.
* Inputs are checked here, at the edge: the query, clashing or reserved names.
* The trajectory of a top-level run is saved (JSONL and/or database, when configured) whether
  the run answered or failed; a failure to save never hides the run's own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from memory.errors import RLMLimitError, ValidationError
from rlm_core.answers import ANSWER_VAR
from rlm_core.limits import Budget, Limits
from rlm_core.lm import LM
from rlm_core.node import BUILTIN_NAMES, Node
from rlm_core.results import Event, Result, UsageReport
from rlm_core.runconfig import RunConfig
from rlm_core.trajectory import Trajectory

__all__ = ["RLM", "Event", "Result", "UsageReport"]


class RLM:
    """A Recursive Language Model: ``RLM(root, sub, limits=Limits(...)).completion(query, context)``.

    ``root`` answers the query turn by turn in a REPL; ``sub`` (default: ``root``) answers
    ``llm_query`` calls and runs child RLMs. ``trajectory_dir`` gets one ``<run_id>.jsonl``
    per top-level run; ``trajectory_db`` (a ``memory.db.Database``) one row per run.
    ``on_event`` is called with an ``Event`` at every step, from the threads doing the work.
    """

    def __init__(
        self,
        root: LM,
        sub: LM | None = None,
        *,
        limits: Limits | None = None,
        system_prompt: str | None = None,
        trajectory_dir: str | Path | None = None,
        trajectory_db: Any = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        if not isinstance(root, LM):
            raise ValidationError(f"root must be an LM (complete/acomplete/name), got {type(root).__name__}")
        if sub is not None and not isinstance(sub, LM):
            raise ValidationError(f"sub must be an LM or None, got {type(sub).__name__}")
        self.root = root
        self.sub = sub
        self.limits = limits if limits is not None else Limits()
        self.system_prompt = system_prompt
        self.trajectory_dir = Path(trajectory_dir) if trajectory_dir is not None else None
        self.trajectory_db = trajectory_db
        self.on_event = on_event

    @property
    def sub_lm(self) -> LM:
        return self.sub if self.sub is not None else self.root

    def run_config(self) -> RunConfig:
        """The frozen configuration a run started now gets (later edits of this object do not
        reach runs already going)."""
        return RunConfig(self.root, self.sub_lm, self.limits, self.system_prompt, self.on_event)

    def system_prompt_for(
        self,
        functions: Mapping[str, Callable[..., Any]],
        docs: Mapping[str, str] | None,
        depth: int,
        prelude_functions: Sequence[Mapping[str, Any]] = (),
    ) -> str:
        return self.run_config().system_prompt_for(functions, docs, depth, prelude_functions)

    def completion(
        self,
        query: str,
        context: Any = None,
        variables: Mapping[str, Any] | None = None,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        prelude: str = "",
        function_docs: Mapping[str, str] | None = None,
    ) -> Result:
        """Answer ``query``; ``context`` and ``variables`` become REPL variables, ``functions``
        parent-side callables the model's code can call."""
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("query must be a non-empty str")
        namespace = dict(variables or {})
        if context is not None:
            if "context" in namespace:
                raise ValidationError(
                    "give the context either as context=... or as variables['context'], not both"
                )
            namespace["context"] = context
        fns = dict(functions or {})
        taken = (BUILTIN_NAMES | {ANSWER_VAR}) & (set(fns) | set(namespace))
        if taken:
            raise ValidationError(f"these names are reserved by the engine: {sorted(taken)}; rename them")
        config = self.run_config()
        node = Node(
            config,
            depth=0,
            budget=Budget(config.limits),
            query=query,
            namespace=namespace,
            functions=fns,
            prelude=prelude,
            function_docs=function_docs,
        )
        try:
            result = node.run()
        except BaseException as exc:
            if not isinstance(exc, RLMLimitError):
                node.traj.error = node.traj.error or f"{type(exc).__name__}: {exc}"
                node.traj.stopped_by = node.traj.stopped_by or "error"
            self._save(node.traj, exc)
            raise
        self._save(node.traj, None)
        return result

    async def acompletion(
        self,
        query: str,
        context: Any = None,
        variables: Mapping[str, Any] | None = None,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        prelude: str = "",
        function_docs: Mapping[str, str] | None = None,
    ) -> Result:
        """``completion`` on a worker thread, so an event loop keeps serving while it runs."""
        return await asyncio.to_thread(
            self.completion, query, context, variables, functions, prelude, function_docs
        )

    def _save(self, traj: Trajectory, pending: BaseException | None) -> None:
        try:
            if self.trajectory_dir is not None:
                traj.save_jsonl(self.trajectory_dir / f"{traj.run_id}.jsonl")
            if self.trajectory_db is not None:
                traj.save_to_db(self.trajectory_db)
        except Exception as exc:
            if pending is None:
                raise
            # Keep the run's own error; say that its trajectory could not be saved.
            pending.add_note(f"the trajectory could not be saved: {type(exc).__name__}: {exc}")
