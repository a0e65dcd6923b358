"""History across the mergers, in the database: a scenario with units abolished on 1 July 2025
(Yen Bai into Lao Cai) stores their validity and `merged_into`; `current_unit` and the view
`unit_lineage` map every code onto today's unit as the Python topology does; a rollup over a
period spanning the reform rolls the old unit into today's, or shows it as it was; the
read-only role (Grafana) reads all of it, and the dashboards' unit picker lists today's units
unless asked for the abolished ones; the operations API lists them the same way."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract.feeds import Feed
from ioc.contract.history import HOUR
from ioc.contract.topology import Topology, load_scenario, today
from ioc.dashboards.build import GENERATED
from ioc.dashboards.panels import ABOLISHED_HIDE, ABOLISHED_SHOW, ABOLISHED_VARIABLE
from ioc.db import connect
from ioc.deploy.local.stack import Stack
from ioc.streams.history import roll_sql
from tests.support.dashboards import expand_sql
from tests.support.ops_server import ADMIN_TOKEN, ops_service

# Yen Bai and its commune come first, so their merged_into names a unit stored after them in
# the same batch (the foreign key is deferred to the commit).
SCENARIO = """\
scenario: lao-cai-2025
levels: [province, commune]
units:
  - {code: "15", name: Yen Bai, level: province, lat: 21.7, lon: 104.9,
     valid_to: 2025-06-30, merged_into: "10"}
  - {code: "10", name: Lao Cai, level: province, lat: 22.4, lon: 104.0}
  - {code: 15-001, name: Xa A, level: commune, parent: "15", lat: 21.7, lon: 104.9,
     valid_to: 2025-06-30, merged_into: 10-001}
  - {code: 10-001, name: Xa B, level: commune, parent: "10", lat: 21.71, lon: 104.91,
     valid_from: 2025-07-01}
  - {code: 10-002, name: Xa C, level: commune, parent: "10", lat: 22.4, lon: 104.0}
sites:
  - {id: s-core, name: Core, kind: provincial_core, unit: "10", lat: 22.4, lon: 104.0}
  - {id: s-b, name: Xa B office, kind: commune_office, unit: 10-001, lat: 21.71, lon: 104.91}
devices:
  - {id: nn-core, class: netnode, site: s-core}
  - {id: nn-b, class: netnode, site: s-b, upstream: nn-core}
  - {id: cam-b, class: camera, site: s-b, upstream: nn-b}
"""

# A unit an older scenario left behind (units are never deleted): merged in 2008 into the
# commune that was itself merged in 2025. No scenario may say so today (a merger names a
# unit that exists), but the database keeps such rows, and the mapping follows them.
LEFT_BEHIND = (
    "INSERT INTO admin_units (code, name, level, level_name, parent_code, lat, lon, "
    "valid_to, merged_into) VALUES ('15-000', 'Xa cu', 1, 'commune', '15', 21.7, 104.9, "
    "'2008-07-31', '15-001')"
)
EXPECTED = {  # code -> (today's unit, mergers on the way, abolished)
    "10": ("10", 0, False),
    "15": ("10", 1, True),
    "10-001": ("10-001", 0, False),
    "10-002": ("10-002", 0, False),
    "15-001": ("10-001", 1, True),
    "15-000": ("10-001", 2, True),
}
REFORM = dt.datetime(2025, 7, 1, tzinfo=dt.UTC) - dt.timedelta(hours=7)  # Vietnam midnight


def _scenario(tmp_path: Path) -> str:
    path = tmp_path / "lao-cai-2025.yaml"
    path.write_text(SCENARIO)
    return str(path)


async def _admin(settings: Settings) -> asyncpg.Connection:
    conn = await connect(settings.admin_dsn())
    await conn.execute(f"SET search_path TO {settings.db_schema}, public")
    return conn


async def _grafana(settings: Settings) -> asyncpg.Connection:
    conn = await connect(Stack(settings).timescaledb.connection_info()["grafana_dsn"])
    await conn.execute(f"SET search_path TO {settings.db_schema}, public")
    return conn


async def test_mergers_are_stored_and_mapped_onto_todays_units(
    namespace: Settings, tmp_path: Path
) -> None:
    scenario = _scenario(tmp_path)
    topology = await bootstrap(namespace, scenario)
    await bootstrap(namespace, scenario)  # idempotent: the upsert again
    conn = await _admin(namespace)
    try:
        stored = {
            r["code"]: (r["valid_from"], r["valid_to"], r["merged_into"])
            for r in await conn.fetch(
                "SELECT code, valid_from, valid_to, merged_into FROM admin_units"
            )
        }
        assert stored == {
            u.code: (u.valid_from, u.valid_to, u.merged_into) for u in topology.units.values()
        }
        await conn.execute(LEFT_BEHIND)

        # the database refuses what no scenario may say
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE admin_units SET merged_into = code WHERE code = '15'")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE admin_units SET merged_into = '10' WHERE code = '10-002'")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("UPDATE admin_units SET merged_into = 'X9' WHERE code = '15'")

        # Vietnam days, as the contract judges them
        assert await conn.fetchval("SELECT unit_today()") == today()

        lineage = {
            r["code"]: (r["current_code"], r["mergers"], r["abolished"])
            for r in await conn.fetch("SELECT * FROM unit_lineage")
        }
        assert lineage == EXPECTED
        for code, (current, _, _) in EXPECTED.items():
            assert await conn.fetchval("SELECT current_unit($1)", code) == current, code
        # the Python topology maps its own units the same way
        for code in topology.units:
            assert topology.current_unit(code) == EXPECTED[code][0], code
        # on a day before the reform every unit was its own; unknown codes map onto themselves
        before = dt.date(2025, 6, 30)
        for code in EXPECTED:
            on_day = await conn.fetchval("SELECT current_unit($1, $2)", code, before)
            assert on_day == ("15-001" if code == "15-000" else code), code
        assert await conn.fetchval("SELECT current_unit('X9')") == "X9"
        assert await conn.fetchval("SELECT current_unit(NULL)") is None
    finally:
        await conn.close()


async def _store_rollups(conn: asyncpg.Connection) -> dict[str, int]:
    """Two days of camera rollups either side of the reform: Yen Bai (15) and its commune until
    30 June, Lao Cai (10) and the new commune throughout; vehicles per unit, for the checks."""
    rows: list[tuple[dt.datetime, str, int, int]] = []  # bucket, unit, level, vehicles
    per_unit: dict[str, int] = {}
    for minutes in range(-24 * 60, 24 * 60, 60):
        bucket = REFORM + dt.timedelta(minutes=minutes)
        units = ["10", "10-001"] if minutes >= 0 else ["10", "15", "15-001", "10-002"]
        for unit in units:
            vehicles = 10 if unit.startswith("15") else 1
            rows.append((bucket, unit, 0 if "-" not in unit else 1, vehicles))
            per_unit[unit] = per_unit.get(unit, 0) + vehicles
    await conn.executemany(
        "INSERT INTO unit_rollup_camera_1m (bucket, unit_code, level, cameras, "
        "cameras_reporting, vehicles) VALUES ($1, $2, $3, 1, 1, $4)",
        rows,
    )
    # their hours, as the shard leader's history round rolls them (docs/history.md)
    for hour in sorted({HOUR.bucket_of(r[0]) for r in rows}):
        await conn.execute(roll_sql(Feed.CAMERA, HOUR, unit=True), hour)
    return per_unit


ROLLED_INTO_TODAY = """
SELECT l.current_code AS unit, sum(r.vehicles)::int AS vehicles
FROM unit_rollup_camera_1m r JOIN unit_lineage l ON l.code = r.unit_code
WHERE r.bucket >= $1 AND r.bucket < $2 AND r.level = $3
GROUP BY 1 ORDER BY 1
"""
AS_IT_WAS = """
SELECT r.unit_code AS unit, sum(r.vehicles)::int AS vehicles
FROM unit_rollup_camera_1m r
WHERE r.bucket >= $1 AND r.bucket < $2 AND r.level = $3
GROUP BY 1 ORDER BY 1
"""
WITH_THE_FUNCTION = """
SELECT current_unit(r.unit_code) AS unit, sum(r.vehicles)::int AS vehicles
FROM unit_rollup_camera_1m r
WHERE r.bucket >= $1 AND r.bucket < $2 AND r.level = $3
GROUP BY 1 ORDER BY 1
"""


async def test_a_rollup_spanning_the_reform_rolls_old_units_into_todays(
    namespace: Settings, tmp_path: Path
) -> None:
    await bootstrap(namespace, _scenario(tmp_path))
    conn = await _admin(namespace)
    try:
        await conn.execute(LEFT_BEHIND)
        per_unit = await _store_rollups(conn)
    finally:
        await conn.close()
    t0, t1 = REFORM - dt.timedelta(days=1), REFORM + dt.timedelta(days=1)
    conn = await _grafana(namespace)  # what Grafana and a report's reader may do
    try:

        async def totals(sql: str, level: int) -> dict[str, int]:
            return {r["unit"]: r["vehicles"] for r in await conn.fetch(sql, t0, t1, level)}

        # provinces: Yen Bai's history is Lao Cai's today; as it was, two provinces
        assert await totals(ROLLED_INTO_TODAY, 0) == {"10": per_unit["10"] + per_unit["15"]}
        assert await totals(WITH_THE_FUNCTION, 0) == {"10": per_unit["10"] + per_unit["15"]}
        assert await totals(AS_IT_WAS, 0) == {"10": per_unit["10"], "15": per_unit["15"]}
        # communes: the old commune's minutes before the reform count for the new one
        rolled = {"10-001": per_unit["10-001"] + per_unit["15-001"], "10-002": per_unit["10-002"]}
        assert await totals(ROLLED_INTO_TODAY, 1) == rolled
        assert await totals(WITH_THE_FUNCTION, 1) == rolled
        assert set(await totals(AS_IT_WAS, 1)) == {"10-001", "10-002", "15-001"}
        # the hourly tier over the same period, rolled in the same way
        hourly = await conn.fetch(
            "SELECT l.current_code, sum(v.vehicles)::int AS vehicles "
            "FROM unit_rollup_camera_1h v JOIN unit_lineage l ON l.code = v.unit_code "
            "WHERE v.bucket >= $1 AND v.bucket < $2 AND v.level = 0 GROUP BY 1",
            t0,
            t1,
        )
        assert [(r["current_code"], r["vehicles"]) for r in hourly] == [
            ("10", per_unit["10"] + per_unit["15"])
        ]
    finally:
        await conn.close()


def _unit_picker_sql() -> str:
    dash: dict[str, Any] = json.loads((GENERATED / "ioc-cameras.json").read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert ABOLISHED_VARIABLE in variables
    query: str = variables["unit"]["query"]
    return query


async def test_the_dashboards_unit_picker_lists_todays_units_unless_asked(
    namespace: Settings, tmp_path: Path
) -> None:
    await bootstrap(namespace, _scenario(tmp_path))
    now = dt.datetime.now(dt.UTC)
    conn = await _grafana(namespace)
    try:
        for choice, expected in [
            (ABOLISHED_HIDE, ["10", "10-001", "10-002"]),
            (ABOLISHED_SHOW, ["10", "15", "10-001", "10-002", "15-001"]),
        ]:
            sql = expand_sql(_unit_picker_sql(), now, now, {ABOLISHED_VARIABLE: choice})
            rows = await conn.fetch(sql)
            assert [r["__value"] for r in rows] == expected, choice
        shown = {r["__value"]: r["__text"] for r in rows}
        assert shown["15"] == "Yen Bai (province, until 2025-06-30)"
        assert shown["10"] == "Lao Cai (province)"
    finally:
        await conn.close()


async def test_the_operations_api_lists_todays_units_unless_asked(
    namespace: Settings, tmp_path: Path
) -> None:
    async with ops_service(namespace, _scenario(tmp_path)) as svc, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with http.get(f"{svc.url}/api/v1/units", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            today_units = await resp.json()
        assert [u["code"] for u in today_units] == ["10", "10-001", "10-002"]
        async with http.get(
            f"{svc.url}/api/v1/units", params={"include_abolished": "true"}, headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            every = {u["code"]: u for u in await resp.json()}
        assert list(every) == ["10", "15", "10-001", "10-002", "15-001"]
        assert every["15"]["current"] == "10" and every["15"]["abolished"] is True
        assert every["15-001"] | {"name": None} == {
            "code": "15-001",
            "name": None,
            "level": "commune",
            "parent": "15",
            "valid_from": None,
            "valid_to": "2025-06-30",
            "merged_into": "10-001",
            "abolished": True,
            "current": "10-001",
        }
        topology: Topology = load_scenario(_scenario(tmp_path))
        assert {u["code"] for u in every.values()} == set(topology.units)
