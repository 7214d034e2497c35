"""The record of an RLM run: every iteration, cell, sub-call, token and timing, in order.

Rules this module keeps:

* A ``Trajectory`` is plain data (dataclasses of str/int/float/list), built by the engine while
  it runs and safe to read at any moment (limit errors carry it half-built).
* Sub-calls made from concurrent threads are appended under a lock and kept in start order;
  a child RLM's whole trajectory hangs off the sub-call that started it.
* ``to_dict``/``from_dict`` round-trip exactly; JSONL (one ``run`` line, then one line per
  iteration) and a ``TrajectorySink`` store that dict. Rendering (terminal, HTML) is the free
  functions of ``rlm_core.trajectory.render``, which reads these records and is never read by them.
* Texts are kept whole except sub-call prompts/responses, which keep a preview
  (``PREVIEW_CHARS``) plus their full length: a batched call over a 10M-character context
  must not make the trajectory 10M characters long.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from memory.errors import ValidationError
from rlm_core.lm import Usage

__all__ = [
    "PREVIEW_CHARS",
    "CellRecord",
    "IterationRecord",
    "SubCallRecord",
    "Trajectory",
    "TrajectorySink",
    "load_jsonl",
    "preview",
]

PREVIEW_CHARS = 500


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` cut to ``limit`` characters with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more chars]"


def _usage_from(d: dict[str, Any] | None) -> Usage:
    return Usage(**(d or {}))


def _shallow(obj: Any) -> dict[str, Any]:
    # dataclasses.asdict would deep-copy whole child trees only for us to replace them.
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


@dataclass
class SubCallRecord:
    """One ``llm_query`` / ``rlm_query`` call (one item of a batch counts as one)."""

    kind: str  # "llm_query" | "llm_query_batched" | "rlm_query"
    depth: int  # depth of the RLM whose code made the call
    model: str
    prompt_preview: str
    prompt_chars: int
    response_preview: str = ""
    response_chars: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    started_s: float = 0.0  # seconds since the run started
    duration_s: float = 0.0
    error: str | None = None
    batch_index: int | None = None
    fallback: bool = False  # rlm_query answered by llm_query at max depth
    child: Trajectory | None = None

    def to_dict(self) -> dict[str, Any]:
        d = _shallow(self)
        d["usage"] = self.usage.to_dict()
        d["child"] = self.child.to_dict() if self.child is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SubCallRecord:
        d = dict(d)
        d["usage"] = _usage_from(d.get("usage"))
        child = d.get("child")
        d["child"] = Trajectory.from_dict(child) if child else None
        return cls(**d)


@dataclass
class CellRecord:
    """One code block run in the sandbox."""

    code: str
    output: str  # exactly what the model was shown
    error: str | None = None
    timed_out: bool = False
    worker_restarted: bool = False
    restart_reason: str | None = None
    duration_s: float = 0.0
    truncated_chars: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _shallow(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellRecord:
        return cls(**d)


@dataclass
class IterationRecord:
    """One root-model turn: the prompt it saw, its reply, the cells and the sub-calls."""

    index: int  # 1-based; the last-call-for-an-answer turn has kind "final_call"
    kind: str = "iteration"  # "iteration" | "final_call"
    prompt_messages: int = 0
    prompt_chars: int = 0
    reply: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    lm_s: float = 0.0
    started_s: float = 0.0
    duration_s: float = 0.0
    cells: list[CellRecord] = field(default_factory=list)
    sub_calls: list[SubCallRecord] = field(default_factory=list)
    answer: str | None = None
    answer_source: str | None = None  # "variable" | "FINAL" | "FINAL_VAR" | "final_call"
    note: str | None = None  # what the engine told the model besides cell output

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in _shallow(self).items() if k not in ("cells", "sub_calls", "usage")},
            "usage": self.usage.to_dict(),
            "cells": [c.to_dict() for c in self.cells],
            "sub_calls": [s.to_dict() for s in self.sub_calls],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IterationRecord:
        d = dict(d)
        d["usage"] = _usage_from(d.get("usage"))
        d["cells"] = [CellRecord.from_dict(c) for c in d.get("cells", [])]
        d["sub_calls"] = [SubCallRecord.from_dict(s) for s in d.get("sub_calls", [])]
        return cls(**d)


@dataclass
class Trajectory:
    """Everything one RLM node did; child nodes hang off their sub-calls."""

    query: str
    depth: int = 0
    root_model: str = ""
    sub_model: str = ""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    limits: dict[str, Any] = field(default_factory=dict)
    iterations: list[IterationRecord] = field(default_factory=list)
    answer: str | None = None
    stopped_by: str | None = None
    error: str | None = None
    root_usage: Usage = field(default_factory=Usage)
    sub_usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    elapsed_s: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    # --- building (engine side) ----------------------------------------------------------

    def clock(self) -> float:
        """Seconds since this node started."""
        return time.monotonic() - self._t0

    def add_sub_call(self, rec: SubCallRecord) -> None:
        """Attach a sub-call to the current iteration (thread-safe, kept in start order)."""
        with self._lock:
            if not self.iterations:
                return
            calls = self.iterations[-1].sub_calls
            calls.append(rec)
            calls.sort(key=lambda s: (s.started_s, s.batch_index or 0))

    @property
    def total_usage(self) -> Usage:
        return self.root_usage + self.sub_usage

    @property
    def cells(self) -> list[CellRecord]:
        return [c for it in self.iterations for c in it.cells]

    @property
    def sub_calls(self) -> list[SubCallRecord]:
        return [s for it in self.iterations for s in it.sub_calls]

    def walk(self) -> list[Trajectory]:
        """This trajectory and every descendant, depth first."""
        out = [self]
        for s in self.sub_calls:
            if s.child is not None:
                out.extend(s.child.walk())
        return out

    # --- serialisation --------------------------------------------------------------------

    def header_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "depth": self.depth,
            "root_model": self.root_model,
            "sub_model": self.sub_model,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "limits": self.limits,
            "answer": self.answer,
            "stopped_by": self.stopped_by,
            "error": self.error,
            "root_usage": self.root_usage.to_dict(),
            "sub_usage": self.sub_usage.to_dict(),
            "cost_usd": self.cost_usd,
            "elapsed_s": self.elapsed_s,
        }

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            its = [it.to_dict() for it in self.iterations]
        return {**self.header_dict(), "iterations": its}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        try:
            return cls(
                query=d["query"],
                depth=d.get("depth", 0),
                root_model=d.get("root_model", ""),
                sub_model=d.get("sub_model", ""),
                run_id=d.get("run_id") or uuid.uuid4().hex,
                started_at=d.get("started_at", ""),
                limits=d.get("limits", {}),
                iterations=[IterationRecord.from_dict(i) for i in d.get("iterations", [])],
                answer=d.get("answer"),
                stopped_by=d.get("stopped_by"),
                error=d.get("error"),
                root_usage=_usage_from(d.get("root_usage")),
                sub_usage=_usage_from(d.get("sub_usage")),
                cost_usd=d.get("cost_usd", 0.0),
                elapsed_s=d.get("elapsed_s", 0.0),
            )
        except (KeyError, TypeError) as exc:
            raise ValidationError(f"not a trajectory record: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def save_jsonl(self, path: str | Path) -> Path:
        """Write one ``run`` line then one ``iteration`` line per iteration; returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        its = data.pop("iterations")
        tmp = p.with_name(p.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write(json.dumps({"type": "run", **data}, ensure_ascii=False) + "\n")
            for it in its:
                f.write(json.dumps({"type": "iteration", **it}, ensure_ascii=False) + "\n")
        tmp.replace(p)  # a reader never sees half a file
        return p


class TrajectorySink(Protocol):
    """Where finished runs go besides JSONL files (the engine's ``trajectory_sink``); the
    database store lives above this package (``agents.trajectories.TrajectoryStore``)."""

    def save(self, trajectory: Trajectory) -> None: ...


def load_jsonl(path: str | Path) -> Trajectory:
    """Read a trajectory written by ``Trajectory.save_jsonl``."""
    p = Path(path)
    header: dict[str, Any] | None = None
    its: list[dict[str, Any]] = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValidationError(f"{p}:{n}: not JSON ({exc.msg})") from exc
            kind = rec.pop("type", None)
            if kind == "run":
                header = rec
            elif kind == "iteration":
                its.append(rec)
            else:
                raise ValidationError(f"{p}:{n}: unknown record type {kind!r}")
    if header is None:
        raise ValidationError(f"{p}: no 'run' line; not a trajectory file")
    return Trajectory.from_dict({**header, "iterations": its})
