"""agents: what users touch. Long-lived agents, memory tools, ask, the CLI and integrations.

The public names below are imported lazily (PEP 562), so ``import agents`` stays cheap and
``rlmem`` commands that never embed never load torch or chromadb.

    from agents import Agent, ask, import_transcript
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.agent.core import AGENT_TOOLS, Agent, Reply, ToolCallRecord
    from agents.ask import ask
    from agents.integrations.transcripts import ImportSummary, import_transcript, read_transcript
    from agents.tools.builtin import TOOLS, ToolContext, anthropic_tools, call_tool

__all__ = [
    "AGENT_TOOLS",
    "TOOLS",
    "Agent",
    "ImportSummary",
    "Reply",
    "ToolCallRecord",
    "ToolContext",
    "anthropic_tools",
    "ask",
    "call_tool",
    "import_transcript",
    "read_transcript",
]

_WHERE = {
    "AGENT_TOOLS": "agents.agent.core",
    "Agent": "agents.agent.core",
    "Reply": "agents.agent.core",
    "ToolCallRecord": "agents.agent.core",
    "ask": "agents.ask",
    "TOOLS": "agents.tools.builtin",
    "ToolContext": "agents.tools.builtin",
    "anthropic_tools": "agents.tools.builtin",
    "call_tool": "agents.tools.builtin",
    "ImportSummary": "agents.integrations.transcripts",
    "import_transcript": "agents.integrations.transcripts",
    "read_transcript": "agents.integrations.transcripts",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
