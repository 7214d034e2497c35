"""Relative time expressions in queries ("two weeks ago", "yesterday", "last month").

Rules this module keeps:

* ``parse_relative(query, now)`` returns the moment the query points at and a tolerance, or
  None. It understands only unambiguous English forms: ``N day(s)/week(s)/month(s)/year(s)
  ago`` (N in digits, a number word, "a", "a couple of", "a few"), ``yesterday``, ``last
  week/month/year`` and ``last <weekday>``. Anything else is no time expression.
* The tolerance grows with the distance (people round "ten days ago"), never below two days.
* ``time_prior`` turns that into a bonus in [0, 1] for a timestamp: 1 at the target, falling
  linearly to 0 at the tolerance. Hybrid search adds it (weighted) to fused scores so that, of
  equally relevant messages, the ones from the time the question names rank first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["TimeTarget", "parse_relative", "time_prior"]

_NUM = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2,
    "couple of": 2, "a few": 3, "few": 3, "several": 4,
}
_UNIT_DAYS = {"day": 1.0, "week": 7.0, "month": 30.44, "year": 365.25}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_AGO = re.compile(
    r"\b(\d{1,4}|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"(?:a )?couple of|(?:a )?few|several)\s+(day|week|month|year)s?\s+ago\b"
)
_LAST = re.compile(r"\blast\s+(week|month|year|" + "|".join(_WEEKDAYS) + r")\b")
_YESTERDAY = re.compile(r"\byesterday\b")

TimeTarget = tuple[datetime, timedelta]


def _tolerance(days: float) -> timedelta:
    return timedelta(days=max(2.0, 0.3 * days))


def parse_relative(query: str, now: datetime) -> TimeTarget | None:
    """``(target moment, tolerance)`` for the first relative time expression, or None."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    q = query.lower()
    if m := _AGO.search(q):
        n = int(m.group(1)) if m.group(1).isdigit() else _NUM[m.group(1)]
        days = n * _UNIT_DAYS[m.group(2)]
        return now - timedelta(days=days), _tolerance(days)
    if _YESTERDAY.search(q):
        return now - timedelta(days=1), _tolerance(1)
    if m := _LAST.search(q):
        word = m.group(1)
        if word in _UNIT_DAYS:
            days = _UNIT_DAYS[word]
            return now - timedelta(days=days), timedelta(days=max(2.0, days / 2))
        back = (now.weekday() - _WEEKDAYS.index(word)) % 7 or 7
        return now - timedelta(days=back), _tolerance(1)
    return None


def time_prior(at: datetime, target: TimeTarget) -> float:
    """1 at the target, linearly down to 0 at the tolerance."""
    moment, tol = target
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, 1.0 - abs((at - moment).total_seconds()) / tol.total_seconds())
