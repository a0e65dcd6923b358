"""The pipeline end to end on the real stack: simulators -> Kafka -> Faust workers -> DB."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from pathlib import Path

import pytest

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import tables as t
from ioc.contract.topology import load_scenario
from ioc.services.incidents import read_incident_events, send_command
from ioc.simulators.run import SimConfig, Summary, run_simulation
from tests.support.db import landed, query, wait_incidents_resolved
from tests.support.processes import Worker
from tests.support.reconcile import assert_accounting
from tests.support.wait import wait_for


def _lifecycles(settings: Settings) -> dict[int, list[str]]:
    """Incident id -> its events as ioc.incidents.v1 carries them, checked to be in order: per
    root cause the topic's order, and every incident's seq counting up from 1."""
    by_incident: dict[int, list[str]] = {}
    seqs: dict[int, list[int]] = {}
    log = asyncio.run(read_incident_events(settings))
    assert log.undecodable == 0
    for event in log.events:
        by_incident.setdefault(event.incident_id, []).append(event.event)
        seqs.setdefault(event.incident_id, []).append(event.seq)
    for incident_id, numbers in seqs.items():
        assert numbers == list(range(1, len(numbers) + 1)), (incident_id, numbers)
    return by_incident


def _expected_lifecycles(settings: Settings) -> dict[int, list[str]]:
    """What the incidents table says each incident went through."""
    expected: dict[int, list[str]] = {}
    for r in query(settings, "SELECT id, acknowledged_at, resolved_at FROM incidents"):
        steps = ["opened"]
        if r["acknowledged_at"] is not None:
            steps.append("acknowledged")
        if r["resolved_at"] is not None:
            steps.append("resolved")
        expected[r["id"]] = steps
    return expected


@pytest.fixture
def prepared(namespace: Settings) -> Settings:
    asyncio.run(bootstrap(namespace, "demo"))
    return namespace


FAST_HISTORY = {"history_every_s": 1.0, "history_settle_s": 0.0, "history_day_settle_s": 0.0}


def test_yen_bai_outages_produce_one_incident_each_with_the_right_root_cause(
    namespace: Settings, tmp_path: Path
) -> None:
    asyncio.run(bootstrap(namespace, "yen-bai-2022"))
    topo = load_scenario("yen-bai-2022")
    # the hourly and daily tiers within seconds of their minutes (docs/history.md)
    rolling = namespace.model_copy(update=FAST_HISTORY)
    worker = Worker(rolling, "yen-bai-2022", tmp_path / "worker.log").start()
    try:
        time.sleep(8)  # let the worker join its group
        node, camera = "nn-138-001", "cam-135-001"
        assert camera not in topo.devices_behind(node)
        started = time.time()
        result: dict[str, Summary] = {}

        def produce() -> None:
            result["summary"] = run_simulation(
                namespace,
                SimConfig(
                    scenario="yen-bai-2022",
                    mode="realtime",
                    duration_s=100,
                    progress=False,
                    fault_flags=[f"node_down:{node}@30+40", f"device_dark:{camera}@35+40"],
                ),
            )

        thread = threading.Thread(target=produce)
        thread.start()
        # an operator acknowledges the site-isolated incident while it is open: the command
        # goes through the incident agent like the transitions do
        isolated_sql = (
            "SELECT id FROM incidents WHERE root_device = $1 AND kind = 'site-isolated' "
            "AND status = 'open'"
        )
        wait_for(
            lambda: bool(query(namespace, isolated_sql, node)),
            90,
            what=f"site-isolated incident open ({worker.log_tail()})",
        )
        isolated_id = query(namespace, isolated_sql, node)[0]["id"]
        asyncio.run(send_command(namespace, topo, isolated_id, "acknowledge", "op-linh", "on it"))
        thread.join()
        summary = result["summary"]
        fault_start = {f["target"]: f["start_ms"] for f in summary.faults}
        assert summary.errors == 0

        wait_incidents_resolved(
            namespace, ("device-down", "site-isolated"), 2, 60, f"({worker.log_tail()})"
        )
        incidents = query(
            namespace,
            "SELECT * FROM incidents WHERE kind IN "
            "('device-down', 'site-isolated', 'flapping') ORDER BY id",
        )
        by_root = {(i["root_device"], i["kind"]): i for i in incidents}
        assert set(by_root) == {
            (node, t.INCIDENT_SITE_ISOLATED),
            (camera, t.INCIDENT_DEVICE_DOWN),
        }, incidents
        for (root, _kind), inc in by_root.items():
            opened_ms = inc["opened_at"].timestamp() * 1000
            delay = (opened_ms - fault_start[root]) / 1000
            print(f"incident {inc['kind']} {root}: opened {delay:.1f} s after the fault")
            assert 0 <= delay <= 30
            assert inc["resolved_at"] is not None
        assert by_root[(node, t.INCIDENT_SITE_ISOLATED)]["acknowledged_by"] == "op-linh"
        # every incident's life is on ioc.incidents.v1, in order per root cause
        wait_for(
            lambda: _lifecycles(namespace) == _expected_lifecycles(namespace),
            30,
            what="incident events for every incident step",
        )
        lifecycles = _lifecycles(namespace)
        print(f"incident events: {lifecycles}")
        assert lifecycles[isolated_id] == ["opened", "acknowledged", "resolved"]
        assert lifecycles[by_root[(camera, t.INCIDENT_DEVICE_DOWN)]["id"]] == [
            "opened",
            "resolved",
        ]
        assert set(by_root[(node, t.INCIDENT_SITE_ISOLATED)]["affected"]) == set(
            topo.devices_behind(node)
        )
        # devices behind the node were unreachable-upstream, never down
        behind = topo.devices_behind(node)
        states = query(
            namespace,
            "SELECT device_id, state FROM device_state_intervals "
            "WHERE device_id = ANY($1::text[]) AND start_ts >= $2",
            behind,
            dt.datetime.fromtimestamp(started, dt.UTC),
        )
        assert {r["state"] for r in states} <= {t.STATE_UNREACHABLE, t.STATE_UP, t.STATE_UNKNOWN}
        assert any(r["state"] == t.STATE_UNREACHABLE for r in states)
        # rollups at every level of the hierarchy
        levels = query(namespace, "SELECT DISTINCT level FROM unit_rollup_camera_1m")
        assert {r["level"] for r in levels} == {0, 1, 2}
        raw = query(namespace, "SELECT count(*) AS n FROM raw_netnode")
        assert raw[0]["n"] > 1000
        for table in (
            "unit_rollup_telehealth_1m",
            "unit_rollup_netnode_1m",
            "rollup_camera_1m",
        ):
            assert query(namespace, f"SELECT count(*) AS n FROM {table}")[0]["n"] > 0, table
        for table in ("unit_rollup_camera_1h", "rollup_netnode_1h", "unit_rollup_camera_1d"):

            def filled(table: str = table) -> bool:
                return bool(query(namespace, f"SELECT count(*) AS n FROM {table}")[0]["n"] > 0)

            what = f"the history round to fill {table} ({worker.log_tail()})"
            wait_for(filled, 30, what=what)
    finally:
        worker.stop()


def _metric(worker: Worker, name: str) -> float:
    assert worker.metrics_url(), worker.log_tail()
    return worker.metric_totals().get(name, 0.0)


def test_two_workers_share_the_partitions_and_survive_a_rebalance(
    namespace: Settings, tmp_path: Path
) -> None:
    asyncio.run(bootstrap(namespace, "demo"))
    first = Worker(namespace, "demo", tmp_path / "w1.log", "w1").start()
    second = Worker(namespace, "demo", tmp_path / "w2.log", "w2").start()
    try:
        import threading

        result: dict[str, Summary] = {}
        thread = threading.Thread(
            target=lambda: result.setdefault(
                "s",
                run_simulation(
                    namespace,
                    SimConfig(
                        scenario="demo", mode="rate", rate=1500, duration_s=30, progress=False
                    ),
                ),
            )
        )
        time.sleep(12)  # both in the group
        thread.start()
        wait_for(
            lambda: (
                _metric(first, "ioc_events_consumed_total") > 0
                and _metric(second, "ioc_events_consumed_total") > 0
            ),
            40,
            what="both workers consuming",
        )
        shares = (
            _metric(first, "ioc_events_consumed_total"),
            _metric(second, "ioc_events_consumed_total"),
        )
        print(f"consumed while both ran: w1 {shares[0]:.0f}, w2 {shares[1]:.0f}")
        second.stop()  # graceful leave: its partitions move to the first worker
        thread.join()
        summary = result["s"]
        valid = sum(summary.stats.valid_by_feed.values())

        wait_for(lambda: landed(namespace) >= valid, 120, what=f"{valid} rows ({first.log_tail()})")
        assert landed(namespace) == valid
        assert_accounting(first)
    finally:
        first.stop()
        second.stop()
