"""Readers never wait for a writer: real read commands against a second process that holds a
long write transaction on the same SQLite store.

A reader that queued behind the lock would take the whole busy timeout (30 s here) and then
fail with "the store is busy"; each must answer, with the committed data only, while the
writer still holds its transaction.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder
from reliability.served import WriteLock, cli, cli_env

BUSY_S = 30


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("readers") / "store"
    assert cli("init", str(path)).returncode == 0
    with MemoryManager.open(path, embedder=HashEmbedder(), background_embed=False, embed_recall=False) as m:
        for i in range(50):
            m.recall.append(f"committed message {i} about the deploy key", session_id=f"s{i % 3}")
        m.blocks("default").create("human", "Name: Ada", limit=200)
    return path


@pytest.mark.parametrize("command", [
    ["stats"], ["grep", "deploy key"], ["search", "deploy key", "--mode", "text"], ["sessions"],
    ["blocks", "list"], ["blocks", "show", "human"], ["trajectory", "list"], ["agents"],
    ["grep", "deploy", "--tier", "all", "--json"],
])
def test_read_commands_answer_while_a_writer_holds_the_lock(store: Path, tmp_path: Path, command: list[str]) -> None:
    env = cli_env(RLMEM_BUSY_TIMEOUT_S=str(BUSY_S))
    with WriteLock(store, tmp_path) as lock:
        t0 = time.monotonic()
        p = cli(*command, "--store", str(store), env=env, timeout=BUSY_S * 3)
        took = time.monotonic() - t0
        assert lock.holding  # the writer held its transaction the whole time
    assert p.returncode == 0, p.stderr
    assert "busy" not in p.stderr and "uncommitted" not in p.stdout
    assert took < BUSY_S * 2 / 3, f"{command} waited {took:.1f} s for the writer"


def test_opening_a_current_store_writes_nothing(store: Path, tmp_path: Path) -> None:
    with WriteLock(store, tmp_path):
        t0 = time.monotonic()
        for read_only in (False, True):  # a current schema: not even a read-write open waits
            with MemoryManager.open(store, embedder=HashEmbedder(), background_embed=False,
                                    busy_timeout_s=BUSY_S, read_only=read_only) as m:
                assert m.recall.count() == 50
                assert [h.id for h in m.recall.grep("message 7 ")] == [8]
        assert time.monotonic() - t0 < BUSY_S * 2 / 3
