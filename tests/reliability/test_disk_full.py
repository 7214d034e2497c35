"""A real full filesystem under real ``rlmem`` processes: a small tmpfs the test mounts and
removes (``reliability.disk``). A write on the full disk answers 507 with a message naming
the store's directory (the CLI: exit 1, the same message) and stores nothing; a reindex that
finds the disk full, or fills it half-way, fails with one line naming the disk (never a hang,
an abort or a traceback); every write acknowledged before is still there, and once space
returns writes work again and the vectors are completed from SQL. Skipped, with the reason,
where this process may not mount a tmpfs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability.disk import (
    CannotMount,
    fill,
    filled_store,
    heal,
    http_on_full_disk,
    reindex_while_filling,
    tmpfs,
)
from reliability.disk import vector_env as _env
from reliability.served import cli


@pytest.fixture()
def disk(tmp_path: Path) -> Iterator[Path]:
    try:
        with tmpfs(tmp_path / "disk") as mnt:
            yield mnt
    except CannotMount as exc:
        pytest.skip(str(exc))


def test_a_full_disk_is_507_and_loses_nothing(disk: Path) -> None:
    store = disk / "store"
    got = http_on_full_disk(disk)
    assert 507 in got.statuses, got.statuses
    assert set(got.statuses) <= {201, 507}, got.statuses
    for msg in got.messages:
        assert str(store) in msg and "full" in msg, msg
    assert got.cli_status == 1 and "is full" in got.cli_error and str(store) in got.cli_error, got.cli_error
    assert "Traceback" not in got.cli_error
    assert got.after == 201 and got.integrity == "ok"
    for i, prefix in got.acked.items():
        assert got.stored.get(i, "").startswith(prefix), f"acknowledged message {i} lost"
    refused = [v for k, v in got.stored.items() if k not in got.acked and ("on a full disk" in v)]
    assert refused == []  # a 507 (or the CLI's error) stored nothing


def test_reindex_on_a_full_disk_fails_clearly_and_recovers(disk: Path) -> None:
    """``rlmem reindex --reembed`` with no space left: a one-line error naming the store's
    disk and a non-zero status (never 134, never a traceback); every message is still there,
    and the same reindex completes once space returns."""
    store = filled_store(disk)
    fill(disk / "filler")
    p = cli("--store", str(store), "reindex", "--reembed", env=_env(), timeout=300)
    assert p.returncode in (1, 2), (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and "terminate called" not in p.stderr, p.stderr
    assert "is full" in p.stderr and str(disk) in p.stderr, p.stderr
    (disk / "filler").unlink()
    p = cli("--store", str(store), "reindex", "--reembed", env=_env(), timeout=300)
    assert p.returncode == 0, p.stderr
    got = heal(store)
    assert (got.pending, got.vectors, got.messages, got.intact) == (0, 2000, 2000, 2000), got


def test_a_disk_that_fills_during_a_reindex_fails_clearly_and_heals(disk: Path) -> None:
    """The disk fills while ``rlmem reindex --reembed`` rebuilds the collection (the queue
    partly drained, some vectors written): a one-line error naming the disk and exit 1 (no
    hang, no abort, no traceback); every message is still there, the rest stays queued, and
    once space returns the next open embeds what is left: nothing pending, every message in
    the collection."""
    got = reindex_while_filling(disk)
    assert got.started, "the reindex ended before the disk could be filled"
    assert got.status == 1, got
    assert "Traceback" not in got.error and "terminate called" not in got.error, got.error
    assert "is full" in got.error and str(disk) in got.error and len(got.error.strip().splitlines()) == 1, got.error
    assert got.queued > 0 and (got.pending, got.vectors, got.messages, got.intact) == (0, 2000, 2000, 2000), got
    assert got.integrity == "ok"

