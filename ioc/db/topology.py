"""Store the province model (units, ancestors, sites, devices) in the database.

Upserts by id, so every worker can load its scenario at start; devices removed from the
scenario are kept (history refers to them) but nothing new arrives for them. Units keep their
validity and the unit they were merged into (``merged_into``, migration 0010), which the
database's ``current_unit`` and ``unit_lineage`` follow to roll history into today's units.
"""

from __future__ import annotations

import json

import asyncpg

from ioc.contract.topology import Topology

UNIT_COLUMNS = (
    "code",
    "name",
    "level",
    "level_name",
    "parent_code",
    "lat",
    "lon",
    "valid_from",
    "valid_to",
    "merged_into",
)
"""The columns of ``admin_units`` written, in order (``merged_into`` since migration 0010)."""

MERGED_INTO_MIGRATION = 10
"""The migration that added ``admin_units.merged_into``."""


def unit_upsert(schema_version: int | None = None) -> str:
    """The upsert of one unit; for a schema before :data:`MERGED_INTO_MIGRATION` (the upgrade
    test stores the previous release's topology with it) without ``merged_into``."""
    columns = [
        c
        for c in UNIT_COLUMNS
        if c != "merged_into" or schema_version is None or schema_version >= MERGED_INTO_MIGRATION
    ]
    values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "code")
    return (
        f"INSERT INTO admin_units ({', '.join(columns)}) VALUES ({values}) "
        f"ON CONFLICT (code) DO UPDATE SET {updates}"
    )


async def store_topology(
    conn: asyncpg.Connection, topology: Topology, schema_version: int | None = None
) -> None:
    """Upsert the topology; ``schema_version``: the schema's migration if older than this
    release's (None: this release's)."""
    units = sorted(topology.units.values(), key=lambda u: u.level)
    sql = unit_upsert(schema_version)
    width = sql.count("$")
    async with conn.transaction():
        # merged_into may name a unit inserted later in the batch: its foreign key is deferred
        await conn.executemany(
            sql,
            [
                (
                    u.code,
                    u.name,
                    u.level,
                    u.level_name,
                    u.parent,
                    u.lat,
                    u.lon,
                    u.valid_from,
                    u.valid_to,
                    u.merged_into,
                )[:width]
                for u in units
            ],
        )
        ancestors = [
            (code, ancestor, depth)
            for code in topology.units
            for depth, ancestor in enumerate(topology.ancestors(code))
        ]
        await conn.executemany(
            """INSERT INTO unit_ancestors (unit_code, ancestor_code, depth) VALUES ($1, $2, $3)
               ON CONFLICT (unit_code, ancestor_code) DO UPDATE SET depth = EXCLUDED.depth""",
            ancestors,
        )
        await conn.executemany(
            """INSERT INTO sites (id, name, kind, unit_code, lat, lon)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
                 unit_code = EXCLUDED.unit_code, lat = EXCLUDED.lat, lon = EXCLUDED.lon""",
            [(s.id, s.name, s.kind, s.unit, s.lat, s.lon) for s in topology.sites.values()],
        )
        await conn.executemany(
            """INSERT INTO devices (id, device_class, site_id, upstream_node, lat, lon,
                                    attributes)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
               ON CONFLICT (id) DO UPDATE SET device_class = EXCLUDED.device_class,
                 site_id = EXCLUDED.site_id, upstream_node = EXCLUDED.upstream_node,
                 lat = EXCLUDED.lat, lon = EXCLUDED.lon, attributes = EXCLUDED.attributes""",
            [
                (
                    d.id,
                    d.device_class,
                    d.site,
                    d.upstream,
                    d.lat,
                    d.lon,
                    json.dumps(d.attributes, ensure_ascii=False),
                )
                for d in topology.devices.values()
            ],
        )
