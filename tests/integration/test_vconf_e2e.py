"""The video-conference feed end to end on the local stack, with its faults.

One pipeline for the module (75 s of simulated real time on the demo province): the
simulator emits the bridges' colibri stats, the points' WebRTC stats and conference events
and the booking calendar's meetings through the Jitsi adapter, into Kafka, a real
``ioc worker``, TimescaleDB, Prometheus and Alertmanager. A province meeting is scheduled
40 s into the run on bridge 1 (a worker holds new outages for a heartbeat timeout of data
after it starts: by then the network faults below are known), and:

- commune 992-002's network node is down from the start (cause: site isolated, its node);
- commune 991-002's link loses 30 % (the network feed's own fault; cause: link degraded, its
  node; the node opens a degraded incident, the point opens none);
- commune 992-001's room never joins (cause: not joined);
- bridge 1 has 3 licensed ports for the 4 points able to join (one refused: licence);
- bridge 2 goes down 10 s into the run, and a district meeting (992) booked on it at the same
  time cannot happen: its points' cause is ``bridge_down`` (the cut-off commune's stays
  ``site_isolated``), and the bridge opens a device-down incident (the simulator lets a point
  be expected in both meetings: each meeting's joins are its own);
- 2 % of all records are malformed and 1 % duplicated (reconciliation).

The tests check the readiness alerts within 60 s of the start (Prometheus, and Alertmanager
suppressing the isolated commune's behind SiteIsolated), the incidents (once each, with the
right root cause), every panel of the Video conference dashboard on the live data, and the
reconciliation of every record produced.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ioc.bootstrap import bootstrap, drop_namespace
from ioc.config import Settings
from ioc.contract import vconf as vc
from ioc.dashboards.build import GENERATED
from ioc.db import connect
from ioc.deploy.local.stack import Stack
from ioc.simulators.run import SimConfig, Summary, run_simulation
from tests.support.alertmanager import expire_silences_of
from tests.support.dashboards import expand_promql, expand_sql, prom_query, resolve_variables
from tests.support.db import query
from tests.support.processes import Worker
from tests.support.reconcile import assert_accounting, reconcile
from tests.support.wait import wait_for

MEETING_AT_S = 40
MCU_DOWN_AT_S = 10
RUN_S = 75
POINTS = ("vc-99", "vc-991", "vc-991-001", "vc-991-002", "vc-992", "vc-992-001", "vc-992-002")
ABLE = {"vc-99", "vc-991", "vc-991-001", "vc-992"}
"""The points that can join: the others are cut off, behind a lossy link or never try."""
PLAN = """
faults:
  - {{type: vconf_meeting, target: vc-99, at: {meeting}, duration: 900, title: "{title}"}}
  - {{type: vconf_meeting, target: vc-992, at: {meeting}, duration: 900, title: "{title} B",
      bridge: vc-99-mcu-2}}
  - {{type: node_down, target: nn-992-002, at: 0}}
  - {{type: link_degraded, target: nn-991-002, at: 0, loss_pct: 30, latency_ms: 150}}
  - {{type: vconf_no_join, target: vc-992-001, at: 0}}
  - {{type: vconf_licence, target: vc-99-mcu-1, at: 0, ports: 3}}
  - {{type: vconf_mcu_down, target: vc-99-mcu-2, at: {mcu_down}}}
  - {{type: malformed, rate: 0.02}}
  - {{type: duplicate, rate: 0.01}}
"""


@dataclass
class Run:
    settings: Settings
    title: str
    started: dt.datetime
    summary: Summary
    worker: Worker
    alerts_at: dict[tuple[str, str], float] = field(default_factory=dict)
    """(point, cause) -> when VconfPointNotJoined was first seen firing, s after the start."""
    firing: dict[str, dict[str, str]] = field(default_factory=dict)  # point -> last labels
    licence_alert_at: float | None = None
    bridge_meeting: dict[tuple[str, str], float] = field(default_factory=dict)
    """Meeting B (on the bridge that is down): (point, cause) -> first firing."""
    alertmanager: dict[str, dict[str, Any]] = field(default_factory=dict)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _firing(settings: Settings, alertname: str, **labels: str) -> list[dict[str, str]]:
    matchers = ",".join([f'alertname="{alertname}"', 'alertstate="firing"'])
    matchers += "".join(f',{k}="{v}"' for k, v in labels.items())
    q = urllib.parse.urlencode({"query": f"ALERTS{{{matchers}}}"})
    body = _get(f"{settings.prometheus_url}/api/v1/query?{q}")
    return [r["metric"] for r in body["data"]["result"]]


def _am_alerts(settings: Settings, title: str) -> dict[str, dict[str, Any]]:
    q = urllib.parse.urlencode(
        {"filter": ['alertname="VconfPointNotJoined"', f'meeting_title="{title}"']}, doseq=True
    )
    return {
        a["labels"]["device_id"]: a for a in _get(f"{settings.alertmanager_url}/api/v2/alerts?{q}")
    }


@pytest.fixture(scope="module")
def run(
    base_settings: Settings, stack: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    tag = f"t{uuid.uuid4().hex[:10]}"
    settings = base_settings.model_copy(update={"kafka_topic_prefix": f"{tag}.", "db_schema": tag})
    tmp = tmp_path_factory.mktemp("vconf")
    title = f"e2e {tag}"
    plan = tmp / "plan.yaml"
    plan.write_text(PLAN.format(meeting=MEETING_AT_S, title=title, mcu_down=MCU_DOWN_AT_S))
    asyncio.run(bootstrap(settings, "demo"))
    worker = Worker(settings, "demo", tmp / "worker.log").start()
    try:
        worker.wait_serving()
        results: list[Summary] = []
        errors: list[BaseException] = []

        def simulate() -> None:
            try:
                results.append(
                    run_simulation(
                        settings,
                        SimConfig(
                            scenario="demo",
                            mode="realtime",
                            duration_s=RUN_S,
                            faults_path=str(plan),
                            progress=False,
                        ),
                    )
                )
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)

        started = dt.datetime.now(dt.UTC)
        thread = threading.Thread(target=simulate, daemon=True)
        thread.start()
        meeting_start = time.monotonic() + MEETING_AT_S
        alerts_at: dict[tuple[str, str], float] = {}
        firing: dict[str, dict[str, str]] = {}
        licence_at: float | None = None
        am: dict[str, dict[str, Any]] = {}
        bridge_meeting: dict[tuple[str, str], float] = {}
        while thread.is_alive():
            now = time.monotonic() - meeting_start
            for labels in _firing(settings, "VconfPointNotJoined", meeting_title=title):
                point = labels["device_id"]
                alerts_at.setdefault((point, labels["cause"]), now)
                firing[point] = labels
            for labels in _firing(settings, "VconfPointNotJoined", meeting_title=f"{title} B"):
                bridge_meeting.setdefault((labels["device_id"], labels["cause"]), now)
            if licence_at is None and _firing(
                settings, "VconfLicenceExhausted", device_id="vc-99-mcu-1"
            ):
                licence_at = now
            settled = am.get("vc-992-002", {}).get("status", {}).get("state") == "suppressed"
            if len(firing) >= 4 and not (len(am) >= 4 and settled):
                am = _am_alerts(settings, title)
            time.sleep(2)
        thread.join()
        if errors:
            raise errors[0]
        (summary,) = results
        yield Run(
            settings,
            title,
            started,
            summary,
            worker,
            alerts_at=alerts_at,
            firing=firing,
            licence_alert_at=licence_at,
            alertmanager=am,
            bridge_meeting=bridge_meeting,
        )
    finally:
        worker.stop()
        expire_silences_of(settings)
        asyncio.run(drop_namespace(settings))


def test_readiness_alerts_name_the_communes_and_their_causes_within_60_s(run: Run) -> None:
    causes = {point: (lab["cause"], lab["cause_device"]) for point, lab in run.firing.items()}
    print(f"VconfPointNotJoined first firing, s after the start: {run.alerts_at}")
    print(f"  meeting B (bridge down): {run.bridge_meeting}; licence: {run.licence_alert_at}")
    assert causes["vc-992-002"] == ("site_isolated", "nn-992-002"), causes
    assert causes["vc-991-002"] == ("link_degraded", "nn-991-002"), causes
    assert causes["vc-992-001"] == ("not_joined", "vc-992-001"), causes
    refused = [p for p in ABLE if causes.get(p, ("",))[0] == vc.REASON_LICENCE]
    assert len(refused) == 1, causes
    for point in ("vc-992-002", "vc-991-002", "vc-992-001", refused[0]):
        assert run.alerts_at[(point, causes[point][0])] <= 60, (point, run.alerts_at)
    # a commune cut off is never reported as simply "not joined"
    assert ("vc-992-002", "not_joined") not in run.alerts_at, run.alerts_at
    assert run.firing["vc-992-002"]["unit_name"] and run.firing["vc-992-002"]["severity"]
    assert run.licence_alert_at is not None  # VconfLicenceExhausted, 3 of 3 ports
    # Alertmanager: the isolated commune's alert is inhibited by its node's SiteIsolated, the
    # others page (one notification per meeting and cause)
    am = run.alertmanager
    assert am["vc-992-002"]["status"]["state"] == "suppressed", am["vc-992-002"]["status"]
    assert am["vc-992-002"]["status"]["inhibitedBy"]
    assert am["vc-992-001"]["status"]["state"] == "active"
    # the district meeting on the bridge that is down: its points say so, within 60 s too
    bridge = run.bridge_meeting
    assert bridge.get(("vc-992", "bridge_down"), 99) <= 60, bridge
    assert bridge.get(("vc-992-001", "bridge_down"), 99) <= 60, bridge
    assert bridge.get(("vc-992-002", "site_isolated"), 99) <= 60, bridge


def test_incidents_open_once_each_with_the_root_cause(run: Run) -> None:
    def incidents() -> list[Any] | None:
        rows = query(
            run.settings,
            "SELECT kind, root_device, device_class, affected FROM incidents ORDER BY id",
        )
        roots = {(r["kind"], r["root_device"]) for r in rows}
        wanted = {
            ("site-isolated", "nn-992-002"),
            ("degraded", "nn-991-002"),
            ("device-down", "vc-99-mcu-2"),
        }
        return rows if wanted <= roots else None

    rows = wait_for(incidents, 40, interval=2, what="the three incidents")
    keys = [(r["kind"], r["root_device"]) for r in rows]
    assert len(keys) == len(set(keys)), keys  # once each
    isolated = next(r for r in rows if r["root_device"] == "nn-992-002")
    assert "vc-992-002" in isolated["affected"]
    # no point opened anything: the network (or the bridge) is the root cause
    points = [r for r in rows if r["root_device"] in POINTS]
    assert points == [], points
    states = {
        r["device_id"]: r["state"]
        for r in query(run.settings, "SELECT device_id, state FROM device_state")
    }
    assert states["vc-992-002"] == "unreachable-upstream"
    assert states["vc-991-002"] == "up" and states["vc-992-001"] == "up"
    assert states["vc-99-mcu-2"] == "down" and states["vc-99-mcu-1"] == "up"


def test_every_panel_of_the_dashboard_returns_live_data(run: Run) -> None:
    asyncio.run(_check_panels(run))


async def _check_panels(run: Run) -> None:
    settings = run.settings
    conn = await connect(Stack(settings).timescaledb.connection_info()["grafana_dsn"])
    failures: list[str] = []
    checked = 0
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        t0, t1 = run.started - dt.timedelta(minutes=5), dt.datetime.now(dt.UTC)
        dash = json.loads((GENERATED / "ioc-vconf.json").read_text())
        variables = await resolve_variables(conn, dash, t0, t1, {"unit": "99"})
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                checked += 1
                if "rawSql" in target:
                    sql = expand_sql(target["rawSql"], t0, t1, variables)
                    rows = await conn.fetch(sql)
                    if not rows:
                        failures.append(f"{panel['title']}: no rows\n  {sql}")
                else:
                    expr = expand_promql(target["expr"], variables)
                    result = prom_query(settings.prometheus_url, expr, bool(target.get("instant")))
                    if not result:
                        failures.append(f"{panel['title']}: no series for {expr}")
    finally:
        await conn.close()
    assert checked >= 12
    assert not failures, "\n".join(failures)


def test_every_record_is_accounted_for(run: Run) -> None:
    figures = reconcile(run.settings, run.summary, "vconf e2e")
    assert figures["produced_invalid"] > 0
    produced = run.summary.stats.valid_by_feed["vconf"]
    stored = query(run.settings, "SELECT count(*) AS n FROM raw_vconf")[0]["n"]
    assert stored == produced > 0
    kinds = {
        r["kind"]: r["n"]
        for r in query(run.settings, "SELECT kind, count(*) AS n FROM raw_vconf GROUP BY kind")
    }
    assert set(kinds) == {
        "vconf.bridge",
        "vconf.endpoint",
        "vconf.join",
        "vconf.meeting",
        "vconf.calendar",
    }
    assert kinds == {k: v for k, v in run.summary.stats.valid_by_kind.items() if k in kinds}
    assert_accounting(run.worker)
