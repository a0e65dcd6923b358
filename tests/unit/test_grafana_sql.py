"""Panels' SQL expanded as Grafana would send it: the interval Grafana picks for a range
decides the rollup tier a time series reads, so the benchmark must pick the same."""

from __future__ import annotations

import datetime as dt

import pytest

from ioc.contract.history import choose_tier
from ioc.dashboards.grafana_sql import expand_sql, grafana_interval_ms, interval_text

NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
KEPT = {"1m": dt.timedelta(days=2), "1h": dt.timedelta(days=90), "1d": dt.timedelta(days=400)}


@pytest.mark.parametrize(
    ("days", "interval", "series_tier", "table_tier"),
    [
        (1, "1m", "1m", "1h"),
        (7, "10m", "1h", "1h"),
        (30, "30m", "1h", "1d"),
        (90, "2h", "1h", "1d"),
    ],
)
def test_each_range_gets_grafanas_interval_and_its_tier(
    days: int, interval: str, series_tier: str, table_tier: str
) -> None:
    t0 = NOW - dt.timedelta(days=days)
    ms = grafana_interval_ms(t0, NOW)
    assert interval_text(ms) == interval
    assert choose_tier(KEPT, t0, NOW, NOW, dt.timedelta(milliseconds=ms)) == series_tier
    assert choose_tier(KEPT, t0, NOW, NOW) == table_tier


def test_macros_and_variables_expand_and_a_missing_variable_is_named() -> None:
    sql = (
        "SELECT time_bucket('$__interval', bucket), $__interval_ms FROM t "
        "WHERE $__timeFilter(bucket) AND unit = '$unit' AND bucket < $__timeTo()"
    )
    t0 = NOW - dt.timedelta(hours=1)
    assert expand_sql(sql, t0, NOW, {"unit": "15"}, 300_000) == (
        "SELECT time_bucket('5m', bucket), 300000 FROM t WHERE bucket BETWEEN "
        "'2026-11-28T11:00:00Z' AND '2026-11-28T12:00:00Z' AND unit = '15' "
        "AND bucket < '2026-11-28T12:00:00Z'"
    )
    with pytest.raises(ValueError, match="unexpanded"):
        expand_sql(sql, t0, NOW, {})
    assert [interval_text(ms) for ms in (500, 15_000, 86_400_000, 604_800_000)] == [
        "500ms",
        "15s",
        "1d",
        "1w",
    ]
