"""A real full filesystem: a small tmpfs mounted for one test (or one benchmark scenario) and
removed afterwards, and the probes run on it, shared by ``test_disk_full.py`` and
``bench/reliability.py``.

Rules this module keeps:

* ``tmpfs`` mounts with ``mount -t tmpfs`` and unmounts (lazily) whatever happens; where this
  process may not mount, it raises ``CannotMount`` with the reason (callers skip with it).
* ``fill`` takes every free byte of a filesystem with one file; deleting the file gives the
  space back.
* A probe returns what it observed (statuses, exit codes, messages, counts), not a verdict:
  the test asserts on it, the benchmark counts it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from memory.db import Database
from reliability.harness import ROOT
from reliability.served import Served, cli, cli_env, cli_json

__all__ = ["CannotMount", "FullDiskHttp", "ReindexOnFullDisk", "fill", "http_on_full_disk", "queued",
           "reindex_while_filling", "tmpfs"]


class CannotMount(RuntimeError):
    """This process may not mount a tmpfs (needs root or CAP_SYS_ADMIN)."""


@contextmanager
def tmpfs(mnt: Path, size: str = "64m") -> Iterator[Path]:
    mnt.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        raise CannotMount(f"cannot mount a tmpfs here ({p.stderr.strip() or 'mount failed'}): "
                          "needs root or CAP_SYS_ADMIN")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path: Path) -> None:
    """Take every free byte of the filesystem holding ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 10, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)


def stored_messages(store: Path) -> dict[int, str]:
    """Every recall message of the store, id to text (read-only)."""
    db = Database.open(store / "memory.db", read_only=True)
    try:
        with db.read() as conn:
            return {int(i): str(c) for i, c in conn.exec_driver_sql("SELECT id, content FROM recall_messages").all()}
    finally:
        db.close()


@dataclass
class FullDiskHttp:
    """What ``rlmem serve`` and ``rlmem log`` did on a full disk (see ``http_on_full_disk``)."""

    acked: dict[int, str] = field(default_factory=dict)  # id -> the text's head, every 201
    statuses: list[int] = field(default_factory=list)  # of the writes on the full disk
    messages: list[str] = field(default_factory=list)  # their error messages (507s and others)
    cli_status: int = 0
    cli_error: str = ""
    after: int = 0  # status of the write once space returned
    stored: dict[int, str] = field(default_factory=dict)
    integrity: str = ""


def http_on_full_disk(disk: Path, *, before: int = 20, on_full: int = 10) -> FullDiskHttp:
    """A store on ``disk`` served by ``rlmem serve``: ``before`` writes, then the disk filled and
    ``on_full`` writes over HTTP, one archival insert and one ``rlmem log``; then space back
    and one more write."""
    out = FullDiskHttp()
    store = disk / "store"
    assert cli("init", str(store)).returncode == 0
    token = cli_json("token", "show", "--store", str(store))["token"]
    with Served(store) as server, httpx.Client(base_url=server.url, timeout=60, trust_env=False,
                                               headers={"Authorization": f"Bearer {token}"}) as c:
        for i in range(before):
            r = c.post("/messages", json={"content": f"acknowledged {i} " + "x" * 2000})
            assert r.status_code == 201, r.text
            out.acked[r.json()["id"]] = f"acknowledged {i} "
        fill(disk / "filler")
        writes = [("/messages", {"content": f"on a full disk {i} " + "y" * 50_000}) for i in range(on_full)]
        writes.append(("/archival", {"text": "a passage on a full disk " + "z" * 50_000}))
        for path, body in writes:
            r = c.post(path, json=body)
            out.statuses.append(r.status_code)
            if r.status_code == 201 and path == "/messages":
                out.acked[r.json()["id"]] = str(body["content"])[:18]
            elif r.status_code != 201:
                try:
                    out.messages.append(str(r.json()["error"]["message"]))
                except (ValueError, KeyError, TypeError):
                    out.messages.append(r.text[:200])
        p = cli("log", "on a full disk from the CLI " + "v" * 50_000, "--store", str(store))
        out.cli_status, out.cli_error = p.returncode, p.stderr
        (disk / "filler").unlink()
        r = c.post("/messages", json={"content": "after space returned"})
        out.after = r.status_code
        if r.status_code == 201:
            out.acked[r.json()["id"]] = "after space returned"
    out.stored = stored_messages(store)
    db = Database.open(store / "memory.db", read_only=True)
    try:
        out.integrity = db.integrity_check()
    finally:
        db.close()
    return out


FILL_MESSAGES = 2000
_FILL = f"""
import sys
from memory.manager import MemoryManager
mem = MemoryManager.open(sys.argv[1], background_embed=False)
mem.recall.append_many([{{'content': f'note {{i}} about the blue vault ' + 'w' * 400}} for i in range({FILL_MESSAGES})])
mem.embed_pending()
mem.close()
"""

_HEAL = """
import sys
from memory.manager import MemoryManager
mem = MemoryManager.open(sys.argv[1], background_embed=False)
before = mem.pending()
mem.embed_pending()
index = mem.queue.sources["recall"].index
with mem.db.read() as conn:
    rows = conn.exec_driver_sql(
        "SELECT COUNT(*), SUM(content LIKE 'note % about the blue vault %') FROM recall_messages").one()
print(before, mem.pending(), index.count(), rows[0], rows[1], mem.db.integrity_check(), flush=True)
mem.close()
"""


def vector_env() -> dict[str, str]:
    """Recall embedded with the hash embedder, one vector per message."""
    return cli_env(RLMEM_EMBED_RECALL="true", RLMEM_EMBED_BACKEND="hash", RLMEM_RECALL_PASSAGES="false")


def filled_store(disk: Path) -> Path:
    """``rlmem init`` on ``disk``, then ``FILL_MESSAGES`` messages, all embedded."""
    env = vector_env()
    store = disk / "store"
    assert cli("init", str(store), env=env).returncode == 0
    subprocess.run([sys.executable, "-c", _FILL, str(store)], env=env, cwd=ROOT, check=True, timeout=300)
    return store


@dataclass
class ReindexOnFullDisk:
    """What a reindex on a disk that filled did, and what the next open found."""

    started: bool = False  # the disk was filled while the rebuild was under way
    status: int | None = None
    error: str = ""
    queued: int = 0  # left queued by the failed reindex
    pending: int = -1  # after the next open embedded the queue
    vectors: int = -1
    messages: int = -1
    intact: int = -1  # messages with exactly their text
    integrity: str = ""


def heal(store: Path) -> ReindexOnFullDisk:
    """Open the store in a fresh process and embed what is queued; report counts."""
    out = ReindexOnFullDisk()
    p = subprocess.run([sys.executable, "-c", _HEAL, str(store)], env=vector_env(), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    if p.returncode != 0:
        out.error = p.stderr[-800:]
        return out
    queued, pending, count, messages, intact, check = p.stdout.split()
    out.queued, out.pending, out.vectors = int(queued), int(pending), int(count)
    out.messages, out.intact, out.integrity = int(messages), int(intact or 0), check
    return out


def queued(store: Path) -> int:
    """Rows waiting in the embedding queue (read-only: never waits for a writer)."""
    db = Database.open(store / "memory.db", read_only=True)
    try:
        with db.read() as conn:
            return int(conn.exec_driver_sql("SELECT COUNT(*) FROM rlmem_embed_queue").scalar() or 0)
    finally:
        db.close()


def reindex_while_filling(disk: Path) -> ReindexOnFullDisk:
    """``rlmem reindex --reembed`` on a filled store; the disk is filled once the rebuild is
    under way (some vectors written, the queue partly drained); after the reindex ends, space
    comes back and the next open embeds the rest (``heal``)."""
    store = filled_store(disk)
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli.main", "--store", str(store), "reindex", "--reembed",
                             "-q"], env=vector_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = False
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if 0 < queued(store) < FILL_MESSAGES * 0.95:
                started = True
                break
            time.sleep(0.01)
        if started:
            fill(disk / "filler")
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        err = "no answer within 120 s (killed)"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (disk / "filler").unlink(missing_ok=True)
    out = heal(store)
    out.started, out.status, out.error = started, proc.returncode, err + out.error
    return out
