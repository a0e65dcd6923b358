"""Least privilege in the database: nobody runs as superuser, Grafana cannot write."""

from __future__ import annotations

import asyncpg
import pytest

from ioc.config import Settings
from ioc.db import connect
from ioc.db.migrate import migrate
from ioc.deploy.local.stack import Stack


async def test_grafana_role_reads_but_cannot_write(namespace: Settings) -> None:
    await migrate(namespace.admin_dsn(), namespace.db_schema)
    dsn = Stack(namespace).timescaledb.connection_info()["grafana_dsn"]
    conn = await connect(dsn)
    try:
        await conn.execute(f"SET search_path TO {namespace.db_schema}, public")
        assert await conn.fetchval("SELECT count(*) FROM incidents") == 0
        for statement in (
            "INSERT INTO incidents (kind, severity, title, root_device, device_class, "
            "opened_at) VALUES ('x', 'info', 't', 'd', 'camera', now())",
            "DELETE FROM devices",
            "UPDATE admin_units SET name = 'x'",
            "CREATE TABLE intruder (x int)",
            "DROP TABLE pages",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_runtime_roles_are_not_superusers_and_cannot_change_the_schema(
    namespace: Settings,
) -> None:
    await migrate(namespace.admin_dsn(), namespace.db_schema)
    conn = await connect(namespace.database_dsn())
    try:
        assert (
            await conn.fetchval(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles "
                "WHERE rolname = current_user"
            )
            is False
        )
        await conn.execute(f"SET search_path TO {namespace.db_schema}, public")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE intruder (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DROP TABLE raw_camera")
    finally:
        await conn.close()
    admin = await connect(namespace.admin_dsn())
    try:
        assert (
            await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            is False
        )
    finally:
        await admin.close()
