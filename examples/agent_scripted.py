"""A long-lived agent with a scripted model: memory tools, restarts, context overflow.

Shows the three things an agent keeps across steps and processes:
1. blocks it edits with tools (the model calls ``core_memory_append``),
2. the conversation, every message durable in the recall log,
3. a running summary of what left the prompt when the buffer outgrew its budget.

Run: python examples/agent_scripted.py   (no API key: the model is a FunctionLM)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from agents.agent.core import Agent
from agents.agent.summary import SUMMARY_SYSTEM
from memory.manager import MemoryManager
from rlm_core.lm import FunctionLM, LMRequest, LMResponse, ToolCall


def model(req: LMRequest) -> str | LMResponse:
    """A stand-in for Claude: remembers drinks, summarises on request, otherwise chats."""
    if (req.system or "").startswith(SUMMARY_SYSTEM[:40]):
        return "The user chatted about their week; they like green tea."
    last = req.messages[-1]["content"]
    if isinstance(last, str) and "tea" in last and "like" in last:
        return LMResponse(text="", tool_calls=[
            ToolCall("call-1", "core_memory_append", {"label": "human", "text": "Likes green tea."}),
        ])
    if isinstance(last, list):  # the tool result came back: answer in text
        return "Noted: green tea."
    return f"(reply to: {req.prompt[:40]})"


def main(store: Path) -> None:
    with MemoryManager.open(store) as memory:
        agent = Agent.create("assistant", memory, FunctionLM(model), persona="Concise and friendly.",
                             context_budget_tokens=1500)
        reply = agent.step("I like green tea.")
        print(reply.text, "| tools used:", [c.name for c in reply.tool_calls])
        print("human block:", agent.blocks.get("human").value)
        for day in range(40):  # enough talk to overflow the small budget
            agent.step(f"Day {day}: worked on the garden, then read a book about bees.")
        print("summary block:", agent.blocks.get("summary").value)
        print("messages in recall:", memory.recall.count(agent_id="assistant"),
              "| in the prompt now:", len(agent.buffer()))

    # A new process (here: a new manager) resumes the same agent exactly.
    with MemoryManager.open(store) as memory:
        agent = Agent.open("assistant", memory, FunctionLM(model))
        system, messages = agent.context()
        print("resumed; first message in the prompt:", str(messages[0]["content"])[:60])
        print("the prompt still knows:", "Likes green tea." in system)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(Path(tmp) / "memory")
