"""Price table lookups and the retry policy, without any server."""

from __future__ import annotations

import email.utils
import time

import pytest

from memory.errors import ConfigError
from rlm_core.lm import DEFAULT_PRICES, ModelPrice, PriceTable, Usage
from rlm_core.lm.retry import RetryPolicy, is_transient_status, parse_retry_after


def test_every_default_price_is_sane() -> None:
    for name, p in DEFAULT_PRICES.items():
        assert name.startswith("claude-")
        assert 0 < p.cache_read < p.input < p.cache_write < p.output, name


@pytest.mark.parametrize(
    "name",
    [
        "claude-haiku-4-5",
        "claude-haiku-4-5-20251001",
        "anthropic/claude-haiku-4-5",
        "anthropic.claude-haiku-4-5",
        "claude-haiku-4-5-latest",
    ],
)
def test_lookup_ignores_dates_and_provider_prefixes(name: str) -> None:
    assert PriceTable("x").lookup(name) == ModelPrice(1.0, 5.0, 1.25, 0.1)


def test_cost_charges_each_kind_of_token_at_its_rate() -> None:
    usage = Usage(input_tokens=2_000_000, output_tokens=1_000_000, cache_read_tokens=1_000_000, cache_write_tokens=1_000_000)
    # Sonnet 4.5: 3 input, 15 output, 3.75 cache write, 0.30 cache read.
    assert PriceTable("claude-sonnet-4-5").cost(usage) == pytest.approx(6 + 15 + 3.75 + 0.30)


def test_long_prompts_switch_to_the_long_prompt_rates() -> None:
    table = PriceTable("claude-haiku-5-5")
    short = Usage(input_tokens=100_000, output_tokens=1000)
    long = Usage(input_tokens=50_000, cache_read_tokens=60_000, output_tokens=1000)
    assert table.cost(short) == pytest.approx((100_000 * 0.10 + 1000 * 0.50) / 1e6)
    assert table.cost(long) == pytest.approx((50_000 * 0.50 + 60_000 * 0.05 + 1000 * 2.50) / 1e6)


def test_overrides_win_and_fill_in_cache_rates() -> None:
    table = PriceTable("claude-haiku-4-5", {"claude-haiku-4-5": {"input": 2.0, "output": 10.0}})
    assert table.lookup() == ModelPrice(2.0, 10.0, 2.5, 0.2)
    assert PriceTable("local", ModelPrice(0.0, 0.0, 0.0, 0.0)).cost(Usage(10, 10)) == 0.0
    assert ModelPrice.standard(4.0, 20.0, read=0.05) == ModelPrice(4.0, 20.0, 5.0, 0.2)


@pytest.mark.parametrize("bad", [{"m": {"output": 1.0}}, {"m": {"input": "cheap", "output": 1}}, [1, 2]])
def test_malformed_prices_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError, match="price"):
        PriceTable("m", bad)  # type: ignore[arg-type]


def test_transient_statuses() -> None:
    assert all(is_transient_status(s) for s in (408, 409, 429, 500, 502, 503, 529))
    assert not any(is_transient_status(s) for s in (400, 401, 403, 404, 413, 422))


def test_parse_retry_after() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (parse_retry_after({"retry-after": later}) or 0) <= 30
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_backoff_grows_is_jittered_and_capped() -> None:
    policy = RetryPolicy(max_retries=10, base_delay_s=1.0, max_delay_s=5.0)
    for retry, top in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 5.0)]:
        delays = [policy.delay(retry) for _ in range(50)]
        assert all(top / 2 <= d <= top for d in delays)
        assert len(set(delays)) > 1  # jitter
    assert policy.delay(0, retry_after_s=3.0) == 3.0
    assert policy.delay(0, retry_after_s=300.0) == 5.0
