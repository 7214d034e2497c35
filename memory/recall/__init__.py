"""The recall log: every message, append-only (``log``), its migrations (``schema``) and its
vector, hybrid and session search (``hybrid``).

Rules this package keeps: a message is durable before ``append`` returns and keeps its id;
``forget`` is the one deletion and it is audited. Nothing is re-exported: import the modules
(``memory`` re-exports ``RecallLog``).
"""
