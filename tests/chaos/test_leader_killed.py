"""Singleton work moves when its worker dies, and never runs twice at once (a fault test:
it SIGKILLs a stream worker mid-round, so it runs in `make chaos`).

Two workers share the demo province; the one that leads its shard (state evaluation and
retention, ioc.streams.leader) is SIGKILLed while an outage is being judged. The other
takes the shard over within 30 s, and the outage still yields exactly one incident per root
cause, with every device's state history contiguous: no transition lost, none written twice.

The outage lasts 70 s. The new leader holds new outages until the feed backlog it may be
missing has landed (ioc.streams.evaluator), after its takeover and again after its feed
consumer's rebalance. In a full `make chaos` run on 2 busy cores, takeover plus holds took
longer than a 40 s outage, so the camera came back before any round could judge it. An
outage that ends before it is judged raises no incident; that is the hold's trade, not a
loss. The survivor's hold lines are printed so a slow run shows where its time went.
The lock semantics without a kill: tests/integration/test_leader.py.

In CI (and 2 of 7 local runs) the camera's "down" was judged and published, and the
agent's group committed past it, but no incident opened: Faust's stream skipped it during
the rebalance after the kill and acked it all the same. The leader now restates a device
whose last transition the agent has not applied (docs/streams.md, "Restated when
unapplied"); on a failure the test prints where the agent's group stands on each partition.
"""

from __future__ import annotations

import asyncio
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import tables as t
from ioc.contract.topology import load_scenario
from ioc.services.incidents import read_incident_events
from ioc.simulators.run import SimConfig, Summary, run_simulation
from tests.support.db import query, wait_incidents_resolved
from tests.support.kafka import incident_agent_positions
from tests.support.metrics import max_metric
from tests.support.processes import Worker
from tests.support.wait import wait_for

pytestmark = pytest.mark.chaos

SCENARIO = "demo"
NODE, CAMERA = "nn-992", "cam-991-001"  # the camera is not behind the node


_PRINTED = ("new outages", "leads shard", "lost the", "incident", "WARNING", "ERROR", "ecover")
"""Log lines printed after the run: the shard's terms and holds, incidents, faults."""


def _leader(workers: list[Worker]) -> Worker | None:
    leading = [w for w in workers if w.alive() and max_metric(w, "ioc_shard_leader") == 1]
    assert len(leading) <= 1, "two workers lead the same shard"
    return leading[0] if leading else None


def test_killing_the_leader_mid_round_moves_the_shard_and_loses_nothing(
    namespace: Settings, tmp_path: Path
) -> None:
    asyncio.run(bootstrap(namespace, SCENARIO))
    topology = load_scenario(SCENARIO)
    assert CAMERA not in topology.devices_behind(NODE)
    workers = [
        Worker(namespace, SCENARIO, tmp_path / "w1.log", "w1").start(),
        Worker(namespace, SCENARIO, tmp_path / "w2.log", "w2").start(),
    ]
    result: dict[str, Any] = {}

    def simulate() -> None:
        result["summary"] = run_simulation(
            namespace,
            SimConfig(
                scenario=SCENARIO,
                mode="realtime",
                duration_s=130,
                progress=False,
                fault_flags=[f"node_down:{NODE}@20+70", f"device_dark:{CAMERA}@20+70"],
            ),
        )

    simulator = threading.Thread(target=simulate)
    try:
        time.sleep(8)  # both workers in their groups
        simulator.start()
        leader = wait_for(lambda: _leader(workers), 60, what="a shard leader")
        # Mid-outage: the fault started at 20 s and is being judged every 5 s.
        time.sleep(28)
        rounds = max_metric(leader, "ioc_state_evaluation_seconds_count")
        assert rounds > 0, "the leader has run rounds"
        leader.kill()
        killed_at = time.monotonic()
        survivor = wait_for(lambda: _leader(workers), 60, what="a new shard leader")
        takeover = time.monotonic() - killed_at
        print(f"leader {leader.name} SIGKILLed; {survivor.name} leads after {takeover:.1f} s")
        assert survivor is not leader and takeover <= 30
        simulator.join()
        summary: Summary = result["summary"]
        assert summary.errors == 0

        try:
            wait_incidents_resolved(
                namespace, ("device-down", "site-isolated"), 2, 90, f"({survivor.log_tail()})"
            )
        except AssertionError:
            # where the missing incident stopped: judged (intervals), published (outbox)?
            for row in query(
                namespace,
                f"SELECT device_id, state, reason, start_ts, end_ts FROM "
                f"{t.DEVICE_STATE_INTERVALS} WHERE device_id = ANY($1) ORDER BY start_ts",
                [NODE, CAMERA],
            ):
                print(f"interval: {dict(row)}")
            for row in query(namespace, f"SELECT * FROM {t.DEVICE_EVENTS_OUTBOX} ORDER BY id"):
                print(f"unpublished: {dict(row)}")
            for line in asyncio.run(incident_agent_positions(namespace)):
                print(line)
            raise
    finally:
        for worker in workers:
            worker.stop()
        for worker in workers:
            for line in worker.log_text().splitlines():
                if any(s in line for s in _PRINTED):
                    print(f"{worker.name}: {line}")

    incidents = query(
        namespace,
        "SELECT root_device, kind, status FROM incidents "
        "WHERE kind IN ('device-down', 'site-isolated', 'flapping') ORDER BY id",
    )
    keys = [(r["root_device"], r["kind"]) for r in incidents]
    assert sorted(keys) == sorted(
        [(NODE, t.INCIDENT_SITE_ISOLATED), (CAMERA, t.INCIDENT_DEVICE_DOWN)]
    ), incidents
    # Contiguous history per device: starts unique and increasing, each interval ends where
    # the next starts, only the last one open.
    intervals = query(
        namespace,
        "SELECT device_id, state, reason, start_ts, end_ts FROM device_state_intervals "
        "ORDER BY device_id, start_ts",
    )
    by_device: dict[str, list[Any]] = {}
    for row in intervals:
        by_device.setdefault(row["device_id"], []).append(row)
    for device, rows in by_device.items():
        for before, after in pairwise(rows):
            assert before["end_ts"] == after["start_ts"], (device, rows)
            assert (before["state"], before["reason"]) != (after["state"], after["reason"]), (
                "transition written twice",
                device,
                rows,
            )
        assert rows[-1]["end_ts"] is None, (device, rows)
    # the incident stream saw each incident open once and resolve once, in that order
    log = asyncio.run(read_incident_events(namespace))
    for row in query(namespace, "SELECT id, status FROM incidents"):
        steps = [(e.seq, e.event) for e in log.of(row["id"])]
        wanted = (
            [(1, "opened"), (2, "resolved")] if row["status"] == "resolved" else [(1, "opened")]
        )
        assert steps == wanted, (row, steps)
    node_states = [r["state"] for r in by_device[NODE]]
    camera_states = [r["state"] for r in by_device[CAMERA]]
    assert t.STATE_DOWN in node_states and node_states[-1] == t.STATE_UP, node_states
    assert t.STATE_DOWN in camera_states and camera_states[-1] == t.STATE_UP, camera_states
