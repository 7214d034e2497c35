"""The rlmem command, run in-process through ``main`` (and in a subprocess where start-up
matters). Real stores; models are scripted and passed in with ``main(lm=...)``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agents.cli.main import main
from rlm_core.lm import ScriptedLM

ROOT = Path(__file__).resolve().parents[1]


def run(*argv: str, lm: Any = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), lm=lm, stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def ok(*argv: str, lm: Any = None) -> str:
    rc, out, err = run(*argv, lm=lm)
    assert rc == 0, err
    return out


def js(*argv: str, lm: Any = None) -> Any:
    return json.loads(ok("--json", *argv, lm=lm))


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "store"
    monkeypatch.setenv("RLMEM_STORE", str(path))
    monkeypatch.setenv("RLMEM_BACKGROUND_EMBED", "false")
    ok("init")
    return path


def test_missing_store_names_rlmem_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLMEM_STORE", str(tmp_path / "nowhere"))
    rc, out, err = run("search", "x")
    assert rc == 2 and "rlmem init" in err and str(tmp_path / "nowhere") in err and out == ""
    rc, _, err = run("--json", "stats", "--store", str(tmp_path / "elsewhere"))
    assert rc == 2 and json.loads(err)["error"] == "NotFoundError" and "elsewhere" in err
    assert not (tmp_path / "nowhere").exists()


def test_store_from_flag_env_or_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLMEM_STORE", raising=False)
    monkeypatch.delenv("RLMEM_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert js("init") == {"store": str(tmp_path / "xdg" / "rlmem"), "created": True}
    assert js("init", "--store", str(tmp_path / "flag"))["store"] == str(tmp_path / "flag")
    assert js("init")["created"] is False


def test_log_search_grep_sessions_stats(store: Path) -> None:
    m = js("log", "the deploy key lives in vault zebra", "--session", "ops")
    assert m["role"] == "user" and m["session_id"] == "ops"
    ok("log", "lunch with Marta on Friday (AND bring cake*)", "--role", "assistant")
    hits = js("search", "vault", "--mode", "text")["results"]
    assert [h["id"] for h in hits] == [m["id"]] and hits[0]["tier"] == "recall"
    assert isinstance(js("search", 'AND "unbalanced ( cake*', "--mode", "text", "--tier", "recall")["results"], list)
    assert "[vault]" in ok("search", "vault", "--mode", "text")
    assert [h["session_id"] for h in js("grep", "Mar.a", "--tier", "recall")] == ["default"]
    assert js("grep", "cake*", "-F")[0]["match"] == "cake*"
    assert js("grep", "MARTA", "-i", "--role", "user") == []
    assert {s["session_id"] for s in js("sessions")} == {"ops", "default"}
    stats = js("stats")
    assert stats["messages"] == 2 and stats["sessions"] == 2
    rc, _, err = run("grep", "(unclosed")
    assert rc == 2 and "error" in err
    rc, _, err = run("search", "x", "--since", "last tuesday")
    assert rc == 2 and "--since" in err
    ok("log", "the vault zebra key rotates monthly", "--session", "ops")
    sessions = js("search", "vault zebra", "--mode", "text", "--sessions")["results"]
    assert [s["session_id"] for s in sessions] == ["ops"] and len(sessions[0]["hits"]) == 2
    assert "[default/ops]" in ok("search", "vault zebra", "--mode", "text", "--sessions")
    rc, _, err = run("search", "vault", "--sessions", "--session", "ops")
    assert rc == 2 and "--sessions" in err


def test_blocks_list_show_set_history(store: Path) -> None:
    assert js("blocks", "list") == []
    ok("blocks", "set", "human", "Name: Sam", "--limit", "100", "--description", "the user")
    ok("blocks", "set", "human", "Name: Sam\nLikes tea")
    assert ok("blocks", "show", "human").strip() == "Name: Sam\nLikes tea"
    listed = js("blocks", "list")
    assert listed[0]["label"] == "human" and listed[0]["limit"] == 100
    assert len(js("blocks", "history", "human")) == 2
    rc, _, err = run("blocks", "set", "human", "x" * 101)
    assert rc == 2 and "over its limit" in err
    rc, _, err = run("blocks", "show", "nope")
    assert rc == 2
    assert js("blocks", "list", "--agent", "other") == []


def test_import_transcripts(store: Path, tmp_path: Path) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"role": "user", "content": "my cat is called Miso"}\n'
                    '{"role": "assistant", "content": "Nice name!"}\n', encoding="utf-8")
    cc = tmp_path / "0a1b.jsonl"
    cc.write_text(json.dumps({"type": "user", "sessionId": "0a1b", "uuid": "u1", "timestamp": "2025-01-01T00:00:00Z",
                              "message": {"role": "user", "content": "fix the flaky test"}}) + "\n", encoding="utf-8")
    res = js("import", str(chat), str(cc), "--agent", "me")
    assert [(r["format"], r["messages"]) for r in res] == [("jsonl", 2), ("claude-code", 1)]
    assert js("import", str(chat), "--agent", "me")[0]["already_present"] == 2
    assert js("search", "Miso", "--mode", "text", "--agent", "me")["results"][0]["role"] == "user"
    rc, _, err = run("import", str(tmp_path / "missing.jsonl"))
    assert rc == 2 and "missing.jsonl" in err


def test_ask_without_a_key_names_the_variable(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    rc, _out, err = run("ask", "what is in the vault?")
    assert rc == 2 and "ANTHROPIC_API_KEY" in err and "--base-url" in err
    rc, _, err = run("ask", "q", "--base-url", "http://127.0.0.1:9/v1")
    assert rc == 2 and "--model" in err


def test_ask_records_a_trajectory(store: Path, tmp_path: Path) -> None:
    ok("log", "the deploy key lives in vault zebra")
    root = ScriptedLM(["```repl\nhits = grep('vault')\nprint(hits)\n```", 'FINAL("In vault zebra.")'])
    answer = js("ask", "Where is the deploy key?", lm=root)
    assert answer["answer"] == "In vault zebra." and answer["run_id"]
    runs = js("trajectory", "list")
    assert [r["run_id"] for r in runs] == [answer["run_id"]]
    assert "vault" in ok("trajectory", "show", answer["run_id"])
    html = tmp_path / "run.html"
    assert js("trajectory", "export", answer["run_id"], "--html", "-o", str(html))["path"] == str(html)
    assert html.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    rc, _, err = run("trajectory", "show", "no-such-run")
    assert rc == 2 and "no-such-run" in err


def test_chat_creates_then_resumes_an_agent(store: Path) -> None:
    lm = ScriptedLM(["Hello Sam.", "Your name is Sam."])
    replies = js("chat", "--agent", "ada", "--human", "Name: Sam", "-m", "hi", lm=lm)
    assert replies[0]["text"] == "Hello Sam."
    out = ok("chat", "--agent", "ada", "-m", "who am I?", lm=lm)
    assert "ada> Your name is Sam." in out
    assert [a["agent_id"] for a in js("agents")] == ["ada"]
    assert js("blocks", "show", "human", "--agent", "ada")["value"] == "Name: Sam"
    rc, _, err = run("chat", "--agent", "ada", "--persona", "new", "-m", "x", lm=lm)
    assert rc == 2 and "rlmem blocks set" in err


def test_ingest_and_hybrid_search_with_the_real_model(store: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pets.md").write_text("# Pets\n\nOur office dog is a beagle named Pixel.\n", encoding="utf-8")
    (docs / "deploy.txt").write_text("Deployments happen on Tuesdays after the standup.\n", encoding="utf-8")
    summary = js("ingest", str(docs), "--tag", "handbook")
    assert summary["files"] == 2 and summary["chunks"] >= 2
    hits = js("search", "our office dog", "--tier", "archival", "-k", "1")["results"]
    assert hits[0]["source"].endswith("pets.md")
    assert js("reindex", "--tier", "archival")["reindexed"]["archival"] >= 2
    assert js("reindex", "--reembed")["reindexed"]["archival"] >= 2


def test_text_search_starts_without_torch(store: Path) -> None:
    ok("log", "cold start check")
    result, stdout = _heavy_modules_after(store, ["search", "cold", "--mode", "text"],
                                          ("torch", "chromadb", "sentence_transformers"))
    assert result == {"rc": 0, "heavy": []}
    assert "[cold] start check" in stdout


def _heavy_modules_after(store: Path, argv: list[str], modules: tuple[str, ...]) -> tuple[dict, str]:
    """Run the CLI with ``argv`` in a fresh interpreter: its exit code, which of ``modules``
    it imported, and its output."""
    code = (
        "import json, sys\n"
        "from agents.cli.main import main\n"
        f"rc = main(['--store', {str(store)!r}, *{argv!r}])\n"
        f"heavy = [m for m in {modules!r} if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout


def test_log_starts_without_numpy_or_the_vector_store(store: Path) -> None:
    result, _ = _heavy_modules_after(store, ["log", "a cold start", "-q"], ("numpy", "torch", "chromadb", "onnxruntime"))
    assert result == {"rc": 0, "heavy": []}


def test_help_and_module_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "agents.cli.main", "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == 0
    for command in ("init", "ingest", "import", "log", "search", "grep", "ask", "chat", "repl", "serve",
                    "mcp", "blocks", "sessions", "stats", "trajectory", "reindex"):
        assert command in proc.stdout
    assert "RLMEM_STORE" in proc.stdout


def test_mcp_command_serves_the_store_over_stdio(store: Path) -> None:
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    ok("log", "the office plant is a ficus named Gus")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RLMEM_BACKGROUND_EMBED": "false"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "agents.cli.main", "--store", str(store), "mcp"],
                                   env=env)

    async def session() -> tuple[set[str], str]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            tools = {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("memory_grep", {"pattern": "ficus"})
            return tools, json.dumps([getattr(c, "text", "") for c in result.content])

    tools, found = anyio.run(session)
    assert {"memory_search", "memory_grep", "archival_insert"} <= tools  # deep_recall needs a model
    assert "ficus" in found and "matches" in found


def _typed(monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    queue = list(lines)

    def fake_input(prompt: str = "") -> str:
        if not queue:
            raise EOFError
        return queue.pop(0)

    monkeypatch.setattr("builtins.input", fake_input)


def test_interactive_chat(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _typed(monkeypatch, "hello", "", "/blocks", "/new", "/help", "bye")
    lm = ScriptedLM(["Hi!", "Bye!"])
    out = ok("chat", "--agent", "ada", "--persona", "Cheerful.", lm=lm)
    assert "ada> Hi!" in out and "ada> Bye!" in out
    assert "<persona>" in out and "Cheerful." in out and "new session ada-" in out
    assert len({s["session_id"] for s in js("sessions", "--agent", "ada")}) == 2


def test_repl_console_sees_the_store(store: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    ok("log", "a message for the console")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    _typed(monkeypatch, "print(len(recall), recall[0]['content'])")
    rc, _, err = run("repl")
    assert rc == 0 and "ANTHROPIC_API_KEY" in err
    assert "1 a message for the console" in capsys.readouterr().out


def test_chat_with_an_openai_compatible_server(store: Path, fake_openai: Any) -> None:
    from fakes import Reply

    fake_openai.add(Reply(tool_calls=[("core_memory_append", {"label": "human", "text": "Runs Ollama."})]),
                    "Noted.")
    replies = js("chat", "--agent", "local", "--base-url", fake_openai.base_url, "--model", "llama3.1",
                 "-m", "I run Ollama at home")
    assert replies[0]["text"] == "Noted." and replies[0]["tool_calls"][0]["is_error"] is False
    assert js("blocks", "show", "human", "--agent", "local")["value"] == "Runs Ollama."
    second = fake_openai.requests[-1].body
    assert second["model"] == "llama3.1" and any(m.get("role") == "tool" for m in second["messages"])


@pytest.mark.postgres
def test_init_with_a_postgres_url(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLMEM_BACKGROUND_EMBED", "false")
    store = tmp_path / "pg-store"
    ok("init", str(store), "--database-url", pg_url)
    assert 'database_url = "' in (store / "rlmem.toml").read_text()
    ok("--store", str(store), "log", "kept in postgres")
    assert js("--store", str(store), "search", "postgres", "--mode", "text")["results"][0]["text"] == "kept in postgres"
    assert not (store / "memory.db").exists()
    rc, _, err = run("init", str(store), "--database-url", pg_url)
    assert rc == 2 and "rlmem.toml" in err


def test_tokens_from_the_command_line(tmp_path: Path) -> None:
    s = str(tmp_path / "tok")
    ok("init", s)
    token_file = tmp_path / "tok" / "token"
    assert (token_file.stat().st_mode & 0o777) == 0o600
    assert js("token", "show", "--store", s)["token"] == token_file.read_text().strip()
    made = js("token", "create", "--agent", "ada", "--read-only", "--label", "notebook", "--store", s)
    assert made["agents"] == ["ada"] and made["write"] is False and made["token"].startswith("rlm_")
    listed = js("token", "list", "--store", s)
    assert [t["id"] for t in listed] == [made["id"]] and "token" not in listed[0]
    assert "revoked" in ok("token", "revoke", made["id"], "--store", s)
    assert js("token", "list", "--store", s) == [] and len(js("token", "list", "--all", "--store", s)) == 1
    rc, _, err = run("token", "revoke", "nope", "--store", s)
    assert rc == 2 and "rlmem token list" in err
    rc, _, err = run("token", "create", "--agent", " ", "--store", s)
    assert rc == 2 and "--agent" in err


def test_mcp_prints_its_client_config(tmp_path: Path) -> None:
    s = tmp_path / "m"
    ok("init", str(s))
    entry = js("mcp", "--print-config", "--store", str(s), "--agent", "ada")["mcpServers"]["rlm-memory"]
    assert Path(entry["command"]).is_absolute()
    assert entry["args"][-5:] == ["mcp", "--store", str(s.resolve()), "--agent", "ada"]
