"""The record of an RLM run, and its renderings: the public face of the trajectory package.

Rules this package keeps:

* ``records`` holds the data (``Trajectory`` and its records, JSONL in and out, the
  ``TrajectorySink`` protocol); ``render`` the free functions that draw it (terminal, HTML).
  ``render`` reads ``records``, never the other way round.
* Storage in a database is not here: rlm_core knows memory only through what it is handed,
  so the database store (``agents.trajectories``) is handed to the engine as a sink.
* Names load on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory.lazy import lazy_exports

if TYPE_CHECKING:
    from rlm_core.trajectory.records import (
        PREVIEW_CHARS,
        CellRecord,
        IterationRecord,
        SubCallRecord,
        Trajectory,
        TrajectorySink,
        load_jsonl,
        preview,
    )
    from rlm_core.trajectory.render import render_html, render_text

__all__ = [
    "PREVIEW_CHARS",
    "CellRecord",
    "IterationRecord",
    "SubCallRecord",
    "Trajectory",
    "TrajectorySink",
    "load_jsonl",
    "preview",
    "render_html",
    "render_text",
]

_WHERE = {
    **dict.fromkeys(__all__, "rlm_core.trajectory.records"),
    "render_html": "rlm_core.trajectory.render",
    "render_text": "rlm_core.trajectory.render",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
