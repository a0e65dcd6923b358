"""The portal's KPI gauges (docs/portal.md).

The shard leader exports, after its evaluation round and at most every
:attr:`PortalKpis.every_s`, two gauges per unit (every level) from which the portal's alerts
are written: the share of dossiers resolved on time over the last
``Thresholds.portal_ontime_days`` Vietnam-time days (from ``portal_kpi_daily``, which the
rollup round keeps current from the raw rows) and the share of online payments that succeeded
over the last ``Thresholds.portal_payment_window_s`` (from the unit 1-minute rollup). A unit
with too few dossiers or payments in its window gets no sample: no ratio from three dossiers.

Recomputing a period's KPIs from raw is :mod:`ioc.streams.portal_recompute`.
"""

from __future__ import annotations

import logging
import time

import asyncpg

from ioc.contract import metrics as m
from ioc.contract import portal as p
from ioc.contract.feeds import Feed
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.contract.topology import Topology
from ioc.observability import gauge

log = logging.getLogger(__name__)


def ontime_sql() -> str:
    """Per unit: (resolved on time, resolved) over the last ``$1`` Vietnam-time days."""
    return (
        f"SELECT unit_code, sum(resolved_on_time)::bigint AS ok, sum(resolved)::bigint AS n "
        f"FROM {p.KPI_DAILY} "
        f"WHERE day > (now() AT TIME ZONE '{p.LOCAL_TZ}')::date - $1::int GROUP BY unit_code"
    )


def payment_sql() -> str:
    """Per unit: (payments succeeded, attempted) over the last ``$1`` seconds of event time."""
    table = f"unit_rollup_{Feed.PORTAL}_1m"
    return (
        f"SELECT unit_code, sum(pay_succeeded)::bigint AS ok, sum(pay_attempted)::bigint AS n "
        f"FROM {table} WHERE bucket > now() - make_interval(secs => $1) GROUP BY unit_code"
    )


class PortalKpis:
    """The leader's portal KPI gauges (no portal devices in the topology: nothing to do)."""

    every_s = 15.0

    def __init__(
        self, topology: Topology, pool: asyncpg.Pool, thresholds: Thresholds | None = None
    ) -> None:
        self.topology = topology
        self.pool = pool
        self.th = thresholds or THRESHOLDS
        self.enabled = bool(topology.devices_of(Feed.PORTAL))
        self.ontime = gauge(m.PORTAL_ONTIME_RATIO)
        self.payments = gauge(m.PORTAL_PAYMENT_SUCCESS_RATIO)
        self._next = 0.0

    async def maybe_export(self) -> bool:
        """Export when due; returns whether it did."""
        if not self.enabled or time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self.every_s
        await self.export()
        return True

    async def export(self) -> None:
        th = self.th
        async with self.pool.acquire() as conn:
            ontime = await conn.fetch(ontime_sql(), th.portal_ontime_days)
            paid = await conn.fetch(payment_sql(), float(th.portal_payment_window_s))
        self._set(self.ontime, ontime, th.portal_ontime_min_resolved)
        self._set(self.payments, paid, th.portal_payment_min_attempts)

    def _set(self, target: object, rows: list[asyncpg.Record], minimum: int) -> None:
        from prometheus_client import Gauge

        assert isinstance(target, Gauge)
        target.clear()
        for r in rows:
            unit = self.topology.units.get(r["unit_code"])
            if unit is None or (r["n"] or 0) < max(1, minimum):
                continue
            target.labels(unit.code, unit.name, unit.level_name).set(r["ok"] / r["n"])

    def clear_gauges(self) -> None:
        self.ontime.clear()
        self.payments.clear()
