"""The worker-side prelude of the memory REPL: the store guard and the install of the views.

Rules this module keeps:

* The prelude runs in the sandbox worker before any model code. Guarding the store's files is
  the sandbox's job (``rlm_core.sandbox.policy``: ``sqlite3.connect`` outside the scratch
  directory, the C ``dbm`` modules and ``deny_read`` paths are refused), not the prelude's.
* It runs the source of ``agents.repl.views`` in a module of its own (its helper names
  stay out of the model's namespace) and binds only the public names it returns.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from agents.repl import views as memory_views

__all__ = ["prelude_source"]

_PRELUDE_TAIL = """
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
    """The prelude: ``working``/``recall``/``archival`` and the wrapped
    ``public`` functions over the proxy ``_memory``."""
    source = inspect.getsource(memory_views)
    return f"_MEM_VIEWS_SOURCE = {source!r}\n_MEM_PUBLIC = {tuple(public)!r}\n{_PRELUDE_TAIL}"
