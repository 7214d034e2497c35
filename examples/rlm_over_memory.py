"""A Recursive Language Model over memory, with scripted models (no API key).

The root model writes Python in a sandboxed REPL whose namespace holds the memory tiers
(``recall``, ``archival``, ``working``) and search functions (``grep``, ``search``, ``peek``,
...); it delegates reading to a sub-model with ``llm_query_batched`` and answers with
``FINAL(...)``. Here both models are ``ScriptedLM``s, so the run is reproducible; swap in
``AnthropicLM()`` for real ones.

Run: python examples/rlm_over_memory.py
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from agents.ask import ask
from memory.manager import MemoryManager
from rlm_core.limits import Limits
from rlm_core.lm import FunctionLM, LMRequest, ScriptedLM

ROOT_STEPS = [
    # 1. look at the structure of memory and find candidate messages
    "Let me find every mention of a trip.\n"
    "```repl\n"
    "hits = grep(r'trip to \\w+', ignore_case=True)\n"
    "print(len(recall), 'messages;', len(hits), 'hits')\n"
    "for h in hits:\n"
    "    print(h['id'], h['session_id'], h['snippet'])\n"
    "```",
    # 2. ask the sub-model about each hit's neighbourhood, in parallel
    "```repl\n"
    "windows = [peek(h['id'], before=1, after=1) for h in hits]\n"
    "answers = llm_query_batched(['Where did the user travel? ' + str(w) for w in windows])\n"
    "print(answers)\n"
    "```",
    # 3. aggregate in code, then answer with the variable
    "```repl\n"
    "trips = 'The user took trips to ' + ' and '.join(answers) + '.'\n"
    "```\n"
    "FINAL_VAR(trips)",
]


def destination(req: LMRequest) -> str:
    """A stand-in sub-model: reads a window of conversation, names where the trip went."""
    found = re.search(r"trip to (\w+)", req.prompt)
    return found.group(1) if found else "unknown"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, MemoryManager.open(Path(tmp) / "memory") as memory:
        memory.recall.append_many([
            {"content": "Booked my trip to Kyoto for April!", "session_id": "s1"},
            {"content": "Great choice, cherry blossom season.", "role": "assistant", "session_id": "s1"},
            {"content": "Back from the trip to Oslo last September, it was cold.", "session_id": "s2"},
            {"content": "What should I cook tonight?", "session_id": "s3"},
        ])
        root = ScriptedLM(ROOT_STEPS, name="scripted-root")
        # The sub-model reads one window of conversation and names the destination.
        sub = FunctionLM(destination, name="reader")
        result = ask(memory, "Which trips did I take this year?", root=root, sub=sub,
                     limits=Limits(max_iterations=6))
        print(result.answer)
        print(f"{result.iterations} iterations, {result.sub_calls} sub-calls")
        # What the root model saw first: the question plus memory's structure and sizes only.
        print(root.requests[0].prompt[:300])


if __name__ == "__main__":
    main()
