"""The worker-side prelude of the memory REPL: the store guard and the install of the views.

Rules this module keeps:

* The prelude runs in the sandbox worker before any model code. It first installs an audit
  hook that refuses ``sqlite3.connect`` on files outside the scratch directory and the C
  ``dbm`` modules: they open files in C, below the sandbox's own file checks, and the stores
  are SQLite files. Audit hooks cannot be removed, so model code cannot undo it.
* It then runs the source of ``agents.memory_views`` in a module of its own (its helper names
  stay out of the model's namespace) and binds only the public names it returns.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from agents import memory_views

__all__ = ["prelude_source"]

_PRELUDE_TAIL = """
def _mem_guard():
    # Defence in depth for the stores: SQLite and dbm open files in C, below the sandbox's
    # file checks, so model code must not open database files outside its scratch directory.
    import os
    import sys

    scratch = os.path.realpath(os.getcwd())

    def inside(name):
        if name in ("", ":memory:") or name.startswith("file::memory:"):
            return True
        if name.startswith("file:"):
            name = name[5:].split("?", 1)[0]
        real = os.path.realpath(name)
        return real == scratch or real.startswith(scratch + os.sep)

    def hook(event, args):
        if event == "sqlite3.connect":
            db = args[0] if args else ""
            name = os.fsdecode(db) if isinstance(db, bytes) else str(os.fspath(db))
            if not inside(name):
                raise PermissionError(
                    "memory: opening database files is not allowed in this REPL; read memory "
                    "through recall, archival, grep and search, and write with remember and note"
                )
        elif event == "import" and args and str(args[0]).split(".")[0] in ("_dbm", "_gdbm"):
            raise PermissionError(f"memory: importing {args[0]} is not allowed in this REPL")

    sys.addaudithook(hook)

_mem_guard()
del _mem_guard

def _mem_install():
    import types
    mod = types.ModuleType("rlm_memory_views")
    code = compile(_MEM_VIEWS_SOURCE, "<memory views>", "exec", dont_inherit=True)
    exec(code, mod.__dict__)
    g = globals()
    return mod.build_namespace(_memory, {name: g[name] for name in _MEM_PUBLIC})

globals().update(_mem_install())
del _mem_install, _MEM_VIEWS_SOURCE, _MEM_PUBLIC
"""


def prelude_source(public: Sequence[str]) -> str:
    """The prelude: the guard, then ``working``/``recall``/``archival`` and the wrapped
    ``public`` functions over the proxy ``_memory``."""
    source = inspect.getsource(memory_views)
    return f"_MEM_VIEWS_SOURCE = {source!r}\n_MEM_PUBLIC = {tuple(public)!r}\n{_PRELUDE_TAIL}"
