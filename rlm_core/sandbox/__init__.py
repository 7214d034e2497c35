"""The sandboxed REPL: the parent side (``repl``, ``channel``, ``checks``, ``policy``,
``launcher``, ``spawner``, ``types``) and, in ``worker``, the code behind the kernel boundary.

Rules this package keeps: this file imports nothing (the worker passes through it), and
nothing is re-exported: import the modules.
"""
