"""Claude Code hooks as Claude Code runs them: a subprocess, the real hook JSON on stdin, exit 0."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cc_fixtures import AGENT, CWD, SID, events, subagent_events, write_project

from agents.cli.main import main
from agents.integrations.claude_code.hooks import capture
from agents.integrations.transcripts import read_file
from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "RLMEM_HOOK_TIMING": "1"}


def hook(store: Path, event: str, payload: dict | str, *, foreground: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "agents.cli.main", "--store", str(store), "claude-code", "hook", event]
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return subprocess.run(argv + (["--foreground"] if foreground else []), input=data, capture_output=True,
                          text=True, timeout=120, env=_env(), check=False)


def _base(event: str, transcript: Path) -> dict:
    return {"session_id": SID, "transcript_path": str(transcript), "cwd": CWD, "permission_mode": "default",
            "hook_event_name": event}


def _count(store: Path) -> int:
    m = MemoryManager.open(store, embedder=HashEmbedder(), background_embed=False)
    try:
        return m.recall.count()
    finally:
        m.close()


def _wait_for(store: Path, n: int, timeout: float = 90.0) -> int:
    """The detached worker imports after the hook returned: poll until ``n`` messages are in."""
    end = time.monotonic() + timeout
    got = _count(store)
    while got < n and time.monotonic() < end:
        time.sleep(0.3)
        got = _count(store)
    time.sleep(0.5)  # and nothing more arrives
    return _count(store)


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    s = tmp_path / "store"
    assert main(["init", str(s)], stdout=io.StringIO()) == 0
    return s


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    return write_project(tmp_path / "projects")


def _distinct(*files: Path) -> int:
    return len({m.key for f in files for m in read_file(f).messages if m.content.strip()})


def test_capture_hooks_import_each_session_incrementally(store: Path, tree: dict[str, Path]) -> None:
    t0 = time.monotonic()
    done = hook(store, "Stop", {**_base("Stop", tree["main"]), "stop_hook_active": False})
    returned_in = time.monotonic() - t0
    assert done.returncode == 0 and done.stdout == "" and returned_in < 30
    expected = _distinct(tree["main"], tree["subagent"])  # the subagent file beside it too
    assert _wait_for(store, expected) == expected
    # the session goes on: the cut-off line is completed and a subagent writes more
    full = tree["main"].read_text(encoding="utf-8")
    last = json.dumps({**events()[-1], "uuid": "0000-0028", "timestamp": "2026-11-20T09:03:16.000Z",
                       "message": {"role": "user", "content": "and push it please"}})
    tree["main"].write_text(full[: full.rfind("\n") + 1] + last + "\n", encoding="utf-8")
    with tree["subagent"].open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({**subagent_events()[-1], "uuid": "b000-0105",
                             "message": {"role": "user", "content": "subagent follow-up"}}) + "\n")
    payload = {**_base("SubagentStop", tree["main"]), "stop_hook_active": False, "agent_id": AGENT,
               "agent_type": "general-purpose", "agent_transcript_path": str(tree["subagent"])}
    assert hook(store, "SubagentStop", payload).returncode == 0
    assert _wait_for(store, expected + 2) == expected + 2
    for event, extra in (("PreCompact", {"trigger": "auto", "custom_instructions": ""}),
                         ("SessionEnd", {"reason": "prompt_input_exit"})):
        assert hook(store, event, {**_base(event, tree["main"]), **extra}).returncode == 0
    assert _wait_for(store, expected + 3, timeout=3) == expected + 2  # nothing new, nothing twice
    log = (store / "claude-code" / "hooks.log").read_text()
    assert "Stop (worker)" in log and "Error" not in log


def test_each_hook_reads_only_the_new_tail(store: Path, tree: dict[str, Path]) -> None:
    mem = MemoryManager.open(store, embedder=HashEmbedder(), background_embed=False)
    state = store / "claude-code"
    try:
        first = capture(mem, [tree["main"]], state)
        assert first["messages"] > 0 and first["already_present"] == 0
        offsets = json.loads((state / "offsets.json").read_text())[str(tree["main"])]
        assert offsets["offset"] < tree["main"].stat().st_size  # the half line is left for later
        with tree["main"].open("a", encoding="utf-8") as fh:
            fh.write("\n" + json.dumps({**events()[-1], "uuid": "0000-0029", "message": {"role": "user",
                                                                                         "content": "one more"}}) + "\n")
        again = capture(mem, [tree["main"]], state)
        # only the tail was read: the completed cut line (still bad: it was cut) and the new one
        assert again == {"files": 1, "messages": 1, "already_present": 0, "bad_lines": 1}
        assert capture(mem, [tree["main"]], state)["files"] == 0  # nothing new: nothing read
        tree["main"].write_text("", encoding="utf-8")  # rewritten: read again from the start
        assert capture(mem, [tree["main"]], state)["files"] == 0
    finally:
        mem.close()


@pytest.mark.parametrize("payload", ["", "not json", "[1, 2]", json.dumps({"transcript_path": "/nope.jsonl"})])
def test_a_hook_never_fails_claude_code(store: Path, payload: str) -> None:
    for event in ("Stop", "SessionStart"):
        done = hook(store, event, payload, foreground=True)
        assert done.returncode == 0 and done.stderr == ""
        assert done.stdout == "" or "additionalContext" in done.stdout


def test_no_store_is_logged_not_raised(tmp_path: Path, tree: dict[str, Path]) -> None:
    done = hook(tmp_path / "missing", "Stop", _base("Stop", tree["main"]), foreground=True)
    assert done.returncode == 0 and done.stdout == ""
    assert "no memory store" in (tmp_path / "missing" / "claude-code" / "hooks.log").read_text()


def test_session_start_injects_a_bounded_context_of_this_project(store: Path, tree: dict[str, Path]) -> None:
    assert hook(store, "Stop", _base("Stop", tree["main"]), foreground=True).returncode == 0
    start = {"session_id": "new-session", "transcript_path": str(tree["main"].parent / "new-session.jsonl"),
             "cwd": CWD, "hook_event_name": "SessionStart", "source": "startup", "model": "claude-opus-4-5"}
    done = hook(store, "SessionStart", start)
    out = json.loads(done.stdout)["hookSpecificOutput"]
    assert out["hookEventName"] == "SessionStart"
    ctx = out["additionalContext"]
    assert "keep the cookie lifetime at 30 minutes" in ctx and "Still open: the logout test" in ctx
    assert len(ctx) <= 1200 * 4
    other = hook(store, "SessionStart", {**start, "cwd": "/home/dev/other", "source": "clear"})
    assert "Recent sessions" not in json.loads(other.stdout)["hookSpecificOutput"]["additionalContext"]
    small = hook(store, "SessionStart", {**start, "source": "resume"}, foreground=True)
    assert "keep the cookie" in small.stdout  # resume: computed there and then
    argv = [sys.executable, "-m", "agents.cli.main", "--store", str(store), "claude-code", "hook", "SessionStart",
            "--max-tokens", "200", "--foreground"]
    tiny = subprocess.run(argv, input=json.dumps({**start, "source": "resume"}), capture_output=True, text=True,
                          env=_env(), timeout=120, check=False)
    assert len(json.loads(tiny.stdout)["hookSpecificOutput"]["additionalContext"]) <= 200 * 4


def test_hooks_load_no_embedding_model(store: Path, tree: dict[str, Path]) -> None:
    code = (
        "import io, json, sys\n"
        "from agents.cli.main import main\n"
        f"sys.stdin = io.StringIO({json.dumps(json.dumps(_base('Stop', tree['main'])))})\n"
        f"main(['--store', {str(store)!r}, 'claude-code', 'hook', 'Stop', '--foreground'])\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'chromadb') if m in sys.modules)\n"
        "print(json.dumps(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert _count(store) == _distinct(tree["main"], tree["subagent"])


def test_a_long_capture_commits_in_chunks_and_loses_nothing(store: Path, tree: dict[str, Path]) -> None:
    mem = MemoryManager.open(store, embedder=HashEmbedder(), background_embed=False)
    try:
        done = capture(mem, [tree["main"], tree["subagent"]], store / "claude-code", chunk_lines=3)
        assert done["messages"] == _distinct(tree["main"], tree["subagent"]) == mem.recall.count()
        assert done["already_present"] == 0 and done["files"] == 2
        stored = mem.recall.session(SID)
        assert len({m.key for m in stored}) == len(stored)
    finally:
        mem.close()
