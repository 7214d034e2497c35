"""Claude Code integration: transcripts as memory, hooks that capture them, install and plugin.

The session file format is read by ``agents.integrations.claude_code_reader`` (beside the
other transcript readers, which dispatch to it). Modules: ``hooks`` (``rlmem claude-code hook EVENT``),
``context`` (what SessionStart injects), ``install`` (settings and MCP registration).
Nothing here imports torch: hooks store text, embedding happens later through the queue.
"""
