"""The embedded Chroma write lock holds across processes and dies with its holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from memory.vectors.embeddings import HashEmbedder
from memory.vectors.index import VectorIndex

ROOT = Path(__file__).resolve().parents[1]


def _holder(lock: Path, seconds: float) -> subprocess.Popen[str]:
    code = (
        "import sys, time\n"
        "from memory.vectors.embeddings import HashEmbedder\n"
        "from pathlib import Path\nfrom memory.vectors.index import VectorIndex\n"
        f"with VectorIndex(None, 'x', HashEmbedder(), lock_path=Path({str(lock)!r})).write_lock():\n"
        "    print('held', flush=True)\n"
        f"    time.sleep({seconds})\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_another_process_waits_for_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / ".rlmem-write.lock"
    holder = _holder(lock, 1.0)
    start = time.monotonic()
    with VectorIndex(None, "x", HashEmbedder(), lock_path=lock).write_lock():
        waited = time.monotonic() - start
    holder.wait(timeout=30)
    assert waited >= 0.5


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / ".rlmem-write.lock"
    holder = _holder(lock, 60.0)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    start = time.monotonic()
    with VectorIndex(None, "x", HashEmbedder(), lock_path=lock).write_lock():
        pass
    assert time.monotonic() - start < 5
