"""A stream worker SIGKILLed in the middle of a batch loses nothing and counts nothing twice
(a fault test: it kills a worker mid-run, so it runs in `make chaos`, like
test_leader_killed): the feed offsets are committed only after the database has the rows, so
the replacement replays the uncommitted rounds, and sequence numbers make the replay
idempotent. Reconciled against what the simulator sent."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import tables as t
from ioc.contract.topology import load_scenario
from ioc.simulators.run import SimConfig, Summary, run_simulation
from tests.support.db import landed, query
from tests.support.processes import Worker
from tests.support.reconcile import assert_accounting, reconcile
from tests.support.wait import wait_for

pytestmark = pytest.mark.chaos


def test_worker_restart_loses_nothing_and_counts_nothing_twice(
    namespace: Settings, tmp_path: Path
) -> None:
    """Sequence-number reconciliation across a SIGKILLed worker in the middle of the run."""
    asyncio.run(bootstrap(namespace, "demo"))
    worker = Worker(namespace, "demo", tmp_path / "worker.log").start()
    replacement: Worker | None = None
    try:
        result: dict[str, Summary] = {}

        def produce() -> None:
            result["summary"] = run_simulation(
                namespace,
                SimConfig(
                    scenario="demo",
                    mode="rate",
                    rate=1500,
                    duration_s=24,
                    progress=False,
                    fault_flags=["duplicate:0.02", "malformed:0.01", "late:0.01"],
                ),
            )

        thread = threading.Thread(target=produce)
        thread.start()
        time.sleep(10)
        worker.kill()  # mid-batch, no chance to commit
        replacement = Worker(namespace, "demo", tmp_path / "worker2.log", "w2").start()
        thread.join()
        summary = result["summary"]
        valid = sum(summary.stats.valid_by_feed.values())

        wait_for(
            lambda: landed(namespace) >= valid, 120, what=f"{valid} rows ({replacement.log_tail()})"
        )
        time.sleep(3)
        reconcile(namespace, summary, "worker SIGKILL mid-batch")
        assert_accounting(replacement)
        rows = query(
            namespace,
            " UNION ".join(f"SELECT DISTINCT device_id FROM {raw}" for raw in t.RAW.values()),
        )
        assert {r["device_id"] for r in rows} == set(load_scenario("demo").devices)
    finally:
        worker.stop()
        if replacement is not None:
            replacement.stop()
