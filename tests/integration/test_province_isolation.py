"""Per-province isolation in the database: a province's viewer role reads its own rows only.

Two provinces in one schema (Lao Cai, which Yen Bai was merged into, and Lang Son); bootstrap
makes a viewer role per province; each logs in as Grafana's per-province datasource would and,
with the same SQL the dashboards run, sees its own units, devices, raw rows, rollups and the
views over them, history of the unit merged into it included, and nothing of the other
province; the national read-only role sees everything; a viewer holds no privilege on any table
of the schema itself (so neither on a hypertable's chunks), and what names no province has no
view."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import asyncpg
import pytest

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract.feeds import Feed
from ioc.contract.history import DAY, HOUR
from ioc.dashboards.build import GENERATED
from ioc.dashboards.grafana_sql import expand_sql, resolve_variables
from ioc.db import connect
from ioc.db.provinces import view_schema, viewer_connection, viewer_role
from ioc.db.roles import PROVINCE_VIEWER_ROLE
from ioc.deploy.local.stack import Stack
from ioc.streams.history import roll_sql

SCENARIO = """\
scenario: two-provinces
levels: [province, commune]
units:
  - {code: "15", name: Yen Bai, level: province, lat: 21.7, lon: 104.9,
     valid_to: 2025-06-30, merged_into: "10"}
  - {code: "10", name: Lao Cai, level: province, lat: 22.4, lon: 104.0}
  - {code: 10-001, name: Xa A, level: commune, parent: "10", lat: 22.41, lon: 104.01}
  - {code: "20", name: Lang Son, level: province, lat: 21.85, lon: 106.76}
  - {code: 20-001, name: Xa B, level: commune, parent: "20", lat: 21.86, lon: 106.77}
sites:
  - {id: s-10, name: Lao Cai core, kind: provincial_core, unit: "10", lat: 22.4, lon: 104.0}
  - {id: s-10-1, name: Xa A office, kind: commune_office, unit: 10-001, lat: 22.41, lon: 104.01}
  - {id: s-20, name: Lang Son core, kind: provincial_core, unit: "20", lat: 21.85, lon: 106.76}
  - {id: s-20-1, name: Xa B office, kind: commune_office, unit: 20-001, lat: 21.86, lon: 106.77}
devices:
  - {id: nn-10, class: netnode, site: s-10}
  - {id: cam-10, class: camera, site: s-10-1, upstream: nn-10}
  - {id: nn-20, class: netnode, site: s-20}
  - {id: cam-20, class: camera, site: s-20-1, upstream: nn-20}
"""
NOW = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
OWN = {  # province -> what its viewer sees
    "10": {
        "units": {"10", "10-001", "15"},  # Yen Bai's history is Lao Cai's
        "devices": {"nn-10", "cam-10"},
        "rollup_units": {"10", "10-001", "15"},
    },
    "20": {
        "units": {"20", "20-001"},
        "devices": {"nn-20", "cam-20"},
        "rollup_units": {"20", "20-001"},
    },
}


async def _store_rows(settings: Settings) -> None:
    """Rows of both provinces, as the writer lands them."""
    app = await connect(settings.database_dsn())
    try:
        await app.copy_records_to_table(
            "raw_camera",
            schema_name=settings.db_schema,
            columns=["ts", "device_id", "seq", "kind", "fps"],
            records=[(NOW, dev, 1, "camera.stream", 25.0) for dev in ("cam-10", "cam-20")],
        )
        await app.execute(f"SET search_path TO {settings.db_schema}, public")
        await app.executemany(
            "INSERT INTO device_state (device_id, state, since) VALUES ($1, 'up', $2)",
            [(dev, NOW) for dev in ("nn-10", "cam-10", "nn-20", "cam-20")],
        )
        await app.executemany(
            "INSERT INTO unit_rollup_camera_1m (bucket, unit_code, level, cameras, "
            "cameras_reporting, vehicles) VALUES ($1, $2, $3, 1, 1, 5)",
            [
                (NOW - dt.timedelta(days=600 if unit == "15" else 0), unit, level)
                for unit, level in (("10", 0), ("10-001", 1), ("15", 0), ("20", 0), ("20-001", 1))
            ],
        )
        # their hours and days, as the shard leader's history round rolls them
        for when in (NOW, NOW - dt.timedelta(days=600)):
            await app.execute(roll_sql(Feed.CAMERA, HOUR, unit=True), HOUR.bucket_of(when))
            await app.execute(roll_sql(Feed.CAMERA, DAY, unit=True), DAY.bucket_of(when))
    finally:
        await app.close()


async def _viewer(settings: Settings, province: str) -> asyncpg.Connection:
    """Log in as the province's viewer role, as its Grafana datasource does (its own
    search_path: the provinces' views first, under the tables' names)."""
    conn = await viewer_connection(settings, province)
    schema = settings.db_schema
    assert await conn.fetchval("SHOW search_path") == f"{view_schema(schema)}, {schema}, public"
    return conn


async def test_a_province_viewer_reads_its_own_province_only(
    namespace: Settings, tmp_path: Path
) -> None:
    scenario = tmp_path / "two-provinces.yaml"
    scenario.write_text(SCENARIO)
    await bootstrap(namespace, str(scenario))
    await bootstrap(namespace, str(scenario))  # idempotent: roles, mapping, policies
    await _store_rows(namespace)

    admin = await connect(namespace.admin_dsn())
    try:
        mapped = await admin.fetch(
            f"SELECT role_name, province FROM {namespace.db_schema}.province_viewers"
        )
        # one viewer role per province of today: Yen Bai, merged, has none of its own
        assert {(r["role_name"], r["province"]) for r in mapped} == {
            (viewer_role("10"), "10"),
            (viewer_role("20"), "20"),
        }
        chunks = [
            r[0]
            for r in await admin.fetch(
                "SELECT format('%I.%I', chunk_schema, chunk_name) "
                "FROM timescaledb_information.chunks "
                "WHERE hypertable_schema = $1 AND hypertable_name = 'raw_camera'",
                namespace.db_schema,
            )
        ]
        assert chunks
    finally:
        await admin.close()

    for province, own in OWN.items():
        conn = await _viewer(namespace, province)
        try:

            async def column(sql: str, conn: asyncpg.Connection = conn) -> set[str]:
                return {r[0] for r in await conn.fetch(sql)}

            assert await column("SELECT code FROM admin_units") == own["units"]
            assert await column("SELECT id FROM devices") == own["devices"]
            cameras = {d for d in own["devices"] if d.startswith("cam")}
            assert await column("SELECT device_id FROM raw_camera") == cameras
            assert await column("SELECT device_id FROM device_state") == own["devices"]
            assert (
                await column("SELECT unit_code FROM unit_rollup_camera_1m") == own["rollup_units"]
            )
            # and the daily tier rolled from them
            assert (
                await column("SELECT unit_code FROM unit_rollup_camera_1d") == own["rollup_units"]
            )
            assert await column("SELECT code FROM unit_lineage") == own["units"]
            # naming the other province's rows outright finds nothing
            other = "20" if province == "10" else "10"
            assert (
                await conn.fetchval("SELECT count(*) FROM devices WHERE id = $1", f"nn-{other}")
                == 0
            )
            # what names no province: refused
            for sql in (
                "SELECT * FROM api_tokens",
                "SELECT * FROM audit_log",
                "SELECT * FROM province_viewers",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetch(sql)
            # a hypertable's chunks, read by name: refused too
            for chunk in chunks:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetch(f"SELECT device_id FROM {chunk}")
            # and a viewer only reads
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DELETE FROM device_state")
        finally:
            await conn.close()

    # the national room (ioc_grafana) reads every province
    grafana = await connect(Stack(namespace).timescaledb.connection_info()["grafana_dsn"])
    try:
        rows = await grafana.fetch(f"SELECT device_id FROM {namespace.db_schema}.raw_camera")
        assert {r[0] for r in rows} == {"cam-10", "cam-20"}
    finally:
        await grafana.close()


async def test_a_viewer_reads_the_schema_only_through_its_provinces_views(
    namespace: Settings, tmp_path: Path
) -> None:
    """The viewers hold no privilege on any table or view of the schema itself, and every
    view of theirs keeps its province's rows (a feed or table added later gets a view or
    nothing, never a grant on the whole)."""
    scenario = tmp_path / "two-provinces.yaml"
    scenario.write_text(SCENARIO)
    await bootstrap(namespace, str(scenario))
    admin = await connect(namespace.admin_dsn())
    try:
        granted = await admin.fetch(
            """SELECT c.relname FROM pg_class c
               WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
                 AND has_table_privilege($2, c.oid, 'SELECT')""",
            namespace.db_schema,
            PROVINCE_VIEWER_ROLE,
        )
        assert [r[0] for r in granted] == []
        views = {
            r["relname"]: (r["definition"], r["options"])
            for r in await admin.fetch(
                """SELECT c.relname, pg_get_viewdef(c.oid) AS definition,
                          c.reloptions AS options
                   FROM pg_class c WHERE c.relnamespace = $1::regnamespace""",
                view_schema(namespace.db_schema),
            )
        }
    finally:
        await admin.close()
    assert {"raw_camera", "raw_soc", "devices", "admin_units", "incidents", "pages"} <= set(views)
    assert {"unit_rollup_camera_1h", "unit_lineage", "soc_sources_1h"} <= set(views)
    assert not {"api_tokens", "audit_log", "province_viewers", "device_events_outbox"} & set(views)
    for name, (definition, options) in views.items():
        assert "viewer_units()" in definition or "viewer_devices()" in definition, name
        assert "security_barrier=true" in (options or []), name
    # the private columns stay out of the raw table's view
    assert "src_ip" not in views["raw_soc"][0]


async def test_a_province_viewer_reads_its_own_availability(
    namespace: Settings, tmp_path: Path
) -> None:
    """The SLA dashboard, as a province's Grafana datasource runs it: every panel answers
    (the SLA objects a viewer may choose: its province's units' and the domain-wide ones),
    over the province's own devices only; another province's SLA objects and maintenance
    windows are not listed."""
    scenario = tmp_path / "two-provinces.yaml"
    scenario.write_text(SCENARIO)
    await bootstrap(namespace, str(scenario))
    admin = await connect(namespace.admin_dsn())
    try:
        await admin.execute(f"SET search_path TO {namespace.db_schema}, public")
        await admin.executemany(
            "INSERT INTO device_state_intervals (device_id, state, start_ts, end_ts) "
            "VALUES ($1, $2, $3, $4)",
            [
                (dev, state, NOW - dt.timedelta(hours=start), NOW - dt.timedelta(hours=end))
                for dev in ("nn-10", "cam-10", "nn-20", "cam-20")
                for state, start, end in (("up", 6, 3), ("down", 3, 2), ("up", 2, 0))
            ],
        )
        await admin.executemany(
            "INSERT INTO sla_objects (name, slo_pct, scope_kind, scope, period, created_by) "
            "VALUES ($1, 99.5, $2, $3, 'month', 'test')",
            [
                ("Lao Cai", "unit", "10"),
                ("Lang Son", "unit", "20"),
                ("Cameras", "domain", "camera"),
            ],
        )
        # maintenance of each province (by unit, site and device) and of a whole domain
        windows = [("unit", "10"), ("site", "s-10-1"), ("device", "nn-20"), ("domain", "camera")]
        for kind, scope in windows:
            start, end = NOW - dt.timedelta(hours=5), NOW - dt.timedelta(hours=4)
            window = await admin.fetchval(
                "INSERT INTO maintenance_windows (scope_kind, scope, start_ts, end_ts, note) "
                "VALUES ($1, $2, $3, $4, $2) RETURNING id",
                kind,
                scope,
                start,
                end,
            )
            await admin.execute(
                "INSERT INTO maintenance_occurrences (window_id, start_ts, end_ts) "
                "VALUES ($1, $2, $3)",
                window,
                start,
                end,
            )
    finally:
        await admin.close()
    dash = json.loads((GENERATED / "ioc-sla.json").read_text())
    for province, own in OWN.items():
        conn = await _viewer(namespace, province)
        try:
            names = {r[0] for r in await conn.fetch("SELECT name FROM sla_objects")}
            assert names == {"Cameras", "Lao Cai" if province == "10" else "Lang Son"}
            seen = {"10": {"10", "s-10-1", "camera"}, "20": {"nn-20", "camera"}}[province]
            assert {r[0] for r in await conn.fetch("SELECT scope FROM maintenance_windows")} == seen
            occurrences = await conn.fetchval("SELECT count(*) FROM maintenance_occurrences")
            assert occurrences == len(seen)
            t0, t1 = NOW - dt.timedelta(hours=24), NOW
            variables = await resolve_variables(conn, dash, t0, t1)
            assert variables["unit"] == province
            measured = None
            for panel in dash["panels"]:
                for target in panel.get("targets", []):
                    sql = expand_sql(target["rawSql"], t0, t1, variables)
                    rows = await conn.fetch(sql)  # answers, under the viewer's rights
                    if panel["title"] == "Devices measured":
                        measured = rows[0]["devices"]
            assert measured == len(own["devices"]), (province, measured)
        finally:
            await conn.close()
