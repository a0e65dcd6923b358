"""Chaos: the primary of the replicated database is SIGKILLed mid-run; pg_auto_failover
promotes the synchronous standby and the worker carries on without a restart.

The stack's replicated mode (``ioc stack up --database ha``: a monitor and two TimescaleDB
nodes, deploy/ioc/deploy/local/postgres_ha.py) is brought up for this test and stopped after
it. The worker reaches the database through the multi-host DSN
(``target_session_attrs=read-write``); the test only kills, the monitor decides the failover.
Offsets are committed after the database commit and the standby is synchronous, so the
reconciliation must find nothing lost and nothing doubled. Reports the write pause: the
longest gap between two transactions that landed rows.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ioc.bootstrap import bootstrap, drop_schema
from ioc.config import Settings
from ioc.contract.tables import RAW
from ioc.deploy.local.postgres_ha import HaMonitor, HaNode, ha_services, primary
from tests.support.db import query
from tests.support.processes import Worker
from tests.support.wait import wait_for

from .faults import Production

pytestmark = pytest.mark.chaos

PAUSE_SQL = (
    "SELECT coalesce(max(gap), 0) AS pause, "
    "(array_agg(t ORDER BY gap DESC NULLS LAST))[1] AS resumed FROM ("
    "SELECT t, extract(epoch FROM t - lag(t) OVER (ORDER BY t)) AS gap FROM ("
    + " UNION ".join(f"SELECT DISTINCT ingested_at AS t FROM {table}" for table in RAW.values())
    + ") x) y"
)
"""Longest time between two transactions that stored rows (``ingested_at`` is ``now()``,
the transaction's start), and when writing resumed after it."""


WRITABLE = ("wait_primary", "primary")
"""The monitor's states of a node that commits (alone, or with its synchronous standby)."""


def whole(monitor: HaMonitor) -> bool:
    """A primary and a synchronous secondary, as the monitor sees them."""
    states = sorted(reported for reported, goal in monitor.states().values() if reported == goal)
    return states == ["primary", "secondary"]


def test_primary_killed_standby_promoted_loses_nothing(namespace: Settings, tmp_path: Path) -> None:
    ha = namespace.model_copy(update={"database_ha": True})
    monitor, *nodes = ha_services(ha)
    for svc in (monitor, *nodes):
        svc.up(print)
    worker: Worker | None = None
    killed: HaNode | None = None
    try:
        wait_for(lambda: whole(monitor), 120, interval=1, what="a primary and a secondary")
        old = primary(ha)
        assert old is not None
        sync = old.probe()[2]["synchronous_standby_names"]
        commit = query(ha, "SHOW synchronous_commit")[0]["synchronous_commit"]
        print(
            f"before: {old.name} primary, synchronous_standby_names={sync!r}, "
            f"synchronous_commit={commit}"
        )
        assert sync.startswith("ANY 1 (pgautofailover_standby_"), sync
        assert commit == "on"

        asyncio.run(bootstrap(ha, "demo"))
        worker = Worker(ha, "demo", tmp_path / "worker.log").start()
        time.sleep(10)
        production = Production(ha, 75)
        time.sleep(20)
        killed = old
        old.kill()
        killed_at = time.monotonic()
        print(f"SIGKILLed {old.name} (keeper and postgres)")
        promoted = wait_for(
            lambda: (p := primary(ha)) is not None and p.name != old.name and p,
            90,
            interval=0.5,
            what="the standby promoted by the monitor",
        )
        assert isinstance(promoted, HaNode)
        promoted_after = time.monotonic() - killed_at
        # Promoted is not yet writable: the monitor holds the new primary's commits until
        # the old one has had primary_demote_timeout to demote itself (no split brain).
        wait_for(
            lambda: monitor.states().get(promoted.name, ("", ""))[0] in WRITABLE,
            90,
            interval=0.5,
            what=f"{promoted.name} accepting writes",
        )
        writable_after = time.monotonic() - killed_at
        print(
            f"{promoted.name} promoted by pg_auto_failover {promoted_after:.1f} s after the "
            f"kill, accepting writes after {writable_after:.1f} s; {monitor.probe()[1]}"
        )
        production.finish_and_reconcile(worker, "primary SIGKILLed, standby promoted")
        assert worker.alive(), "the worker had to restart"
        pause = query(ha, PAUSE_SQL)[0]
        print(
            f"write pause (longest gap between landed transactions): {pause['pause']:.1f} s; "
            f"promoted {promoted_after:.1f} s, writable {writable_after:.1f} s after the kill"
        )
        assert float(pause["pause"]) < 60
    finally:
        if worker is not None:
            worker.stop()
        try:
            if killed is not None:  # the old primary rejoins as the standby (pg_rewind)
                killed.up(print)
                wait_for(lambda: whole(monitor), 120, interval=1, what="the old primary rejoined")
                print(f"rejoined: {monitor.probe()[1]}")
            asyncio.run(drop_schema(ha))
        finally:  # the replicated database runs only for this test
            for svc in reversed((monitor, *nodes)):
                svc.down(print)
