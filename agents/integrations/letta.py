"""Letta integration: this project's memory tools on a Letta server, both ways of running them.

Rules this module keeps:

* One definition per tool. The source registered with Letta is generated from the tool's schema
  (``agents.tools.builtin``, the operation's pydantic schema): same name, description,
  arguments and defaults. Letta derives the
  argument schema from the generated Google-style docstring and signature.
* Server-side tools (``export_tools``) run in Letta's sandbox, alone: every import is inside
  the function and nothing is captured from this process. They reach memory through the HTTP
  API (``agents.server.http``) at the address in the tool environment variable ``RLMEM_URL``, with the
  bearer token in ``RLMEM_TOKEN`` and the memory agent in ``RLMEM_AGENT_ID``; ``export_tools``
  stores these as the Letta agent's secrets (merged with the secrets it already has). Given
  the store (``memory=``), it makes each Letta agent a token scoped to its own memory agent.
* Client-side tools (``ClientTools``) are offered to the agent per request and answered in this
  process, straight against a ``MemoryManager``: nothing is exposed over the network. Letta
  pauses the run with an approval request for each call; the answer goes back as a tool return.
* A failing server-side tool raises inside the sandbox, so Letta records the call as an error
  with the service's message; a failing client-side tool is returned with status ``error``.
* Import and sync live in ``agents.integrations.letta_sync`` and are re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agents.integrations.letta_sync import ImportSummary, import_agent, push_blocks
from agents.tools.builtin import TOOLS, ToolContext, call_tool, tool_schema
from memory.errors import ValidationError

if TYPE_CHECKING:
    from memory.manager import MemoryManager
    from rlm_core.lm import LM

__all__ = [
    "DEFAULT_LETTA_TOOLS",
    "ClientRun",
    "ClientTools",
    "ImportSummary",
    "export_tools",
    "import_agent",
    "letta_tool_source",
    "push_blocks",
]

DEFAULT_LETTA_TOOLS = ("memory_search", "memory_grep", "deep_recall", "archival_insert")
_TOOL_TAG = "rlm-memory"

_BODY = '''
    import json
    import os
    import urllib.error
    import urllib.request

    base = os.environ.get({url_env!r}, "").rstrip("/")
    if not base:
        raise RuntimeError("{url_env} is not set in this agent's tool environment: set it to the rlm-memory HTTP API address")
    headers = {{"Content-Type": "application/json", "Accept": "application/json"}}
    token = os.environ.get({token_env!r}, "")
    if token:
        headers["Authorization"] = "Bearer " + token
    agent = os.environ.get({agent_env!r}, "")
    if agent:
        headers["X-Agent-Id"] = agent
    body = json.dumps({{"arguments": {arguments}}}).encode("utf-8")
    request = urllib.request.Request(base + "/tools/{name}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout={timeout}) as response:
            return json.dumps(json.loads(response.read())["result"], ensure_ascii=False)
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except Exception:
            message = exc.reason
        raise RuntimeError("rlm-memory {name} failed (HTTP %s): %s" % (exc.code, message)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError("rlm-memory is unreachable at %s: %s" % (base, exc)) from None
'''


_PY_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "object": "dict"}


def _annotation(prop: dict[str, Any]) -> tuple[str, str]:
    """(annotation text for the generated source, a note on allowed values) of a schema property."""
    if "enum" in prop:
        return "str", "One of: " + ", ".join(map(str, prop["enum"])) + "."
    if prop.get("type") == "array":
        return f"list[{_PY_TYPES.get(prop.get('items', {}).get('type', 'string'), 'str')}]", ""
    return _PY_TYPES.get(prop.get("type", "string"), "str"), ""


def _doc_text(text: str) -> str:
    # The text goes inside a generated docstring: keep backslashes and quotes literal.
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def letta_tool_source(
    name: str,
    *,
    url_env: str = "RLMEM_URL",
    token_env: str = "RLMEM_TOKEN",
    agent_env: str = "RLMEM_AGENT_ID",
    timeout_s: int = 300,
) -> str:
    """Self-contained Python source of one tool for ``client.tools.upsert(source_code=...)``."""
    if name not in TOOLS:
        raise ValidationError(f"unknown tool {name!r}; available tools: {', '.join(TOOLS)}")
    schema = tool_schema(name)
    props = schema["input_schema"]["properties"]
    required = set(schema["input_schema"].get("required", ()))
    description = schema["description"]
    sig_parts, doc_parts, call_parts = [], [], []
    # Required parameters first: Python needs them before those with defaults.
    for pname in sorted(props, key=lambda n: n not in required):
        prop = props[pname]
        ann, note = _annotation(prop)
        if pname in required:
            default = ""
        else:
            default = f" = {prop['default']!r}" if "default" in prop else " = None"
        sig_parts.append(f"{pname}: {ann}{default}")
        text = prop.get("description", pname)
        if note and note.split(":")[0] not in text:
            text = f"{text} {note}"
        doc_parts.append(f"        {pname} ({ann}): {_doc_text(text)}")
        call_parts.append(f"{pname!r}: {pname}")
    summary = _doc_text(" ".join(description.split()))
    lines = [
        f"def {name}({', '.join(sig_parts)}) -> str:",
        f'    """{summary}',
        "",
        "    Args:",
        *doc_parts,
        "",
        "    Returns:",
        "        str: The result as JSON.",
        '    """',
    ]
    body = _BODY.format(
        url_env=url_env, token_env=token_env, agent_env=agent_env, name=name,
        arguments="{" + ", ".join(call_parts) + "}", timeout=int(timeout_s),
    )  # fmt: skip
    return "\n".join(lines) + body


def export_tools(
    client: Any,
    *,
    agent_id: str | None = None,
    url: str | None = None,
    token: str | None = None,
    memory_agent_id: str | None = None,
    names: Sequence[str] = DEFAULT_LETTA_TOOLS,
    base_url_env: str = "RLMEM_URL",
    token_env: str = "RLMEM_TOKEN",
    agent_env: str = "RLMEM_AGENT_ID",
    tags: Sequence[str] = (_TOOL_TAG,),
    memory: MemoryManager | None = None,
    read_only: bool = False,
) -> list[str]:
    """Register the tools on a Letta server and return their tool ids, in ``names`` order.

    With ``agent_id`` the tools are also attached to that agent, and ``url`` / ``token`` /
    ``memory_agent_id`` (when given) are stored as its tool environment (Letta secrets), which is
    where the tool code reads them. Re-running updates the tools in place (upsert by name).

    With ``memory`` (the served store) and no ``token``, the agent gets a token of its own that
    opens only its memory agent (``memory_agent_id``, default the Letta agent id; ``read_only``
    for one that may not write): one Letta agent cannot read another's memory. A token it holds
    already for that agent is kept, so re-running makes no new one.
    """
    ids = []
    for name in names:
        source = letta_tool_source(name, url_env=base_url_env, token_env=token_env, agent_env=agent_env)
        tool = client.tools.upsert(source_code=source, tags=list(tags))
        ids.append(tool.id)
    if agent_id is None:
        return ids
    current: dict[str, str] | None = None

    def secrets_now() -> dict[str, str]:
        nonlocal current
        if current is None:
            agent = client.agents.retrieve(agent_id, include=["agent.secrets"])
            current = {s.key: s.value for s in (agent.secrets or []) if s.value is not None}
        return current

    if token is None and memory is not None:
        memory_agent_id = memory_agent_id or agent_id
        token = _agent_token(memory, memory_agent_id, secrets_now().get(token_env), read_only=read_only,
                             label=f"letta agent {agent_id}")
    wanted = {base_url_env: url, token_env: token, agent_env: memory_agent_id}
    env = {k: v for k, v in wanted.items() if v}
    if env:
        current = secrets_now()
        if any(current.get(k) != v for k, v in env.items()):
            client.agents.update(agent_id, secrets=current | env)
    attached = {t.id for t in client.agents.tools.list(agent_id)}
    for tool_id in ids:
        if tool_id not in attached:
            client.agents.tools.attach(tool_id, agent_id=agent_id)
    return ids


def _agent_token(memory: MemoryManager, agent: str, held: str | None, *, read_only: bool, label: str) -> str:
    """A token opening only ``agent``: the one the Letta agent holds if it is exactly that."""
    from agents.server.auth import TokenStore

    tokens = TokenStore(memory.db, None)
    if held:
        grant = tokens.check(held)
        if grant is not None and grant.agents == (agent,) and grant.write == (not read_only):
            return held
    return tokens.create([agent], write=not read_only, label=label)[1]


# --- client-side tools --------------------------------------------------------------------


@dataclass
class ClientRun:
    """What one ``ClientTools.send`` did: every message Letta returned and each tool answered."""

    messages: list[Any] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None

    @property
    def text(self) -> str:
        """The agent's final assistant text (empty if it gave none)."""
        parts = [m.content for m in self.messages if getattr(m, "message_type", "") == "assistant_message"]
        return str(parts[-1]) if parts else ""


class ClientTools:
    """Answer a Letta agent's client-side tool calls in this process, against ``memory``."""

    def __init__(
        self,
        memory: MemoryManager,
        *,
        names: Iterable[str] = DEFAULT_LETTA_TOOLS,
        agent_id: str = "default",
        root: LM | None = None,
        sub: LM | None = None,
        limits: Any = None,
    ) -> None:
        self.names = tuple(names)
        for n in self.names:
            tool_schema(n)  # refuses unknown names with the list of valid ones
        self.ctx = ToolContext(memory=memory, agent_id=agent_id, root=root, sub=sub, limits=limits,
                               actor="letta")

    def definitions(self) -> list[dict[str, Any]]:
        """The ``client_tools`` argument of ``client.agents.messages.create``."""
        out = []
        for n in self.names:
            s = tool_schema(n)
            out.append({"name": n, "description": s["description"], "parameters": s["input_schema"]})
        return out

    def run(self, name: str, arguments: str | dict[str, Any] | None) -> tuple[str, bool]:
        """Run one call; returns (tool return text, ok). Errors come back as text, not raised."""
        try:
            args = json.loads(arguments) if isinstance(arguments, str) and arguments.strip() else arguments
            result = call_tool(name, self.ctx, args or {})
        except Exception as exc:  # the agent must see why its call failed
            return json.dumps({"error": f"{type(exc).__name__}: {exc}"}), False
        return json.dumps(result, ensure_ascii=False), True

    def send(
        self,
        client: Any,
        agent_id: str,
        messages: str | list[dict[str, Any]],
        *,
        max_rounds: int = 10,
        **create_kwargs: Any,
    ) -> ClientRun:
        """Send messages to a Letta agent, answering its calls to these tools until it is done."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        run = ClientRun()
        tools = self.definitions()
        for _ in range(max_rounds + 1):
            resp = client.agents.messages.create(agent_id, messages=messages, client_tools=tools, **create_kwargs)
            run.messages.extend(resp.messages)
            run.stop_reason = getattr(resp.stop_reason, "stop_reason", None)
            calls = [
                tc
                for m in resp.messages
                if getattr(m, "message_type", "") == "approval_request_message"
                for tc in (m.tool_calls if isinstance(m.tool_calls, list) else [m.tool_call])
                if tc is not None and tc.name in self.names
            ]
            if run.stop_reason != "requires_approval" or not calls:
                return run
            returns = []
            for tc in calls:
                text, ok = self.run(tc.name, tc.arguments)
                run.tool_calls.append({"name": tc.name, "arguments": tc.arguments, "result": text, "ok": ok})
                returns.append({"type": "tool", "tool_call_id": tc.tool_call_id, "tool_return": text,
                                "status": "success" if ok else "error"})
            messages = [{"type": "approval", "approvals": returns}]
        raise ValidationError(f"the agent was still calling tools after {max_rounds} rounds; raise max_rounds")
