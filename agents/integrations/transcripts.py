"""Chat transcripts into the recall log: JSON lines and Claude Code session files.

Reading is ``agents.integrations.reading`` (formats, identity, tolerance of bad lines); this
module stores what it reads, and re-exports the readers. Rules it keeps:

* **Exact and idempotent.** Every record is stored under its own identity, the recall log's
  message ``key``. Importing files in any order, with any overlap, any number of times, stores
  each distinct record exactly once (the log's unique key index decides, so two imports
  racing in two processes cannot duplicate either).
* **Ordered by time.** Each session of an import (its file and the ``subagents/`` files beside
  it) is appended sorted by timestamp (ties keep file order; records without one come last),
  so a session's main and subagent records come out in the order things happened. Separate
  imports append in the order they run; every message keeps its ``created_at``.
* **Bounded memory.** A session's files are read as streams into an external sort
  (``agents.integrations.spill``: sorted runs in a temporary directory, merged), then stored
  ``BATCH`` messages a transaction: memory does not grow with a file or a tree
  (bench/bench_import.py). A session's files are all read before its first message is
  stored, so a named file that is not a transcript stores nothing.
* **Nothing lost.** An import stopped part-way has stored whole transactions of the session
  in time order; running it again stores the rest (the keys make the repeat harmless).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.integrations.lines import Reading, clean, clean_json, json_lines, parse_time
from agents.integrations.reading import (
    FORMATS,
    ImportSummary,
    TranscriptMessage,
    check_format,
    check_paths,
    detect_format,
    expand_paths,
    iter_file,
    read_file,
    read_transcript,
)
from agents.integrations.spill import ExternalSort
from memory.errors import ValidationError
from memory.text.query import to_us

if TYPE_CHECKING:
    from memory.manager import MemoryManager

__all__ = [
    "BATCH", "FORMATS", "ImportSummary", "Reading", "TranscriptMessage", "check_paths", "clean", "clean_json",
    "detect_format", "expand_paths", "import_paths", "import_transcript", "iter_file", "json_lines", "parse_time",
    "read_file", "read_transcript", "store_readings",
]

BATCH = 2_000  # messages a transaction
_RECORD_BYTES = 400  # what a record held in the sort costs beyond its source line, roughly
_FAR = to_us(datetime.max.replace(tzinfo=UTC))  # records without a time come last


def store_readings(
    memory: MemoryManager, readings: Sequence[Reading], *, agent_id: str = "default",
    session_id: str | None = None,
) -> list[ImportSummary]:
    """Append the messages already read into ``readings`` in time order; one summary each."""
    sources = [_Source(_summary(r), r, r.messages, named=True) for r in readings]
    _store_group(memory, sources, agent_id=agent_id, session_id=session_id)
    return [src.summary for src in sources]


@dataclass
class _Source:
    """One file of a session being imported: its summary, its reading, its messages."""

    summary: ImportSummary
    reading: Reading
    messages: Iterable[TranscriptMessage]
    named: bool  # the caller named this file (an error stops the import) or a directory held it


def _summary(r: Reading) -> ImportSummary:
    return ImportSummary(path=r.path, format=r.format)


def _store_group(
    memory: MemoryManager, sources: list[_Source], *, agent_id: str, session_id: str | None,
    progress: _Tally | None = None,
) -> None:
    """Read every file of one session into an external sort by (time, file, position), then
    append the messages in that order, ``BATCH`` a transaction; the summaries are filled in.

    Reading comes first, so a named file that turns out not to be of its format stores
    nothing of its session; a file found in a directory is left out with its reason."""
    with ExternalSort() as order:
        for f, src in enumerate(sources):
            s, r = src.summary, src.reading
            default_session = session_id or f"import-{Path(r.path).stem}"
            sessions = dict.fromkeys(s.sessions)
            done = r.end_offset
            try:
                for n, m in enumerate(src.messages):
                    kind = str(m.metadata.get("kind", "message"))
                    s.kinds[kind] = s.kinds.get(kind, 0) + 1
                    if not m.content.strip():
                        s.skipped += 1
                        continue
                    sid = session_id or m.session_id or default_session
                    sessions.setdefault(sid)
                    when = _FAR if m.created_at is None else to_us(m.created_at)
                    read, done = r.end_offset - done, r.end_offset
                    order.add((when, f, n, m.role, m.content, m.created_at, sid, m.tool_name, m.tool_args,
                               m.metadata, m.key), read + _RECORD_BYTES)
                    if progress is not None:
                        progress.read(read, 1)
            except ValidationError as exc:
                if src.named:
                    raise
                src.summary = ImportSummary(path=r.path, format=r.format, error=str(exc))
                continue
            finally:
                if progress is not None:
                    progress.read(r.end_offset - done, 0)  # the lines after its last message
            s.sessions = list(sessions)
            s.bad_lines, s.bad_count, s.not_messages = list(r.bad_lines), r.bad_count, dict(r.not_messages)
        batch: list[tuple[Any, ...]] = []
        for rec in order.sorted():
            batch.append(rec)
            if len(batch) >= BATCH:
                _append(memory, batch, sources, agent_id, progress)
                batch = []
        _append(memory, batch, sources, agent_id, progress)


def _append(memory: MemoryManager, batch: list[tuple[Any, ...]], sources: list[_Source], agent_id: str,
            progress: _Tally | None) -> None:
    if not batch:
        return
    rows = []
    for _t, _f, _n, role, content, when, sid, tool_name, tool_args, meta, key in batch:
        row: dict[str, Any] = {"content": content, "role": role, "agent_id": agent_id, "session_id": sid,
                               "metadata": meta, "key": key}
        if when is not None:
            row["created_at"] = when
        if tool_name is not None:
            row["tool_name"] = tool_name
        if tool_args is not None:
            row["tool_args"] = tool_args
        rows.append(row)
    stored = {m.key for m in memory.recall.append_many(rows)}
    seen: set[str | None] = set()
    for rec in batch:
        key, s = rec[-1], sources[rec[1]].summary
        if key in stored and key not in seen:
            s.messages += 1
            seen.add(key)
        else:
            s.already_present += 1
    if progress is not None:
        progress.stored(len(batch))


class _Tally:
    """Progress of an import as ``progress(done, total)`` in bytes of the files: reading a
    session's files counts half their size, storing its messages the other half."""

    def __init__(self, total: int, progress: Callable[[int, int], None]) -> None:
        self.total, self.progress = max(total, 1), progress
        self.done = 0.0
        self._base = self._group_read = self._group_rows = 0

    def group(self) -> None:
        """A session starts: the one before is counted whole."""
        self._base += self._group_read
        self.done = float(self._base)
        self._group_read = self._group_rows = 0

    def read(self, size: int, rows: int) -> None:
        self._group_read += size
        self._group_rows += rows
        self.done += size / 2
        if rows and self._group_rows % BATCH == 0:
            self.progress(min(int(self.done), self.total), self.total)

    def stored(self, rows: int) -> None:
        self.done += self._group_read / 2 * rows / max(self._group_rows, 1)
        self.progress(min(int(self.done), self.total), self.total)


def import_paths(
    memory: MemoryManager, paths: Iterable[str | Path], *, format: str | None = None,
    agent_id: str = "default", session_id: str | None = None, progress: Callable[[int, int], None] | None = None,
) -> list[ImportSummary]:
    """Import files and directories (every ``*.jsonl`` under them), one summary per file.

    Files the caller named are checked first, so one of the wrong format stores nothing; a
    file of another kind found in a directory is left out, with its reason. Each session (a
    session file with its subagent files) is read as a stream into an external sort and
    stored in time order, ``BATCH`` messages a transaction: memory stays bounded whatever the
    size of a file or a tree. ``progress(done, total)`` counts bytes of the files.
    """
    groups = check_paths(paths, format)
    tally = None
    if progress is not None:
        tally = _Tally(sum(_size(p) for g in groups for p, _n, _f in g), progress)
    out: list[ImportSummary] = []
    for group in groups:
        sources = []
        for p, named, checked in group:  # a named file's format was found by check_paths
            reading = Reading(str(p), checked or format or detect_format(p))
            sources.append(_Source(_summary(reading), reading, iter_file(p, reading), named))
        if tally is not None:
            tally.group()
        _store_group(memory, sources, agent_id=agent_id, session_id=session_id, progress=tally)
        out += [src.summary for src in sources]
    if progress is not None and tally is not None:
        progress(tally.total, tally.total)
    return out


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def import_transcript(
    memory: MemoryManager, path: str | Path, *, format: str | None = None,
    agent_id: str = "default", session_id: str | None = None,
) -> ImportSummary:
    """Import one transcript file, streamed as ``import_paths`` does; see the module rules.

    ``session_id`` overrides the sessions named in the file; messages that name none go to a
    session called after the file (``import-<file name>``).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValidationError(f"{p} is a directory: use import_paths for directories")
    if format is not None:
        check_format(format)
    reading = Reading(str(p), format or detect_format(p))
    src = _Source(_summary(reading), reading, iter_file(p, reading), named=True)
    _store_group(memory, [src], agent_id=agent_id, session_id=session_id)
    return src.summary
