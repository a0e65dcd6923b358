"""Working hours, Vietnam time: when silence from an office system means something is wrong.

A calendar is text, e.g. ``Mon-Fri 07:30-11:30,13:30-17:00`` (the one-stop desks' hours) or
``always``; :func:`working_ms` counts the working milliseconds between two instants, so a
rule such as "no portal events for 30 minutes in working hours" ignores nights, lunch and
weekends (``Thresholds.portal_working_hours``).
"""

from __future__ import annotations

import functools
import re
from typing import Final

VN_OFFSET_MS: Final = 7 * 3_600_000
DAY_MS: Final = 86_400_000
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS: Final = "always"
_SPEC = re.compile(r"^(\w{3})(?:-(\w{3}))?\s+(\d\d:\d\d-\d\d:\d\d(?:,\d\d:\d\d-\d\d:\d\d)*)$")


class WorkingHoursError(ValueError):
    pass


Calendar = tuple[frozenset[int], tuple[tuple[int, int], ...]]
"""(weekdays 0=Monday.., periods as (start, end) milliseconds after local midnight)."""


def _minute(text: str) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or hours * 60 + minutes > 1440:
        raise WorkingHoursError(f"bad time {text!r}")
    return (hours * 60 + minutes) * 60_000


@functools.cache
def parse(spec: str) -> Calendar:
    """``Mon-Fri 07:30-11:30,13:30-17:00`` -> ({0..4}, ((27000000, 41400000), ...))."""
    text = spec.strip().lower()
    if text == ALWAYS:
        return frozenset(range(7)), ((0, DAY_MS),)
    match = _SPEC.match(text)
    if match is None or match[1] not in DAYS or (match[2] and match[2] not in DAYS):
        raise WorkingHoursError(
            f"working hours {spec!r}: expected e.g. 'Mon-Fri 07:30-11:30,13:30-17:00' or 'always'"
        )
    first = DAYS.index(match[1])
    last = DAYS.index(match[2]) if match[2] else first
    days = frozenset(d % 7 for d in range(first, last + (7 if last < first else 0) + 1))
    periods = []
    for part in match[3].split(","):
        start, end = (_minute(x) for x in part.split("-"))
        if end <= start:
            raise WorkingHoursError(f"working hours {spec!r}: {part} ends before it starts")
        periods.append((start, end))
    return days, tuple(sorted(periods))


def is_working(ts_ms: int, spec: str) -> bool:
    days, periods = parse(spec)
    local = ts_ms + VN_OFFSET_MS
    if (local // DAY_MS + 3) % 7 not in days:  # 1970-01-01 was a Thursday
        return False
    offset = local % DAY_MS
    return any(start <= offset < end for start, end in periods)


def working_ms(since_ms: int, until_ms: int, spec: str, cap_days: int = 62) -> int:
    """Working milliseconds in ``[since_ms, until_ms)`` (0 when ``until <= since``); looks
    back at most ``cap_days`` days (enough to say "silent for days")."""
    if until_ms <= since_ms:
        return 0
    days, periods = parse(spec)
    since_ms = max(since_ms, until_ms - cap_days * DAY_MS)
    lo, hi = since_ms + VN_OFFSET_MS, until_ms + VN_OFFSET_MS
    total = 0
    day = lo // DAY_MS
    while day * DAY_MS < hi:
        if (day + 3) % 7 in days:
            base = day * DAY_MS
            for start, end in periods:
                total += max(0, min(hi, base + end) - max(lo, base + start))
        day += 1
    return total
