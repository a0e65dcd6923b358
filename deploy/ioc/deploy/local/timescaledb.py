"""TimescaleDB: PostgreSQL 17 + timescaledb from Debian trixie, in a ``debootstrap`` chroot.

Started with ``shared_preload_libraries=timescaledb``; on first start ``initdb`` with the
generated superuser password, then the database and its roles from :mod:`ioc.db.roles`
with the generated passwords of :mod:`ioc.deploy.local.credentials`.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from ioc.db.roles import (
    ADMIN_ROLE,
    DATABASE,
    READONLY_ROLE,
    ROLES,
    RUNTIME_ROLE,
    BootstrapSQL,
    bootstrap_sql,
    sql_literal,
)
from ioc.deploy.local.credentials import DatabaseCredentials
from ioc.deploy.local.install import DEBIAN_SUITE, debootstrap
from ioc.deploy.local.process import Progress, StackError, as_root, run_step
from ioc.deploy.local.service import Service

__all__ = ["DATABASE", "PG_BIN", "PG_DATA", "ROLES", "TimescaleDB"]

PG_BIN = "/usr/lib/postgresql/17/bin"
PG_DATA = "/var/lib/ioc/pgdata"  # inside the chroot
PACKAGES = ["postgresql-17-timescaledb"]


class TimescaleDB(Service):
    name = "timescaledb"
    start_timeout = 60.0
    stop_signal = signal.SIGINT  # postgres "fast" shutdown: don't wait for clients to leave

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.settings.postgres_port}"

    def installed(self) -> bool:
        return (self.rootfs / "usr/lib/postgresql/17/lib/timescaledb.so").exists()

    def install(self, progress: Progress) -> None:
        progress(f"  debootstrap {DEBIAN_SUITE} with {', '.join(PACKAGES)} (about 40 s and 700 MB)")
        debootstrap(self.rootfs, PACKAGES, self.log, progress)

    def _ids(self) -> tuple[int, int]:
        """The chroot's postgres user and group ids."""
        for line in (self.rootfs / "etc/passwd").read_text().splitlines():
            parts = line.split(":")
            if parts[0] == "postgres":
                return int(parts[2]), int(parts[3])
        raise StackError(f"no postgres user in {self.rootfs}/etc/passwd")

    def _chroot(self, *argv: str) -> list[str]:
        uid, gid = self._ids()
        return as_root(["chroot", f"--userspec={uid}:{gid}", str(self.rootfs), *argv])

    def credentials(self) -> DatabaseCredentials:
        """The generated passwords (written on first use)."""
        return self.stack_credentials.ensure_database()

    def prepare(self, progress: Progress) -> None:
        creds = self.credentials()
        uid, gid = self._ids()
        data = self.rootfs / PG_DATA.lstrip("/")
        run_dir = self.rootfs / "run/postgresql"
        for path in (data.parent, run_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, uid, gid)
        from ioc.deploy.local.backup import prepare_archive

        prepare_archive(self.rootfs, uid, gid)  # WAL archive dir and archive_command script
        if not (data / "PG_VERSION").exists():
            progress("  initdb (first time only)")
            pwfile = self.rootfs / "run/postgresql/.pw"
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(creds.superuser_password + "\n")
            os.chown(pwfile, uid, gid)
            try:
                run_step(
                    self._chroot(
                        f"{PG_BIN}/initdb",
                        "-D",
                        PG_DATA,
                        "-U",
                        creds.superuser,
                        "--auth-local=peer",
                        "--auth-host=scram-sha-256",
                        "--pwfile=/run/postgresql/.pw",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ),
                    "initdb",
                    self.log,
                    timeout=300,
                )
            finally:
                pwfile.unlink(missing_ok=True)

    def command(self) -> list[str]:
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.settings.postgres_port),
            "unix_socket_directories": "/run/postgresql",
            "shared_preload_libraries": "timescaledb",
            "timescaledb.telemetry_level": "off",
            "max_connections": "200",
            "shared_buffers": "512MB",
            "work_mem": "16MB",
            "maintenance_work_mem": "128MB",
            "max_wal_size": "2GB",
            "checkpoint_timeout": "15min",
            "wal_compression": "on",
            "log_min_messages": "warning",
            "log_line_prefix": "%m [%p] %q%u@%d ",
            "dynamic_shared_memory_type": "mmap",  # no /dev/shm needed inside the chroot
        }
        from ioc.deploy.local.backup import archive_options

        options.update(archive_options())  # WAL archiving for point-in-time restore
        args: list[str] = []
        for key, value in options.items():
            args += ["-c", f"{key}={value}"]
        return self._chroot(f"{PG_BIN}/postgres", "-D", PG_DATA, *args)

    def dsn(self, role: str, database: str = DATABASE) -> str:
        """DSN of ``role`` (a role of ioc.db.roles, or the superuser) on this stack."""
        return self.credentials().dsn(role, self.settings.postgres_port, database)

    _dsn = dsn  # the name the chaos tests use

    def probe(self) -> tuple[bool, str, dict[str, Any]]:
        try:
            return asyncio.run(self._select_one())
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}", {}

    async def _select_one(self) -> tuple[bool, str, dict[str, Any]]:
        import asyncpg

        creds = self.credentials()
        if creds.initialised:
            role, db = ADMIN_ROLE, creds.database
        else:
            role, db = creds.superuser, "postgres"
        conn = await asyncpg.connect(creds.dsn(role, self.settings.postgres_port, db), timeout=3)
        try:
            await conn.fetchval("SELECT 1")
            version = await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            )
            license_ = await conn.fetchval("SELECT current_setting('timescaledb.license', true)")
        finally:
            await conn.close()
        if creds.initialised and not version:
            return False, f"timescaledb extension missing in database {creds.database}", {}
        detail = f"SELECT 1 ok, timescaledb {version or '(not yet created)'}, {license_} licence"
        return True, detail, {"timescaledb": version, "license": license_}

    def after_ready(self, progress: Progress) -> None:
        creds = self.credentials()
        if not creds.initialised:
            progress(f"  creating database {creds.database}, roles {'/'.join(ROLES)}, extension")
            asyncio.run(self._bootstrap(creds))
            creds.initialised = True
            self.stack_credentials.save_database(creds)
        else:
            # every start: roles and attributes added by a later release (the viewers'
            # group, the owner's CREATEROLE) reach a stack made before it
            asyncio.run(self._bootstrap(creds))

    def _sql(self, creds: DatabaseCredentials) -> BootstrapSQL:
        """ioc.db.roles' bootstrap with this stack's passwords as SQL literals."""
        return bootstrap_sql(
            lambda role: sql_literal(creds.password(role)), self.settings.db_schema
        )

    async def _bootstrap(self, creds: DatabaseCredentials) -> None:
        """The roles with their generated passwords, the database, then its privileges."""
        port = self.settings.postgres_port
        await apply_bootstrap(
            self._sql(creds),
            creds.database,
            server_dsn=creds.dsn(creds.superuser, port, "postgres"),
            database_dsn=creds.dsn(creds.superuser, port, creds.database),
        )

    def connection_info(self) -> dict[str, Any]:
        """The DSNs of the three roles (empty before the stack generated the passwords)."""
        creds = self.stack_credentials.database()
        if creds is None:
            return {}
        port = self.settings.postgres_port
        return {
            "database": creds.database,
            "dsn": creds.dsn(RUNTIME_ROLE, port),
            "admin_dsn": creds.dsn(ADMIN_ROLE, port),
            "grafana_dsn": creds.dsn(READONLY_ROLE, port),
        }


async def apply_bootstrap(
    sql: BootstrapSQL, database: str, *, server_dsn: str, database_dsn: str
) -> None:
    """ioc.db.roles' bootstrap as the superuser (idempotent): the roles, the database if it
    is missing (through ``server_dsn``), then its privileges (through ``database_dsn``). The
    single server and the HA primary (ioc.deploy.local.postgres_ha) both run it."""
    import asyncpg

    conn = await asyncpg.connect(server_dsn, timeout=5)
    try:
        for statement in sql.roles:
            await conn.execute(statement)
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(sql.create_database)
    finally:
        await conn.close()
    await apply_database_grants(sql, database_dsn)


async def apply_database_grants(sql: BootstrapSQL, database_dsn: str) -> None:
    """The database-level statements of the bootstrap (privileges, extension), idempotent."""
    import asyncpg

    conn = await asyncpg.connect(database_dsn, timeout=5)
    try:
        for statement in sql.database:
            await conn.execute(statement)
    finally:
        await conn.close()
