"""SLA periods: calendar periods in Vietnam time, as UTC bounds; bad dates are refused."""

from __future__ import annotations

import datetime as dt

import pytest

from ioc.services.ops.common import Invalid
from ioc.services.ops.sla import PeriodKind, current_period, parse_period


def utc(year: int, month: int, day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11", utc(2026, 10, 31, 17), utc(2026, 11, 30, 17)),
        ("2026-12", utc(2026, 11, 30, 17), utc(2026, 12, 31, 17)),
        ("2026-11-25", utc(2026, 11, 24, 17), utc(2026, 11, 25, 17)),
        ("2026-W47", utc(2026, 11, 15, 17), utc(2026, 11, 22, 17)),  # Mon 16 - Mon 23 Nov
        ("2026-w01", utc(2025, 12, 28, 17), utc(2026, 1, 4, 17)),
        ("2026-Q4", utc(2026, 9, 30, 17), utc(2026, 12, 31, 17)),
        ("2026-Q1", utc(2025, 12, 31, 17), utc(2026, 3, 31, 17)),
        ("2026", utc(2025, 12, 31, 17), utc(2026, 12, 31, 17)),
        (" 2024-02 ", utc(2024, 1, 31, 17), utc(2024, 2, 29, 17)),
    ],
)
def test_periods_are_vietnam_calendar_periods(
    text: str, start: dt.datetime, end: dt.datetime
) -> None:
    assert parse_period(text) == (start, end)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2026-13", "month 13 is not 1-12"),
        ("2026-00", "month 0 is not 1-12"),
        ("2026-02-30", "day is out of range"),
        ("2026-W54", "ISO week 54 is not 1-53"),
        ("2025-W53", "ISO week 53 is not 1-52"),
        ("2026-Q5", "quarter 5 is not 1-4"),
        ("0001", "out of range"),
        ("november", "expected YYYY"),
        ("", "expected YYYY"),
        ("2026-11-25T00:00", "expected YYYY"),
        ("'; DROP TABLE sla_objects; --", "expected YYYY"),
    ],
)
def test_bad_periods_say_why(text: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        parse_period(text)


def test_current_period_reads_back() -> None:
    at = utc(2026, 12, 31, 18)  # already 1 January 2027 in Vietnam
    kinds: list[PeriodKind] = ["day", "week", "month", "quarter", "year"]
    assert [current_period(k, at) for k in kinds] == [
        "2027-01-01",
        "2026-W53",
        "2027-01",
        "2027-Q1",
        "2027",
    ]
    for kind in kinds:
        start, end = parse_period(current_period(kind, at))
        assert start <= at < end
