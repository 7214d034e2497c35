"""The archival tests again, against a Chroma server (``chroma run``) through HttpClient.

The server binds 127.0.0.1 on a free port, keeps its data in a temporary directory, and is
killed by pid when the module's tests are done.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_archival import (  # noqa: F401 - rerun these tests against the server
    store,
    test_bad_input_is_refused_and_changes_nothing,
    test_grep,
    test_ingest_files_chunks_dedupes_and_skips,
    test_insert_get_count_and_vectors_after_drain,
    test_pending_chunks_are_found_by_text_and_hybrid,
    test_reindex_rebuilds_vectors_from_sql,
    test_search_modes_filters_and_pagination,
    test_update_and_delete,
)

from memory.vectors.chroma import make_chroma_client

pytestmark = pytest.mark.chroma_server

CHROMA = Path(sys.executable).with_name("chroma")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    if not CHROMA.exists():
        pytest.skip("the chroma CLI is not installed next to this Python")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [str(CHROMA), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(data / "db")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma run exited: {(data / 'server.log').read_text()[-2000:]}")
            try:
                make_chroma_client(host="127.0.0.1", port=port).heartbeat()
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail("chroma server did not answer within 60 s")
                time.sleep(0.3)
        yield "127.0.0.1", port
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        log.close()


@pytest.fixture()
def chroma_factory(chroma_server: tuple[str, int]) -> Callable[[], Any]:
    host, port = chroma_server
    return lambda: make_chroma_client(host=host, port=port)


def test_manager_on_chroma_server(chroma_server: tuple[str, int], tmp_path: Path) -> None:
    from memory.manager import MemoryManager
    from memory.vectors.embeddings import HashEmbedder

    host, port = chroma_server
    with MemoryManager.open(
        tmp_path / "store", embedder=HashEmbedder(32), chroma_host=host, chroma_port=port,
        background_embed=False,
    ) as mem:
        mem.recall.append("the launch is scheduled for friday", session_id="s1")
        mem.archival.insert("launch checklist: fuel, weather, crew")
        assert mem.embed_pending() == 2
        assert not (tmp_path / "store" / "chroma").exists()
        tiers = {h.tier for h in mem.search("launch", k=5, mode="vector")}
        assert tiers == {"recall", "archival"}


def test_recall_passages_on_chroma_server(chroma_server: tuple[str, int], tmp_path: Path) -> None:
    from memory.manager import MemoryManager
    from memory.vectors.embeddings import HashEmbedder

    host, port = chroma_server
    talk = (
        "We spent the morning sorting out the garage and the old bikes. "
        "The weather stayed grey and cold all day long, sadly. "
        "By the way, the rocket launch moved to next friday afternoon."
    )
    with MemoryManager.open(
        tmp_path / "store", embedder=HashEmbedder(32), chroma_host=host, chroma_port=port,
        background_embed=False,
    ) as mem:
        index = mem.recall_search.index
        assert index is not None
        a = mem.recall.append(talk, session_id="s1").id
        b = mem.recall.append("nothing to report", session_id="s2").id
        assert mem.embed_pending() == 2
        assert sorted(index.collection.get(include=[])["ids"]) == sorted([str(a), f"{a}.1", f"{a}.2", str(b)])
        hits = mem.search_recall("rocket launch friday", mode="vector", session_id="s1")
        assert [h.id for h in hits] == [a]  # one hit per message, filtered on the server
        mem.forget(ids=[a], reason="test")  # every passage is deleted on the server too
        assert index.collection.get(include=[])["ids"] == [str(b)]
