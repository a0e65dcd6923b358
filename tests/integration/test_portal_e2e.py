"""The public-service portal feed end to end on the local stack (docs/portal.md).

One run of the demo province's network and portal desks through Kafka and a real worker,
with the portal's faults: a desk's LGSP sync down then its catch-up batch, a commune's payment
gateway failing, a commune falling behind, and a node outage in front of a desk. Then, through
Kafka as LGSP's collector would send them: dossier events 6 hours late, 8 days late (beyond
the 7 days other feeds accept) and 20 days late (beyond the portal's 14: dead-lettered).

Checked: every valid event lands once and every invalid one is dead-lettered with its reason;
the late events land and update the KPI of the day they happened; the recompute command
rebuilds a day from raw; the incidents open once each with the right root cause; the portal's
alerts are pending or firing in Prometheus (their ``for:`` boundaries are the promtool
tests'); every panel of the portal dashboard returns data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import yaml
from aiokafka import AIOKafkaProducer

from ioc.adapters.lgsp import LgspAdapter, from_ms
from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import portal as c
from ioc.contract import schemas as s
from ioc.contract.feeds import Feed
from ioc.contract.topics import FEED_TOPICS
from ioc.contract.topology import load_scenario
from ioc.dashboards.build import GENERATED
from ioc.kafka_clients import aiokafka_common
from ioc.simulators.behaviour import natural_rate
from ioc.simulators.portal import lgsp_code
from ioc.simulators.run import SimConfig, Summary, run_simulation
from tests.support.dashboards import expand_promql, expand_sql, prom_query, resolve_variables
from tests.support.db import query
from tests.support.kafka import dlq_count
from tests.support.processes import Worker, ioc_command, ioc_env
from tests.support.reconcile import reconcile
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
VN = dt.timezone(dt.timedelta(hours=7))
OUTAGE_DESK = "portal-991-001"  # LGSP sync down 8 s .. 46 s, then one catch-up batch
PAYMENTS_DESK = "portal-992-001"  # its payment gateway fails
BACKLOG_DESK = "portal-991-002"  # its unit falls behind
CUT_NODE, CUT_DESK = "nn-992-002", "portal-992-002"  # a node outage in front of a desk
LATE_DESK = "portal-99-po01"
FAULTS = [
    f"lgsp_outage:{OUTAGE_DESK}@8+38",
    f"payment_gateway_failure:{PAYMENTS_DESK}@0+60",
    f"unit_backlog:{BACKLOG_DESK}@0+60",
    f"node_down:{CUT_NODE}@12+30",
    "malformed:0.03",
]
SPEEDUP = 12
THRESHOLDS = {
    # the state machine's silence rule at test speed, whatever the time of day
    "portal_silent_ms": 20_000,
    "portal_working_hours": "always",
    "portal_ontime_min_resolved": 1,
    "portal_payment_min_attempts": 1,
}
EXPECTED_ALERTS = {
    ("PortalSyncSilent", "device_id", OUTAGE_DESK),
    ("PortalPaymentsFailing", "unit", "992-001"),
    ("PortalOnTimeRateLow", "unit", "991-002"),
}


def portal_scenario(path: Path) -> str:
    """The demo province with its network nodes and portal desks only (no other feed)."""
    doc = yaml.safe_load((ROOT / "ioc/contract/scenarios/demo.yaml").read_text())
    doc["scenario"] = "demo-portal"
    doc["devices"] = [d for d in doc["devices"] if d["class"] in ("netnode", Feed.PORTAL)]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def prom_alerts(settings: Settings) -> list[dict[str, Any]]:
    url = (
        settings.prometheus_url
        + "/api/v1/query?"
        + urllib.parse.urlencode({"query": 'ALERTS{alertname=~"Portal.*"}'})
    )
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def watch_alerts(
    settings: Settings, seen: set[tuple[str, str, str]], stop: threading.Event
) -> None:
    """Every (alert, label, value) of EXPECTED_ALERTS seen pending or firing."""
    while not stop.is_set():
        try:
            for series in prom_alerts(settings):
                m = series["metric"]
                for name, label, value in EXPECTED_ALERTS:
                    if m.get("alertname") == name and m.get(label) == value:
                        seen.add((name, label, value))
        except OSError:
            pass
        stop.wait(2)


def late_records(adapter: LgspAdapter, code: str, now_ms: int) -> dict[str, list[Any]]:
    """Native LGSP dossier records received 6 hours, 8 days and 20 days ago."""

    def received(i: int, at_ms: int) -> dict[str, Any]:
        return {
            "LoaiBanGhi": "HoSo",
            "MaHoSo": f"{code}-LATE-{i}",
            "MaTTHC": "1.004227",
            "MaDonVi": code,
            "TrangThaiHoSo": "2",
            "KenhThucHien": 2,
            "ThoiGianCapNhat": from_ms(at_ms),
            "NgayHenTra": from_ms(at_ms + 5 * 86_400_000),
        }

    six_hours = [adapter.record(received(i, now_ms - 6 * 3_600_000 - i * 1000)) for i in range(3)]
    eight_days = [adapter.record(received(9, now_ms - 8 * 86_400_000))]
    # 20 days: beyond the feed's limit, the worker dead-letters it (the adapter does not judge)
    old = msgspec.structs.replace(
        eight_days[0], seq=eight_days[0].seq + 1, ts_ms=now_ms - 20 * 86_400_000
    )
    return {"6h": six_hours, "8d": eight_days, "20d": [old]}


async def produce(settings: Settings, messages: list[s.Message]) -> None:
    producer = AIOKafkaProducer(**aiokafka_common(settings), acks="all")
    await producer.start()
    try:
        topic = settings.topic(FEED_TOPICS[Feed.PORTAL].name)
        for msg in messages:
            await producer.send_and_wait(topic, s.encode(msg), key=msg.device_id.encode())
    finally:
        await producer.stop()


def kpi(settings: Settings, unit: str, day: dt.date) -> dict[str, Any]:
    rows = query(
        settings,
        f"SELECT * FROM {c.KPI_DAILY} WHERE unit_code = $1 AND day = $2",
        unit,
        day,
    )
    return dict(rows[0]) if rows else {}


def settled(settings: Settings) -> bool:
    """No dirty minute waits for the rollups (and so for the daily KPI refresh)."""
    return not query(settings, "SELECT 1 FROM rollup_dirty WHERE feed = $1 LIMIT 1", Feed.PORTAL)


def test_portal_end_to_end(namespace: Settings, tmp_path: Path) -> None:
    scenario = portal_scenario(tmp_path / "demo-portal.yaml")
    topo = load_scenario(scenario)
    asyncio.run(bootstrap(namespace, scenario))
    settings = namespace.model_copy(update={"thresholds": json.dumps(THRESHOLDS)})
    worker = Worker(settings, scenario, tmp_path / "worker.log")
    worker.argv += ["--rollup-settle-s", "2"]  # KPIs within seconds of the data (default 15)
    worker.start()
    seen: set[tuple[str, str, str]] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=watch_alerts, args=(namespace, seen, stop), daemon=True)
    try:
        worker.wait_serving()
        started = dt.datetime.now(dt.UTC)
        watcher.start()
        summary: Summary = run_simulation(
            namespace,
            SimConfig(
                scenario=scenario,
                mode="rate",  # every report 12x as often: a desk's dossier event every 5 s
                rate=SPEEDUP * natural_rate(topo),
                duration_s=54,
                fault_flags=FAULTS,
                progress=False,
            ),
        )
        assert summary.errors == 0, summary.first_error
        assert summary.stats.valid_by_feed[Feed.PORTAL] > 100, summary.stats
        assert summary.stats.late > 0, "the LGSP outage held records back for its catch-up batch"

        # reconciliation: every valid event once, every invalid one dead-lettered with its reason
        wait_for(
            lambda: (
                sum(r["n"] for r in query(namespace, "SELECT count(*) AS n FROM raw_portal"))
                + sum(r["n"] for r in query(namespace, "SELECT count(*) AS n FROM raw_netnode"))
                >= sum(summary.stats.valid_by_feed.values())
            ),
            60,
            what=f"every event landed ({worker.log_tail()})",
        )
        wait_for(
            lambda: (
                sum(asyncio.run(dlq_count(namespace)).values())
                >= sum(summary.stats.invalid_by_reason.values())
            ),
            30,
            what="every invalid event dead-lettered",
        )
        reconcile(namespace, summary, "portal run")
        catch_up = query(
            namespace,
            "SELECT count(*) AS n, max(ingested_at - ts) AS lag FROM raw_portal "
            "WHERE device_id = $1 AND ts < $2",
            OUTAGE_DESK,
            started + dt.timedelta(seconds=40),
        )[0]
        assert catch_up["n"] > 0 and catch_up["lag"] > dt.timedelta(seconds=20), catch_up

        # incidents: the silent desk itself; the desk behind the cut node is the node's
        wait_for(
            lambda: query(
                namespace,
                "SELECT 1 FROM incidents WHERE root_device = $1 AND kind = 'device-down'",
                OUTAGE_DESK,
            ),
            30,
            what=f"the silent desk's incident ({worker.log_tail()})",
        )
        incidents = query(
            namespace, "SELECT root_device, kind, affected, device_class FROM incidents"
        )
        portal_down = [i for i in incidents if i["device_class"] == Feed.PORTAL]
        assert [(i["root_device"], i["kind"]) for i in portal_down] == [
            (OUTAGE_DESK, "device-down")
        ], incidents
        isolated = [i for i in incidents if i["root_device"] == CUT_NODE]
        assert len(isolated) == 1 and isolated[0]["kind"] == "site-isolated", incidents
        assert CUT_DESK in isolated[0]["affected"], isolated
        states = query(
            namespace,
            "SELECT state FROM device_state_intervals WHERE device_id = $1",
            CUT_DESK,
        )
        assert "unreachable-upstream" in {r["state"] for r in states}, states
        assert "down" not in {r["state"] for r in states}, states

        # late events: 6 hours late lands on the day it happened; 8 days is inside the
        # portal's 14-day limit; 20 days is dead-lettered with the reason event_time
        wait_for(lambda: settled(namespace), 60, what="rollups settled")
        time.sleep(1)
        last_seq = query(
            namespace, "SELECT max(seq) AS m FROM raw_portal WHERE device_id = $1", LATE_DESK
        )[0]["m"]
        desk = topo.devices[LATE_DESK]
        adapter = LgspAdapter({lgsp_code(desk): LATE_DESK})
        adapter.seq[LATE_DESK] = last_seq
        now_ms = int(time.time() * 1000)
        late = late_records(adapter, lgsp_code(desk), now_ms)
        unit = topo.unit_of_device[LATE_DESK]
        day_6h = dt.datetime.fromtimestamp(late["6h"][0].ts_ms / 1000, VN).date()
        day_8d = dt.datetime.fromtimestamp(late["8d"][0].ts_ms / 1000, VN).date()
        before = kpi(namespace, unit, day_6h).get("received", 0)
        assert kpi(namespace, unit, day_8d) == {}
        dlq_before = asyncio.run(dlq_count(namespace))
        asyncio.run(produce(namespace, [*late["6h"], *late["8d"], *late["20d"]]))

        def late_landed() -> bool:
            ids = {
                r["dossier_id"]
                for r in query(
                    namespace,
                    "SELECT dossier_id FROM raw_portal WHERE device_id = $1 AND dossier_id LIKE "
                    "'%-LATE-%'",
                    LATE_DESK,
                )
            }
            return len(ids) == 4

        wait_for(late_landed, 30, what="the late events")
        wait_for(lambda: settled(namespace), 60, what="the late minutes rolled up")
        wait_for(
            lambda: kpi(namespace, unit, day_6h).get("received", 0) == before + 3,
            30,
            what=f"the 6-hours-late dossiers counted on {day_6h}",
        )
        eight = kpi(namespace, unit, day_8d)
        assert eight["received"] == 1 and eight["received_online"] == 1, eight
        dlq_after = asyncio.run(dlq_count(namespace))
        assert dlq_after[s.REASON_EVENT_TIME] == dlq_before[s.REASON_EVENT_TIME] + 1

        # the recompute command rebuilds a day from raw (same figures)
        query(namespace, f"DELETE FROM {c.KPI_DAILY} WHERE day = $1", day_8d)
        done = subprocess.run(
            ioc_command("portal", "recompute", day_8d.isoformat()),
            env=ioc_env(namespace),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert kpi(namespace, unit, day_8d)["received"] == 1

        # alerts: pending or firing in Prometheus (promtool proves their for: boundaries)
        wait_for(lambda: seen >= EXPECTED_ALERTS, 45, what=f"portal alerts (seen {seen})")

        # every panel of the portal dashboard returns data
        asyncio.run(check_dashboard(namespace, started))
    finally:
        stop.set()
        worker.stop()


async def check_dashboard(settings: Settings, started: dt.datetime) -> None:
    from ioc.db import connect
    from ioc.deploy.local.stack import Stack

    dash = json.loads((GENERATED / "ioc-portal.json").read_text())
    conn = await connect(Stack(settings).timescaledb.connection_info()["grafana_dsn"])
    failures: list[str] = []
    t0, t1 = started - dt.timedelta(minutes=5), dt.datetime.now(dt.UTC)
    variables = {"unit": "99", "period": c.KPI_VIEWS["day"], "device": OUTAGE_DESK}
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        variables = await resolve_variables(conn, dash, t0, t1, variables)
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                title = panel["title"]
                if "rawSql" in target:
                    for period in c.KPI_VIEWS.values():
                        sql = expand_sql(target["rawSql"], t0, t1, {**variables, "period": period})
                        try:
                            rows = await conn.fetch(sql)
                        except Exception as exc:
                            failures.append(f"{title}: {exc}\n  {sql}")
                            continue
                        if not rows or all(v is None for v in rows[0].values()):
                            failures.append(f"{title}: no data\n  {sql}")
                else:
                    expr = expand_promql(target["expr"], variables)
                    if not prom_query(settings.prometheus_url, expr, bool(target.get("instant"))):
                        failures.append(f"{title}: no series for {expr}")
    finally:
        await conn.close()
    assert not failures, "\n".join(failures)
