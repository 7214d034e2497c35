"""A store with a 20,000-item embedding backlog: every command ends with its own status.

Each embedding command (``search --wait``, ``reindex``, ``ingest``, ``import``) is run in a
real process against the backlog and interrupted with SIGINT or SIGTERM once it has embedded
something: it must exit 130 / 143 (never 134, never a traceback), lose nothing, and leave the
rest queued for the next command, which finishes the job. ``search`` without ``--wait``
answers at once and reports the backlog. The plumbing cases use the hash embedder (fast);
one case runs the real model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder

ROOT = Path(__file__).resolve().parent.parent
BACKLOG = 20_000
pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANONYMIZED_TELEMETRY": "False",
           "RLMEM_EMBED_BACKEND": "hash"}
    env.pop("RLMEM_STORE", None)
    env.update(extra)
    return env


def _count(store: Path, sql: str) -> int:
    conn = sqlite3.connect(store / "memory.db", timeout=30)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def _queued(store: Path) -> int:
    return _count(store, "SELECT COUNT(*) FROM rlmem_embed_queue")


def _hashed(path: Path) -> MemoryManager:
    """The store at ``path`` with the hash embedder and no background thread."""
    return MemoryManager.open(path, embedder=HashEmbedder(), background_embed=False)


@pytest.fixture(scope="module")
def backlog_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 recall messages queued and never embedded (built once, copied per test)."""
    path = tmp_path_factory.mktemp("backlog") / "store"
    with _hashed(path) as mem:
        words = ["deploy", "vault", "zebra", "lunch", "cake", "office", "dog", "beagle", "tuesday", "standup", "key"]
        rows = [{"content": " ".join(words[(i * 7 + j) % len(words)] for j in range(12)) + f" item{i}.",
                 "session_id": f"s{i // 200}"} for i in range(BACKLOG)]
        for i in range(0, BACKLOG, 5000):
            mem.recall.append_many(rows[i : i + 5000])
        assert mem.pending() == BACKLOG
    return path


def _copy(src: Path, tmp_path: Path) -> Path:
    """A private copy of a module-wide store for one test."""
    dst = tmp_path / "store"
    shutil.copytree(src, dst)
    return dst


@pytest.fixture()
def store(backlog_store: Path, tmp_path: Path) -> Path:
    return _copy(backlog_store, tmp_path)


@pytest.fixture(scope="module")
def embedded_store(backlog_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same 20,000 messages, all embedded (drained once, in process; copied per test)."""
    path = tmp_path_factory.mktemp("embedded") / "store"
    shutil.copytree(backlog_store, path)
    with _hashed(path) as mem:
        assert mem.embed_pending() == BACKLOG and mem.pending() == 0
    return path


@pytest.fixture()
def done_store(embedded_store: Path, tmp_path: Path) -> Path:
    return _copy(embedded_store, tmp_path)


def _interrupt(args: list[str], store: Path, sig: int, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``rlmem ARGS``, send ``sig`` once the queue has shrunk from its peak (the command
    is embedding), return (status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli.main", "--store", str(store), *args],
                            env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    peak = 0
    while time.monotonic() < deadline and proc.poll() is None:
        queued = _queued(store)
        peak = max(peak, queued)
        if 0 < queued < peak:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _finish(store: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "agents.cli.main", "--store", str(store), "--json",
                          "search", "--wait", "zebra"], env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pending_embeddings"] == 0
    assert _queued(store) == 0
    assert _count(store, "SELECT COUNT(*) FROM rlmem_vectors WHERE tier = 'recall'") == BACKLOG


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_search_wait_interrupted_stops_between_batches_and_resumes(store: Path, sig: int, status: int) -> None:
    rc, err = _interrupt(["search", "--wait", "zebra"], store, sig)
    assert rc == status, err
    assert "terminate called" not in err and "Traceback" not in err
    left = _queued(store)
    assert 0 < left < BACKLOG  # some embedded, the rest still queued
    # Nothing lost: every message is there, and each embedded one has its vector copy.
    assert _count(store, "SELECT COUNT(*) FROM recall_messages") == BACKLOG
    assert _count(store, "SELECT COUNT(*) FROM rlmem_vectors") == BACKLOG - left
    if sig == signal.SIGINT:  # the next command finishes the job (once is enough to show it)
        _finish(store)


def test_search_without_wait_answers_now_and_reports_the_backlog(store: Path) -> None:
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "agents.cli.main", "--store", str(store), "--json",
                          "search", "zebra item17."], env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["pending_embeddings"] == BACKLOG and data["results"]  # found by full text
    assert _queued(store) == BACKLOG  # nothing was embedded behind the user's back
    assert time.monotonic() - t0 < 60
    people = subprocess.run([sys.executable, "-m", "agents.cli.main", "--store", str(store), "search", "zebra"],
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert people.returncode == 0 and "20,000 items are not embedded yet" in people.stderr
    assert "--wait" in people.stderr


def test_reindex_interrupted_by_sigint_resumes(done_store: Path) -> None:
    store = done_store
    assert _queued(store) == 0
    rc, err = _interrupt(["reindex", "--tier", "recall", "--reembed"], store, signal.SIGINT)
    assert rc == 130 and "terminate called" not in err and "Traceback" not in err, err
    assert 0 < _queued(store) <= BACKLOG
    _finish(store)


def test_import_and_ingest_interrupted_keep_what_they_stored(done_store: Path, tmp_path: Path) -> None:
    store, lines = done_store, 4000
    transcript = tmp_path / "chat.jsonl"
    transcript.write_text("".join(json.dumps({"role": "user", "content": f"imported line {i} about the vault"}) + "\n"
                                  for i in range(lines)), encoding="utf-8")
    rc, err = _interrupt(["import", str(transcript), "--session", "imp"], store, signal.SIGINT)
    assert rc == 130 and "Traceback" not in err, err
    assert _count(store, "SELECT COUNT(*) FROM recall_messages") == BACKLOG + lines  # the import itself is kept
    doc = tmp_path / "big.md"
    doc.write_text("\n\n".join(f"Paragraph {i}: the office dog is a beagle named Pixel {i}." for i in range(6000)),
                   encoding="utf-8")
    rc, err = _interrupt(["ingest", str(doc)], store, signal.SIGTERM)
    assert rc == 143 and "Traceback" not in err, err
    chunks = _count(store, "SELECT COUNT(*) FROM archival_chunks")
    assert chunks > 0  # every chunk was stored before embedding started
    out = subprocess.run([sys.executable, "-m", "agents.cli.main", "--store", str(store), "--json",
                          "search", "--wait", "beagle Pixel"], env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and json.loads(out.stdout)["pending_embeddings"] == 0, out.stderr
    assert _queued(store) == 0


_WORKER = """
import sys, time
from memory.manager import MemoryManager
mem = MemoryManager.open(sys.argv[1], embed_backend=sys.argv[2])
time.sleep(float(sys.argv[3]))  # the background thread is mid-backlog when the process ends
mem.close()
print("closed", flush=True)
"""


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_background_worker_with_the_real_model_ends_cleanly(backend: str, tmp_path: Path) -> None:
    """The case that used to abort (status 134): a process ends while its background thread
    is embedding a backlog with the real model."""
    path = tmp_path / "store"
    mem = _hashed(path)
    mem.recall.append_many([{"content": f"message {i}: the deploy key is in the vault"} for i in range(3000)])
    mem.close()
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _WORKER, str(path), backend, "12"],
                             env=_env(RLMEM_EMBED_BACKEND=backend), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert "terminate called" not in out.stderr and out.stdout.strip() == "closed"
    assert 0 <= _queued(path) < 3000
