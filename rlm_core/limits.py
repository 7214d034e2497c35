"""Run limits and the budget an RLM tree shares.

Rules this module keeps:

* ``Limits`` is a frozen value object: one per run, passed down unchanged to child RLMs.
* ``Budget`` is the one mutable, thread-safe account of a whole RLM tree: tokens, cost,
  wall time and the number of sub-calls. Every model call anywhere in the tree (root,
  ``llm_query``, child RLMs) is charged to the same ``Budget``, so a limit holds for the tree,
  not per node.
* ``Budget.exceeded()`` names the first hard limit that is spent, as the error class to raise
  and a message saying what to raise; it never raises itself, so the engine can attach the
  partial answer and trajectory before raising.
* The sub-call count is a soft limit: once spent, sub-calls are refused with a readable message
  and the run goes on, so the model can still answer with what it has.
* Tokens are reserved before a model call is made, not counted after: ``reserve`` grants a
  call its input estimate plus an output cap (passed to the model as ``max_tokens``) only if
  what is spent plus what other calls in flight hold leaves room, so threads racing for the
  last tokens cannot overspend ``max_tokens`` together. ``release`` gives the reservation
  back once the real usage is charged.
* At most ``Limits.max_live_children`` child RLMs of one tree run at once (each holds a
  worker process); more are refused readably.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from memory.errors import (
    CostLimitError,
    RLMLimitError,
    TimeLimitError,
    TokenLimitError,
    ValidationError,
)
from rlm_core.lm import Usage

if TYPE_CHECKING:
    from rlm_core.sandbox.repl import SandboxLimits

__all__ = ["Budget", "Limits"]

_MIN_ANSWER_TOKENS = 16


@dataclass(frozen=True)
class Limits:
    """Every limit of an RLM run, shared by the whole tree of child RLMs.

    ``max_iterations``: root-model turns per RLM node (each child has its own count).
    ``max_depth``: the deepest level a child RLM may run at; the root is depth 0, so
    ``max_depth=2`` allows root -> child -> grandchild. ``rlm_query`` called at
    ``max_depth`` is answered by a plain ``llm_query`` (``on_max_depth="llm_query"``) or
    refused with ``DepthLimitError`` (``on_max_depth="error"``).
    ``max_tokens`` / ``max_cost_usd`` / ``max_seconds``: totals for the whole tree.
    ``max_consecutive_errors``: iterations in a row whose cells all failed.
    ``max_sub_calls``: total ``llm_query``/``rlm_query`` calls in the tree (soft limit).
    ``sub_concurrency``: how many prompts of one ``llm_query_batched`` run at once.
    ``cell_timeout_s`` / ``max_output_chars``: per-cell sandbox limits (``sandbox`` overrides
    every sandbox setting when given).
    """

    max_iterations: int = 20
    max_depth: int = 2
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_seconds: float | None = None
    max_consecutive_errors: int = 5
    max_sub_calls: int | None = None
    sub_concurrency: int = 8
    cell_timeout_s: float = 60.0
    max_output_chars: int = 20_000
    on_max_depth: Literal["llm_query", "error"] = "llm_query"
    max_live_children: int = 8
    sandbox: SandboxLimits | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        positive: dict[str, Any] = {
            "max_iterations": self.max_iterations,
            "max_consecutive_errors": self.max_consecutive_errors,
            "sub_concurrency": self.sub_concurrency,
            "cell_timeout_s": self.cell_timeout_s,
            "max_output_chars": self.max_output_chars,
            "max_tokens": self.max_tokens,
            "max_cost_usd": self.max_cost_usd,
            "max_seconds": self.max_seconds,
            "max_live_children": self.max_live_children,
        }
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise ValidationError(f"Limits.{name} must be > 0, got {value!r}")
        if self.max_depth < 0:
            raise ValidationError(f"Limits.max_depth must be >= 0, got {self.max_depth!r}")
        if self.max_sub_calls is not None and self.max_sub_calls < 0:
            raise ValidationError(f"Limits.max_sub_calls must be >= 0, got {self.max_sub_calls!r}")
        if self.on_max_depth not in ("llm_query", "error"):
            raise ValidationError(
                f"Limits.on_max_depth must be 'llm_query' or 'error', got {self.on_max_depth!r}"
            )

    def sandbox_limits(self) -> SandboxLimits:
        """The sandbox limits of one REPL: ``sandbox`` if given, else derived from this object."""
        from rlm_core.sandbox.repl import SandboxLimits

        if self.sandbox is not None:
            return self.sandbox
        return SandboxLimits(cell_timeout_s=self.cell_timeout_s, max_output_chars=self.max_output_chars)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "sandbox"}
        if self.sandbox is not None:
            out["sandbox"] = repr(self.sandbox)
        return out


class Budget:
    """The thread-safe account of one RLM tree (tokens, cost, time, sub-calls)."""

    def __init__(self, limits: Limits, *, clock: Any = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        self.root_usage = Usage()
        self.sub_usage = Usage()
        self.root_cost_usd = 0.0
        self.sub_cost_usd = 0.0
        self.sub_calls = 0
        self.root_calls = 0
        # The first fatal limit error raised inside a sub-call (possibly in a child RLM on
        # another thread); the engine re-raises it for the whole run after the cell.
        self.fatal: RLMLimitError | None = None
        self.reserved_tokens = 0
        self.live_children = 0

    # --- accounting -----------------------------------------------------------------------

    def charge(self, usage: Usage, cost_usd: float, *, role: Literal["root", "sub"]) -> None:
        with self._lock:
            if role == "root":
                self.root_usage = self.root_usage + usage
                self.root_cost_usd += cost_usd
                self.root_calls += 1
            else:
                self.sub_usage = self.sub_usage + usage
                self.sub_cost_usd += cost_usd

    def take_sub_call(self) -> bool:
        """Count one sub-call; False (and nothing counted) when ``max_sub_calls`` is spent."""
        with self._lock:
            cap = self.limits.max_sub_calls
            if cap is not None and self.sub_calls >= cap:
                return False
            self.sub_calls += 1
            return True

    def reserve(self, input_chars: int, max_output: int | None) -> tuple[int, int | None]:
        """Reserve tokens for one model call: (tokens held, output cap to ask the model for).

        Without ``Limits.max_tokens`` nothing is held and the cap is ``max_output``. Raises
        ``TokenLimitError`` when the input estimate plus a minimal answer does not fit.
        """
        cap = self.limits.max_tokens
        if cap is None:
            return 0, max_output
        need_in = input_chars // 3 + 16  # generous: ~4 characters per token in practice
        with self._lock:
            free = cap - (self.root_usage + self.sub_usage).total_tokens - self.reserved_tokens - need_in
            if free < _MIN_ANSWER_TOKENS:
                raise TokenLimitError(
                    f"this call needs about {need_in + _MIN_ANSWER_TOKENS} tokens and only "
                    f"{max(free + need_in, 0)} of Limits.max_tokens={cap} are left (calls in flight "
                    "hold their share); raise max_tokens or ask a narrower question"
                )
            out = free if max_output is None else min(free, max_output)
            self.reserved_tokens += need_in + out
            return need_in + out, out

    def release(self, held: int) -> None:
        with self._lock:
            self.reserved_tokens -= held

    def enter_child(self) -> bool:
        with self._lock:
            if self.live_children >= self.limits.max_live_children:
                return False
            self.live_children += 1
            return True

    def leave_child(self) -> None:
        with self._lock:
            self.live_children -= 1

    def record_fatal(self, err: RLMLimitError) -> None:
        with self._lock:
            if self.fatal is None:
                self.fatal = err

    # --- reading --------------------------------------------------------------------------

    @property
    def total_usage(self) -> Usage:
        with self._lock:
            return self.root_usage + self.sub_usage

    @property
    def cost_usd(self) -> float:
        with self._lock:
            return self.root_cost_usd + self.sub_cost_usd

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self.started

    def remaining_s(self) -> float | None:
        if self.limits.max_seconds is None:
            return None
        return self.limits.max_seconds - self.elapsed_s

    def exceeded(self) -> tuple[type[RLMLimitError], str] | None:
        """The first spent hard limit as (error class, message), or None."""
        lim = self.limits
        tokens = self.total_usage.total_tokens
        if lim.max_tokens is not None and tokens >= lim.max_tokens:
            return TokenLimitError, (
                f"the run used {tokens} tokens, reaching Limits.max_tokens={lim.max_tokens}; "
                "raise max_tokens or ask a narrower question"
            )
        cost = self.cost_usd
        if lim.max_cost_usd is not None and cost >= lim.max_cost_usd:
            return CostLimitError, (
                f"the run cost ${cost:.4f}, reaching Limits.max_cost_usd=${lim.max_cost_usd:.4f}; "
                "raise max_cost_usd or use a cheaper sub model"
            )
        elapsed = self.elapsed_s
        if lim.max_seconds is not None and elapsed >= lim.max_seconds:
            return TimeLimitError, (
                f"the run took {elapsed:.1f} s, reaching Limits.max_seconds={lim.max_seconds}; "
                "raise max_seconds or lower max_iterations"
            )
        return None
