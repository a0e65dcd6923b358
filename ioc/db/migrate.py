"""Versioned SQL migrations (``migrations/NNNN_name.sql``), recorded in ``schema_migrations``.

Safe to rerun and to run from several processes at once (an advisory lock serialises them);
an applied file whose text changed is refused rather than silently skipped. After them, the
tables of registered feeds that no migration creates are generated (:mod:`ioc.db.feeds`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from ioc.db import connect
from ioc.db.roles import READONLY_ROLE, RUNTIME_ROLE
from ioc.errors import IocError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(IocError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("ioc.db").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in ioc/db/migrations: {versions}")
    return found


async def _grant(conn: asyncpg.Connection, schema: str) -> None:
    """Least privilege: the writer reads and writes rows, Grafana only reads."""
    roles = {
        r["rolname"]
        for r in await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])",
            [RUNTIME_ROLE, READONLY_ROLE],
        )
    }
    if RUNTIME_ROLE in roles:
        await conn.execute(f"""
            GRANT USAGE ON SCHEMA {schema} TO {RUNTIME_ROLE};
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema}
                TO {RUNTIME_ROLE};
            GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {RUNTIME_ROLE};
            ALTER DEFAULT PRIVILEGES IN SCHEMA {schema}
                GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {RUNTIME_ROLE};
            ALTER DEFAULT PRIVILEGES IN SCHEMA {schema}
                GRANT USAGE, SELECT ON SEQUENCES TO {RUNTIME_ROLE};
            GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {RUNTIME_ROLE};
        """)
    if READONLY_ROLE in roles:
        await conn.execute(f"""
            GRANT USAGE ON SCHEMA {schema} TO {READONLY_ROLE};
            GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {READONLY_ROLE};
            ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES
                TO {READONLY_ROLE};
        """)


async def migrate(dsn: str, schema: str, upto: int | None = None) -> list[Migration]:
    """Apply pending migrations into ``schema``; returns the ones applied now.

    ``upto``: only those up to that version (the upgrade test builds the previous release's
    schema with it, :data:`ioc.db.releases.PREVIOUS_RELEASE_MIGRATION`)."""
    migrations = [m for m in load_migrations() if upto is None or m.version <= upto]
    conn = await connect(dsn)
    applied_now: list[Migration] = []
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"ioc.migrate.{schema}")
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(f"SET search_path TO {schema}, public")
            await conn.execute("""
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )""")
            done = {
                r["version"]: r
                for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
            }
            for mig in migrations:
                row = done.get(mig.version)
                if row is not None:
                    if row["checksum"] != mig.checksum:
                        raise MigrationError(
                            f"migration {mig.version:04d}_{mig.name}.sql changed after it was "
                            f"applied to schema {schema}; add a new migration instead"
                        )
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(mig.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) "
                            "VALUES ($1, $2, $3)",
                            mig.version,
                            mig.name,
                            mig.checksum,
                        )
                except asyncpg.PostgresError as exc:
                    raise MigrationError(
                        f"migration {mig.version:04d}_{mig.name}.sql failed: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
                applied_now.append(mig)
            from ioc.db.feeds import ensure_feed_tables

            await ensure_feed_tables(conn)  # feeds declared after the migrations: no files
            await _grant(conn, schema)
            from ioc.db.feeds import restrict_private_columns

            # after the grants: the read-only role loses the private columns again
            await restrict_private_columns(conn, schema, READONLY_ROLE)
            from ioc.db.feeds import public_columns
            from ioc.db.provinces import province_views

            # each province's viewers: their rows only, the same columns as above
            await province_views(conn, schema, public_columns())
            from ioc.db.features import apply_licensed_features

            await apply_licensed_features(conn, schema)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"ioc.migrate.{schema}")
    finally:
        await conn.close()
    return applied_now


async def current_version(dsn: str, schema: str) -> int | None:
    conn = await connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass($1)", f"{schema}.schema_migrations")
        if not exists:
            return None
        version: int | None = await conn.fetchval(
            f"SELECT max(version) FROM {schema}.schema_migrations"
        )
        return version
    finally:
        await conn.close()
