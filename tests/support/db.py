"""Queries in a test namespace's database schema."""

from __future__ import annotations

import asyncio
from typing import Any

from ioc.config import Settings
from ioc.contract.tables import RAW
from ioc.db import connect

RAW_ROWS_SQL = (
    "SELECT count(*) AS n, count(DISTINCT (device_id, seq)) AS d FROM ("
    + " UNION ALL ".join(f"SELECT device_id, seq FROM {table}" for table in RAW.values())
    + ") x"
)
"""Rows landed in the raw tables and how many distinct (device, seq) they hold."""


async def fetch(settings: Settings, sql: str, *args: object) -> list[Any]:
    """Rows of ``sql`` as the schema owner, with the namespace's schema on the search path."""
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def query(settings: Settings, sql: str, *args: object) -> list[Any]:
    """:func:`fetch` from synchronous code."""
    return asyncio.run(fetch(settings, sql, *args))


def landed(settings: Settings) -> int:
    """Rows in the namespace's raw tables."""
    return int(query(settings, RAW_ROWS_SQL)[0]["n"])


def wait_incidents_resolved(
    settings: Settings, kinds: tuple[str, ...], at_least: int, timeout: float, what: str
) -> int:
    """Poll until ``at_least`` incidents of ``kinds`` are resolved (the faults of a run are
    over and the worker has judged them); their number. ``what`` says whose log to read."""
    from tests.support.wait import wait_for

    seen: list[str] = []

    def resolved() -> int | None:
        rows = query(
            settings,
            "SELECT id, root_device, kind, status, opened_at, resolved_at FROM incidents "
            "WHERE kind = ANY($1) ORDER BY id",
            list(kinds),
        )
        seen[:] = [
            f"#{r['id']} {r['kind']} {r['root_device']} {r['status']} "
            f"opened {r['opened_at']:%H:%M:%S} resolved {r['resolved_at'] or '-'}"
            for r in rows
        ]
        count = sum(r["status"] == "resolved" for r in rows)
        return count if count >= at_least else None

    awaited = f"{at_least} {'/'.join(kinds)} incidents resolved {what}"
    try:
        return wait_for(resolved, timeout, what=awaited)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; incidents: {seen or 'none'}") from None
