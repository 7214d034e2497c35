"""rlm_core: the Recursive Language Model engine.

A root model answers a query by writing Python in a sandboxed REPL where the context is a
variable, and delegates pieces to sub-models (``llm_query``, ``llm_query_batched``) or to
child RLMs (``rlm_query``)::

    from rlm_core import RLM, Limits, ScriptedLM
    result = RLM(root=lm, sub=small_lm, limits=Limits(max_iterations=10)).completion(
        "Which ids mention 'refund'?", context=big_text)

Rules this module keeps: names are imported lazily (importing ``rlm_core`` starts nothing and
loads no SDK); the public API is exactly ``__all__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm_core.engine import RLM, Event, Result, UsageReport
    from rlm_core.limits import Budget, Limits
    from rlm_core.lm import LM, FunctionLM, LMRequest, LMResponse, ScriptedLM, Usage
    from rlm_core.sandbox.repl import CellResult, Sandbox, SandboxLimits
    from rlm_core.trajectory import Trajectory, load_jsonl

__all__ = [
    "LM",
    "RLM",
    "Budget",
    "CellResult",
    "Event",
    "FunctionLM",
    "LMRequest",
    "LMResponse",
    "Limits",
    "Result",
    "Sandbox",
    "SandboxLimits",
    "ScriptedLM",
    "Trajectory",
    "Usage",
    "UsageReport",
    "load_jsonl",
]

_WHERE = {
    "RLM": "rlm_core.engine",
    "Event": "rlm_core.engine",
    "Result": "rlm_core.engine",
    "UsageReport": "rlm_core.engine",
    "Budget": "rlm_core.limits",
    "Limits": "rlm_core.limits",
    "LM": "rlm_core.lm",
    "FunctionLM": "rlm_core.lm",
    "LMRequest": "rlm_core.lm",
    "LMResponse": "rlm_core.lm",
    "ScriptedLM": "rlm_core.lm",
    "Usage": "rlm_core.lm",
    "CellResult": "rlm_core.sandbox.repl",
    "Sandbox": "rlm_core.sandbox.repl",
    "SandboxLimits": "rlm_core.sandbox.repl",
    "Trajectory": "rlm_core.trajectory",
    "load_jsonl": "rlm_core.trajectory",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'rlm_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
