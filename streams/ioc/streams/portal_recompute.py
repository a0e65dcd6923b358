"""``ioc portal recompute``: rebuild the portal's daily KPIs (and so its monthly and
quarterly ones, which are views over them) for a period from the raw events, which the feed
keeps for ``FeedSpec.raw_retention_days``: after a long LGSP outage, a corrected import, or a
change of the KPI definitions (docs/portal.md)."""

from __future__ import annotations

import datetime as dt
import re

import asyncpg

from ioc.contract import portal as p
from ioc.errors import IocError

VN = dt.timezone(dt.timedelta(hours=7))

_QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$", re.IGNORECASE)


def period_days(period: str) -> tuple[dt.date, dt.date]:
    """``2026Q3`` / ``2026-Q3``, ``2026-11`` or ``2026-11-26``: its first and last day."""
    q = _QUARTER.match(period.strip())
    try:
        if q:
            year, quarter = int(q[1]), int(q[2])
            first = dt.date(year, 3 * quarter - 2, 1)
            after = dt.date(year + (quarter == 4), (3 * quarter) % 12 + 1, 1)
            return first, after - dt.timedelta(days=1)
        if re.match(r"^\d{4}-\d{2}$", period):
            first = dt.date.fromisoformat(f"{period}-01")
            after = (first + dt.timedelta(days=32)).replace(day=1)
            return first, after - dt.timedelta(days=1)
        day = dt.date.fromisoformat(period)
        return day, day
    except ValueError:
        pass
    raise IocError(f"period {period!r}: expected 2026Q3, 2026-11 or 2026-11-26")


def day_minutes(first: dt.date, last: dt.date) -> list[dt.datetime]:
    """One instant per Vietnam-time day in ``[first, last]`` (noon), for the refresh."""
    days = (last - first).days + 1
    if days < 1:
        raise IocError(f"empty range {first}..{last}")
    return [dt.datetime.combine(first + dt.timedelta(days=i), dt.time(12), VN) for i in range(days)]


async def recompute(conn: asyncpg.Connection, first: dt.date, last: dt.date) -> int:
    """Rebuild ``portal_kpi_daily`` for the Vietnam-time days ``first``..``last`` from the raw
    rows (in one transaction); returns the (unit, day) rows written."""
    async with conn.transaction():
        n: int = await conn.fetchval(
            f"SELECT {p.KPI_REFRESH}($1::timestamptz[])", day_minutes(first, last)
        )
    return n
