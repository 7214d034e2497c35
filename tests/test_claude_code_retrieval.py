"""An imported coding session answers questions about what was said, decided and tried, above tool noise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cc_fixtures import QUESTIONS, write_project

from agents.integrations.transcripts import import_paths
from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder


@pytest.fixture()
def mem(tmp_path: Path) -> Iterator[MemoryManager]:
    m = MemoryManager.open(tmp_path / "store", embedder=HashEmbedder(), background_embed=False)
    import_paths(m, [write_project(tmp_path / "projects", noise=60)["main"].parent])
    yield m
    m.close()


def recall_at_5(mem: MemoryManager, *, include_tools: bool, mode: str = "hybrid") -> float:
    """Share of questions with a conversation turn that answers it in the top five."""
    found = 0
    for question, answer in QUESTIONS:
        hits = mem.search_recall(question, k=5, mode=mode, include_tools=include_tools)
        found += any(h.role != "tool" and answer.lower() in h.text.lower() for h in hits)
    return found / len(QUESTIONS)


def test_conversation_ranks_above_tool_noise(tmp_path: Path) -> None:
    from memory.vectors.embeddings import SentenceTransformerEmbedder

    # The default search (hybrid) with the real model, as a user searches.
    mem = MemoryManager.open(tmp_path / "real", embedder=SentenceTransformerEmbedder(), background_embed=False)
    import_paths(mem, [write_project(tmp_path / "projects-real", noise=60)["main"].parent])
    mem.embed_pending()
    assert mem.recall.count(role="tool") > 100  # the noise is there, kept
    with_handling = recall_at_5(mem, include_tools=False)
    without = recall_at_5(mem, include_tools=True)
    mem.close()
    assert with_handling == 1.0
    assert without < with_handling  # the file dumps and test runs crowd the answers out


def test_tool_records_are_found_when_asked(mem: MemoryManager) -> None:
    hits = mem.search_recall("pytest tests/test_login.py", k=3, mode="text", role="tool")
    assert hits and all(h.role == "tool" for h in hits)
    assert hits[0].metadata["kind"] in ("tool_call", "tool_result")
    grep = mem.recall.grep("frozen_clock", literal=True, limit=500)
    assert grep and all(g.role != "tool" for g in grep)
    assert len(mem.recall.grep("frozen_clock", literal=True, limit=500, include_tools=True)) > len(grep)


def test_hybrid_search_leaves_tool_records_out_of_the_vector_side_too(mem: MemoryManager) -> None:
    mem.embed_pending()  # real Chroma, hash vectors: the where filter is Chroma's own
    hits = mem.search_recall("session cookie clock flaky login fixture lifetime", k=10, mode="vector")
    assert hits and all(h.role != "tool" for h in hits)
    both = mem.search_recall("session cookie clock flaky login fixture lifetime", k=10, mode="hybrid",
                             include_tools=True)
    assert any(h.role == "tool" for h in both)
