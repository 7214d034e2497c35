"""An external sort: any number of records put in order in bounded memory.

Rules this module keeps:

* Records are tuples whose leading fields are the sort key, and that key is unique (the
  importer's ``(time, file, position)``), so a comparison never reaches the payload.
* Up to ``run_items`` records, or ``run_bytes`` as the caller counts them, are held in memory.
  A fuller buffer is sorted and written to a temporary file as a *run*; at the end the runs
  (and the last buffer, in memory) are merged with ``heapq.merge``, reading each run
  ``CHUNK`` records at a time. More than ``FAN_IN`` runs are first merged into longer runs,
  so the number of open files stays bounded too. Input that fits in one buffer never
  touches the disk.
* The runs live in a temporary directory (``TMPDIR``, or ``tmp_dir``) named with the process
  id, that ``close`` (or the end of the ``with`` block) removes; the directories of processes
  that are gone (a killed import) are removed by the next sort that spills. They are written and read back by this process only,
  which is why pickle is the format here.
"""

from __future__ import annotations

import heapq
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["CHUNK", "FAN_IN", "RUN_BYTES", "RUN_ITEMS", "ExternalSort"]

RUN_ITEMS = 20_000  # records held in memory before a run is written
RUN_BYTES = 32 << 20  # or this many bytes of them, as the caller counts
CHUNK = 128  # records per pickle in a run: what a run holds in memory while merging
FAN_IN = 64  # runs merged at once


class ExternalSort:
    """``add`` records, then iterate ``sorted()`` once; see the module rules."""

    def __init__(self, *, run_items: int | None = None, run_bytes: int | None = None,
                 tmp_dir: str | None = None) -> None:
        self.run_items = RUN_ITEMS if run_items is None else run_items
        self.run_bytes = RUN_BYTES if run_bytes is None else run_bytes
        self.tmp_dir = tmp_dir
        self.spilled = 0  # records written to runs
        self._buf: list[tuple[Any, ...]] = []
        self._bytes = 0
        self._runs: list[Path] = []
        self._dir: Path | None = None
        self._made = 0

    def __enter__(self) -> ExternalSort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, record: tuple[Any, ...], size: int = 0) -> None:
        """Take one record; ``size`` is what it costs in memory, roughly (its source bytes)."""
        self._buf.append(record)
        self._bytes += size
        if len(self._buf) >= self.run_items or self._bytes >= self.run_bytes:
            self._buf.sort()
            self._runs.append(self._write(iter(self._buf)))
            self.spilled += len(self._buf)
            self._buf, self._bytes = [], 0

    def sorted(self) -> Iterator[tuple[Any, ...]]:
        """Every record added, in order (once)."""
        self._buf.sort()
        if not self._runs:
            buf, self._buf = self._buf, []
            yield from buf
            return
        while len(self._runs) >= FAN_IN:
            head, self._runs = self._runs[:FAN_IN], self._runs[FAN_IN:]  # oldest first: stable
            self._runs.append(self._write(heapq.merge(*(self._read(p) for p in head))))
            for p in head:
                p.unlink()
        buf, self._buf = self._buf, []
        yield from heapq.merge(*(self._read(p) for p in self._runs), iter(buf))

    def close(self) -> None:
        self._buf, self._runs = [], []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _write(self, records: Iterable[tuple[Any, ...]]) -> Path:
        if self._dir is None:
            _sweep(Path(self.tmp_dir or tempfile.gettempdir()))
            self._dir = Path(tempfile.mkdtemp(prefix=f"rlmem-sort-{os.getpid()}-", dir=self.tmp_dir))
        self._made += 1
        path = self._dir / f"run-{self._made:06d}"
        with path.open("wb") as fh:
            chunk: list[tuple[Any, ...]] = []
            for r in records:
                chunk.append(r)
                if len(chunk) >= CHUNK:
                    _dump(fh, chunk)
                    chunk = []
            if chunk:
                _dump(fh, chunk)
        return path

    @staticmethod
    def _read(path: Path) -> Iterator[tuple[Any, ...]]:
        with path.open("rb") as fh:
            while True:
                try:
                    chunk = pickle.load(fh)
                except EOFError:
                    return
                yield from chunk


def _sweep(parent: Path) -> None:
    """Remove the runs of sorts whose process is gone (killed before it could clean up)."""
    for d in parent.glob("rlmem-sort-*-*"):
        try:
            pid = int(d.name.split("-")[2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue  # not ours, or a live process of another user


def _dump(fh: BinaryIO, chunk: list[tuple[Any, ...]]) -> None:
    pickle.dump(chunk, fh, protocol=pickle.HIGHEST_PROTOCOL)
