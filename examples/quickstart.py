"""Quick start: create a memory, log a conversation, search it.

Run: python examples/quickstart.py [STORE_DIR]   (a temporary directory by default)
Needs no API key. The searches here are full text and grep; the messages are also embedded
in the background (local model, no network) so that mode="hybrid" finds them by meaning.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from memory.manager import MemoryManager


def main(store: Path) -> None:
    # One directory holds everything: memory.db (SQLite) and chroma/ (vectors).
    with MemoryManager.open(store) as memory:
        log = memory.recall
        log.append("I'm moving to Lisbon in March.", role="user", session_id="2024-01-10")
        log.append("Exciting! Do you need help finding a flat?", role="assistant", session_id="2024-01-10")
        log.append("My sister Ana lives in Porto, she can host us.", role="user", session_id="2024-02-02")

        # Working memory: blocks that an agent always sees in its prompt.
        memory.working.create("human", "Moving to Lisbon in March.", limit=2000,
                              description="What we know about the user")
        memory.working.append("human", "Sister: Ana (Porto).")

        # Full-text search (BM25); mode="hybrid" adds meaning-based search with the local model.
        for hit in memory.search("Lisbon", tiers=["recall"], mode="text", k=5):
            print(f"[{hit.id}] {hit.session_id} {hit.role}: {hit.text}")

        # Regular expressions over the whole log.
        for g in memory.grep(r"sister \w+", ignore_case=True):
            print("grep:", g.match, "in session", g.session_id)

        print(memory.working.get("human").value)
        print(memory.stats()["messages"], "messages in", memory.stats()["sessions"], "sessions")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "memory")
