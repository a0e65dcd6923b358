"""Units' mergers reach the database: the upsert writes ``merged_into`` (migration 0010) and
still writes the previous release's columns for the upgrade test; the SQL mapping judges days
in the same zone as the contract. The SQL itself runs in tests/integration/test_unit_lineage.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, cast

import asyncpg

from ioc.contract import tables as t
from ioc.contract.topology import UNIT_DATES_TZ, load_yaml, parse_topology
from ioc.db.migrate import load_migrations
from ioc.db.releases import PREVIOUS_RELEASE_MIGRATION
from ioc.db.topology import MERGED_INTO_MIGRATION, store_topology, unit_upsert

SCENARIO = """\
scenario: merged
levels: [province, commune]
units:
  - {code: P, name: Province, level: province, lat: 21.0, lon: 105.0}
  - {code: C1, name: Old commune, level: commune, parent: P, lat: 21.1, lon: 105.1,
     valid_to: 2025-06-30, merged_into: C2}
  - {code: C2, name: New commune, level: commune, parent: P, lat: 21.2, lon: 105.2,
     valid_from: 2025-07-01}
sites:
  - {id: s1, name: Core, kind: provincial_core, unit: P, lat: 21.0, lon: 105.0}
devices:
  - {id: core, class: netnode, site: s1}
"""


class _Connection:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[Any, ...]]]] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.calls.append((" ".join(sql.split()), rows))


def _stored_units(schema_version: int | None) -> tuple[str, list[tuple[Any, ...]]]:
    conn = _Connection()
    topo = parse_topology(load_yaml(SCENARIO, "merged.yaml"), "merged.yaml")
    asyncio.run(store_topology(cast(asyncpg.Connection, conn), topo, schema_version))
    sql, rows = conn.calls[0]
    assert sql.startswith("INSERT INTO admin_units ")
    return sql, rows


def test_units_are_stored_with_their_merger() -> None:
    sql, rows = _stored_units(None)
    assert "merged_into" in sql and "merged_into = EXCLUDED.merged_into" in sql
    assert sql.count("$") == len(rows[0]) == 10
    by_code = {row[0]: row for row in rows}
    assert by_code["C1"][-2:] == (dt.date(2025, 6, 30), "C2")
    assert by_code["C2"][-3:] == (dt.date(2025, 7, 1), None, None)
    assert rows[0][0] == "P"  # parents first (their key is not deferred)


def test_the_previous_release_schema_gets_its_own_columns() -> None:
    assert PREVIOUS_RELEASE_MIGRATION < MERGED_INTO_MIGRATION
    sql, rows = _stored_units(PREVIOUS_RELEASE_MIGRATION)
    assert "merged_into" not in sql
    assert sql.count("$") == len(rows[0]) == 9
    assert unit_upsert(MERGED_INTO_MIGRATION) == unit_upsert()


def test_the_migration_adds_the_column_the_function_and_the_view() -> None:
    migration = next(m for m in load_migrations() if m.version == MERGED_INTO_MIGRATION)
    assert migration.name == "unit_lineage"
    sql = migration.sql
    assert "ADD COLUMN merged_into text REFERENCES admin_units (code) DEFERRABLE" in sql
    assert re.search(rf"CREATE FUNCTION {t.CURRENT_UNIT}\(unit_code text, on_day date", sql)
    assert f"CREATE VIEW {t.UNIT_LINEAGE} AS" in sql
    # Vietnam days, as the contract judges them
    assert re.findall(r"AT TIME ZONE '([^']+)'", sql) == [UNIT_DATES_TZ]
    # an old migration is never edited for this: 0001 still has no merged_into
    first = resources.files("ioc.db").joinpath("migrations/0001_topology.sql").read_text()
    assert "merged_into" not in first
