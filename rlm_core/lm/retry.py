"""What counts as transient, and how long to wait, for the OpenAI-compatible client (its retry
loop is tenacity's; ``AnthropicLM`` uses the SDK's own retries and only ``is_transient_status``).

Rules this module keeps:

* Only transient failures are retried: rate limits (429), overload (529), server errors
  (5xx), request timeouts and lock conflicts (408, 409), and broken transfers. Anything
  else fails at once.
* The wait before retry *n* (0-based) is ``min(max_delay_s, base_delay_s * 2**n)`` scaled by
  a random factor in [0.5, 1.0] (jitter, so parallel callers do not retry in lockstep). A
  server's ``retry-after`` / ``retry-after-ms`` header replaces that wait, capped at
  ``max_delay_s``.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "TRANSIENT_STATUS",
    "RetryPolicy",
    "Transient",
    "is_transient_status",
    "parse_retry_after",
]

TRANSIENT_STATUS = frozenset({408, 409, 429})


def is_transient_status(status: int) -> bool:
    """True for the HTTP statuses worth retrying."""
    return status in TRANSIENT_STATUS or status >= 500


class Transient(Exception):
    """Raised by an attempt to ask for a retry; ``retry_after_s`` comes from the server."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry transient failures."""

    max_retries: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 60.0

    def delay(self, retry: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after_s is not None:
            return min(self.max_delay_s, retry_after_s)
        backoff = min(self.max_delay_s, self.base_delay_s * (2.0**retry))
        return backoff * random.uniform(0.5, 1.0)
