"""Province isolation in the database: a province's viewers read only that province's rows.

One deployment serves many provinces (the ``national`` scenario) from one schema. Every
province (a top unit of the scenario) has a read-only login role :func:`viewer_role`, a member
of :data:`~ioc.db.roles.PROVINCE_VIEWER_ROLE`; Grafana's datasource for that province logs in
as it. A dashboard variable alone isolates nothing: the database does.

The viewers get no privilege on the schema's tables. They read a second schema,
:func:`view_schema` (``ioc_province`` beside ``ioc``), holding one view per table or view
that names a unit or a device, under the same name, which keeps the rows of the viewer's
provinces: units under them (or that history maps there through a merger) and devices at
their sites (``viewer_units()``/``viewer_devices()``, migration 0011). The viewer role's
``search_path`` puts that schema first, so the generated dashboards' SQL runs unchanged.

Why views, not row-level security on the tables: TimescaleDB gives each chunk the
hypertable's grants but not its policies, so a viewer could read another province's rows
from a chunk by name, and without access to TimescaleDB's chunk schema a viewer's queries
fail; views (with their owner's rights, ``security_barrier``) reach the chunks only through
the hypertable, leave the writer's COPY path untouched, and keep the private columns out
(a raw table's view lists only its public ones).

- The key column is found by name (:data:`KEYS`), so a feed declared later is covered
  without an edit here; what names no province (tokens, audit log, outbox, bookkeeping) gets
  no view, and functions over the tables run with the viewer's rights: they see nothing.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import asyncpg

from ioc.contract.topology import Topology
from ioc.db.roles import DATABASE, PROVINCE_VIEWER_ROLE
from ioc.errors import IocError

if TYPE_CHECKING:
    from ioc.config import Settings

KEYS: tuple[tuple[str, str], ...] = (
    ("unit_code", "unit_code IN (SELECT viewer_units())"),
    ("unit", "unit IN (SELECT viewer_units())"),
    ("device_id", "device_id IN (SELECT viewer_devices())"),
    ("root_device", "root_device IN (SELECT viewer_devices())"),
    ("code", "code IN (SELECT viewer_units())"),  # unit_lineage
)
"""Key column -> the view's condition, first match wins (a table with several keeps the
unit's: an incident's unit is always set, its root device not always)."""

MAINTENANCE_IN_VIEW = """(w.scope_kind = 'domain'
    OR (w.scope_kind = 'unit' AND w.scope IN (SELECT viewer_units()))
    OR (w.scope_kind = 'device' AND w.scope IN (SELECT viewer_devices()))
    OR (w.scope_kind = 'site'
        AND w.scope IN (SELECT id FROM sites WHERE unit_code IN (SELECT viewer_units()))))"""
"""A maintenance window ``w`` a province sees: one over its units, sites or devices, or over
a whole domain (which covers its devices too)."""
WINDOWS_IN_VIEW = f"SELECT w.id FROM maintenance_windows w WHERE {MAINTENANCE_IN_VIEW}"

OWN_KEYS: dict[str, str] = {
    "admin_units": "code IN (SELECT viewer_units())",
    "devices": "id IN (SELECT viewer_devices())",
    # an SLA object scoped to a unit is that unit's province's; one scoped to a domain or a
    # device class applies to every province's devices (the SLA dashboard's choice)
    "sla_objects": "scope_kind <> 'unit' OR scope IN (SELECT viewer_units())",
    # maintenance by its scope (the SLA dashboard lists the windows in range)
    "maintenance_windows": f"id IN ({WINDOWS_IN_VIEW})",
    "maintenance_occurrences": f"window_id IN ({WINDOWS_IN_VIEW})",
}
"""Tables that key themselves: the topology's, the SLA objects and maintenance windows by
their scope, a window's occurrences by their window."""

NEVER: frozenset[str] = frozenset(
    {
        "api_tokens",  # secrets (hashes) of the operations service's clients
        "audit_log",  # who did what: operators' business
        "device_events_outbox",  # the evaluator's relay queue
        "province_viewers",  # who sees what
        "schema_migrations",
        "rollup_dirty",
    }
)
"""Relations no province viewer reads, whatever their columns."""


def view_schema(schema: str) -> str:
    """The schema of the provinces' views over ``schema`` (``ioc`` -> ``ioc_province``)."""
    return f"{schema}_province"


class ProvinceRoleError(IocError):
    """The database cannot create a province's viewer role."""


def viewer_role(province: str) -> str:
    """The login role of a province's viewers: ``ioc_view_`` and the code, lower case, with
    anything but letters, digits and ``_`` as ``_`` (``ioc_view_01``)."""
    return "ioc_view_" + re.sub(r"[^a-z0-9_]", "_", province.lower())


async def province_views(
    conn: asyncpg.Connection, schema: str, private: dict[str, list[str]]
) -> dict[str, str]:
    """The viewers' schema: a view per relation of ``schema`` that names a unit or a device
    (re-made after every migration, idempotent); returns relation -> its condition.
    ``private``: tables whose views list only these (public) columns."""
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", PROVINCE_VIEWER_ROLE):
        return {}
    if await conn.fetchval("SELECT to_regprocedure($1)", f"{schema}.viewer_units()") is None:
        return {}  # a schema migrated only part of the way (migration 0011 makes these)
    views = view_schema(schema)
    rels = await conn.fetch(
        """SELECT c.relname, c.relkind::text AS kind,
                  array_agg(a.attname::text ORDER BY a.attnum) AS columns
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
           WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
             AND a.attnum > 0 AND NOT a.attisdropped
           GROUP BY c.oid, c.relname, c.relkind""",
        schema,
    )
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {views}")
    made: dict[str, str] = {}
    for rel in sorted(rels, key=lambda r: r["relname"]):
        name, columns = rel["relname"], list(rel["columns"])
        condition = OWN_KEYS.get(name) or next(
            (cond for column, cond in KEYS if column in columns), None
        )
        if condition is None or name in NEVER:
            await conn.execute(f"DROP VIEW IF EXISTS {views}.{name}")
            continue
        shown = ", ".join('"' + c.replace('"', '""') + '"' for c in private.get(name, columns))
        body = (
            f"{views}.{name} WITH (security_barrier) AS "
            f"SELECT {shown} FROM {schema}.{name} WHERE {condition}"
        )
        try:
            async with conn.transaction():
                await conn.execute(f"CREATE OR REPLACE VIEW {body}")
        except asyncpg.InvalidTableDefinitionError:  # columns changed: make it anew
            await conn.execute(f"DROP VIEW {views}.{name}")
            await conn.execute(f"CREATE VIEW {body}")
        made[name] = condition
    await conn.execute(f"""
        REVOKE ALL ON ALL TABLES IN SCHEMA {views} FROM PUBLIC;
        GRANT USAGE ON SCHEMA {views} TO {PROVINCE_VIEWER_ROLE};
        GRANT SELECT ON ALL TABLES IN SCHEMA {views} TO {PROVINCE_VIEWER_ROLE};
        GRANT USAGE ON SCHEMA {schema} TO {PROVINCE_VIEWER_ROLE};
    """)
    return made


async def ensure_province_viewers(
    conn: asyncpg.Connection, schema: str, topology: Topology
) -> list[str]:
    """A viewer role per province of ``topology`` (created without a password: none can log
    in until :func:`set_viewer_password`), mapped onto its province in ``schema``. Runs as
    the schema owner, which bootstrap gave CREATEROLE and the viewer group's ADMIN option."""
    roles: list[str] = []
    for province in topology.top_units():
        role = viewer_role(province)
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        if not exists:
            try:
                await conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE {PROVINCE_VIEWER_ROLE}")
            except asyncpg.DuplicateObjectError:
                pass  # another bootstrap made it meanwhile
            except asyncpg.InsufficientPrivilegeError as exc:
                raise ProvinceRoleError(
                    f"cannot create the viewer role {role} of province {province} ({exc}): "
                    "the schema owner needs CREATEROLE and the ADMIN option on "
                    f"{PROVINCE_VIEWER_ROLE} (ioc.db.roles' bootstrap; `ioc stack up` "
                    "applies it)"
                ) from None
        # the views first, under the tables' names: the dashboards' SQL runs unchanged
        await conn.execute(
            f"ALTER ROLE {role} IN DATABASE {DATABASE} "
            f"SET search_path = {view_schema(schema)}, {schema}, public"
        )
        # as for ioc_grafana (ioc.db.roles): no JIT for the dashboards' short queries
        await conn.execute(f"ALTER ROLE {role} IN DATABASE {DATABASE} SET jit = off")
        await conn.execute(
            f"""INSERT INTO {schema}.province_viewers (role_name, province) VALUES ($1, $2)
                ON CONFLICT (role_name) DO UPDATE SET province = EXCLUDED.province""",
            role,
            province,
        )
        roles.append(role)
    return roles


async def set_viewer_password(conn: asyncpg.Connection, province: str, password: str) -> str:
    """Give a province's viewer role a password (Grafana's datasource for that province
    logs in with it); returns the role."""
    role = viewer_role(province)
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        raise ProvinceRoleError(
            f"no viewer role {role}: province {province!r} is not a top unit of a "
            "bootstrapped scenario (`ioc bootstrap --scenario ...` creates one per province)"
        )
    quoted = "'" + password.replace("'", "''") + "'"
    await conn.execute(f"ALTER ROLE {role} PASSWORD {quoted}")
    return role


async def viewer_connection(
    settings: Settings, province: str, **connect_kwargs: Any
) -> asyncpg.Connection:
    """Log in to the local stack's database as a province's viewer, as its Grafana
    datasource does (a fresh password; the role's own ``search_path`` puts the province's
    views first). For benchmarks and tests: a deployment sets the password once."""
    import secrets

    from ioc.db import connect
    from ioc.deploy.local.credentials import dsn

    password = secrets.token_urlsafe(16)
    admin = await connect(settings.admin_dsn())
    try:
        role = await set_viewer_password(admin, province, password)
    finally:
        await admin.close()
    return await connect(dsn(role, password, settings.postgres_port, DATABASE), **connect_kwargs)
