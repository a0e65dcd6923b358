"""The security-operations feed end to end on the local stack, with its faults.

One realtime run (about a minute) of the demo province's network nodes and SOC sensors
(native Wazuh and Suricata payloads through the adapters -> Kafka -> worker -> TimescaleDB,
states, the incident agent, Prometheus and Alertmanager), with:

- A: a brute-force campaign on the district sensor soc-991 (a critical Wazuh alert): one
  ``security-alert`` incident, ``SecurityCriticalAlert`` fires;
- B: a DDoS campaign on commune node nn-992-001 while its link is degraded (the netnode
  feed's own ``link_degraded``): ONE incident holds the link and the sensor, whichever came
  first; ``SecurityAttackOnDegradedLink`` fires;
- C: a scan (high, not critical) on commune node nn-991-001: no incident while its link is
  fine; when the link degrades later, the link's incident opens once and the sensor joins it;
- malformed records: every valid event lands once, every invalid one is dead-lettered with
  its reason (tests/support/reconcile.py);

and then every panel of the Security operations dashboard returns data as the Grafana role,
which cannot read the raw addresses but sees them aggregated.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract.topology import load_scenario
from ioc.db import connect
from ioc.deploy.local.stack import Stack
from ioc.simulators.run import SimConfig, Summary, run_simulation
from tests.support.dashboards import expand_promql, expand_sql, prom_query, resolve_variables
from tests.support.db import query
from tests.support.processes import Worker
from tests.support.reconcile import assert_accounting, reconcile
from tests.support.wait import wait_for

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards/ioc/dashboards/generated/ioc-soc.json"
RUN_S = 62
PLAN = """
faults:
  - {type: soc_campaign, target: soc-991, at: 8, duration: 50}
  - {type: soc_campaign, target: nn-992-001, at: 8, duration: 54, campaign: ddos}
  - {type: link_degraded, target: nn-992-001, at: 8, duration: 54}
  - {type: soc_campaign, target: nn-991-001, at: 8, duration: 54, campaign: scan}
  - {type: link_degraded, target: nn-991-001, at: 30, duration: 32}
  - {type: malformed, rate: 0.02}
"""
EXPECTED_ALERTS = {
    ("SecurityCriticalAlert", "device_id", "soc-991"),
    ("SecurityCriticalAlert", "device_id", "soc-992-001"),
    ("SecurityAttackOnDegradedLink", "upstream_node", "nn-992-001"),
    ("SecurityAttackOnDegradedLink", "upstream_node", "nn-991-001"),
}


def soc_scenario(path: Path) -> Path:
    """The demo province's network nodes and SOC sensors only (a short, focused run)."""
    doc: dict[str, Any] = load_scenario("demo").to_document()
    doc["scenario"] = "demo-soc"
    doc["devices"] = [d for d in doc["devices"] if d["class"] in ("netnode", "soc")]
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def firing(settings: Settings) -> set[tuple[str, str, str]]:
    """(alertname, label, value) of the SOC alerts Prometheus has firing now."""
    found: set[tuple[str, str, str]] = set()
    result = prom_query(
        settings.prometheus_url,
        'ALERTS{alertstate="firing",domain="soc",alertname=~"Security.*"}',
        instant=True,
    )
    for series in result:
        labels = series["metric"]
        for key in ("device_id", "upstream_node"):
            if key in labels:
                found.add((labels["alertname"], key, labels[key]))
    return found


def alertmanager_has(settings: Settings, alertname: str) -> bool:
    q = urllib.parse.urlencode({"filter": f'alertname="{alertname}"', "active": "true"})
    with urllib.request.urlopen(f"{settings.alertmanager_url}/api/v2/alerts?{q}", timeout=10) as r:
        return bool(json.load(r))


def test_soc_feed_end_to_end(namespace: Settings, tmp_path: Path) -> None:
    scenario = str(soc_scenario(tmp_path / "demo-soc.yaml"))
    plan = tmp_path / "faults.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    asyncio.run(bootstrap(namespace, scenario))
    worker = Worker(namespace, scenario, tmp_path / "worker.log").start()
    started = dt.datetime.now(dt.UTC)
    seen: set[tuple[str, str, str]] = set()
    summary: list[Summary] = []
    try:
        run = threading.Thread(
            target=lambda: summary.append(
                run_simulation(
                    namespace,
                    SimConfig(
                        scenario=scenario,
                        mode="realtime",
                        duration_s=RUN_S,
                        progress=False,
                        faults_path=str(plan),
                    ),
                )
            )
        )
        run.start()
        in_alertmanager = False
        stop_at: float | None = None
        while True:
            seen |= firing(namespace)
            in_alertmanager = in_alertmanager or alertmanager_has(
                namespace, "SecurityAttackOnDegradedLink"
            )
            if not run.is_alive():
                stop_at = stop_at or time.monotonic() + 20
                if (seen >= EXPECTED_ALERTS and in_alertmanager) or time.monotonic() > stop_at:
                    break
            time.sleep(2)
        run.join()
        assert seen >= EXPECTED_ALERTS, f"firing: {sorted(seen)}"
        assert in_alertmanager, "SecurityAttackOnDegradedLink never reached Alertmanager"

        # -- reconciliation: every valid event once, every invalid one dead-lettered --
        wait_for(lambda: query(namespace, "SELECT count(*) AS n FROM raw_soc")[0]["n"] > 0, 30)
        wait_for(lambda: _landed_all(namespace, summary[0]), 60, what="every valid event landed")
        reconcile(namespace, summary[0], "soc e2e")
        assert_accounting(worker)
        assert summary[0].stats.valid_by_feed["soc"] > 100

        # -- incidents: once each, with the right root cause --
        incidents = query(
            namespace,
            "SELECT id, kind, root_device, title, affected, details FROM incidents ORDER BY id",
        )
        by_root = {(r["root_device"], r["kind"]): r for r in incidents}
        roots = [(r["root_device"], r["kind"]) for r in incidents]
        assert len(roots) == len(set(roots)), roots  # nothing opened twice
        a = by_root[("soc-991", "security-alert")]
        assert "critical-brute_force" in a["title"], a["title"]
        b = [r for r in incidents if r["root_device"] in ("nn-992-001", "soc-992-001")]
        assert len(b) == 1, [(r["root_device"], r["kind"]) for r in b]
        assert {"nn-992-001", "soc-992-001"} <= set(b[0]["affected"]), b[0]["affected"]
        assert json.loads(b[0]["details"])["correlated"], b[0]["details"]
        c = [r for r in incidents if r["root_device"] in ("nn-991-001", "soc-991-001")]
        assert [(r["root_device"], r["kind"]) for r in c] == [("nn-991-001", "degraded")]
        assert "soc-991-001" in c[0]["affected"], c[0]["affected"]
        steps = query(
            namespace,
            "SELECT event, note FROM incident_events WHERE incident_id = $1 ORDER BY seq",
            c[0]["id"],
        )
        assert any(s["note"].startswith("correlated: ") for s in steps), steps
        untouched = {"soc-99-core", "soc-992"}
        assert not [r for r in incidents if r["root_device"] in untouched], incidents

        # -- counts by severity, category and unit: the rollups at every level match raw --
        wait_for(lambda: _rolled_up(namespace), 45, what="rollups equal to the raw alerts")

        asyncio.run(check_dashboard_and_privacy(namespace, started))
    finally:
        worker.stop()


def _landed_all(settings: Settings, summary: Summary) -> bool:
    rows = query(
        settings,
        "SELECT (SELECT count(*) FROM raw_soc) + (SELECT count(*) FROM raw_netnode) AS n",
    )
    return int(rows[0]["n"]) >= sum(summary.stats.valid_by_feed.values())


def _rolled_up(settings: Settings) -> dict[str, Any] | None:
    """Alerts per severity and category in the province, district and commune rollups equal
    the raw alerts of the units' sensors; None until the last minutes are rolled up."""
    raw = query(
        settings,
        """SELECT a.ancestor_code AS unit, count(*) AS alerts,
                  count(*) FILTER (WHERE r.severity = 'critical') AS critical,
                  count(*) FILTER (WHERE r.category = 'ddos') AS ddos,
                  count(*) FILTER (WHERE r.category = 'scan') AS scan
           FROM raw_soc r JOIN devices d ON d.id = r.device_id
           JOIN sites s ON s.id = d.site_id JOIN unit_ancestors a ON a.unit_code = s.unit_code
           WHERE r.kind = 'soc.alert' AND a.ancestor_code IN ('99', '992', '992-001')
           GROUP BY 1""",
    )
    rolled = query(
        settings,
        """SELECT unit_code AS unit, sum(alerts) AS alerts, sum(critical) AS critical,
                  sum(ddos) AS ddos, sum(scan) AS scan
           FROM unit_rollup_soc_1m WHERE unit_code IN ('99', '992', '992-001') GROUP BY 1""",
    )
    want = {r["unit"]: tuple(r.values())[1:] for r in raw}
    got = {r["unit"]: tuple(int(v or 0) for v in tuple(r.values())[1:]) for r in rolled}
    return {"units": got} if len(want) == 3 and want == got else None


async def check_dashboard_and_privacy(settings: Settings, started: dt.datetime) -> None:
    """Every panel of ioc-soc returns data as the Grafana role; that role cannot select the
    raw addresses, and sees them through the aggregate view."""
    grafana_dsn = Stack(settings).timescaledb.connection_info()["grafana_dsn"]
    conn = await connect(grafana_dsn)
    failures: list[str] = []
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        t0, t1 = started - dt.timedelta(minutes=5), dt.datetime.now(dt.UTC)
        dash = json.loads(DASHBOARD.read_text())
        variables = await resolve_variables(conn, dash, t0, t1)
        variables["unit"] = "99"
        checked = 0
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                checked += 1
                title = panel["title"]
                if "rawSql" in target:
                    sql = expand_sql(target["rawSql"], t0, t1, variables)
                    try:
                        rows = await conn.fetch(sql)
                    except Exception as exc:
                        failures.append(f"{title}: {exc}\n  {sql}")
                        continue
                    if not rows:
                        failures.append(f"{title}: no rows\n  {sql}")
                else:
                    expr = expand_promql(target["expr"], variables)
                    if not prom_query(settings.prometheus_url, expr, bool(target.get("instant"))):
                        failures.append(f"{title}: no series for {expr}")
        assert checked >= 12, checked
        assert not failures, "\n".join(failures)

        for column in ("src_ip", "dst_ip"):
            with pytest.raises(Exception, match="permission denied"):
                await conn.fetch(f"SELECT {column} FROM raw_soc LIMIT 1")
        networks = await conn.fetch(
            "SELECT src_network, sum(alerts) AS n FROM soc_sources_1h "
            "WHERE src_network IS NOT NULL GROUP BY 1"
        )
        assert networks and all(r["src_network"].endswith("/24") for r in networks), networks
    finally:
        await conn.close()
