"""Big transcripts written as a stream, for the bounded-memory import test and benchmark.

Rules this module keeps:

* Deterministic (seeded) and written line by line: a million messages never sit in memory.
* ``write_chat(path, n)``: a JSON-lines chat of ``n`` messages in LongMemEval's shape: sessions
  of 12-30 turns, a short user turn then a longer assistant turn (about 90 and 600
  characters), session ids, ISO timestamps rising through each session and across sessions.
* ``write_tree(root, n)``: a Claude Code project tree (``cc_fixtures``' record builders, the
  format Claude Code 2.x writes) holding about ``n`` messages: session files of about
  2,000 events (prompts, assistant text, thinking lines, tool calls, file-dump and test-run
  results), the first one longer if asked (``long_session``), with title lines, file-history snapshots and system events among
  them, and every fourth session with two subagent files (``isSidechain``) whose times fall
  inside the session's. Returns the number of messages the tree holds.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from cc_fixtures import CWD, _assistant, _base, _result, _text, _tool, _user

__all__ = ["write_chat", "write_tree"]

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
_WORDS = str.split(
    "we plan trip budget kitchen recipe garden running marathon training week flight hotel museum paper "
    "deadline project meeting review notes sister birthday gift coffee morning evening concert tickets "
    "apartment lease landlord repair bike commute office manager salary interview course python guitar "
    "lesson doctor appointment vitamin sleep routine camera lens photo album wedding venue playlist dog "
    "walk vet insurance car rental beach weekend mountain hike snow boots jacket budget savings account"
)


def _sentences(rng: random.Random, count: int) -> list[str]:
    out = []
    for _ in range(count):
        words = rng.choices(_WORDS, k=rng.randint(8, 18))
        out.append(" ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"]))
    return out


def write_chat(path: Path, n: int, *, seed: int = 7) -> int:
    """The chat file of ``n`` messages; returns ``n``."""
    rng = random.Random(seed)
    pool = _sentences(rng, 4_000)
    t = T0
    written, session = 0, 0
    with path.open("w", encoding="utf-8") as fh:
        while written < n:
            session += 1
            t += timedelta(days=1)
            for turn in range(rng.randint(12, 30)):
                if written >= n:
                    break
                role = "user" if turn % 2 == 0 else "assistant"
                k = rng.randint(1, 2) if role == "user" else rng.randint(4, 9)
                text = f"({session}.{turn}) " + " ".join(rng.choices(pool, k=k))
                t += timedelta(seconds=rng.randint(5, 90))
                rec = {"role": role, "content": text, "session_id": f"session-{session:06d}",
                       "timestamp": t.isoformat().replace("+00:00", "Z")}
                fh.write(json.dumps(rec) + "\n")
                written += 1
    return written


def _dump(rng: random.Random, lines: int, tag: str) -> str:
    return "\n".join(f"{k:4d}  def handler_{tag}_{k}(order): return validate(order, {rng.randint(0, 999)})"
                     for k in range(lines))


def _session_file(path: Path, rng: random.Random, pool: list[str], sid: str, count: int, start: datetime,
                  *, agent: str | None = None) -> int:
    """Write ``count`` events of one session file; returns the messages they hold."""
    with path.open("w", encoding="utf-8") as fh:
        return _session_events(fh, rng, pool, sid, count, start, agent=agent)


def _session_events(fh: TextIO, rng: random.Random, pool: list[str], sid: str, count: int, start: datetime,
                    *, agent: str | None = None) -> int:
    side: dict[str, Any] = {"sidechain": True, "agent": agent} if agent else {}
    prefix = ("b" + agent) if agent else "0"
    messages = 0
    if not agent:
        _line(fh, {"type": "summary", "summary": f"Work on {sid[:8]}", "leafUuid": f"{sid}-leaf"})
    for i in range(count):
        step = i % 8
        if step == 0:
            e = _user(i, " ".join(rng.choices(pool, k=rng.randint(1, 3))), **side)
        elif step == 1:
            e = _assistant(i, {"type": "thinking", "thinking": rng.choice(pool), "signature": "EqQBCkYI"}, f"m{i}", **side)
            messages -= 1  # thinking is not stored
        elif step in (2, 6):
            e = _assistant(i, _text(" ".join(rng.choices(pool, k=rng.randint(2, 6)))), f"m{i}", **side)
        elif step in (3, 5):
            e = _assistant(i, _tool(f"toolu_{prefix}{i}", "Read" if step == 3 else "Bash",
                                    {"file_path": f"{CWD}/app/module_{i % 97}.py"} if step == 3
                                    else {"command": f"pytest tests/test_{i % 31}.py -q"}), f"m{i}", **side)
        elif step == 4:
            e = _result(i, f"toolu_{prefix}{i - 1}", _dump(rng, rng.randint(10, 40), f"{i}"), **side)
        else:
            e = _result(i, f"toolu_{prefix}{i - 2}", f"{rng.randint(1, 60)} passed in {rng.random() * 9:.2f}s",
                        **side)
        e["sessionId"] = sid
        e["uuid"] = f"{prefix}-{sid}-{i:06d}"
        e["timestamp"] = (start + timedelta(seconds=3 * i)).isoformat().replace("+00:00", "Z")
        _line(fh, e)
        messages += 1
        if not agent and i % 50 == 25:
            snap = {"type": "file-history-snapshot", "messageId": e["uuid"], "isSnapshotUpdate": False,
                    "snapshot": {"messageId": e["uuid"], "trackedFileBackups": {}, "timestamp": e["timestamp"]}}
            sysev = {**_base(i), "type": "system", "subtype": "stop_hook_summary", "hookCount": 1, "level": "info",
                     "sessionId": sid, "uuid": f"s-{sid}-{i}", "timestamp": e["timestamp"]}
            _line(fh, snap)
            _line(fh, sysev)
    return messages


def _line(fh: TextIO, event: dict[str, Any]) -> None:
    fh.write(json.dumps(event) + "\n")


def write_tree(root: Path, n: int, *, seed: int = 11, events_per_session: int = 2_000, long_session: float = 0.0) -> int:
    """The project tree under ``root`` with about ``n`` messages; returns how many it holds.
    ``long_session``: the share of them in the first session (one resumed for months)."""
    rng = random.Random(seed)
    pool = _sentences(rng, 3_000)
    proj = root / "-home-dev-shop"
    proj.mkdir(parents=True, exist_ok=True)
    total, s = 0, 0
    while total < n:
        s += 1
        sid = f"{s:08x}-5b8e-4d21-9c4a-2e6f1b0d9a77"
        start = T0 + timedelta(days=s)
        size = int(n * long_session * 8 / 7) if s == 1 and long_session else events_per_session
        count = min(size, max(8, int((n - total) * 8 / 7) + 1))
        total += _session_file(proj / f"{sid}.jsonl", rng, pool, sid, count, start)
        if s % 4 == 0 and total < n:
            sub = proj / sid / "subagents"
            sub.mkdir(parents=True, exist_ok=True)
            for a in ("a1c2e3f", "b4d5e6a"):
                total += _session_file(sub / f"agent-{a}.jsonl", rng, pool, sid, 300,
                                       start + timedelta(seconds=rng.randint(0, 3000)), agent=a)
    return total
