"""Install and uninstall the Claude Code hooks and MCP server.

Rules this module keeps:

* **Settings are merged, never clobbered.** The settings file (user: ``~/.claude/settings.json``;
  project: ``<project>/.claude/settings.json``) is read as JSON (a file that is not valid JSON
  is refused, untouched); only hook handlers whose command is ``... claude-code hook EVENT``
  are added, replaced or removed, everything else stays as it was. A changed file is first
  copied to ``<name>.bak-<UTC time>``, then replaced atomically. Installing twice changes
  nothing the second time.
* **Hooks**: SessionStart (context), Stop, SubagentStop, PreCompact, SessionEnd (capture),
  each ``{"type": "command", "command": ..., "timeout": ...}`` in a matcher group.
  User scope names the ``rlmem`` executable and the store by absolute path (they work from
  any directory); project scope writes ``rlmem claude-code hook EVENT`` (found on each user's
  PATH, store from ``RLMEM_STORE`` or the default), since the file is shared.
* **MCP server**: user scope runs ``claude mcp add --scope user --transport stdio rlm-memory
  -e ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY} -- <rlmem> --store <store> mcp`` (the name before
  ``-e``, whose values are variadic; ``--`` before the server command; the key as a reference,
  passed without a shell so it is never expanded to its value). Project scope writes
  ``.mcp.json`` with ``${ANTHROPIC_API_KEY}`` and ``${RLMEM_STORE:-}`` references only.
* ``dry_run`` computes and returns every change and writes nothing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.integrations.claude_code.hooks import BUDGETS, EVENTS
from memory.errors import ConfigError, ValidationError

__all__ = ["MCP_NAME", "InstallPlan", "hook_command", "install", "mcp_add_argv", "project_mcp", "uninstall"]

MCP_NAME = "rlm-memory"
KEY_REF = "${ANTHROPIC_API_KEY}"
_OURS = re.compile(r"\bclaude-code hook (?:" + "|".join(EVENTS) + r")\s*$")


@dataclass
class InstallPlan:
    """What an install or uninstall changes (or, in a dry run, would change)."""

    scope: str
    settings_path: Path
    settings: dict[str, Any]
    changed: bool
    backup: Path | None = None
    mcp_path: Path | None = None  # project scope: .mcp.json
    mcp_config: dict[str, Any] | None = None
    mcp_argv: list[str] | None = None  # user scope: the `claude mcp` command
    mcp_ran: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "settings_path": str(self.settings_path), "changed": self.changed,
                "backup": str(self.backup) if self.backup else None, "settings": self.settings,
                "mcp_path": str(self.mcp_path) if self.mcp_path else None, "mcp_config": self.mcp_config,
                "mcp_command": shlex.join(self.mcp_argv) if self.mcp_argv else None, "mcp_ran": self.mcp_ran,
                "notes": self.notes}


def rlmem_executable() -> list[str]:
    """How to run rlmem from anywhere: the console script if found, else this Python."""
    found = shutil.which("rlmem")
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "agents.cli.main"]


def hook_command(event: str, scope: str, store: Path) -> str:
    if scope == "project":
        return f"rlmem claude-code hook {event}"
    return shlex.join([*rlmem_executable(), "--store", str(store), "claude-code", "hook", event])


def mcp_add_argv(store: Path) -> list[str]:
    return ["claude", "mcp", "add", "--scope", "user", "--transport", "stdio", MCP_NAME,
            "-e", f"ANTHROPIC_API_KEY={KEY_REF}", "--", *rlmem_executable(), "--store", str(store), "mcp"]


def project_mcp() -> dict[str, Any]:
    return {"type": "stdio", "command": "rlmem", "args": ["mcp"],
            "env": {"ANTHROPIC_API_KEY": KEY_REF, "RLMEM_STORE": "${RLMEM_STORE:-}"}}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix it by hand first, nothing was changed") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a JSON {type(data).__name__}, not an object; nothing was changed")
    return data


def _without_ours(groups: Any) -> list[Any]:
    """The matcher groups of one event with our handlers taken out (emptied groups dropped)."""
    if not isinstance(groups, list):
        return []
    out = []
    for g in groups:
        if isinstance(g, dict) and isinstance(g.get("hooks"), list):
            kept = [h for h in g["hooks"] if not (isinstance(h, dict) and _OURS.search(str(h.get("command", ""))))]
            if kept:
                out.append({**g, "hooks": kept})
            elif not g["hooks"]:
                out.append(g)
        else:
            out.append(g)
    return out


def merged_settings(current: dict[str, Any], scope: str, store: Path, *, remove: bool = False) -> dict[str, Any]:
    data = json.loads(json.dumps(current))  # a deep copy
    hooks = data.get("hooks")
    if hooks is not None and not isinstance(hooks, dict):
        raise ConfigError("the settings' \"hooks\" is not an object; fix it by hand first, nothing was changed")
    hooks = dict(hooks or {})
    for event in EVENTS:
        groups = _without_ours(hooks.get(event))
        if not remove:
            groups.append({"hooks": [{"type": "command", "command": hook_command(event, scope, store),
                                      "timeout": int(BUDGETS[event]) + 10}]})
        if groups:
            hooks[event] = groups
        else:
            hooks.pop(event, None)
    if hooks:
        data["hooks"] = hooks
    else:
        data.pop("hooks", None)
    return data


def _write(path: Path, data: dict[str, Any], old_exists: bool) -> Path | None:
    backup = None
    path.parent.mkdir(parents=True, exist_ok=True)
    if old_exists:
        backup = path.with_name(f"{path.name}.bak-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}")
        shutil.copy2(path, backup)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return backup


def settings_path(scope: str, project: Path, home: Path) -> Path:
    if scope == "user":
        return home / ".claude" / "settings.json"
    if scope == "project":
        return project / ".claude" / "settings.json"
    raise ValidationError(f"unknown scope {scope!r}: use user or project")


def _plan(scope: str, store: Path, project: Path, home: Path, remove: bool) -> InstallPlan:
    path = settings_path(scope, project, home)
    current = _read_json(path)
    new = merged_settings(current, scope, store, remove=remove)
    plan = InstallPlan(scope, path, new, changed=new != current)
    if scope == "project":
        plan.mcp_path = project / ".mcp.json"
        mcp = _read_json(plan.mcp_path)
        raw = mcp.get("mcpServers")
        servers: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
        if remove:
            servers.pop(MCP_NAME, None)
        else:
            servers[MCP_NAME] = project_mcp()
        plan.mcp_config = {**mcp, "mcpServers": servers}
    else:
        plan.mcp_argv = mcp_add_argv(store) if not remove else ["claude", "mcp", "remove", "--scope", "user", MCP_NAME]
    return plan


def _apply(plan: InstallPlan, dry_run: bool) -> InstallPlan:
    if dry_run:
        plan.notes.append("dry run: nothing was written")
        return plan
    if plan.changed:
        plan.backup = _write(plan.settings_path, plan.settings, plan.settings_path.exists())
    if plan.mcp_path is not None and plan.mcp_config is not None:
        before = _read_json(plan.mcp_path)
        if before != plan.mcp_config:
            _write(plan.mcp_path, plan.mcp_config, plan.mcp_path.exists())
    if plan.mcp_argv is not None:
        if shutil.which("claude") is None:
            plan.notes.append("`claude` is not on PATH: register the MCP server yourself with: "
                              + shlex.join(plan.mcp_argv))
        else:
            if plan.mcp_argv[2] == "add":  # replace an earlier registration; a missing one is fine
                subprocess.run(["claude", "mcp", "remove", "--scope", "user", MCP_NAME],
                               capture_output=True, timeout=60, check=False)
            done = subprocess.run(plan.mcp_argv, capture_output=True, text=True, timeout=60, check=False)
            plan.mcp_ran = done.returncode == 0
            if not plan.mcp_ran and plan.mcp_argv[2] == "add":
                plan.notes.append(f"`claude mcp add` failed ({done.stderr.strip()[:300]}); run it yourself: "
                                  + shlex.join(plan.mcp_argv))
    return plan


def install(scope: str, store: Path, *, project: Path | None = None, home: Path | None = None,
            dry_run: bool = False) -> InstallPlan:
    """Add the hooks and register the MCP server; see the module rules."""
    return _apply(_plan(scope, store.expanduser().resolve(), (project or Path.cwd()).resolve(),
                        home or Path.home(), remove=False), dry_run)


def uninstall(scope: str, store: Path, *, project: Path | None = None, home: Path | None = None,
              dry_run: bool = False) -> InstallPlan:
    """Remove exactly what ``install`` added (other hooks and servers stay)."""
    return _apply(_plan(scope, store.expanduser().resolve(), (project or Path.cwd()).resolve(),
                        home or Path.home(), remove=True), dry_run)
