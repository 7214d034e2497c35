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
"""

from __future__ import annotations

import argparse
import json
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

__all__ = ["BLOCK_URI", "build_server", "main", "run_mcp"]

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
            result = await anyio.to_thread.run_sync(call_tool, params.name, ctx, params.arguments or {})
        except RlmMemoryError as exc:
            return mt.CallToolResult(content=[mt.TextContent(text=f"{type(exc).__name__}: {exc}")], is_error=True)
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


async def _serve_stdio(server: Server[Any]) -> None:
    async with stdio_server() as (read_stream, write_stream):
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
