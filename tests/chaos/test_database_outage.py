"""Chaos: TimescaleDB stopped for 60 s in the middle of a run.

Workers must back off and retry, not commit offsets for unwritten data, not crash-loop;
the stale-data signal must rise; after the restart everything produced lands exactly once.
Run with `make chaos` (it stops a shared service, so it is not part of the normal suite).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ioc.config import Settings
from ioc.deploy.local.stack import Stack
from ioc.simulators.run import SimConfig, run_simulation
from ioc.streams.cli import prepare

from ..integration.workers import Worker, landed, reconcile, wait_for

pytestmark = pytest.mark.chaos


def instant(settings: Settings, expr: str) -> float:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{settings.prometheus_url}/api/v1/query?{q}", timeout=10) as resp:
        result = json.loads(resp.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def test_database_down_for_60_s_loses_nothing(namespace: Settings, tmp_path: Path) -> None:
    asyncio.run(prepare(namespace, "demo"))
    db = Stack(namespace).timescaledb
    worker = Worker(namespace, "demo", tmp_path / "worker.log").start()
    try:
        time.sleep(10)
        result: dict[str, object] = {}
        thread = threading.Thread(
            target=lambda: result.setdefault(
                "s",
                run_simulation(
                    namespace,
                    SimConfig(
                        scenario="demo",
                        mode="rate",
                        rate=400,
                        duration_s=120,
                        progress=False,
                        fault_flags=["malformed:0.01"],
                    ),
                ),
            )
        )
        thread.start()
        time.sleep(20)
        db.down(print)
        outage_started = time.monotonic()
        stale_seen = 0.0
        alert_fired = False
        while time.monotonic() - outage_started < 60:
            assert worker.proc is not None
            stale_seen = max(
                stale_seen,
                instant(namespace, f'max(ioc_event_freshness_seconds{{pid="{worker.proc.pid}"}})'),
            )
            alert_fired = (
                alert_fired
                or instant(namespace, 'count(ALERTS{alertname="DataStale", alertstate="firing"})')
                > 0
            )
            assert worker.alive(), f"worker died during the outage:\n{worker.log()}"
            time.sleep(5)
        db.up(print)
        thread.join()
        summary = result["s"]
        valid = sum(summary.stats.valid_by_feed.values())  # type: ignore[attr-defined]

        wait_for(
            lambda: landed(namespace) >= valid,
            180,
            interval=2,
            what=f"{valid} rows after the outage ({worker.log()})",
        )
        reconcile(namespace, summary, "database down 60 s")
        print(f"freshness reached {stale_seen:.0f} s during the outage")
        assert stale_seen >= 30
        assert alert_fired, "DataStale did not fire during the outage"
        assert worker.alive()
    finally:
        if db.pid() is None:
            db.up(print)
        worker.stop()
