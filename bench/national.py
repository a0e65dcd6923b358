"""National: the 34 provinces through the three-broker local stack with four workers.

Issue 17 item 5 (``make national``, not in CI): the ``national`` scenario (100,110 devices)
in a private namespace with per-province Kafka topics, users, ACLs and quotas
(``IOC_KAFKA_PROVINCE_TOPICS``) on the three-node KRaft cluster of the local stack
(``ioc stack up --brokers 3``: replication factor 3, ``min.insync.replicas=2``), consumed by
``--workers`` ``ioc worker`` processes, while these faults happen:

- ``--outage-at``: a node of one province (``--outage-province``) goes dark for
  ``--outage-s`` s with everything behind it (a replayed ``node_down``,
  ioc.simulators.replay): one site-isolated incident must open in that province, and
  resolve, and no other incident anywhere;
- ``--kill-worker-at``: SIGKILL of a worker and a replacement started;
- ``--kill-broker-at``: SIGKILL of the broker that leads the most of the namespace's feed
  partitions, restarted 10 s later.

The load is the simulators' output replayed (``--replay-cycle``: a third of their CPU per
event) at ``--rate`` events/s. Below the scenario's natural ~29,500 events/s every device
reports at its natural period stretched by natural / rate, and the workers' timeouts that
count report periods are stretched as much (``IOC_THRESHOLDS``, :func:`stretched_thresholds`):
the same country on a slower clock. Without that, a rate under about 40 % of natural would
put a camera's 5 s heartbeat past its 15 s timeout. At 16,000 and 12,000 events/s these 2
cores (three broker JVMs, PostgreSQL, four workers and the load) fell behind, and so did
8,000 with the shared topics (by about 700 events/s): devices on lagging partitions looked
silent. At 5,000 the data held but the judgement did not: the shard leader, one of four
workers on saturated cores, ran its rounds 65-141 s apart. The default, 3,000 (stretch
about 10: heartbeat timeouts 147 s, a node confirmed after 98 s of failed probes), leaves
the leader room to judge, and the outage (6 minutes) and the faults are timed to it.

Judged after the load has drained (every verdict must hold):

- reconciliation: every valid event stored exactly once (sequence numbers per device);
- spread: every live worker owned feed partitions (the group's assignment, from Kafka);
- states: every device of every province has a state, and none is down, unreachable or
  flapping at the end (``unknown``, never heard from, is counted apart: a device whose
  stretched period is longer than the replay cycle may not report in it, e.g. a portal
  desk's 60 s dossier period);
- rollups: per province and feed, the 1-minute per-device rollup has every device that
  landed raw rows, and the per-unit rollup has the province itself;
- incidents: exactly the outage's site-isolated incident, in its province, resolved;
- isolation: two provinces' read-only roles (the outage's and the largest) see exactly their
  own devices and incidents and none of the other's, and every panel of every committed
  dashboard they may read runs for them over the run's range (rows are counted).

    .venv/bin/python bench/national.py [--rate 16000] [--duration 600]

Prints a table and writes bench/results/national.json (+ national.png); ``--out`` writes
elsewhere (a short trial must not replace the committed result). Needs the local stack's
database (``ioc stack up``); starts the three-node Kafka cluster and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import logging
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_machine import machine, percentile, results_dir
from soak import CpuMeter, KafkaLag, Pool, note, reconcile

from ioc.bootstrap import bootstrap, drop_namespace
from ioc.config import Settings, load_settings
from ioc.contract import feeds
from ioc.contract import metrics as m
from ioc.contract import tables as t
from ioc.contract.topics import FEED_TOPICS, province_topics
from ioc.contract.topology import Topology, load_scenario
from ioc.dashboards.build import GENERATED
from ioc.dashboards.grafana_sql import expand_sql, grafana_interval_ms, resolve_variables
from ioc.db import connect
from ioc.db.provinces import viewer_connection
from ioc.deploy.local.kafka_cluster import KafkaNode
from ioc.deploy.local.stack import Stack
from ioc.kafka_clients import librdkafka_admin
from ioc.processes import stop_all
from ioc.simulators.replay import describe
from ioc.simulators.run import SimConfig, Summary, run_simulation

RESULTS = results_dir()
SCENARIO = "national"
BROKER_DOWN_S = 10.0
BROKER_READY_S = 360.0
"""How long the restarted broker may take to be ready: on 2 saturated cores it replays its
metadata snapshot and its partitions' logs with a small share of a core (about 100 s after
launch in the 21:32 run of 2026-11-28, past the stack's 120 s when the load is heavier)."""
SETTLE_S = 30.0
"""After the lag is 0: the leader's next rounds judge the devices that came back."""


def stretched_thresholds(topology: Topology, rate: float) -> tuple[float, str]:
    """(stretch, ``IOC_THRESHOLDS``): below the scenario's natural rate the replay stretches
    every report period by natural / rate, so the workers' timeouts that count in report
    periods (heartbeat timeouts, a failing node's confirmation and upstream wait) stretch by
    as much; at or above it, none do. The whole run is then the same province at a slower
    clock: outages are judged after the same number of missed reports."""
    from ioc.contract.thresholds import THRESHOLDS
    from ioc.simulators.behaviour import natural_rate

    stretch = max(1.0, natural_rate(topology) / rate)
    if stretch == 1.0:
        return stretch, ""
    changes = {
        "heartbeat_timeout_ms": {
            cls: round(ms * stretch) for cls, ms in THRESHOLDS.heartbeat_timeout_ms.items()
        },
        "node_down_confirm_ms": round(THRESHOLDS.node_down_confirm_ms * stretch),
        "confirm_upstream_ms": round(THRESHOLDS.confirm_upstream_ms * stretch),
    }
    return stretch, json.dumps(changes)


# --- the faults ------------------------------------------------------------------------------
def outage_node(topology: Topology, province: str) -> tuple[str, int]:
    """The province's node with the most devices behind it, below the province's own hub
    (a commune or district site: what a fibre cut takes down)."""
    best: tuple[int, str] | None = None
    for device in topology.devices_of("netnode"):
        if topology.province_of(device.id) != province or device.upstream is None:
            continue
        behind = len(topology.devices_behind(device.id))
        if best is None or behind > best[0]:
            best = (behind, device.id)
    if best is None:
        raise SystemExit(f"province {province} has no node below its hub")
    return best[1], best[0]


def namespace_partitions(settings: Settings, topology: Topology) -> list[str]:
    """The namespace's feed topics: the shared ones and, when on, every province's."""
    shared = [settings.topic(spec.name) for spec in FEED_TOPICS.values()]
    if not settings.kafka_province_topics:
        return shared
    return shared + [settings.topic(spec.name) for spec in province_topics(topology)]


def busiest_leader(settings: Settings, topics: list[str]) -> tuple[int, dict[int, int]]:
    """The node leading the most of ``topics``' partitions, with the count per node."""
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient(librdkafka_admin(settings)).list_topics(timeout=10)
    leaders: Counter[int] = Counter()
    for name in topics:
        for partition in metadata.topics[name].partitions.values():
            leaders[partition.leader] += 1
    return leaders.most_common(1)[0][0], dict(sorted(leaders.items()))


def kill_broker(settings: Settings, nodes: dict[int, KafkaNode], topics: list[str]) -> str:
    victim, leaders = busiest_leader(settings, topics)
    node = nodes[victim]
    assert node.kill() is not None, f"{node.name} is not running"
    time.sleep(BROKER_DOWN_S)
    started = time.monotonic()
    node.start_timeout = max(node.start_timeout, BROKER_READY_S)
    node.up(lambda line: note(f"    {node.name}: {line}"))
    return (
        f"{node.name} (leader of {leaders[victim]} of {sum(leaders.values())} partitions) "
        f"SIGKILLed, down {BROKER_DOWN_S:.0f} s, up again in {time.monotonic() - started:.0f} s"
    )


def kill_worker(pool: Pool) -> str:
    """SIGKILL the second worker (not the first: one lives through the run), replace it."""
    alive = pool.alive()
    victim = alive[1] if len(alive) > 1 else alive[0]
    victim.proc.kill()
    victim.ended_t = pool.t0()
    replacement = pool.start()
    replacement.proc.wait_serving(180)
    return f"killed {victim.proc.name} (pid {victim.proc.pid}), {replacement.proc.name} serving"


# --- what is checked after the drain ---------------------------------------------------------
def assignment(settings: Settings) -> dict[str, int]:
    """Feed partitions per member of the feed group (client id -> count), from Kafka."""
    from confluent_kafka.admin import AdminClient

    from ioc.streams.consumer import consumer_group

    group = consumer_group(settings)
    admin = AdminClient(librdkafka_admin(settings))
    described = admin.describe_consumer_groups([group])[group].result(timeout=15)
    out: dict[str, int] = {}
    for member in described.members:
        key = f"{member.client_id}@{member.host}/{member.member_id[-6:]}"
        out[key] = len(member.assignment.topic_partitions) if member.assignment else 0
    return out


def devices_per_province(topology: Topology) -> Counter[str]:
    """How many devices each province has (what its states and viewer must account for)."""
    return Counter(map(topology.province_of, topology.devices))


async def _check_database(
    settings: Settings, topology: Topology, since: dt.datetime, outage: dict[str, Any]
) -> dict[str, Any]:
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        provinces = topology.top_units()
        devices_of = devices_per_province(topology)
        # states
        states: dict[str, Counter[str]] = {p: Counter() for p in provinces}
        for row in await conn.fetch(f"SELECT device_id, state FROM {t.DEVICE_STATE}"):
            if row["device_id"] in topology.devices:
                states[topology.province_of(row["device_id"])][row["state"]] += 1
        # rollups: per feed, which devices and which provinces have 1-minute rows
        rollups: dict[str, dict[str, Any]] = {}
        for spec in feeds.specs():
            # every device that landed raw rows must be in the rollup (a replay may leave a
            # device with a stretched period longer than its cycle silent: no rows, no rollup)
            wanted = Counter(
                topology.province_of(r[0])
                for r in await conn.fetch(
                    f"SELECT DISTINCT device_id FROM {spec.raw_table} WHERE ts >= $1", since
                )
                if r[0] in topology.devices
            )
            if not wanted:
                continue
            got = Counter(
                topology.province_of(r[0])
                for r in await conn.fetch(
                    f"SELECT DISTINCT device_id FROM {spec.device_rollup_table} WHERE bucket >= $1",
                    since,
                )
                if r[0] in topology.devices
            )
            units = {
                r[0]
                for r in await conn.fetch(
                    f"SELECT DISTINCT unit_code FROM {spec.unit_rollup_table} WHERE bucket >= $1",
                    since,
                )
            }
            rollups[spec.name] = {
                "provinces_complete": sum(1 for p, n in wanted.items() if got[p] == n),
                "provinces": len(wanted),
                "devices": sum(got.values()),
                "devices_wanted": sum(wanted.values()),
                "province_units_rolled": sum(1 for p in wanted if p in units),
            }
        incidents = [
            dict(r)
            for r in await conn.fetch(
                f"SELECT id, kind, root_device, unit_code, status FROM {t.INCIDENTS} ORDER BY id"
            )
        ]
    finally:
        await conn.close()
    for row in incidents:
        row["province"] = topology.province_of(row["root_device"]) if row["root_device"] else None
    expected = [(outage["node"], t.INCIDENT_SITE_ISOLATED, outage["province"], "resolved")]
    got_incidents = [(r["root_device"], r["kind"], r["province"], r["status"]) for r in incidents]
    out = (t.STATE_DOWN, t.STATE_UNREACHABLE, t.STATE_FLAPPING)
    not_up = {p: sum(c[s] for s in out) for p, c in states.items()}
    return {
        "states": {
            "devices": sum(sum(c.values()) for c in states.values()),
            "devices_wanted": len(topology.devices),
            "by_state": dict(sum(states.values(), Counter())),
            "provinces_complete": sum(
                1 for p in provinces if sum(states[p].values()) == devices_of[p]
            ),
            "not_up_by_province": {p: n for p, n in not_up.items() if n},
        },
        "rollups": rollups,
        "incidents": incidents,
        "incidents_expected": [list(e) for e in expected],
        "incidents_ok": got_incidents == expected,
    }


async def _check_viewer(
    settings: Settings, topology: Topology, province: str, other: str, span: dt.timedelta
) -> dict[str, Any]:
    """What one province's read-only role sees: its own devices and incidents, none of
    ``other``'s, and every dashboard panel it may read (errors and rows)."""
    conn = await viewer_connection(settings, province, statement_cache_size=0)
    try:
        seen = [r[0] for r in await conn.fetch(f"SELECT device_id FROM {t.DEVICE_STATE}")]
        provinces = Counter(topology.province_of(d) for d in seen if d in topology.devices)
        incident_units = Counter(
            topology.province_of(r[0])
            for r in await conn.fetch(
                f"SELECT root_device FROM {t.INCIDENTS} WHERE root_device IS NOT NULL"
            )
        )
        own = devices_per_province(topology)[province]
        now = dt.datetime.now(dt.UTC)
        panels: list[dict[str, Any]] = []
        skipped: list[str] = []
        for path in sorted(GENERATED.glob("*.json")):
            dash = json.loads(path.read_text())
            try:
                variables = await resolve_variables(conn, dash, now - span, now)
            except Exception as exc:  # not this role's dashboard (the SLA objects)
                skipped.append(f"{dash['uid']}: {type(exc).__name__}")
                continue
            for panel in dash["panels"]:
                for target in panel.get("targets", []):
                    if not target.get("rawSql"):
                        continue
                    sql = expand_sql(
                        target["rawSql"],
                        now - span,
                        now,
                        variables,
                        grafana_interval_ms(now - span, now),
                    )
                    record: dict[str, Any] = {"dashboard": dash["uid"], "panel": panel["title"]}
                    began = time.perf_counter()
                    try:
                        record["rows"] = len(await conn.fetch(sql))
                    except Exception as exc:
                        record["error"] = f"{type(exc).__name__}: {exc}"[:300]
                    record["ms"] = round((time.perf_counter() - began) * 1000, 1)
                    panels.append(record)
    finally:
        await conn.close()
    return {
        "province": province,
        "devices_seen": sum(provinces.values()),
        "devices_own": own,
        "provinces_seen": sorted(provinces),
        "incident_provinces_seen": sorted(incident_units),
        "other_province_rows": provinces.get(other, 0) + incident_units.get(other, 0),
        "panels": len(panels),
        "panels_with_rows": sum(1 for p in panels if p.get("rows")),
        "panel_errors": [p for p in panels if "error" in p],
        "panel_ms_max": max((p["ms"] for p in panels), default=None),
        "dashboards_not_readable": skipped,
        "ok": provinces.keys() == {province}
        and sum(provinces.values()) == own
        and set(incident_units) <= {province}
        and not any("error" in p for p in panels),
    }


# --- the run ---------------------------------------------------------------------------------
def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    topology = load_scenario(SCENARIO)
    tag = f"nat{uuid.uuid4().hex[:6]}"
    stretch, thresholds = stretched_thresholds(topology, args.rate)
    settings = (
        load_settings()
        .with_kafka_brokers(3)
        .model_copy(
            update={
                "kafka_topic_prefix": f"{tag}.",
                "db_schema": tag,
                "kafka_province_topics": args.province_topics,
                "thresholds": thresholds,
            }
        )
    )
    note(f"report periods and timeouts stretched {stretch:.2f}x: IOC_THRESHOLDS={thresholds}")
    stack = Stack(settings)
    nodes = {n.node: n for n in stack.select(["kafka"]) if isinstance(n, KafkaNode)}
    began = time.monotonic()
    stack.up(["kafka"], progress=note)  # idempotent
    note(f"three-node Kafka up in {time.monotonic() - began:.0f} s: {settings.bootstrap_servers}")
    began = time.monotonic()
    asyncio.run(bootstrap(settings, SCENARIO))
    bootstrap_s = time.monotonic() - began
    note(f"bootstrapped {SCENARIO} into {tag} in {bootstrap_s:.0f} s")
    topics = namespace_partitions(settings, topology)
    node, behind = outage_node(topology, args.outage_province)
    outage = {
        "province": args.outage_province,
        "node": node,
        "devices_behind": behind,
        "at_s": args.outage_at,
        "for_s": args.outage_s,
    }
    origin = [time.monotonic()]
    pool = Pool(settings, log_dir, tag, lambda: time.monotonic() - origin[0], SCENARIO)
    faults: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    lag_monitor: KafkaLag | None = None
    result: dict[str, Summary] = {}
    checks: dict[str, Any] = {}
    spread: dict[str, int] = {}
    spread_end: dict[str, int] = {}
    eval_rounds: dict[str, float] = {}
    try:
        for _ in range(args.workers):
            pool.start()
        for tracked in pool.alive():
            tracked.proc.wait_serving(180)
        time.sleep(15)  # join the groups before the load starts
        lag_monitor = KafkaLag(settings, topics)
        cpu = CpuMeter()
        config = SimConfig(
            scenario=SCENARIO,
            mode="rate",
            rate=args.rate,
            duration_s=args.duration,
            progress=False,
            replay_cycle_s=args.replay_cycle,
            fault_flags=[f"node_down:{node}@{args.outage_at:g}+{args.outage_s:g}"],
        )
        producer = threading.Thread(
            target=lambda: result.setdefault("s", run_simulation(settings, config)), daemon=True
        )
        since = dt.datetime.now(dt.UTC)
        plan = sorted(
            [(args.kill_worker_at, "worker"), (args.kill_broker_at, "broker")], key=lambda p: p[0]
        )

        def faulter() -> None:
            for at, kind in plan:
                while pool.t0() < at:
                    time.sleep(0.5)
                record: dict[str, Any] = {"kind": kind, "at": round(pool.t0(), 1)}
                faults.append(record)
                note(f"  {record['at']:.0f} s: fault {kind}")
                try:
                    if kind == "worker":
                        record["detail"] = kill_worker(pool)
                    else:
                        record["detail"] = kill_broker(settings, nodes, topics)
                except Exception as exc:  # recorded; the run goes on
                    record["error"] = f"{type(exc).__name__}: {exc}"
                record["done_at"] = round(pool.t0(), 1)
                note(f"  {record['done_at']:.0f} s: {record.get('detail') or record.get('error')}")

        producer.start()
        # the replay first simulates its cycle (tens of seconds for 100,110 devices): the
        # run's clock, and the faults' times, start with the first record in Kafka
        while producer.is_alive():
            first = lag_monitor.sample()
            if first is not None and first[1] > 0:
                break
            time.sleep(1)
        origin[0] = time.monotonic()
        note("  the load started")
        fault_thread = threading.Thread(target=faulter, daemon=True)
        fault_thread.start()
        last_note = -30.0
        drained_at: float | None = None
        while True:
            now = pool.t0()
            lag = lag_monitor.sample()
            sample = {
                "t": round(now, 1),
                "lag": None if lag is None else lag[0],
                "end_offsets": None if lag is None else lag[1],
                "alive": len(pool.alive()),
                "cpu": cpu.sample([w.proc.pid for w in pool.alive()]),
            }
            samples.append(sample)
            if now - last_note >= 30:
                last_note = now
                note(f"  {now:.0f} s: lag {sample['lag']}, cpu {sample['cpu']}")
            if now > min(args.kill_worker_at, args.kill_broker_at) - 15 and not spread:
                spread = assignment(settings)
                note(f"  feed partitions per worker: {sorted(spread.values())}")
            if not producer.is_alive() and not fault_thread.is_alive():
                if sample["lag"] == 0:
                    drained_at = now
                    break
                if now - args.duration > args.drain_timeout:
                    note(f"  not drained {args.drain_timeout:.0f} s after the load")
                    break
            time.sleep(max(0.0, args.sample_every - (pool.t0() - now)))
        note(f"  drained at {drained_at} s; judging in {SETTLE_S:.0f} s")
        time.sleep(SETTLE_S)
        spread_end = assignment(settings)
        note(f"  feed partitions per worker at the end: {sorted(spread_end.values())}")
        for tracked in pool.alive():
            totals = tracked.proc.metric_totals()
            count = totals.get(f"{m.EVALUATION_SECONDS.series}_count", 0.0)
            if count:
                eval_rounds[tracked.proc.name] = round(
                    totals[f"{m.EVALUATION_SECONDS.series}_sum"] / count, 3
                )
        summary = result["s"]
        largest = devices_per_province(topology).most_common(1)[0][0]
        span = dt.timedelta(seconds=pool.t0() + 60)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("reconcile", lambda: reconcile(settings, summary)),
            (
                "database",
                lambda: asyncio.run(_check_database(settings, topology, since, outage)),
            ),
            (
                "viewers",
                lambda: [
                    asyncio.run(
                        _check_viewer(settings, topology, args.outage_province, largest, span)
                    ),
                    asyncio.run(
                        _check_viewer(settings, topology, largest, args.outage_province, span)
                    ),
                ],
            ),
        ]
        for name, step in steps:  # one failing check must not lose the others
            note(f"  checking: {name}")
            try:
                checks[name] = step()
            except Exception as exc:
                checks[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
                note(f"  {name} failed: {checks[f'{name}_error']}")
    finally:
        if lag_monitor is not None:
            lag_monitor.close()
        stop_all([w.proc for w in pool.tracked])
        for kafka_node in nodes.values():
            if kafka_node.pid() is None:
                kafka_node.up(note)
        if not args.keep:
            asyncio.run(drop_namespace(settings))
        stack.down(["kafka"], progress=note)  # three JVMs: not left running
    return {
        "namespace": tag,
        "bootstrap_s": round(bootstrap_s, 1),
        "topics": len(topics),
        "stretch": round(stretch, 3),
        "thresholds": thresholds,
        "summary": {
            "offered": summary.offered_rate,
            "sent": summary.sent,
            "errors": summary.errors,
            "elapsed_s": round(summary.elapsed_s, 1),
            "achieved_events_per_s": round(summary.events_per_s),
        },
        "drained_at_s": drained_at,
        "outage": outage,
        "faults": faults,
        "spread": spread,
        "spread_end": spread_end,
        "eval_round_mean_s": eval_rounds,
        "samples": samples,
        "worker_processes": [w.as_dict() | {"log": str(w.proc.log_path)} for w in pool.tracked],
        "checks": checks,
    }


def recovery(
    samples: list[dict[str, Any]], at: float, until: float, bound: float
) -> dict[str, Any]:
    """A fault's peak lag before ``until`` (the next fault) and how long after ``at`` lag
    was back under ``bound``."""
    after = [s for s in samples if at <= s["t"] < until and s["lag"] is not None]
    peak = max((s["lag"] for s in after), default=None)
    back = next((s["t"] - at for s in after if s["t"] > at + 5 and s["lag"] <= bound), None)
    return {"peak_lag": peak, "back_within_bound_s": None if back is None else round(back, 1)}


def assemble(run_result: dict[str, Any], args: argparse.Namespace, date: str) -> dict[str, Any]:
    samples = run_result["samples"]
    steady = [s["lag"] for s in samples if 30 <= s["t"] < args.outage_at and s["lag"] is not None]
    bound = (percentile(steady, 0.5) or 0.0) + 2 * run_result["summary"]["achieved_events_per_s"]
    faults = sorted(run_result["faults"], key=lambda f: f["at"])
    for fault, later in itertools.zip_longest(faults, faults[1:]):
        fault |= recovery(samples, fault["at"], later["at"] if later else float("inf"), bound)
    cpu = {
        group: percentile([s["cpu"][group] for s in samples if 30 <= s["t"] < args.duration], 0.5)
        for group in ("workers", "simulator", "kafka", "postgres", "machine")
    }
    checks = run_result["checks"]
    db = checks.get("database", {})
    verdicts = {
        "rate_reached": run_result["summary"]["achieved_events_per_s"] >= 0.95 * args.rate,
        "reconciled": bool(checks.get("reconcile", {}).get("ok")),
        "drained": run_result["drained_at_s"] is not None,
        "spread": all(
            len(run_result[key]) == args.workers and all(n > 0 for n in run_result[key].values())
            for key in ("spread", "spread_end")
        ),
        "states": db.get("states", {}).get("devices") == db.get("states", {}).get("devices_wanted")
        and not db.get("states", {}).get("not_up_by_province"),
        "rollups": all(
            r["provinces_complete"] == r["provinces"] == r["province_units_rolled"]
            for r in db.get("rollups", {}).values()
        ),
        "incidents": bool(db.get("incidents_ok")),
        "isolation": all(v["ok"] for v in checks.get("viewers", [])),
    }
    verdicts["pass"] = all(verdicts.values())
    return {
        "benchmark": "national",
        "scenario": SCENARIO,
        "date": date,
        "command": " ".join(["bench/national.py", *sys.argv[1:]]),
        "machine": machine(),
        "brokers": 3,
        "province_topics": args.province_topics,
        "workers": args.workers,
        "rate": args.rate,
        "duration_s": args.duration,
        "load_generator": describe(args.replay_cycle),
        "lag_bound": round(bound),
        "cpu_cores_median": cpu,
        **run_result,
        "verdicts": verdicts,
    }


def report(result: dict[str, Any]) -> None:
    s = result["summary"]
    print(
        f"\nnational: {result['workers']} workers, 3 brokers, {result['topics']} feed topics; "
        f"asked {result['rate']:,.0f} ev/s, achieved {s['achieved_events_per_s']:,} "
        f"({s['sent']:,} events in {s['elapsed_s']} s), drained at {result['drained_at_s']} s"
    )
    print(f"CPU cores (median): {result['cpu_cores_median']}")
    print(
        f"feed partitions per worker: {sorted(result['spread'].values())} before the faults, "
        f"{sorted(result['spread_end'].values())} at the end"
    )
    print(f"evaluation round, mean per worker (s): {result['eval_round_mean_s']}")
    print(f"\n{'fault':<8} {'at s':>6} {'peak lag':>10} {'back s':>7}  detail")
    outage = result["outage"]
    print(
        f"{'outage':<8} {outage['at_s']:>6.0f} {'':>10} {'':>7}  node {outage['node']} of "
        f"province {outage['province']}, {outage['devices_behind']} devices behind, "
        f"{outage['for_s']:.0f} s"
    )
    for fault in result["faults"]:
        print(
            f"{fault['kind']:<8} {fault['at']:>6.0f} {fault.get('peak_lag')!s:>10} "
            f"{fault.get('back_within_bound_s')!s:>7}  "
            f"{(fault.get('detail') or fault.get('error') or '').splitlines()[0][:160]}"
        )
    checks = result["checks"]
    print(f"\nreconciliation: {checks.get('reconcile')}")
    db = checks.get("database", {})
    print(f"states: {db.get('states')}")
    for feed, r in db.get("rollups", {}).items():
        print(f"rollups {feed}: {r}")
    print(f"incidents: {db.get('incidents')}")
    for v in checks.get("viewers", []):
        brief = {k: v[k] for k in v if k != "panel_errors"}
        print(f"viewer {v['province']}: {brief}; panel errors {len(v['panel_errors'])}")
        for err in v["panel_errors"][:5]:
            print(f"    {err}")
    print(
        "\nverdicts: "
        + ", ".join(f"{k} {'ok' if ok else 'FAIL'}" for k, ok in result["verdicts"].items())
    )


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [s for s in result["samples"] if s["lag"] is not None]
    ts = [s["t"] for s in samples]
    fig, (ax_lag, ax_cpu) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    ax_lag.plot(ts, [s["lag"] for s in samples], color="tab:blue", label="feed lag (events)")
    ends = [(s["t"], s["end_offsets"]) for s in samples if s["end_offsets"] is not None]
    rate = [
        (b[0], (b[1] - a[1]) / (b[0] - a[0])) for a, b in itertools.pairwise(ends) if b[0] > a[0]
    ]
    ax_in = ax_lag.twinx()
    ax_in.plot([r[0] for r in rate], [r[1] for r in rate], color="tab:gray", lw=0.8, alpha=0.6)
    ax_in.set_ylabel("produced events/s", color="tab:gray")
    outage = result["outage"]
    ax_lag.axvspan(outage["at_s"], outage["at_s"] + outage["for_s"], color="tab:orange", alpha=0.15)
    ax_lag.text(outage["at_s"], 0, f" node {outage['node']} dark", color="tab:orange", va="bottom")
    for fault in result["faults"]:
        for ax in (ax_lag, ax_cpu):
            ax.axvline(fault["at"], color="tab:red", ls="--", lw=1)
        ax_lag.text(
            fault["at"], ax_lag.get_ylim()[1] * 0.9, f" {fault['kind']} killed", color="tab:red"
        )
    ax_lag.set_ylabel("lag (events)")
    ax_lag.set_title(
        f"national: {result['workers']} workers, 3 brokers, "
        f"{result['summary']['achieved_events_per_s']:,} ev/s replayed, "
        f"{result['checks'].get('reconcile', {}).get('landed', 0):,} landed, "
        f"{result['checks'].get('reconcile', {}).get('lost', '?')} lost"
    )
    for group in ("workers", "kafka", "postgres", "simulator", "machine"):
        ax_cpu.plot(ts, [s["cpu"][group] for s in samples], label=group, lw=1)
    ax_cpu.set_ylabel("CPU cores")
    ax_cpu.set_xlabel("s since the load started")
    ax_cpu.legend(loc="upper right", ncol=5, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=3_000.0, help="events/s asked")
    parser.add_argument("--duration", type=float, default=840.0, help="load, s")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--replay-cycle",
        type=float,
        default=60.0,
        help="s; longer than every stretched heartbeat period (5 s x natural / rate)",
    )
    parser.add_argument("--outage-province", default="15", help="province code (15: Lao Cai)")
    parser.add_argument(
        "--outage-at", type=float, default=240.0, help="s; after the first term's hold"
    )
    parser.add_argument("--outage-s", type=float, default=360.0)
    parser.add_argument("--kill-worker-at", type=float, default=630.0)
    parser.add_argument("--kill-broker-at", type=float, default=720.0)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument(
        "--province-topics",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="per-province feed topics, users and quotas (IOC_KAFKA_PROVINCE_TOPICS); "
        "default the shared topics (docs/scaling.md: what the province topics cost Kafka here)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the namespace (debugging)")
    parser.add_argument("--out", type=Path, default=RESULTS / "national.json")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="judge --out's saved run again, print, rewrite it and its plot (no run)",
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads(args.out.read_text())
        if isinstance(saved["workers"], list):  # a result before worker_processes
            saved["worker_processes"], saved["workers"] = saved["workers"], 4
        args.rate, args.workers = saved["rate"], saved["workers"]
        args.duration, args.outage_at = saved["duration_s"], saved["outage"]["at_s"]
        args.province_topics = saved.get("province_topics", False)
        args.replay_cycle = float(saved["load_generator"].split()[1])
        keys = {"benchmark", "scenario", "date", "command", "machine", "brokers", "lag_bound"}
        run_result = {k: v for k, v in saved.items() if k not in keys and k != "verdicts"}
        for key in ("workers", "rate", "duration_s", "load_generator", "cpu_cores_median"):
            run_result.pop(key, None)
        result = assemble(run_result, args, saved["date"])
        result["command"] = saved["command"]
        args.out.write_text(json.dumps(result, indent=1, default=str))
        report(result)
        plot(result, args.out.with_suffix(".png"))
        return 0 if result["verdicts"]["pass"] else 1
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    log_dir = Path("bench/out")
    log_dir.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result = assemble(run(args, log_dir), args, date)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    report(result)
    print(f"result: {args.out}")
    try:
        plot(result, args.out.with_suffix(".png"))
    except ImportError:
        print("(matplotlib not installed: no plot; pip install -e '.[bench]')")
    return 0 if result["verdicts"]["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
