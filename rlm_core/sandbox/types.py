"""The values of the sandbox's public API: its limits and the result of one cell.

Rules this module keeps:

* ``SandboxLimits`` is frozen; ``None`` disables an rlimit. Every bound on what the worker
  may send back lives here, so one object says what one sandbox may cost the parent.
* ``CellResult`` holds only what the parent checked: text already cut to its bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CellResult", "SandboxLimits"]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox. ``None`` disables an rlimit.

    ``cell_timeout_s`` and ``max_output_chars`` are read at every ``run`` (assigning a new
    value to ``Sandbox.limits`` between cells takes effect; output is never captured beyond
    the creation-time ``max_output_chars``); the rest are fixed when the Sandbox is created.

    ``isolation``: ``"kernel"`` (bubblewrap namespaces + seccomp + Landlock, the default) or
    ``"process"`` (a plain child process: rlimits and the audit hook only); ``None`` reads
    ``RLMEM_ISOLATION``. ``audit_hook=False`` leaves out the guard-rail hook (its readable
    errors), leaving the kernel layers alone to hold; the hostile tests run that way.
    """

    cell_timeout_s: float = 60.0  # wall clock per cell
    cpu_seconds: int | None = 300  # RLIMIT_CPU, cumulative for the worker; it is replaced when hit
    memory_mb: int | None = 2048  # RLIMIT_AS
    max_output_chars: int = 20_000  # stdout + stderr per cell, head and tail kept
    max_file_mb: int = 100  # RLIMIT_FSIZE
    allow_network: bool = False
    allow_subprocess: bool = False
    nproc: int | None = 512  # RLIMIT_NPROC (threads count too)
    recursion_limit: int = 1000
    # Files or directories model code may not open at all (e.g. the memory store itself:
    # its data reaches the model only through the functions it is given). Under the kernel
    # boundary they do not exist in the worker's filesystem anyway.
    deny_read: tuple[str, ...] = ()
    isolation: str | None = None
    audit_hook: bool = True
    max_message_mb: int = 64  # one frame from the worker (a value, a cell's result)
    max_callback_kb: int = 1024  # the arguments of one callback, encoded
    max_callbacks_in_flight: int = 64  # per worker; more are refused at once
    max_error_chars: int = 20_000  # an error text from the worker or a callback


@dataclass
class CellResult:
    """The outcome of one cell, as the parent saw it."""

    stdout: str
    stderr: str
    error: str | None
    timed_out: bool = False
    worker_restarted: bool = False
    restart_reason: str | None = None
    duration_s: float = 0.0
    truncated_chars: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def render(self) -> str:
        """The text the model sees: output, error, and a line if the worker was restarted."""
        parts = [p.rstrip("\n") for p in (self.stdout, self.stderr, self.error or "") if p]
        if self.worker_restarted:
            parts.append(
                f"[the worker was restarted: {self.restart_reason}; variables were lost, "
                "reserved functions and initial variables are back]"
            )
        return "\n".join(parts) if parts else "[no output]"
