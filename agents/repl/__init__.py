"""Memory inside the REPL: ``binding`` (the parent-side functions, views of ``memory.ops``),
``prompt`` (what the root model is told), ``prelude`` and ``views`` (the worker-side lazy
``recall``/``archival``/``working`` objects), ``convert`` (plain data for the worker),
``isolation`` (how far the sandbox around a store is closed) and ``console`` (``rlmem repl``).

Rules this package keeps: ``views`` runs inside the worker and imports the standard library
only; the worker never holds a store, only proxies that call back into the parent. Nothing is
re-exported: import the modules.
"""
