"""Integrations with other systems: Letta tools generated from the same schemas (``letta``), Letta
agent import and block sync (``letta_sync``), and transcript importers (``transcripts``).

Rules this package keeps: the tools offered elsewhere are those of ``agents.tools``, described
by the operations' schemas; importers are idempotent. Nothing is re-exported: import the
modules.
"""
