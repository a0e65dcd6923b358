"""Store the province model (units, ancestors, sites, devices) in the database.

Upserts by id, so every worker can load its scenario at start; devices removed from the
scenario are kept (history refers to them) but nothing new arrives for them.
"""

from __future__ import annotations

import json

import asyncpg

from ioc.contract.topology import Topology


async def store_topology(conn: asyncpg.Connection, topology: Topology) -> None:
    units = sorted(topology.units.values(), key=lambda u: u.level)
    async with conn.transaction():
        await conn.executemany(
            """INSERT INTO admin_units (code, name, level, level_name, parent_code, lat, lon,
                                        valid_from, valid_to)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, level = EXCLUDED.level,
                 level_name = EXCLUDED.level_name, parent_code = EXCLUDED.parent_code,
                 lat = EXCLUDED.lat, lon = EXCLUDED.lon, valid_from = EXCLUDED.valid_from,
                 valid_to = EXCLUDED.valid_to""",
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
                )
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
