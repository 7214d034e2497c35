"""Ask a question of memory: a Recursive Language Model run whose REPL holds the three tiers.

Rules this module keeps:

* ``ask`` is the one entry point that puts a ``MemoryManager`` and an ``RLM`` together; the
  engine sees memory only through the binding's functions, prelude and docs.
* The root model's first prompt holds the question and the memory summary (structure and
  sizes, bounded), never memory contents; the system prompt adds how to read memory.
* Models are passed in as objects; nothing here reads a key or picks a backend by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.repl.binding import MemoryBinding, bind_memory
from agents.repl.isolation import protect_store, store_isolation
from agents.repl.prompt import memory_system_prompt
from agents.trajectories import TrajectoryStore
from memory.errors import ValidationError
from rlm_core.engine import RLM, Event, Result
from rlm_core.limits import Limits
from rlm_core.lm import LM

if TYPE_CHECKING:
    from collections.abc import Callable

    from memory.manager import MemoryManager

__all__ = ["ask", "build_query", "protect_store", "store_isolation"]


def build_query(question: str, binding: MemoryBinding) -> str:
    """The query the root model reads: the question, then what memory holds (sizes only)."""
    return f"{question.strip()}\n\n{binding.summary()}"


def ask(
    memory: MemoryManager,
    question: str,
    *,
    root: LM,
    sub: LM | None = None,
    limits: Limits | None = None,
    context: Any = None,
    agent_id: str | None = None,
    trajectory_dir: str | Path | None = None,
    trajectory_db: Any = None,
    on_event: Callable[[Event], None] | None = None,
) -> Result:
    """Answer ``question`` from memory with an RLM; the result carries the trajectory.

    ``root`` writes code in the REPL; ``sub`` (default ``root``) answers ``llm_query`` and
    child RLMs. ``context`` is an optional long input given alongside memory (the REPL
    variable ``context``). ``agent_id`` scopes the recall reads to one agent; each run is
    stored in ``trajectory_db`` (a ``memory.db.Database``) when given. Writes the model
    makes (``remember``/``note``) are recorded with actor ``"rlm"``.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValidationError("question must be a non-empty string")
    limits = protect_store(limits or Limits(), memory)
    binding = bind_memory(
        memory, agent_id=agent_id, grep_timeout_s=limits.sandbox_limits().cell_timeout_s
    )
    rlm = RLM(
        root,
        sub,
        limits=limits,
        system_prompt=memory_system_prompt(),
        trajectory_dir=trajectory_dir,
        trajectory_sink=None if trajectory_db is None else TrajectoryStore(trajectory_db),
        on_event=on_event,
    )
    return rlm.completion(
        build_query(question, binding),
        context=context,
        functions=binding.functions,
        prelude=binding.prelude,
        function_docs=binding.function_docs,
    )
