"""Chaos: TimescaleDB stopped for 60 s in the middle of a run.

Workers must back off and retry, not commit offsets for unwritten data, not crash-loop;
the stale-data signal must rise; after the restart everything produced lands exactly once.
Run with `make chaos` (it stops a shared service, so it is not part of the normal suite).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract.thresholds import THRESHOLDS
from ioc.deploy.local.stack import Stack
from tests.support.processes import Worker

from .faults import Production, firing, instant

pytestmark = pytest.mark.chaos


def test_database_down_for_60_s_loses_nothing(namespace: Settings, tmp_path: Path) -> None:
    asyncio.run(bootstrap(namespace, "demo"))
    db = Stack(namespace).timescaledb
    worker = Worker(namespace, "demo", tmp_path / "worker.log").start()
    try:
        time.sleep(10)
        production = Production(namespace, 120)
        time.sleep(20)
        db.down(print)
        outage_started = time.monotonic()
        stale_seen = 0.0
        alert_fired = False
        # at least 60 s; longer only until DataStale had its chance: the stale threshold, its
        # `for:`, one health tick, one scrape, one evaluation, and slack for a loaded machine
        th = THRESHOLDS
        alert_due = (
            th.data_stale_s
            + th.alerts["DataStale"].for_s
            + 5
            + th.scrape_interval_s
            + th.evaluation_interval_s
            + 15
        )
        while (elapsed := time.monotonic() - outage_started) < 60 or (
            not alert_fired and elapsed < alert_due
        ):
            stale_seen = max(
                stale_seen,
                instant(namespace, f'max(ioc_event_freshness_seconds{{pid="{worker.pid}"}})'),
            )
            alert_fired = alert_fired or firing(namespace, "DataStale")
            assert worker.alive(), f"worker died during the outage:\n{worker.log_tail()}"
            time.sleep(5)
        db.up(print)
        production.finish_and_reconcile(worker, "database down 60 s")
        print(f"freshness reached {stale_seen:.0f} s during the outage")
        assert stale_seen >= 30
        assert alert_fired, f"DataStale did not fire within {alert_due} s of the outage"
        assert worker.alive()
    finally:
        if db.pid() is None:
            db.up(print)
        worker.stop()
