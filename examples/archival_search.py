"""Archival memory: ingest documents, then search them by keywords, by meaning, or both.

Run: python examples/archival_search.py [STORE_DIR]   (a temporary directory by default)
Needs no API key; embeds with the local MiniLM model shipped with the package (no network).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from memory.manager import MemoryManager

DOCS = {
    "handbook/pets.md": "# Office pets\n\nOur office dog is a beagle called Pixel. "
    "She is allowed everywhere except the kitchen.\n",
    "handbook/deploys.md": "# Deployments\n\nWe deploy on Tuesdays after standup. "
    "Rollbacks use `make rollback VERSION=...`.\n",
    "handbook/travel.txt": "Book trains, not planes, for trips under 500 km. "
    "Expenses go through the finance portal within 30 days.\n",
}


def main(store: Path, docs_dir: Path) -> None:
    for name, text in DOCS.items():
        path = docs_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    with MemoryManager.open(store) as memory:
        summary = memory.archival.ingest([docs_dir / "handbook"], tags=["handbook"], progress=False)
        print(f"ingested {summary.files} files as {summary.chunks} chunks")
        memory.archival.insert("Pixel's vet is Dr. Okafor on Rua Augusta.", tags=["pets"])

        for mode in ("text", "vector", "hybrid"):
            hits = memory.search_archival("which animal lives at the office?", k=2, mode=mode)
            print(mode, "->", [(Path(h.source or "note").name, round(h.score, 3)) for h in hits])

        best = memory.search("how do I undo a release?", tiers=["archival"], k=1)[0]
        print("best:", Path(best.source or "").name, "|", best.text.strip().splitlines()[-1])
        print("tagged pets:", [h.text for h in memory.search_archival("vet", tags=["pets"], k=3)])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "memory"
        main(store, Path(tmp) / "docs")
