"""A panel's SQL as Grafana's PostgreSQL datasource runs it: macros, interval and template
variables expanded for one time range.

The live dashboard tests run every panel this way against real data, and ``bench/history.py``
times them over 24 h to 90 d of history; both need the text Grafana would send, including
the ``$__interval`` Grafana picks for the range (:func:`grafana_interval_ms`), since that
decides which rollup tier a time series reads (docs/history.md section 4).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import asyncpg

MAX_DATA_POINTS = 1000
"""Grafana's default for a panel: about its width in pixels (a half-width panel on a wall
screen). ``$__interval`` is the range over this, rounded."""

_ROUNDED_MS: tuple[tuple[int, int], ...] = (
    # Grafana's rangeutil.roundInterval: (at most this many ms, use this interval)
    (10, 1),
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)


def grafana_interval_ms(
    t0: dt.datetime, t1: dt.datetime, max_data_points: int = MAX_DATA_POINTS
) -> int:
    """``$__interval_ms`` for a panel over [t0, t1]: the range over the data points, rounded
    to Grafana's steps."""
    raw = (t1 - t0).total_seconds() * 1000 / max_data_points
    for limit, interval in _ROUNDED_MS:
        if raw <= limit:
            return interval
    return 31_536_000_000  # a year


def interval_text(ms: int) -> str:
    """``$__interval`` as Grafana writes it (``500ms``, ``30s``, ``5m``, ``12h``, ``1d``,
    ``1w``): PostgreSQL reads each as an interval."""
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    if ms >= 1000 and ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def expand_sql(
    sql: str,
    t0: dt.datetime,
    t1: dt.datetime,
    variables: Mapping[str, str],
    interval_ms: int = 60_000,
) -> str:
    """Grafana's PostgreSQL macros and template variables, as Grafana expands them.

    ValueError: a ``$`` left over (a variable without a value)."""

    def ts(value: dt.datetime) -> str:
        return f"'{value.strftime('%Y-%m-%dT%H:%M:%SZ')}'"

    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m[1]} BETWEEN {ts(t0)} AND {ts(t1)}", sql
    )
    sql = sql.replace("$__timeFrom()", ts(t0)).replace("$__timeTo()", ts(t1))
    sql = sql.replace("$__interval_ms", str(interval_ms))
    sql = sql.replace("$__interval", interval_text(interval_ms))
    for name, value in variables.items():
        sql = sql.replace(f"${name}", value)
    if "$" in sql:
        raise ValueError(f"unexpanded variable in: {sql}")
    return sql


async def resolve_variables(
    conn: asyncpg.Connection,
    dash: Mapping[str, Any],
    t0: dt.datetime,
    t1: dt.datetime,
    preset: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every template variable of ``dash`` as Grafana first resolves it: a constant's value
    (the console's address), a fixed list's first entry, a query's first row, which must
    exist (ValueError). ``preset`` values win; their queries must still return rows."""
    variables = dict(preset or {})
    for var in dash["templating"]["list"]:
        name = var["name"]
        if var["type"] == "constant":
            variables.setdefault(name, var["query"])
        elif var["type"] == "custom":
            variables.setdefault(name, var["query"].split(",")[0].strip())
        else:
            rows = await conn.fetch(expand_sql(var["query"], t0, t1, variables))
            if not rows:
                raise ValueError(f"{dash['title']}: variable {name} resolves to nothing")
            first = rows[0]
            variables.setdefault(name, str(first["__value"] if "__value" in first else first[0]))
    return variables
