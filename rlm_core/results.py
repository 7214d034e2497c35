"""What an RLM run hands back: the result, usage per role, and progress events.

Rules this module keeps: plain data only; a ``Result`` is returned by a run that answered and
attached (as ``.result``) to every limit error, with ``stopped_by`` naming the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm_core.lm import Usage
from rlm_core.trajectory import Trajectory

__all__ = ["Event", "Result", "UsageReport"]


@dataclass
class UsageReport:
    """Token usage of the root model (depth-0 turns) and of every other call (sub)."""

    root: Usage = field(default_factory=Usage)
    sub: Usage = field(default_factory=Usage)

    @property
    def total(self) -> Usage:
        return self.root + self.sub


@dataclass
class Result:
    """What a finished run returns (also attached to every limit error as ``.result``)."""

    answer: str
    iterations: int
    trajectory: Trajectory
    usage: UsageReport
    cost_usd: float
    elapsed_s: float
    depth: int
    stopped_by: str  # "answer" | "final_call" | a limit name on a limit error's result
    sub_calls: int = 0


@dataclass(frozen=True)
class Event:
    """A progress notification for ``on_event``: kind, the node's depth and iteration."""

    kind: str  # "iteration" | "reply" | "cell" | "sub_call" | "answer" | "final_call" | "limit"
    depth: int
    iteration: int
    data: Any = None
