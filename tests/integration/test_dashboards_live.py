"""Every panel's query, expanded the way Grafana does, against live TimescaleDB and
Prometheus after a short simulation through the real pipeline."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.dashboards.build import BUILDERS, GENERATED
from ioc.dashboards.vconf import MEETING_PANELS
from ioc.db import connect
from ioc.deploy.local.stack import Stack
from ioc.simulators.run import SimConfig, run_simulation
from tests.support.dashboards import expand_promql, expand_sql, prom_query, resolve_variables
from tests.support.kafka import incident_agent_positions
from tests.support.processes import Worker
from tests.support.wait import wait_for

NODE = "nn-992"
NODE_DOWN_S = 40
"""The node's cut must outlast its worst-case confirmation, or no site-isolated incident
opens: its first failed probe, a round for the upstream node's verdict, a round to count the
cut, ``node_down_confirm_ms`` (10 s), a round to confirm; up to ~27 s (docs/alerting.md,
page latency budget). A 25 s cut missed it in 2 of 18 runs after test_console_browser."""

# Panels whose emptiness depends on chance, not on the simulation's guarantees.
MAY_BE_EMPTY = {
    "Traffic incidents",
    "Isolated sites now",
    "Worst stations (packet loss, jitter, drops)",
    # video conference: no meeting near in this run (tests/integration/test_vconf_e2e.py)
    *MEETING_PANELS,
    # the SOC's: no campaign in this run (tests/integration/test_soc_e2e.py proves them)
    "Security incidents (and correlated link incidents)",
    "Latest alerts (no addresses)",
    "Source networks (aggregated: /24, /48)",
}


def test_every_panel_query_returns_data(namespace: Settings, tmp_path: Path) -> None:
    asyncio.run(bootstrap(namespace, "demo"))
    worker = Worker(namespace, "demo", tmp_path / "worker.log").start()
    started = dt.datetime.now(dt.UTC)
    try:
        time.sleep(8)
        run_simulation(
            namespace,
            SimConfig(
                scenario="demo",
                mode="rate",
                rate=300,
                duration_s=75,
                progress=False,
                fault_flags=[f"node_down:{NODE}@20+{NODE_DOWN_S}", "malformed:0.02"],
            ),
        )

        seen: dict[str, object] = {}

        async def ready() -> bool:
            conn = await connect(namespace.admin_dsn())
            try:
                await conn.execute(f"SET search_path TO {namespace.db_schema}, public")
                rollups = await conn.fetchval("SELECT count(*) FROM unit_rollup_camera_1m")
                isolated = await conn.fetchval(
                    "SELECT count(*) FROM incidents WHERE kind = 'site-isolated'"
                )
                # where the incident path stopped, if it did: states judged, transitions
                # recorded, transitions not yet relayed to Kafka, incidents of any kind
                seen.update(
                    rollups=rollups,
                    states=dict(
                        await conn.fetch("SELECT state, count(*) FROM device_state GROUP BY 1")
                    ),
                    intervals=await conn.fetchval("SELECT count(*) FROM device_state_intervals"),
                    outbox=await conn.fetchval("SELECT count(*) FROM device_events_outbox"),
                    incidents=dict(
                        await conn.fetch("SELECT kind, count(*) FROM incidents GROUP BY 1")
                    ),
                    # the faulted node: what the state machine made of its probes
                    node_intervals=[
                        (r["state"], r["reason"], f"{r['start_ts']:%H:%M:%S}")
                        for r in await conn.fetch(
                            "SELECT state, reason, start_ts FROM device_state_intervals "
                            "WHERE device_id = $1 ORDER BY start_ts",
                            NODE,
                        )
                    ],
                    node_unreachable=[
                        f"{r['ts']:%H:%M:%S}"
                        for r in await conn.fetch(
                            "SELECT ts FROM raw_netnode WHERE device_id = $1 "
                            "AND kind LIKE '%probe' AND NOT reachable ORDER BY ts",
                            NODE,
                        )
                    ][::10],
                )
                # a maintenance window, so the SLA panels have one to exclude
                await conn.execute(
                    "WITH w AS (INSERT INTO maintenance_windows (scope_kind, scope, start_ts, "
                    "end_ts, note) SELECT 'device', 'cam-991-001', now() - interval '5 minutes', "
                    "now(), 'lens' WHERE NOT EXISTS (SELECT 1 FROM maintenance_windows) "
                    "RETURNING id, start_ts, end_ts) "
                    "INSERT INTO maintenance_occurrences (window_id, start_ts, end_ts) "
                    "SELECT id, start_ts, end_ts FROM w"
                )
                return bool(rollups and isolated)
            finally:
                await conn.close()

        try:
            wait_for(lambda: asyncio.run(ready()), 60, what="rollups and incidents")
        except AssertionError as exc:
            log = (tmp_path / "worker.log").read_text(errors="replace").splitlines()[-15:]
            events = asyncio.run(incident_agent_positions(namespace))
            raise AssertionError(
                f"{exc}; last seen {seen}; device events {events}; worker log tail:\n"
                + "\n".join(log)
            ) from None
        time.sleep(6)  # one more scrape of the leader's gauges
        asyncio.run(check_all(namespace, started))
    finally:
        worker.stop()


async def check_all(settings: Settings, started: dt.datetime) -> None:
    grafana_dsn = Stack(settings).timescaledb.connection_info()["grafana_dsn"]
    conn = await connect(grafana_dsn)  # the read-only role Grafana uses
    failures: list[str] = []
    checked = 0
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        t0, t1 = started - dt.timedelta(minutes=5), dt.datetime.now(dt.UTC)
        for name in BUILDERS:
            dash = json.loads((GENERATED / f"ioc-{name}.json").read_text())
            variables = await resolve_variables(conn, dash, t0, t1)
            # the province for unit panels, a device of its class for device panels
            if "unit" in variables:
                variables["unit"] = "99"
            for panel in dash["panels"]:
                for target in panel.get("targets", []):
                    checked += 1
                    title = panel["title"]
                    if "rawSql" in target:
                        sql = expand_sql(target["rawSql"], t0, t1, variables)
                        try:
                            rows = await conn.fetch(sql)
                        except Exception as exc:
                            failures.append(f"{name}/{title}: {exc}\n  {sql}")
                            continue
                        if target["format"] == "time_series" and rows:
                            assert next(iter(rows[0].keys())) == "time", (name, title)
                        if not rows and title not in MAY_BE_EMPTY:
                            failures.append(f"{name}/{title}: no rows\n  {sql}")
                    else:
                        expr = expand_promql(target["expr"], variables)
                        result = prom_query(
                            settings.prometheus_url, expr, bool(target.get("instant"))
                        )
                        if not result and title not in MAY_BE_EMPTY:
                            failures.append(f"{name}/{title}: no series for {expr}")
    finally:
        await conn.close()
    print(f"checked {checked} panel queries")
    assert not failures, "\n".join(failures)
