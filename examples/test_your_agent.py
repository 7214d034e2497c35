"""Testing your own agent offline: a scripted model, a real store, assertions on what the
model was asked.

Run with pytest (``pytest examples/test_your_agent.py``) or as a script. No API key, no
network, no embedding model: ``HashEmbedder`` stands in for MiniLM because these tests check
behaviour, not retrieval quality.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from agents.agent.core import Agent
from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder
from rlm_core.lm import LMResponse, ScriptedLM, ToolCall

try:
    import pytest
except ImportError:  # running as a plain script
    pytest = None  # type: ignore[assignment]


def open_memory(path: Path) -> MemoryManager:
    return MemoryManager.open(path, embedder=HashEmbedder(), background_embed=False)


def check_agent_remembers_preferences(memory: MemoryManager) -> None:
    model = ScriptedLM([
        LMResponse(text="", tool_calls=[
            ToolCall("t1", "core_memory_append", {"label": "human", "text": "Vegetarian."}),
        ]),
        "Got it, no meat.",
        "How about a mushroom risotto?",
    ])
    agent = Agent.create("chef", memory, model, persona="You suggest dinners.")

    assert agent.step("I'm vegetarian.").text == "Got it, no meat."
    assert agent.blocks.get("human").value == "Vegetarian."

    agent.step("What should I cook tonight?")
    request = model.requests[-1]                      # what the model saw for the last answer
    assert "Vegetarian." in (request.system or "")    # the block is in the system prompt
    assert request.messages[-1] == {"role": "user", "content": "What should I cook tonight?"}
    assert {t["name"] for t in request.tools or []} >= {"core_memory_append", "deep_recall"}
    assert model.remaining == 0                       # the script was used up exactly


def check_every_message_is_in_recall(memory: MemoryManager) -> None:
    agent = Agent.create("echo", memory, ScriptedLM(default="ok"), tools=())
    for i in range(5):
        agent.step(f"message {i}")
    roles = [m.role for m in memory.recall.range(agent_id="echo")]
    assert roles == ["user", "assistant"] * 5


if pytest is not None:

    @pytest.fixture()
    def memory(tmp_path: Path) -> Iterator[MemoryManager]:
        m = open_memory(tmp_path / "memory")
        yield m
        m.close()

    def test_agent_remembers_preferences(memory: MemoryManager) -> None:
        check_agent_remembers_preferences(memory)

    def test_every_message_is_in_recall(memory: MemoryManager) -> None:
        check_every_message_is_in_recall(memory)


if __name__ == "__main__":
    for check in (check_agent_remembers_preferences, check_every_message_is_in_recall):
        with tempfile.TemporaryDirectory() as tmp, open_memory(Path(tmp) / "memory") as mem:
            check(mem)
            print("passed:", check.__name__)
