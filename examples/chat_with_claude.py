"""A real agent on Claude: two messages, then a restart that remembers.

Run: ANTHROPIC_API_KEY=... python examples/chat_with_claude.py [STORE_DIR]
"""
# needs: ANTHROPIC_API_KEY

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from agents.agent.core import Agent
from memory.manager import MemoryManager
from rlm_core.lm.anthropic import AnthropicLM


def main(store: Path) -> None:
    model = AnthropicLM("claude-haiku-4-5")  # MissingAPIKeyError names ANTHROPIC_API_KEY
    with MemoryManager.open(store) as memory:
        agent = Agent.create("claude", memory, model, persona="A friendly, brief assistant.")
        print(agent.step("Hi! I'm Sam, and I'm allergic to peanuts.").text)
        print("human block:", agent.blocks.get("human").value)
    with MemoryManager.open(store) as memory:  # a new process would do the same
        agent = Agent.open("claude", memory, model, new_session=True)
        print(agent.step("Can you suggest a snack for me?").text)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "memory")
