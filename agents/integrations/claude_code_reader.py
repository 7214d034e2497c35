"""Claude Code session files as memory, not as logs.

Claude Code writes one JSON event per line to ``~/.claude/projects/<project>/<session>.jsonl``
and, for subagents (the Task tool), ``<session>/subagents/agent-<id>.jsonl`` with the same
``sessionId`` and ``isSidechain: true``. Rules this module keeps (each record keeps the event's
``uuid`` as its key, ``cwd`` and ``gitBranch`` in its metadata):

* **Conversation** (``kind: message``): a user prompt (``user`` event with text) and assistant
  text become ``user``/``assistant`` messages. Text between tool blocks stays in order.
* **Tool records** (role ``tool``, left out of default search and grep): a ``tool_use`` block
  becomes ``kind: tool_call`` with a one-line content (``Bash: pytest -x``) and the full input
  in ``tool_args``; a ``tool_result`` becomes ``kind: tool_result`` holding the first
  ``TOOL_RESULT_CHARS`` characters of its text (the full length is in ``metadata.chars``).
* **This project's own memory tools** (MCP tools of a server named like ``rlm-memory``, or
  named ``memory_*``/``deep_recall``): the call is kept, its result is not indexed (memory
  must not feed on its own search results); counted as ``own memory results``.
* **Compact summaries** (``isCompactSummary``) are ``system`` messages of ``kind:
  compact_summary``, not user messages. ``summary`` lines (session titles) are counted.
* **Thinking** blocks are not stored (the model's scratch work; the answer that follows carries
  what was decided) and are counted. Images become ``[image: <type>]`` in the text and count
  in ``metadata.images``.
* **Slash commands**: ``<command-name>/x</command-name>`` with its ``<command-args>`` becomes
  the user message ``/x args`` (``kind: command``); ``<local-command-stdout>`` and ``!`` shell
  output become ``kind: command_output`` tool records. ANSI escapes are removed everywhere.
* Subagent records carry ``sidechain: true`` and ``agent`` (the subagent id).
* ``isMeta`` notices, ``system`` events, file snapshots and queue events are not messages;
  each is counted by kind. A user/assistant line without a ``message`` object is a bad line.
* A file is read as a stream (``iter_claude_code``): what is kept between lines is the names
  of its last ``TOOL_NAMES_KEPT`` tool calls (to name the results that follow), so a session
  of any length is read in bounded memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from agents.integrations.lines import (
    Reading,
    TranscriptMessage,
    clean,
    clean_json,
    content_hash,
    ident,
    json_lines,
    parse_time,
)

__all__ = [
    "TOOL_RESULT_CHARS", "clean_text", "is_claude_code_record", "is_own_tool", "iter_claude_code", "read_claude_code",
]

TOOL_RESULT_CHARS = 4_000
TOOL_CALL_CHARS = 300
TOOL_NAMES_KEPT = 20_000  # call ids remembered per file, to name the results that follow
_EVENT_TYPES = frozenset({
    "user", "assistant", "summary", "system", "file-history-snapshot", "queue-operation",
    "progress", "permission-mode", "custom-title", "tag", "attachment", "result",
})  # fmt: skip
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_TAG = re.compile(r"<(command-name|command-message|command-args|local-command-stdout|local-command-stderr|"
                  r"bash-input|bash-stdout|bash-stderr)>(.*?)</\1>", re.S)
_MAIN_ARGS = ("command", "file_path", "path", "pattern", "url", "query", "description", "prompt", "skill")
_OWN_SERVERS = ("rlm-memory", "rlm_memory", "rlmem")


def clean_text(text: str) -> str:
    """NULs, lone surrogates and ANSI escape sequences removed."""
    return _ANSI.sub("", clean(text))


def is_claude_code_record(obj: dict[str, Any]) -> bool:
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _EVENT_TYPES:
        return False
    # a JSON-lines chat may also say "type": "user"; a Claude Code event has its envelope
    return kind not in ("user", "assistant", "system") or any(k in obj for k in ("message", "sessionId", "uuid"))


def is_own_tool(name: str | None) -> bool:
    """An MCP tool of this project's server (whatever the user named it, the tools are ours)."""
    if not name or not name.startswith("mcp__"):
        return False
    server, _, tool = name[5:].rpartition("__")
    return any(s in server for s in _OWN_SERVERS) or tool.startswith("memory_") or tool == "deep_recall"


def _one_line(name: str, args: Any) -> str:
    if isinstance(args, dict):
        for k in _MAIN_ARGS:
            v = args.get(k)
            if isinstance(v, str) and v.strip():
                text = " ".join(v.split())
                return f"{name}: {text}"[:TOOL_CALL_CHARS]
        if args:
            parts = ", ".join(f"{k}={str(v)[:60]}" for k, v in list(args.items())[:4])
            return f"{name}: {parts}"[:TOOL_CALL_CHARS]
    return name


def _result_text(content: Any) -> tuple[str, int]:
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        bits = []
        for b in content:
            if isinstance(b, dict) and b.get("type") == "text":
                bits.append(str(b.get("text") or ""))
            elif isinstance(b, dict) and b.get("type") == "image":
                bits.append(f"[image: {_media(b)}]")
            elif isinstance(b, str):
                bits.append(b)
        text = "\n".join(bits)
    else:
        text = "" if content is None else str(content)
    text = clean_text(text)
    full = len(text)
    if full > TOOL_RESULT_CHARS:
        text = text[:TOOL_RESULT_CHARS] + f"\n… [{full - TOOL_RESULT_CHARS} more characters in the transcript]"
    return text, full


def _media(block: dict[str, Any]) -> str:
    src = block.get("source")
    return str(src.get("media_type") or "image") if isinstance(src, dict) else "image"


def _command(text: str) -> tuple[str, str] | None:
    """A slash-command or shell wrapper as (kind, clean text); None for plain text."""
    tags = {m.group(1): m.group(2).strip() for m in _TAG.finditer(text)}
    if not tags:
        return None
    if "command-name" in tags:
        name = tags["command-name"]
        name = name if name.startswith("/") else "/" + name
        return "command", f"{name} {tags.get('command-args', '')}".strip()
    if "bash-input" in tags:
        return "command", "! " + tags["bash-input"]
    out = "\n".join(tags[t] for t in ("local-command-stdout", "bash-stdout", "local-command-stderr", "bash-stderr")
                    if tags.get(t))
    return "command_output", out


class _Session:
    """Per-file state: the default session and agent, and tool names by call id."""

    def __init__(self, path: Path, tool_names: dict[str, str]) -> None:
        self.session = path.stem
        self.agent = path.stem[len("agent-"):] if path.stem.startswith("agent-") else None
        if self.agent and path.parent.name == "subagents":
            self.session = path.parent.parent.name
        self.tool_names = tool_names

    def remember(self, call_id: str, name: str) -> None:
        # A result follows its call within a few lines; a session of a million events must
        # not keep every call id it ever saw, so the oldest are let go.
        self.tool_names[call_id] = name
        if len(self.tool_names) > TOOL_NAMES_KEPT:
            del self.tool_names[next(iter(self.tool_names))]


def read_claude_code(
    path: Path, reading: Reading, *, start: int = 0, start_line: int = 0, follow: bool = False,
    tool_names: dict[str, str] | None = None, max_lines: int | None = None,
) -> None:
    """Read Claude Code events of ``path`` (from byte ``start``, at most ``max_lines``) into ``reading``."""
    reading.messages += iter_claude_code(path, reading, start=start, start_line=start_line, follow=follow,
                                         tool_names=tool_names, max_lines=max_lines)


def iter_claude_code(
    path: Path, reading: Reading, *, start: int = 0, start_line: int = 0, follow: bool = False,
    tool_names: dict[str, str] | None = None, max_lines: int | None = None,
) -> Iterator[TranscriptMessage]:
    """The messages of ``path``'s Claude Code events, as they are read (the file is never held
    whole); counts and bad lines go to ``reading``, whose ``messages`` stay empty."""
    st = _Session(path, {} if tool_names is None else tool_names)
    for lineno, obj in json_lines(path, reading, start=start, start_line=start_line, follow=follow,
                                  max_lines=max_lines):
        if not is_claude_code_record(obj):
            reading.bad(lineno, f"not a Claude Code event (type {obj.get('type')!r})")
            continue
        reading.recognised += 1
        kind = obj["type"]
        if kind == "summary":
            reading.not_messages["title lines"] += 1
            continue
        if kind not in ("user", "assistant"):
            reading.not_messages[f"{kind} events"] += 1
            continue
        if obj.get("isMeta"):
            reading.not_messages["meta notices"] += 1
            continue
        msg = obj.get("message")
        if not isinstance(msg, dict):
            reading.bad(lineno, f"a {kind} event without a 'message' object")
            continue
        try:
            when = parse_time(obj.get("timestamp"))
            session = ident(obj.get("sessionId"), "sessionId") or st.session
            uuid = ident(obj.get("uuid"), "uuid")
        except ValueError as exc:
            reading.bad(lineno, str(exc))
            continue
        try:
            out = _event(obj, kind, msg, when, session, uuid, st, reading)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # odd field types
            reading.bad(lineno, f"unreadable {kind} event: {type(exc).__name__}: {exc}")
            continue
        yield from out


def _event(
    obj: dict[str, Any], kind: str, msg: dict[str, Any], when: datetime | None, session: str,
    uuid: str | None, st: _Session, reading: Reading,
) -> list[TranscriptMessage]:
    base: dict[str, Any] = {"source": "claude-code"}
    for src, dst in (("uuid", "uuid"), ("cwd", "cwd"), ("gitBranch", "git_branch")):
        if isinstance(obj.get(src), str) and obj[src]:
            base[dst] = clean(obj[src])
    if obj.get("isSidechain"):
        base["sidechain"] = True
        agent = obj.get("agentId") if isinstance(obj.get("agentId"), str) else st.agent
        if agent:
            base["agent"] = clean(agent)
    if kind == "assistant" and isinstance(msg.get("model"), str):
        base["model"] = clean(msg["model"])
    ident_key = uuid or content_hash(session, kind, obj.get("timestamp"), clean_json(msg.get("content")))
    out: list[TranscriptMessage] = []

    def add(role: str, content: str, **kw: Any) -> None:
        meta = dict(base, **kw.pop("meta", {}))
        n = len(out)
        key = ident_key if n == 0 else f"{ident_key}#{n}"
        out.append(TranscriptMessage(role, content, when, session, metadata=meta,
                                     key=key if len(key) <= 200 else content_hash(key), **kw))

    content = msg.get("content")
    if obj.get("isCompactSummary"):
        add("system", clean_text(_result_text(content)[0] if not isinstance(content, str) else content),
            meta={"kind": "compact_summary"})
        return out
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list):
        reading.not_messages["empty events"] += 1
        return out
    texts: list[str] = []
    images = 0

    def flush() -> None:
        nonlocal images
        text = "\n".join(t for t in texts if t).strip()
        texts.clear()
        if not text and not images:
            return
        cmd = _command(text) if kind == "user" else None
        if cmd is not None and cmd[0] == "command_output":
            add("tool", cmd[1], meta={"kind": "command_output"})
        elif cmd is not None:
            add("user", cmd[1], meta={"kind": "command"})
        else:
            meta: dict[str, Any] = {"kind": "message"}
            if images:
                meta["images"] = images
            add(kind, text, meta=meta)
        images = 0

    for b in blocks:
        if not isinstance(b, dict):
            continue
        btype = b.get("type")
        if btype == "text":
            texts.append(clean_text(str(b.get("text") or "")))
        elif btype == "image":
            texts.append(f"[image: {_media(b)}]")
            images += 1
        elif btype in ("thinking", "redacted_thinking"):
            reading.not_messages["thinking blocks"] += 1
        elif btype == "tool_use" and kind == "assistant":
            flush()
            name = clean(str(b.get("name") or "tool"))[:200]
            call_id = clean(str(b.get("id") or ""))
            if call_id:
                st.remember(call_id, name)
            args = clean_json(b.get("input")) if b.get("input") is not None else {}
            add("tool", clean_text(_one_line(name, args)), tool_name=name, tool_args=args,
                meta={"kind": "tool_call", "tool_call_id": call_id or None})
        elif btype == "tool_result":
            flush()
            call_id = clean(str(b.get("tool_use_id") or ""))
            called = st.tool_names.get(call_id)
            if is_own_tool(called):
                reading.not_messages["own memory results"] += 1
                continue
            text, full = _result_text(b.get("content"))
            add("tool", text, tool_name=called, meta={
                "kind": "tool_result", "tool_call_id": call_id or None, "is_error": bool(b.get("is_error")),
                "chars": full,
            })
        elif btype == "document":
            texts.append(f"[document: {clean(str(b.get('title') or 'attached'))}]")
        else:
            reading.not_messages[f"{btype} blocks"] += 1
    flush()
    return out
