"""Claude Code integration: transcripts as memory, hooks that capture them, install and plugin.

Modules: ``reader`` (the session file format), ``hooks`` (``rlmem claude-code hook EVENT``),
``context`` (what SessionStart injects), ``install`` (settings and MCP registration).
Nothing here imports torch: hooks store text, embedding happens later through the queue.
"""
