"""`rlmem claude-code install/uninstall` and the plugin directory, read back and validated."""

from __future__ import annotations

import io
import json
import os
import re
import stat
from pathlib import Path

import pytest

from agents.cli.main import main
from agents.integrations.claude_code import install as inst
from agents.integrations.claude_code.hooks import EVENTS

PLUGIN = Path(inst.__file__).parent / "plugin"
SECRET = "sk-ant-api03-not-a-real-key-but-secret"
OTHER = {
    "model": "opus",
    "permissions": {"allow": ["Bash(npm test:*)"]},
    "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
              "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit.sh"}]}]},
}


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    (h / ".claude").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    # a `claude` that records how it was called (the real CLI is not installed here)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "claude"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path}/claude-$2.args\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return h


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), stdout=out, stderr=out)
    return code, out.getvalue()


def _ours(settings: dict) -> dict[str, list[str]]:
    found = {e: [h["command"] for g in gs for h in g["hooks"] if "claude-code hook" in h["command"]]
             for e, gs in settings.get("hooks", {}).items()}
    return {e: cs for e, cs in found.items() if cs}


def test_user_install_merges_backs_up_and_uninstalls_exactly(home: Path, tmp_path: Path) -> None:
    path = home / ".claude" / "settings.json"
    path.write_text(json.dumps(OTHER, indent=2))
    store = tmp_path / "store"
    code, text = _run("--store", str(store), "claude-code", "install")
    assert code == 0, text
    got = json.loads(path.read_text())
    assert got["model"] == "opus" and got["permissions"] == OTHER["permissions"]
    assert got["hooks"]["PreToolUse"] == OTHER["hooks"]["PreToolUse"]
    assert got["hooks"]["Stop"][0] == OTHER["hooks"]["Stop"][0]  # the user's own Stop hook stays first
    ours = _ours(got)
    assert set(ours) == set(EVENTS) and all(len(v) == 1 for v in ours.values())
    assert all(c.endswith(f"--store {store.resolve()} claude-code hook {e}") for e, (c,) in ours.items())
    for groups in got["hooks"].values():
        for g in groups:
            for h in g["hooks"]:
                assert h["type"] == "command" and (h.get("timeout") is None or isinstance(h["timeout"], int))
    backups = list(path.parent.glob("settings.json.bak-*"))
    assert len(backups) == 1 and json.loads(backups[0].read_text()) == OTHER
    assert (store / "memory.db").exists()  # the store was created
    # the MCP server: name before -e, `--` before the command, the key by reference
    args = (tmp_path / "claude-add.args").read_text().splitlines()
    assert args[:7] == ["mcp", "add", "--scope", "user", "--transport", "stdio", "rlm-memory"]
    assert args[7:10] == ["-e", "ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY}", "--"]
    assert args[-3:] == ["--store", str(store.resolve()), "mcp"] and SECRET not in "".join(args)
    # twice: nothing changes, no second backup, no duplicate handler
    assert _run("--store", str(store), "claude-code", "install")[0] == 0
    assert json.loads(path.read_text()) == got and len(list(path.parent.glob("settings.json.bak-*"))) == 1
    # uninstall gives the user's settings back, exactly
    assert _run("--store", str(store), "claude-code", "uninstall")[0] == 0
    assert json.loads(path.read_text()) == OTHER
    assert (tmp_path / "claude-remove.args").read_text().split() == ["mcp", "remove", "--scope", "user", "rlm-memory"]


def test_dry_run_writes_nothing(home: Path, tmp_path: Path) -> None:
    code, text = _run("--store", str(tmp_path / "store"), "claude-code", "install", "--dry-run")
    assert code == 0 and "would change" in text and "claude-code hook SessionStart" in text
    assert "claude mcp add --scope user --transport stdio rlm-memory -e" in text
    assert not (home / ".claude" / "settings.json").exists() and not (tmp_path / "store").exists()
    assert not (tmp_path / "claude-add.args").exists()


def test_a_broken_settings_file_is_refused_untouched(home: Path, tmp_path: Path) -> None:
    path = home / ".claude" / "settings.json"
    path.write_text('{"model": "opus",,}')
    code, text = _run("--store", str(tmp_path / "store"), "claude-code", "install")
    assert code == 2 and "not valid JSON" in text
    assert path.read_text() == '{"model": "opus",,}' and not list(path.parent.glob("*.bak-*"))


def test_project_scope_writes_references_never_the_key(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": {"db": {"command": "pg-mcp"}}}))
    code, _ = _run("--store", str(tmp_path / "store"), "claude-code", "install", "--scope", "project",
                   "--project", str(project))
    assert code == 0
    settings = json.loads((project / ".claude" / "settings.json").read_text())
    assert _ours(settings) == {e: [f"rlmem claude-code hook {e}"] for e in EVENTS}
    mcp = json.loads((project / ".mcp.json").read_text())
    assert mcp["mcpServers"]["db"] == {"command": "pg-mcp"}
    assert mcp["mcpServers"]["rlm-memory"]["env"]["ANTHROPIC_API_KEY"] == "${ANTHROPIC_API_KEY}"
    assert mcp["mcpServers"]["rlm-memory"]["args"] == ["mcp"]
    for f in project.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text()
    assert _run("claude-code", "uninstall", "--scope", "project", "--project", str(project))[0] == 0
    assert json.loads((project / ".mcp.json").read_text()) == {"mcpServers": {"db": {"command": "pg-mcp"}}}
    assert "hooks" not in json.loads((project / ".claude" / "settings.json").read_text())


# --- the plugin --------------------------------------------------------------------------


def test_plugin_manifest_hooks_mcp_and_skill_are_valid() -> None:
    manifest = json.loads((PLUGIN / ".claude-plugin" / "plugin.json").read_text())
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", manifest["name"]) and manifest["description"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    hooks = json.loads((PLUGIN / "hooks" / "hooks.json").read_text())
    # the plugin's hooks are exactly what a project install writes
    assert hooks["hooks"] == inst.merged_settings({}, "project", Path("/x"))["hooks"]
    assert set(hooks["hooks"]) == set(EVENTS)
    mcp = json.loads((PLUGIN / ".mcp.json").read_text())
    assert mcp == {"mcpServers": {"rlm-memory": inst.project_mcp()}}
    assert all(re.fullmatch(r"\$\{[A-Z_]+(:-[^}]*)?\}", v) for v in mcp["mcpServers"]["rlm-memory"]["env"].values())
    skill = (PLUGIN / "skills" / "memory" / "SKILL.md").read_text()
    front = re.match(r"---\nname: ([a-z-]+)\ndescription: (.+?)\n---\n", skill, re.S)
    assert front is not None and front.group(1) == "memory" and len(front.group(2)) < 1024
    for tool in ("memory_search", "memory_grep", "memory_peek", "deep_recall"):
        assert f"`{tool}`" in skill
    market = json.loads((PLUGIN.parent / ".claude-plugin" / "marketplace.json").read_text())
    entry = market["plugins"][0]
    assert entry["name"] == manifest["name"] and (PLUGIN.parent / entry["source"]).resolve() == PLUGIN.resolve()
