"""Prices of model calls, in USD per million tokens.

Rules this module keeps:

* A ``ModelPrice`` holds four rates (input, output, cache write, cache read), all USD per
  million tokens. Cache writes are the 5-minute ephemeral writes that prompt caching uses.
* ``DEFAULT_PRICES`` lists the Claude models with their published list prices (Claude API,
  standard tier; no batch discount, no regional surcharge). Prices change: callers override
  or extend them with ``prices=`` on a client, never by editing this table at run time.
* A model name is looked up as given, then without a provider prefix (``anthropic/``,
  ``anthropic.``), then without a date suffix (``-20251001``) or ``-latest``.
* A model with no price costs 0.0 and warns once per process and model name, so a missing
  price is visible but never breaks a run.
* ``Usage.input_tokens`` excludes cached tokens (the Anthropic convention); each of the four
  token counts is charged at its own rate.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from memory.errors import ConfigError
from rlm_core.lm.types import Usage

__all__ = [
    "DEFAULT_PRICES",
    "ModelPrice",
    "PriceTable",
    "PricesArg",
    "UnknownModelPriceWarning",
]


class UnknownModelPriceWarning(RuntimeWarning):
    """A model has no entry in the price table; its calls are counted as free."""


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens. ``long_prompt`` applies above ``long_prompt_threshold``."""

    input: float
    output: float
    cache_write: float
    cache_read: float
    # Some models bill every token of a request at a higher rate once the prompt (input +
    # cache reads + cache writes) passes a size; None means one rate at every size.
    long_prompt_threshold: int | None = None
    long_prompt: ModelPrice | None = None

    @classmethod
    def standard(cls, input: float, output: float, *, read: float = 0.1) -> ModelPrice:
        """The usual shape: cache writes at 1.25x input, cache reads at ``read`` x input."""
        return cls(input, output, round(input * 1.25, 6), round(input * read, 6))

    def cost(self, usage: Usage) -> float:
        """USD for the token counts of ``usage``."""
        prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        rates = self
        if (
            self.long_prompt is not None
            and self.long_prompt_threshold is not None
            and prompt > self.long_prompt_threshold
        ):
            rates = self.long_prompt
        return (
            usage.input_tokens * rates.input
            + usage.output_tokens * rates.output
            + usage.cache_write_tokens * rates.cache_write
            + usage.cache_read_tokens * rates.cache_read
        ) / 1_000_000


_S = ModelPrice.standard

#: List prices of the Claude API, USD per million tokens (checked November 2026).
DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "claude-fable-5-1": ModelPrice(10.0, 50.0, 12.5, 0.25),
    "claude-mythos-5-1": ModelPrice(10.0, 50.0, 12.5, 0.25),
    "claude-fable-5": _S(10.0, 50.0),
    "claude-mythos-5": _S(10.0, 50.0),
    "claude-mythos-preview": _S(10.0, 50.0),
    "claude-opus-5-5": ModelPrice(4.0, 20.0, 5.0, 0.20),
    "claude-opus-5": _S(5.0, 25.0),
    "claude-opus-4-8": _S(5.0, 25.0),
    "claude-opus-4-7": _S(5.0, 25.0),
    "claude-opus-4-6": _S(5.0, 25.0),
    "claude-opus-4-5": _S(5.0, 25.0),
    "claude-opus-4-1": _S(15.0, 75.0),
    "claude-opus-4-0": _S(15.0, 75.0),
    "claude-opus-4": _S(15.0, 75.0),
    "claude-3-opus": _S(15.0, 75.0),
    "claude-sonnet-5-5": ModelPrice(2.0, 10.0, 2.5, 0.10),
    "claude-sonnet-5": _S(2.0, 10.0),
    "claude-sonnet-4-6": _S(3.0, 15.0),
    "claude-sonnet-4-5": _S(3.0, 15.0),
    "claude-sonnet-4-0": _S(3.0, 15.0),
    "claude-sonnet-4": _S(3.0, 15.0),
    "claude-3-7-sonnet": _S(3.0, 15.0),
    "claude-haiku-5-5": ModelPrice(
        0.10,
        0.50,
        0.125,
        0.01,
        long_prompt_threshold=100_000,
        long_prompt=ModelPrice(0.50, 2.50, 0.625, 0.05),
    ),
    "claude-haiku-4-5": _S(1.0, 5.0),
    "claude-3-5-haiku": _S(0.80, 4.0),
    "claude-3-haiku": ModelPrice(0.25, 1.25, 0.30, 0.03),
}

PricesArg = ModelPrice | Mapping[str, ModelPrice | Mapping[str, float]] | None

_DATE_SUFFIX = re.compile(r"-(\d{8}|latest)$")
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _as_price(model: str, value: ModelPrice | Mapping[str, float]) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    try:
        return ModelPrice(
            input=float(value["input"]),
            output=float(value["output"]),
            cache_write=float(value.get("cache_write", float(value["input"]) * 1.25)),
            cache_read=float(value.get("cache_read", float(value["input"]) * 0.1)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"price for {model!r} must be a ModelPrice or a mapping with 'input' and 'output' "
            f"(USD per million tokens; 'cache_write' and 'cache_read' optional), got {value!r}"
        ) from exc


class PriceTable:
    """Looks up the price of a model: overrides first, then the defaults.

    ``prices`` is either one ``ModelPrice`` (the price of ``model``) or a mapping from model
    name to ``ModelPrice`` / ``{"input": .., "output": .., "cache_write": .., "cache_read": ..}``.
    ``warn_unknown=False`` keeps quiet about unpriced models (local models are free).
    """

    def __init__(
        self,
        model: str,
        prices: PricesArg = None,
        *,
        defaults: Mapping[str, ModelPrice] = DEFAULT_PRICES,
        warn_unknown: bool = True,
    ) -> None:
        table = dict(defaults)
        if isinstance(prices, ModelPrice):
            table[model] = prices
        elif prices is not None:
            if not isinstance(prices, Mapping):
                raise ConfigError(
                    f"prices must be a ModelPrice or a mapping of model name to price, "
                    f"got {type(prices).__name__}"
                )
            for name, value in prices.items():
                table[name] = _as_price(name, value)
        self.model = model
        self.table = table
        self.warn_unknown = warn_unknown

    def lookup(self, model: str | None = None) -> ModelPrice | None:
        """The price of ``model`` (default: the table's own model), or None."""
        name = model or self.model
        for candidate in _candidates(name):
            if candidate in self.table:
                return self.table[candidate]
        return None

    def cost(self, usage: Usage, model: str | None = None) -> float:
        """USD for ``usage``; 0.0 (with a one-time warning) when the model has no price."""
        name = model or self.model
        price = self.lookup(name)
        if price is None:
            if self.warn_unknown:
                _warn_once(name)
            return 0.0
        return price.cost(usage)


def _candidates(name: str) -> list[str]:
    out = [name]
    bare = name.rsplit("/", 1)[-1]
    if bare.startswith("anthropic."):
        bare = bare[len("anthropic.") :]
    out.append(bare)
    out.append(_DATE_SUFFIX.sub("", bare))
    return out


def _warn_once(model: str) -> None:
    with _warned_lock:
        if model in _warned:
            return
        _warned.add(model)
    warnings.warn(
        f"no price known for model {model!r}: its calls are counted as costing $0.00; "
        "pass prices={...} to the client to set one",
        UnknownModelPriceWarning,
        stacklevel=3,
    )
