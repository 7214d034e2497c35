"""The memory tools a model calls (Agent, Letta, HTTP, MCP): ``builtin`` names them as views of
``memory.ops`` (Letta-style names) and adds ``deep_recall``; ``bound`` cuts results to a
character budget.

Rules this package keeps: a tool restates no description, schema or default; its arguments are
checked by the operation's schema before any store is touched. Nothing is re-exported (``agents``
re-exports the tool functions).
"""
