"""Which files ``ingest`` reads: it stays inside what it was given, and says what it left out.

Rules this module keeps:

* A directory is walked without leaving it: a symbolic link whose target lies outside the
  directory (a file, or a directory to descend into) is skipped and reported, unless
  ``follow_symlinks`` is set; a link that stays inside is read once, like its target. A file
  named on the command line is read even if it is a link: the user gave it.
* Only regular files are read. FIFOs, sockets and devices are refused (reading a FIFO would
  wait forever); so are names that are not valid UTF-8 (they cannot be stored as a source).
* Hidden files and directories (a name starting with ``.``) are passed over silently, and so
  are files of other extensions inside a directory (counted, not listed). A file named
  explicitly is read whatever its extension (or none: ``NOTES``, ``todo.org``): the user
  gave it; the text check still refuses a binary one.
* Each problem is one ``(path, reason)``, and one bad file never stops the others.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from memory.errors import ValidationError

__all__ = ["Found", "read_text", "walk_files"]

Found = tuple[Path, str | None, bool]
"""``(path, reason, listed)``: reason None means read it; ``listed`` says whether a skip is
reported by name (False: an extension skip inside a directory, only counted)."""


def _printable(path: Path | str) -> str:
    return os.fsdecode(os.fsencode(path)).encode("utf-8", "backslashreplace").decode("utf-8")


def _inside(target: Path, root: Path) -> bool:
    try:
        target.relative_to(root)
    except ValueError:
        return False
    return True


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def _check(path: Path, allowed: set[str], *, named: bool) -> tuple[str | None, bool]:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8 (rename it)", True
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot be read: {exc.strerror}", True
    kind = _kind(st.st_mode)
    if kind is not None:
        return f"{kind}, not a regular file", True
    if not named and path.suffix.lower() not in allowed:
        shown = path.suffix or "no extension"
        return f"{shown} is not an extension ingested (add it with --ext)", named
    return None, False


def walk_files(paths: Iterable[str | Path], exts: Iterable[str], *, follow_symlinks: bool = False) -> Iterator[Found]:
    """Every file ``ingest`` meets under ``paths``, with the reason it is skipped (or None)."""
    allowed = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in exts}
    seen: set[tuple[int, int]] = set()
    for p in paths:
        given = Path(p).expanduser()
        if not given.exists() and not given.is_symlink():
            raise ValidationError(f"no such file or directory: {_printable(given)}")
        if not given.is_dir():
            yield given, *_check(given, allowed, named=True)
            continue
        root = given.resolve()
        for dirpath, dirnames, filenames in os.walk(given, followlinks=follow_symlinks):
            here = Path(dirpath)
            kept = []
            for d in sorted(dirnames):
                sub = here / d
                if d.startswith("."):
                    continue
                if sub.is_symlink() and not follow_symlinks:
                    target = sub.resolve()
                    if not _inside(target, root):
                        yield sub, f"a symbolic link to {_printable(target)}, outside {_printable(given)} (--follow-symlinks)", True
                    # a link inside the folder is walked where it points to
                    continue
                kept.append(d)
            dirnames[:] = kept
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                f = here / name
                if f.is_symlink() and not follow_symlinks:
                    target = f.resolve()
                    if not _inside(target, root):
                        yield f, f"a symbolic link to {_printable(target)}, outside {_printable(given)} (--follow-symlinks)", True
                        continue
                reason, listed = _check(f, allowed, named=False)
                if reason is None:
                    st = f.stat()
                    if (st.st_dev, st.st_ino) in seen:
                        continue  # the same file through a link: read once
                    seen.add((st.st_dev, st.st_ino))
                yield f, reason, listed


def read_text(path: Path, max_bytes: int = 50_000_000) -> tuple[str | None, str | None]:
    """``(text, None)``, or ``(None, reason)`` for a file that is not text."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror}"
    if len(data) > max_bytes:
        return None, f"larger than {max_bytes // 1_000_000} MB"
    nul = data.find(b"\x00")
    if nul >= 0:
        return None, f"binary (a NUL byte at offset {nul})"
    return data.decode("utf-8", errors="replace"), None
