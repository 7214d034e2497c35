"""How far the REPL around a store is closed: the store's isolation setting and its directory.

Rules this module keeps:

* The store's ``isolation`` setting (``rlmem.toml`` or ``RLMEM_ISOLATION``) applies only when
  the caller chose none (``SandboxLimits.isolation``): an explicit choice always wins.
* Model code never reads the store's directory: what it holds reaches the model only
  through the memory functions, which keep agent scoping and log writes.
* Both ``ask`` and the console (``rlmem repl``) read these; neither imports the other.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from rlm_core.limits import Limits

if TYPE_CHECKING:
    from memory.manager import MemoryManager

__all__ = ["protect_store", "store_isolation"]


def store_isolation(limits: Limits, memory: MemoryManager) -> Limits:
    """``limits`` with the store's ``isolation`` setting (``rlmem.toml`` or RLMEM_ISOLATION)
    when the caller did not choose one (``SandboxLimits.isolation``)."""
    sandbox = limits.sandbox_limits()
    chosen = getattr(memory.config, "isolation", None)
    if sandbox.isolation is not None or not chosen:
        return limits
    return dataclasses.replace(limits, sandbox=dataclasses.replace(sandbox, isolation=chosen))


def protect_store(limits: Limits, memory: MemoryManager) -> Limits:
    """``limits`` with the store's directory closed to model code: what it holds reaches the
    model only through the memory functions (which keep agent scoping and log writes); and
    with the store's isolation setting (``store_isolation``)."""
    limits = store_isolation(limits, memory)
    sandbox = limits.sandbox_limits()
    store = str(memory.config.dir.expanduser().resolve())
    if store in sandbox.deny_read:
        return limits
    return dataclasses.replace(
        limits, sandbox=dataclasses.replace(sandbox, deny_read=(*sandbox.deny_read, store))
    )
