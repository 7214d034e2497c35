"""The MCP server (``rlmem mcp``): this project's memory tools and blocks over stdio.

Rules this module keeps:

* The tools are those of ``agents.tools.builtin``, described by the same schemas and run through
  ``call_tool``; nothing here redefines a tool. ``deep_recall`` is offered only when a root
  model is configured, so a client is never shown a tool that cannot work.
* Working-memory blocks are resources ``memory://blocks/{label}`` (plain text), listed and
  readable; edits go through the block tools, attributed to the actor ``mcp``.
* A tool's own failure (bad arguments, unknown id, refused edit) comes back as a tool result
  with ``is_error`` set and the readable message, so the model can correct itself; an unknown
  tool or resource is a protocol error.
* The store is opened once per server process and every call runs in a worker thread, so the
  stdio loop stays responsive. Searches cover the whole store unless an agent is named.
* stdout belongs to the protocol: nothing else may print there.
* Every request is answered. A line from the client is read the way the SDK reads invalid
  UTF-8 (replaced, not refused): a lone surrogate escape (``"\\ud800"``) becomes U+FFFD and a
  bare ``NaN``/``Infinity`` becomes ``null`` before the SDK parses it, since a line the SDK
  cannot parse gets no reply at all. A tool that fails in any way answers an error result: the
  message of a ``memory.errors`` error, or the kind of an unexpected failure (logged on
  stderr), never silence.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import anyio
    import mcp.types as mt
    from mcp.server.lowlevel.server import Server
    from mcp.server.stdio import stdio_server
    from mcp.shared.exceptions import MCPError
except ModuleNotFoundError as exc:  # the MCP server is the optional extra [server]
    from memory.errors import MissingExtraError

    raise MissingExtraError("server", "the MCP server (rlmem mcp)", exc.name) from None

from agents.tools.builtin import TOOLS, ToolContext, call_tool, tool_schema
from memory.errors import RlmMemoryError

if TYPE_CHECKING:
    from memory.manager import MemoryManager
    from rlm_core.lm import LM

__all__ = ["BLOCK_URI", "build_server", "clean_line", "main", "run_mcp"]

log = logging.getLogger("rlmem.mcp")

BLOCK_URI = "memory://blocks/"
_RESOURCE_NOT_FOUND = -32002  # the MCP specification's code for an unknown resource


def build_server(
    memory: MemoryManager,
    *,
    agent_id: str | None = None,
    root: LM | None = None,
    sub: LM | None = None,
    limits: Any = None,
    names: Sequence[str] | None = None,
) -> Server[Any]:
    """An MCP ``Server`` over ``memory`` (run it on any transport the SDK offers)."""
    ctx = ToolContext(memory=memory, agent_id=agent_id or "default", root=root, sub=sub,
                      limits=limits, actor="mcp", agent_scoped=agent_id is not None)
    offered = [n for n in (names or TOOLS) if n != "deep_recall" or root is not None]
    for n in offered:
        tool_schema(n)  # unknown names fail here, at start-up

    async def list_tools(_ctx: Any, _params: Any) -> mt.ListToolsResult:
        tools = []
        for n in offered:
            s = tool_schema(n)
            tools.append(mt.Tool(name=n, description=s["description"], input_schema=s["input_schema"]))
        return mt.ListToolsResult(tools=tools)

    async def call(_ctx: Any, params: mt.CallToolRequestParams) -> mt.CallToolResult:
        if params.name not in offered:
            raise MCPError(mt.INVALID_PARAMS, f"unknown tool {params.name!r}; available tools: {', '.join(offered)}")
        try:
            result = _scrub(await anyio.to_thread.run_sync(call_tool, params.name, ctx, params.arguments or {}))
        except RlmMemoryError as exc:
            return _error_result(f"{type(exc).__name__}: {exc}")
        except (ValueError, TypeError, OverflowError) as exc:  # bad input that slipped past the checks
            return _error_result(f"invalid arguments for {params.name}: {type(exc).__name__}: {_scrub(str(exc))[:500]}")
        except Exception as exc:
            log.exception("tool %s failed", params.name, exc_info=exc)
            return _error_result(f"{params.name} failed ({type(exc).__name__}); details are in the server's log")
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
        structured = result if isinstance(result, dict) else None
        return mt.CallToolResult(content=[mt.TextContent(text=text)], structured_content=structured)

    def _wm() -> Any:
        return memory.blocks(ctx.agent_id)

    async def list_resources(_ctx: Any, _params: Any) -> mt.ListResourcesResult:
        blocks = await anyio.to_thread.run_sync(lambda: _wm().list())
        return mt.ListResourcesResult(resources=[
            mt.Resource(uri=BLOCK_URI + b.label, name=b.label, mime_type="text/plain",
                        description=b.description or f"working-memory block {b.label!r}", size=len(b.value))
            for b in blocks
        ])

    async def list_templates(_ctx: Any, _params: Any) -> mt.ListResourceTemplatesResult:
        return mt.ListResourceTemplatesResult(resource_templates=[
            mt.ResourceTemplate(uri_template=BLOCK_URI + "{label}", name="block", mime_type="text/plain",
                                description="A working-memory block by label")
        ])

    async def read(_ctx: Any, params: mt.ReadResourceRequestParams) -> mt.ReadResourceResult:
        uri = str(params.uri)
        if not uri.startswith(BLOCK_URI):
            raise MCPError(_RESOURCE_NOT_FOUND, f"unknown resource {uri!r}: blocks are {BLOCK_URI}<label>")
        label = uri[len(BLOCK_URI):]
        try:
            block = await anyio.to_thread.run_sync(lambda: _wm().get(label))
        except RlmMemoryError as exc:
            raise MCPError(_RESOURCE_NOT_FOUND, str(exc)) from None
        return mt.ReadResourceResult(contents=[mt.TextResourceContents(uri=uri, mime_type="text/plain", text=block.value)])

    return Server(
        "rlm-memory",
        version="0.1",
        instructions="Long-term memory: search past conversations and stored documents, "
        "grep exact text, read and edit working-memory blocks.",
        on_list_tools=list_tools,
        on_call_tool=call,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read,
    )


def _error_result(text: str) -> mt.CallToolResult:
    return mt.CallToolResult(content=[mt.TextContent(text=text)], is_error=True)


def _scrub(value: Any) -> Any:
    """``value`` with lone surrogates as U+FFFD and non-finite floats as None (JSON-safe)."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


_SUSPECT = re.compile(r"\\u[dD][89a-fA-F]|NaN|Infinity")


def clean_line(line: str) -> str:
    """One line from the client, made parseable by the SDK without changing valid JSON."""
    if not _SUSPECT.search(line):
        return line
    try:
        data = json.loads(line)
    except ValueError:
        return line  # not JSON at all: the SDK reports it
    return json.dumps(_scrub(data), ensure_ascii=False) + "\n"


class _CleanLines:
    """The process's stdin as lines, each passed through ``clean_line``."""

    def __init__(self) -> None:
        self._source = anyio.wrap_file(io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"))

    async def __aiter__(self) -> Any:
        async for line in self._source:
            yield clean_line(line)


async def _serve_stdio(server: Server[Any]) -> None:
    async with stdio_server(stdin=_CleanLines()) as (read_stream, write_stream):  # type: ignore[arg-type]
        await server.run(read_stream, write_stream, server.create_initialization_options())


def run_mcp(
    store_path: str | Path | None = None,
    *,
    agent_id: str | None = None,
    root: LM | None = None,
    sub: LM | None = None,
    memory: MemoryManager | None = None,
) -> None:
    """Serve the store at ``store_path`` (or ``memory``) over stdio until the client disconnects."""
    from memory.manager import MemoryManager

    mem = memory if memory is not None else MemoryManager.open(store_path)
    try:
        anyio.run(_serve_stdio, build_server(mem, agent_id=agent_id, root=root, sub=sub))
    finally:
        if memory is None:
            mem.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.server.mcp", description=__doc__.split("\n")[0])
    parser.add_argument("--store", help="store directory (default: $RLMEM_STORE or the default store)")
    parser.add_argument("--agent", help="scope blocks and recall searches to this agent")
    args = parser.parse_args(argv)
    try:
        run_mcp(args.store, agent_id=args.agent)
    except RlmMemoryError as exc:
        print(f"rlmem mcp: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
