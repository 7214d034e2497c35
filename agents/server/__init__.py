"""Memory over the network: the HTTP API (``http``: the Starlette app; ``operations``: its routes
as views of ``memory.ops``; ``openapi``: the description generated from them) and the MCP
server (``mcp``).

Rules this package keeps: both are the optional extra ``[server]`` (a missing one raises
``MissingExtraError``); nothing here defines an operation, a schema or a default. Nothing is
re-exported: import ``agents.server.http`` or ``agents.server.mcp``.
"""
