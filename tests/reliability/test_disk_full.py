"""A real full filesystem under a real ``rlmem serve``: a small tmpfs the test mounts and
removes. A write on the full disk answers 507 with a message naming the store's directory and
stores nothing; every write acknowledged before is still there, and writes work again once
space returns. Skipped, with the reason, where this process may not mount a tmpfs.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memory.db import Database
from reliability.served import Served, cli, cli_json


@pytest.fixture()
def disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or 'mount failed'}): needs root or CAP_SYS_ADMIN")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(path: Path) -> None:
    """Take every free byte of the filesystem holding ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 10, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_full_disk_is_507_and_loses_nothing(disk: Path) -> None:
    store = disk / "store"
    assert cli("init", str(store)).returncode == 0
    token = cli_json("token", "show", "--store", str(store))["token"]
    acked: dict[int, str] = {}
    with Served(store) as server, httpx.Client(base_url=server.url, timeout=60, trust_env=False,
                                               headers={"Authorization": f"Bearer {token}"}) as c:
        for i in range(20):
            r = c.post("/messages", json={"content": f"acknowledged {i} " + "x" * 2000})
            assert r.status_code == 201, r.text
            acked[r.json()["id"]] = f"acknowledged {i} "
        _fill(disk / "filler")
        statuses = []
        for i in range(10):
            r = c.post("/messages", json={"content": f"on a full disk {i} " + "y" * 50_000})
            statuses.append(r.status_code)
            if r.status_code == 201:
                acked[r.json()["id"]] = f"on a full disk {i} "
            else:
                assert r.status_code == 507, r.text
                e = r.json()["error"]
                assert e["type"] == "insufficient_storage" and str(store) in e["message"] and "full" in e["message"]
        assert 507 in statuses, statuses
        r = c.post("/archival", json={"text": "a passage on a full disk " + "z" * 50_000})
        assert r.status_code in (201, 507), r.text
        (disk / "filler").unlink()
        r = c.post("/messages", json={"content": "after space returned"})
        assert r.status_code == 201, r.text
        acked[r.json()["id"]] = "after space returned"
    db = Database.open(store / "memory.db")
    try:
        with db.read() as conn:
            rows = dict(conn.exec_driver_sql("SELECT id, content FROM recall_messages").all())
        assert db.integrity_check() == "ok"
    finally:
        db.close()
    for i, prefix in acked.items():
        assert str(rows.get(i, "")).startswith(prefix), f"acknowledged message {i} lost"
    assert not any("on a full disk" in str(v) for k, v in rows.items() if k not in acked)  # 507 stored nothing


_FILL = """
import sys
from memory.manager import MemoryManager
mem = MemoryManager.open(sys.argv[1], background_embed=False)
mem.recall.append_many([{'content': f'note {i} about the blue vault ' + 'w' * 400} for i in range(2000)])
mem.embed_pending()
mem.close()
"""

_CHECK = """
import sys
from memory.manager import MemoryManager
mem = MemoryManager.open(sys.argv[1], background_embed=False)
print(mem.pending(), mem.stats()["messages"], flush=True)
mem.close()
"""


def test_reindex_on_a_full_disk_fails_clearly_and_recovers(disk: Path) -> None:
    """``rlmem reindex --reembed`` with no space left: a one-line error naming the store's
    disk and a non-zero status (never 134, never a traceback); every message is still there,
    and the same reindex completes once space returns."""
    import sys

    from reliability.harness import ROOT
    from reliability.served import cli_env

    env = cli_env(RLMEM_EMBED_RECALL="true", RLMEM_EMBED_BACKEND="hash", RLMEM_RECALL_PASSAGES="false")
    store = disk / "store"
    assert cli("init", str(store), env=env).returncode == 0
    subprocess.run([sys.executable, "-c", _FILL, str(store)], env=env, cwd=ROOT, check=True, timeout=300)
    _fill(disk / "filler")
    p = cli("--store", str(store), "reindex", "--reembed", env=env, timeout=300)
    assert p.returncode in (1, 2), (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and "terminate called" not in p.stderr, p.stderr
    assert "is full" in p.stderr and str(disk) in p.stderr, p.stderr
    (disk / "filler").unlink()
    p = cli("--store", str(store), "reindex", "--reembed", env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    out = subprocess.run([sys.executable, "-c", _CHECK, str(store)], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.split() == ["0", "2000"]


def _queued(store: Path) -> int:
    db = Database.open(store / "memory.db", read_only=True)
    try:
        with db.read() as conn:
            return int(conn.exec_driver_sql("SELECT COUNT(*) FROM rlmem_embed_queue").scalar() or 0)
    finally:
        db.close()


_HEAL = """
import sys
from memory.manager import MemoryManager
mem = MemoryManager.open(sys.argv[1], background_embed=False)
before = mem.pending()
mem.embed_pending()
index = mem.queue.sources["recall"].index
db = mem.db
with db.read() as conn:
    rows = conn.exec_driver_sql("SELECT COUNT(*), SUM(content LIKE 'note % about the blue vault %') FROM recall_messages").one()
print(before, mem.pending(), index.count(), rows[0], rows[1], db.integrity_check(), flush=True)
mem.close()
"""


def test_a_disk_that_fills_during_a_reindex_fails_clearly_and_heals(disk: Path) -> None:
    """The disk fills while ``rlmem reindex --reembed`` rebuilds the collection (the queue
    half drained, some vectors written): a one-line error naming the disk and exit 1 (no
    hang, no abort, no traceback); every message is still there, the rest stays queued, and
    once space returns the next open embeds what is left: nothing pending, every message in
    the collection."""
    import sys
    import time

    from reliability.harness import ROOT
    from reliability.served import cli_env

    env = cli_env(RLMEM_EMBED_RECALL="true", RLMEM_EMBED_BACKEND="hash", RLMEM_RECALL_PASSAGES="false")
    store = disk / "store"
    assert cli("init", str(store), env=env).returncode == 0
    subprocess.run([sys.executable, "-c", _FILL, str(store)], env=env, cwd=ROOT, check=True, timeout=300)
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli.main", "--store", str(store), "reindex", "--reembed",
                             "-q"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if 0 < _queued(store) < 1900:  # the rebuild is under way: some vectors written
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the reindex ended before the disk could be filled"
        _fill(disk / "filler")
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, (proc.returncode, err)
    assert "Traceback" not in err and "terminate called" not in err, err
    assert "is full" in err and str(disk) in err and len(err.strip().splitlines()) == 1, err
    (disk / "filler").unlink()
    out = subprocess.run([sys.executable, "-c", _HEAL, str(store)], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    queued, pending, count, messages, intact, check = out.stdout.split()
    assert int(queued) > 0 and (pending, count, messages, intact, check) == ("0", "2000", "2000", "2000", "ok")
