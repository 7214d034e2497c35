"""What every ``rlmem`` command shares: finding the store, opening it, printing results.

Rules this module keeps:

* The store is found from ``--store``, else ``RLMEM_STORE`` (or ``RLMEM_DIR``, the name the
  library's configuration reads), else the default directory
  (``$XDG_DATA_HOME/rlmem``, i.e. ``~/.local/share/rlmem`` by default). Only ``rlmem init``
  creates a store; every other command refuses a missing one and names ``rlmem init``.
* Nothing heavy is imported here: the memory manager is imported when a command opens the
  store, so ``rlmem --help`` and text-only commands start fast. Commands that do not embed
  open the store with the background embedder off: torch loads only when a command embeds.
* Embedding in a command happens in the foreground, with a progress line
  (``embed_queued``; rules in ``agents.cli.progress``), never in a background thread that
  the end of the command would have to cut short.
* ``--json`` prints one JSON document on stdout (JSON lines for streams); without it, output
  is for people. Errors always go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agents.cli.progress import StopSignals, run_embedding
from memory.config import default_store_dir, store_exists
from memory.errors import ConfigError, NotFoundError
from memory.ops.values import jsonable

if TYPE_CHECKING:
    from memory.manager import MemoryManager
    from rlm_core.lm import LM

__all__ = ["CliContext", "default_store_dir", "jsonable", "resolve_store", "store_exists"]


def counted(n: int, word: str) -> str:
    """``1 file``, ``3 files``: a count with its noun."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def resolve_store(arg: str | None) -> tuple[Path, str]:
    """The store directory and where it came from (``--store``, ``RLMEM_STORE`` or default)."""
    if arg:
        return Path(arg).expanduser(), "--store"
    for var in ("RLMEM_STORE", "RLMEM_DIR"):
        env = os.environ.get(var)
        if env:
            return Path(env).expanduser(), var
    return default_store_dir(), "the default location"


@dataclass
class CliContext:
    """The parsed global options plus lazily opened resources; closed by ``main``."""

    store_arg: str | None = None
    json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    lm: LM | None = None  # a model passed in by a caller (tests, embedding programs)
    sub_lm: LM | None = None
    quiet: bool = False
    signals: StopSignals = field(default_factory=StopSignals)
    _memory: MemoryManager | None = None

    @property
    def store_path(self) -> Path:
        return resolve_store(self.store_arg)[0]

    def open_memory(self, *, create: bool = False, embed: bool = False, read_only: bool = False) -> MemoryManager:
        """The store, opened once. ``embed=False`` (commands that only read SQL) keeps the
        background embedder off, so queued items wait for a command that embeds anyway and
        torch is never loaded. ``read_only``: the command only reads, so it never waits for
        a writer (see ``MemoryManager.open``)."""
        if self._memory is not None:
            return self._memory
        path, origin = resolve_store(self.store_arg)
        if not create and not store_exists(path):
            raise NotFoundError(
                f"no memory store at {path} (from {origin}): create one with `rlmem init`"
                + ("" if origin == "--store" else " or `rlmem init --store DIR`")
                + ", or point --store / RLMEM_STORE at an existing store"
            )
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} is a file, not a store directory: give a directory")
        from memory.manager import MemoryManager

        self._memory = MemoryManager.open(path, background_embed=None if embed else False, read_only=read_only)
        return self._memory

    @property
    def show_progress(self) -> bool:
        """Progress lines only for a person at a terminal (not with --quiet or --json)."""
        return not (self.quiet or self.json) and bool(getattr(self.err, "isatty", lambda: False)())

    def embed_queued(self, mem: MemoryManager, tiers: Sequence[str] | None = None,
                     label: str = "embedding", unit: str = "items") -> int:
        """Embed what is queued in ``tiers`` now, with progress; a signal stops it between
        batches (the rest stays queued) and ends the command with 130 or 143."""
        return int(run_embedding(
            lambda stop, progress: mem.embed_pending(tiers=tiers, stop=stop, progress=progress),
            signals=self.signals, err=self.err, label=label, unit=unit, show=self.show_progress,
        ))

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    # --- output --------------------------------------------------------------------------

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def emit(self, data: Any, human: Callable[[], None] | str | None = None) -> None:
        """``data`` as JSON with ``--json``; otherwise ``human()`` (or the text) for people."""
        if self.json or human is None:
            print(json.dumps(jsonable(data), ensure_ascii=False, indent=None), file=self.out)
        elif isinstance(human, str):
            self.print(human)
        else:
            human()

    def warn(self, text: str) -> None:
        print(f"rlmem: {text}", file=self.err)
