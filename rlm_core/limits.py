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
  back once the real usage is charged. ``max_cost_usd`` is held the same way: a call holds
  its price at its input estimate and output cap (``call_price``; a model with no known price
  holds what its dearest call so far cost), and the output cap is cut to what the money left
  pays for.
* At most ``Limits.max_live_children`` child RLMs of one tree run at once (each holds a
  worker process); more are refused readably.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
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

__all__ = ["Budget", "Hold", "Limits", "call_price"]

_MIN_ANSWER_TOKENS = 16
_DEFAULT_OUTPUT_TOKENS = 4096  # what a call with no output cap is assumed to write
_USD_EPS = 1e-9  # sums of per-call prices are not exact in binary floating point


@dataclass
class Hold:
    """What one model call holds of the budget while it runs (given back by ``release``)."""

    tokens: int = 0
    cost_usd: float = 0.0
    max_output: int | None = None


def call_price(lm: Any) -> Callable[[int, int], float] | None:
    """USD of one call of ``lm`` as a function of (input tokens, output tokens), or None when
    its price is unknown: a fixed ``cost_per_call_usd`` (the scripted models), else the
    ``prices`` table of a provider client for its ``model``."""
    fixed = getattr(lm, "cost_per_call_usd", None)
    if isinstance(fixed, int | float) and not isinstance(fixed, bool):
        return lambda _i, _o: float(fixed)
    prices, model = getattr(lm, "prices", None), getattr(lm, "model", None)
    lookup = getattr(prices, "lookup", None)
    if not callable(lookup) or not isinstance(model, str):
        return None
    try:
        rate = lookup(model)
    except Exception:
        return None
    if rate is None:
        return None
    return lambda i, o: float(rate.cost(Usage(input_tokens=i, output_tokens=o)))


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
        self.reserved_cost_usd = 0.0
        self.max_call_cost_usd = 0.0  # what an unpriced model's call is assumed to cost
        self.live_children = 0

    # --- accounting -----------------------------------------------------------------------

    def charge(self, usage: Usage, cost_usd: float, *, role: Literal["root", "sub"]) -> None:
        with self._lock:
            self.max_call_cost_usd = max(self.max_call_cost_usd, cost_usd)
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

    def reserve(self, input_chars: int, max_output: int | None, lm: Any = None) -> Hold:
        """Reserve tokens and money for one model call of ``lm`` before it is made.

        Without ``Limits.max_tokens`` / ``max_cost_usd`` nothing of that kind is held. The
        output cap (``Hold.max_output``, to ask the model for) is cut to what both leave room
        for. Raises ``TokenLimitError`` / ``CostLimitError`` when even the input estimate plus
        a minimal answer does not fit beside what calls in flight hold.
        """
        lim = self.limits
        need_in = input_chars // 3 + 16  # generous: ~4 characters per token in practice
        price = call_price(lm)
        with self._lock:
            hold = Hold(max_output=max_output)
            if lim.max_tokens is not None:
                free = lim.max_tokens - (self.root_usage + self.sub_usage).total_tokens
                free -= self.reserved_tokens + need_in
                if free < _MIN_ANSWER_TOKENS:
                    raise TokenLimitError(
                        f"this call needs about {need_in + _MIN_ANSWER_TOKENS} tokens and only "
                        f"{max(free + need_in, 0)} of Limits.max_tokens={lim.max_tokens} are left "
                        "(calls in flight hold their share); raise max_tokens or ask a narrower question"
                    )
                hold.max_output = free if max_output is None else min(free, max_output)
            if lim.max_cost_usd is not None:
                hold.cost_usd, hold.max_output = self._reserve_cost(price, need_in, hold.max_output)
            if lim.max_tokens is not None:
                hold.tokens = need_in + (hold.max_output or 0)
            self.reserved_tokens += hold.tokens
            self.reserved_cost_usd += hold.cost_usd
            return hold

    def _reserve_cost(
        self, price: Callable[[int, int], float] | None, need_in: int, out: int | None
    ) -> tuple[float, int | None]:
        """(USD to hold, output cap) for one call; the lock is held by the caller."""
        cap = self.limits.max_cost_usd
        assert cap is not None
        free = cap - self.root_cost_usd - self.sub_cost_usd - self.reserved_cost_usd
        if price is None:
            # A model with no known price: hold what its dearest call so far cost.
            need = self.max_call_cost_usd
        else:
            asked = _DEFAULT_OUTPUT_TOKENS if out is None else out
            need = price(need_in, asked)
            if need > free + _USD_EPS and price(need_in, _MIN_ANSWER_TOKENS) <= free + _USD_EPS:
                lo, hi = _MIN_ANSWER_TOKENS, asked  # the largest answer the money left pays for
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    lo, hi = (mid, hi) if price(need_in, mid) <= free + _USD_EPS else (lo, mid - 1)
                out, need = lo, price(need_in, lo)
        if need > free + _USD_EPS or free <= _USD_EPS:
            raise CostLimitError(
                f"this call may cost up to ${need:.4f} and only ${max(free, 0.0):.4f} of "
                f"Limits.max_cost_usd=${cap:.4f} are left (calls in flight hold their share); "
                "raise max_cost_usd or use a cheaper sub model"
            )
        return need, out

    def release(self, hold: Hold | None) -> None:
        if hold is None:
            return
        with self._lock:
            self.reserved_tokens -= hold.tokens
            self.reserved_cost_usd -= hold.cost_usd

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
