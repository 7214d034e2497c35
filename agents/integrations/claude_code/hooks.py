"""``rlmem claude-code hook EVENT``: what runs when Claude Code fires a hook.

Claude Code runs the hook command with the event's JSON on stdin (``session_id``,
``transcript_path``, ``cwd``, ``hook_event_name``, and per event ``source``, ``reason``,
``trigger``, ``agent_id``, ``agent_transcript_path``). Rules this module keeps:

* **A hook never breaks Claude Code.** Whatever happens (bad JSON, no store, a locked
  database, a bug) the hook exits 0; errors go to ``<store>/claude-code/hooks.log`` (kept under
  ``LOG_BYTES``). Each event has a time budget (``BUDGETS``) after which the hook gives up
  quietly; what it stored until then stays stored.
* **Incremental and exact.** Stop, SubagentStop, PreCompact and SessionEnd import the new tail
  of the session's transcript, and of every ``<session>/subagents/agent-*.jsonl`` beside it:
  the byte offset and line reached per file are kept in ``<store>/claude-code/offsets.json``,
  so each hook reads only what was appended since; the new records of all those files are
  stored in one batch, in time order (at most ``CHUNK_LINES`` lines per file and batch, so a
  long first capture commits as it goes), and the offsets saved after it is committed. A last line still being written is left for
  the next hook. A file that shrank or was replaced is read again from the start; the
  records' keys make any re-read harmless. Concurrent hooks serialise on a lock file.
* **Claude Code does not wait for the import.** A capture hook reads its JSON and the offsets
  (standard library only), and when a transcript grew it starts a detached worker (the same
  command with ``--foreground``, its own session, output to nothing) and exits: the hook's
  latency is that of starting Python, not of the import. The worker does the import.
* **Text only.** The store is opened without the embedding model (torch is never imported);
  the new messages wait in the durable embedding queue for the next command that embeds.
* SessionStart prints ``hookSpecificOutput.additionalContext``: the bounded context of
  ``agents.integrations.claude_code.context`` for the session's ``cwd``. Each capture worker
  refreshes that context for its ``cwd`` into ``claude-code/context/``, so a new session
  (``startup``, ``clear``) reads a prepared file; ``resume``/``compact``, or no file yet,
  compute it there and then.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import filelock

from agents.integrations.lines import Reading
from agents.integrations.transcripts import store_readings

if TYPE_CHECKING:
    from memory.manager import MemoryManager

__all__ = ["BUDGETS", "CAPTURE_EVENTS", "EVENTS", "LOG_BYTES", "capture", "run_hook"]

CAPTURE_EVENTS = ("Stop", "SubagentStop", "PreCompact", "SessionEnd")
EVENTS = ("SessionStart", *CAPTURE_EVENTS)
BUDGETS = {"SessionStart": 8.0, "Stop": 20.0, "SubagentStop": 20.0, "PreCompact": 40.0, "SessionEnd": 40.0}
LOG_BYTES = 1_000_000
CHUNK_LINES = 5_000  # lines per file and batch: a long first capture commits as it goes
_TOOL_NAMES_KEPT = 500


class _OutOfTime(Exception):
    pass


@contextlib.contextmanager
def _budget(seconds: float) -> Iterator[None]:
    def stop(_sig: int, _frame: FrameType | None) -> None:
        raise _OutOfTime

    if not hasattr(signal, "setitimer"):
        yield
        return
    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _locked(path: Path) -> filelock.BaseFileLock:
    path.parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(path)  # flock on POSIX, the same lock the hooks always took


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # lost offsets only cost a re-read: keys keep it exact


def _save(path: Path, data: dict[str, Any] | str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _transcripts(event: dict[str, Any]) -> list[Path]:
    """The session's transcript and its subagent files (those of the event first)."""
    out: list[Path] = []
    for k in ("transcript_path", "agent_transcript_path"):
        v = event.get(k)
        if isinstance(v, str) and v:
            out.append(Path(v).expanduser())
    if out:
        sub = out[0].with_suffix("") / "subagents"
        if sub.is_dir():
            out += sorted(sub.glob("agent-*.jsonl"))
    return [p for p in dict.fromkeys(out) if p.is_file()]


def capture(memory: MemoryManager, files: list[Path], state_dir: Path, *, agent_id: str = "default",
            chunk_lines: int = CHUNK_LINES) -> dict[str, int]:
    """Import what was appended to ``files`` since the last call; returns counts."""
    totals = {"files": 0, "messages": 0, "already_present": 0, "bad_lines": 0}
    with _locked(state_dir / "offsets.lock"):
        state_path = state_dir / "offsets.json"
        state = _load(state_path)
        seen: set[str] = set()
        while _capture_round(memory, files, state, state_path, agent_id, chunk_lines, totals, seen):
            pass
        totals["files"] = len(seen)
    return totals


def _capture_round(memory: MemoryManager, files: list[Path], state: dict[str, Any], state_path: Path,
                   agent_id: str, chunk_lines: int, totals: dict[str, int], seen: set[str]) -> bool:
    """Up to ``chunk_lines`` new lines of each file, stored as one batch; False when none was new."""
    from agents.integrations.claude_code_reader import read_claude_code

    readings: list[Reading] = []
    updates: dict[str, dict[str, Any]] = {}
    for path in files:
        st = path.stat()
        rec = state.get(str(path)) or {}
        start, line = int(rec.get("offset", 0)), int(rec.get("line", 0))
        if rec.get("inode") != st.st_ino or st.st_size < start:
            start, line = 0, 0  # replaced or rewritten: read it again (keys make it harmless)
        tools: dict[str, str] = dict(rec.get("tools") or {})
        reading = Reading(str(path), "claude-code", end_offset=start, end_line=line)
        if st.st_size > start:
            read_claude_code(path, reading, start=start, start_line=line, follow=True, tool_names=tools,
                             max_lines=chunk_lines)
        updates[str(path)] = {"offset": reading.end_offset, "line": reading.end_line, "inode": st.st_ino,
                              "size": st.st_size, "tools": dict(list(tools.items())[-_TOOL_NAMES_KEPT:])}
        if reading.end_offset > start:
            readings.append(reading)
            seen.add(str(path))
    # one batch: the main session's and its subagents' new records stored in time order; the
    # offsets are saved only after it is committed (a stop in between costs a re-read, no loss)
    for summary in store_readings(memory, readings, agent_id=agent_id) if readings else []:
        totals["messages"] += summary.messages
        totals["already_present"] += summary.already_present
        totals["bad_lines"] += summary.bad_count
    state.update(updates)
    _save(state_path, state)
    return bool(readings)


def _log(state_dir: Path, text: str) -> None:
    with contextlib.suppress(OSError):
        state_dir.mkdir(parents=True, exist_ok=True)
        log = state_dir / "hooks.log"
        if log.exists() and log.stat().st_size > LOG_BYTES:
            log.replace(log.with_suffix(".log.1"))
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}\n")


def _grown(files: list[Path], state_dir: Path) -> bool:
    state = _load(state_dir / "offsets.json")
    for p in files:
        rec = state.get(str(p)) or {}
        st = p.stat()
        # the size last seen, not the offset: a half-written last line is not growth
        if rec.get("inode") != st.st_ino or st.st_size != int(rec.get("size", -1)):
            return True
    return False


def _context_file(state_dir: Path, cwd: str, agent_id: str) -> Path:
    digest = hashlib.sha256(f"{agent_id}\0{cwd}".encode("utf-8", "replace")).hexdigest()[:24]
    return state_dir / "context" / f"{digest}.txt"


def _spawn(event_name: str, stdin_text: str, store: Path, agent_id: str, max_tokens: int) -> None:
    argv = [sys.executable, "-m", "agents.cli.main", "--store", str(store), "claude-code", "hook", event_name,
            "--foreground", "--agent", agent_id, "--max-tokens", str(max_tokens)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
    assert proc.stdin is not None
    proc.stdin.write(stdin_text.encode("utf-8", "replace"))
    proc.stdin.close()


def run_hook(event_name: str, stdin_text: str, store: Path, *, agent_id: str = "default",
             max_tokens: int = 1200, foreground: bool = False) -> str:
    """Handle one hook call; returns what to print on stdout. Never raises."""
    state_dir = store / "claude-code"
    t0 = time.perf_counter()
    memory: MemoryManager | None = None
    try:
        with _budget(BUDGETS.get(event_name, 20.0)):
            event = json.loads(stdin_text or "{}")
            if not isinstance(event, dict):
                raise ValueError(f"the hook input is a JSON {type(event).__name__}, not an object")
            name = str(event.get("hook_event_name") or event_name)
            files = _transcripts(event)
            cwd = event.get("cwd") if isinstance(event.get("cwd"), str) else None
            capturing = name in CAPTURE_EVENTS or (name == "SessionStart" and event.get("source") in ("resume", "compact"))
            if name in CAPTURE_EVENTS and not foreground:
                if files and _grown(files, state_dir):
                    _spawn(name, stdin_text, store, agent_id, max_tokens)
                return ""
            if name == "SessionStart" and not capturing and cwd:
                cached = _context_file(state_dir, cwd, agent_id)
                if cached.is_file():
                    return _session_start(cached.read_text(encoding="utf-8"))
            from memory.config import store_exists
            from memory.manager import MemoryManager

            if not store_exists(store):
                raise FileNotFoundError(f"no memory store at {store}: run `rlmem init` (or `rlmem claude-code install`)")
            memory = MemoryManager.open(store, background_embed=False)
            if capturing:
                done = capture(memory, files, state_dir, agent_id=agent_id)
                if done["bad_lines"]:
                    _log(state_dir, f"{name}: {done['bad_lines']} bad lines skipped in {[str(f) for f in files]}")
            if cwd and (capturing or name == "SessionStart"):
                from agents.integrations.claude_code.context import build_context

                exclude = event.get("session_id") if name == "SessionStart" else None
                ctx = build_context(memory, cwd, agent_id=agent_id, session_id=exclude, max_tokens=max_tokens)
                if name != "SessionStart":  # prepared for the next session in this directory
                    target = _context_file(state_dir, cwd, agent_id)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _save(target, ctx.text)
                else:
                    return _session_start(ctx.text)
            return ""
    except _OutOfTime:
        _log(state_dir, f"{event_name}: stopped at its {BUDGETS.get(event_name)} s budget; the rest comes next time")
    except Exception as exc:
        _log(state_dir, f"{event_name}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
    finally:
        if memory is not None:
            with contextlib.suppress(Exception):
                memory.close()
        if os.environ.get("RLMEM_HOOK_TIMING"):
            _log(state_dir, f"{event_name}{' (worker)' if foreground else ''}: {time.perf_counter() - t0:.3f} s")
    return ""


def _session_start(context: str) -> str:
    return json.dumps({"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": context}})
