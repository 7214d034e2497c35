"""Relative time expressions in queries ("two weeks ago", "in the past month").

Rules this module keeps:

* ``parse_relative(query, now)`` returns what the query points at, or None: a moment with a
  tolerance (``TimeTarget``) or a stretch of time ending now (``TimeSpan``). It understands
  only unambiguous English forms. Moments: ``N day(s)/week(s)/month(s)/year(s) ago`` (N in
  digits, a number word, "a", "a couple of", "a few"), ``yesterday``, ``last
  week/month/year``, ``last <weekday>`` and ``last weekend`` / ``the past weekend``. Stretches:
  ``in the past/last N days/weeks/months/years`` (N as above, or none: one), ``this
  week/month/year``. Anything else is no time expression.
* The tolerance grows with the distance (people round "ten days ago"), never below two days;
  a stretch's tolerance is a quarter of its length (at least two days).
* ``time_prior`` turns a target into a bonus in [0, 1] for a timestamp: 1 at the target
  (inside the stretch), falling linearly to 0 at the tolerance. Hybrid search adds it
  (weighted) to fused scores so that, of equally relevant messages, the ones from the time
  the question names rank first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

__all__ = ["TimeSpan", "TimeTarget", "parse_relative", "time_prior"]

_NUM = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2,
    "couple of": 2, "a few": 3, "few": 3, "several": 4,
}
_UNIT_DAYS = {"day": 1.0, "week": 7.0, "month": 30.44, "year": 365.25}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_N = (r"\d{1,4}|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
      r"(?:a )?couple of|(?:a )?few|several")  # fmt: skip
_AGO = re.compile(rf"\b({_N})\s+(day|week|month|year)s?\s+ago\b")
_LAST = re.compile(r"\blast\s+(week|month|year|weekend|" + "|".join(_WEEKDAYS) + r")\b")
_PAST_WEEKEND = re.compile(r"\b(?:the|this)\s+past\s+weekend\b")
_YESTERDAY = re.compile(r"\byesterday\b")
_SPAN = re.compile(rf"\b(?:in|over|during|within|for)\s+the\s+(?:past|last)\s+(?:({_N})\s+)?(day|week|month|year)s?\b")
_THIS = re.compile(r"\bthis\s+(week|month|year)\b")


class TimeTarget(NamedTuple):
    """A moment the query names, give or take ``tolerance``."""

    moment: datetime
    tolerance: timedelta


class TimeSpan(NamedTuple):
    """A stretch of time the query names, ``start`` to ``end``; ``tolerance`` past its edges."""

    start: datetime
    end: datetime
    tolerance: timedelta


def _tolerance(days: float) -> timedelta:
    return timedelta(days=max(2.0, 0.3 * days))


def _count(word: str | None) -> int:
    if word is None:
        return 1
    return int(word) if word.isdigit() else _NUM[word]


def _moment(q: str, now: datetime) -> TimeTarget | None:
    """The first moment expression of lower-cased ``q``, counted back from ``now``."""
    if m := _AGO.search(q):
        days = _count(m.group(1)) * _UNIT_DAYS[m.group(2)]
        return TimeTarget(now - timedelta(days=days), _tolerance(days))
    if _YESTERDAY.search(q):
        return TimeTarget(now - timedelta(days=1), _tolerance(1))
    m = _LAST.search(q)
    if m and m.group(1) in _UNIT_DAYS:
        days = _UNIT_DAYS[m.group(1)]
        return TimeTarget(now - timedelta(days=days), timedelta(days=max(2.0, days / 2)))
    if (m and m.group(1) == "weekend") or _PAST_WEEKEND.search(q):
        # The Saturday and Sunday before now: their middle (Sunday 0:00), give or take two days.
        back = (now.weekday() - 6) % 7 or 7
        sunday = (now - timedelta(days=back)).replace(hour=0, minute=0, second=0, microsecond=0)
        return TimeTarget(sunday, timedelta(days=2))
    if m:
        back = (now.weekday() - _WEEKDAYS.index(m.group(1))) % 7 or 7
        return TimeTarget(now - timedelta(days=back), _tolerance(1))
    return None


def parse_relative(query: str, now: datetime) -> TimeTarget | TimeSpan | None:
    """What the query's first relative time expression points at, or None."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    q = query.lower()
    if m := _SPAN.search(q):
        days = _count(m.group(1)) * _UNIT_DAYS[m.group(2)]
        return TimeSpan(now - timedelta(days=days), now, timedelta(days=max(2.0, days / 4)))
    if m := _THIS.search(q):
        unit = m.group(1)
        day0 = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if unit == "week":
            start = day0 - timedelta(days=now.weekday())
        elif unit == "month":
            start = day0.replace(day=1)
        else:
            start = day0.replace(month=1, day=1)
        return TimeSpan(start, now, timedelta(days=2))
    return _moment(q, now)


def time_prior(at: datetime, target: TimeTarget | TimeSpan) -> float:
    """1 at the target (inside the span), linearly down to 0 at the tolerance."""
    if isinstance(target, TimeSpan):
        start, end, tol = target
    else:
        start = end = target[0]
        tol = target[1]
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    off = (start - at) if at < start else (at - end) if at > end else timedelta(0)
    return max(0.0, 1.0 - off.total_seconds() / tol.total_seconds())
