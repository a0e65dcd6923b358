"""The replicated database of the local stack (``ioc stack up --database ha``).

pg_auto_failover (Debian trixie's ``postgresql-17-auto-failover``, installed into the
TimescaleDB chroot) runs a monitor and two PostgreSQL 17 + TimescaleDB data nodes on
loopback, each under its own ``pg_autoctl run`` (keeper). The monitor, not a test or an
operator, decides a failover: when the primary stops answering its health checks it promotes
the standby. Clients reach whichever node is the primary through a multi-host DSN with
``target_session_attrs=read-write`` (:meth:`ioc.config.Settings.database_dsn`).

Durability: with two nodes the monitor keeps the standby in ``synchronous_standby_names``
(``ANY 1 (pgautofailover_standby_N)``, its replication quorum) and ``synchronous_commit=on``,
so a commit is acknowledged only once the standby has its WAL. The stream workers commit Kafka
offsets after the database commit, so a promoted standby has every row ever acknowledged.
When the standby itself is lost the primary drops to ``wait_primary`` (asynchronous, writes go
on): availability over a second copy, which the monitor restores once a standby is back.

Ports: the monitor on ``IOC_POSTGRES_HA_PORT`` (15440), the nodes on + 1 and + 2. Passwords
of the superuser and the project's roles (``ioc.db.roles``) are generated into
``postgres-ha/credentials.json``; client connections use scram-sha-256. pg_auto_failover's own
users (``autoctl_node``, ``pgautofailover_monitor``, ``pgautofailover_replicator``) are trusted
on 127.0.0.1 only: a local-development shortcut, see docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ioc.config import Settings
from ioc.db.roles import (
    ADMIN_ROLE,
    READONLY_ROLE,
    ROLES,
    RUNTIME_ROLE,
    bootstrap_sql,
    sql_literal,
)
from ioc.deploy.local.credentials import (
    HA_DATABASE_SERVICE,
    DatabaseCredentials,
    StackCredentials,
)
from ioc.deploy.local.install import apt_install
from ioc.deploy.local.process import Progress, StackError, as_root, run_step
from ioc.deploy.local.service import Service
from ioc.deploy.local.timescaledb import PG_BIN, TimescaleDB, apply_bootstrap

__all__ = [
    "HA_SERVICE_TYPES",
    "PACKAGES",
    "HaMonitor",
    "HaNode",
    "connection_info",
    "ha_services",
    "primary",
]

PACKAGES = ["postgresql-17-auto-failover", "pg-auto-failover-cli"]
HA_ROOT = "/var/lib/ioc/ha"  # inside the chroot
PG_HOME = "/var/lib/postgresql"  # the chroot's postgres user: pg_autoctl keeps its state here
FORMATION = "default"
BOOTSTRAP_TIMEOUT_S = 120
WRITABLE_STATES = frozenset({"single", "primary", "wait_primary"})

MONITOR_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "shared_buffers": "64MB",
    "dynamic_shared_memory_type": "mmap",
    # Failure detection: a health check every 2 s, a node that missed them for 6 s is
    # unhealthy. The demote timeout must exceed the keepers' network_partition_timeout
    # (KEEPER_TIMEOUTS): an old primary cut off from the monitor and the standby demotes
    # itself before the standby is promoted, so two primaries never accept writes at once.
    "pgautofailover.health_check_period": "2000",
    "pgautofailover.health_check_timeout": "2000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "1000",
    "pgautofailover.node_considered_unhealthy_timeout": "6000",
    "pgautofailover.primary_demote_timeout": "12000",
}

NODE_OPTIONS = {
    "shared_preload_libraries": "timescaledb",
    "timescaledb.telemetry_level": "off",
    "synchronous_commit": "on",  # the monitor names the standby in synchronous_standby_names
    "max_connections": "200",
    "shared_buffers": "256MB",
    "work_mem": "16MB",
    "maintenance_work_mem": "128MB",
    "max_wal_size": "1GB",
    "wal_compression": "on",
    "wal_keep_size": "512MB",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    "dynamic_shared_memory_type": "mmap",  # no /dev/shm needed inside the chroot
}

KEEPER_TIMEOUTS = {"timeout.network_partition_timeout": "10"}
"""Seconds an isolated primary keeps writing before it demotes itself (default 20)."""

TRUSTED_HBA = {
    "monitor": ['host "pg_auto_failover" "autoctl_node" 127.0.0.1/32 trust'],
    "node": [
        "host all pgautofailover_monitor 127.0.0.1/32 trust",
        "host replication pgautofailover_replicator 127.0.0.1/32 trust",
        "host all pgautofailover_replicator 127.0.0.1/32 trust",  # pg_rewind
    ],
}
"""pg_auto_failover's own connections, before the scram-sha-256 rule for everyone else."""


class _Keeper(Service):
    """One ``pg_autoctl run``: the keeper of one PostgreSQL instance in the shared chroot."""

    start_timeout = 180.0
    stop_signal = signal.SIGINT  # keepers and their postgres: "fast" shutdown
    kind = "node"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.tsdb = TimescaleDB(settings)

    # --- layout -------------------------------------------------------------------------------
    @property
    def rootfs(self) -> Path:
        return self.tsdb.rootfs

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def pgdata(self) -> str:
        return f"{HA_ROOT}/{self.name}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _inside(self, path: str) -> Path:
        return self.rootfs / path.lstrip("/")

    def created(self) -> bool:
        """pg_autoctl registered this node (its configuration exists)."""
        cfg = f"{PG_HOME}/.config/pg_autoctl{self.pgdata}/pg_autoctl.cfg"
        return self._inside(cfg).exists()

    def _chroot(self, *argv: str) -> list[str]:
        uid, gid = self.tsdb._ids()
        return as_root(
            [
                "chroot",
                f"--userspec={uid}:{gid}",
                str(self.rootfs),
                "env",
                f"HOME={PG_HOME}",
                f"PATH={PG_BIN}:/usr/bin:/bin",
                *argv,
            ]
        )

    def _step(self, what: str, *argv: str, timeout: float = 300) -> None:
        run_step(self._chroot(*argv), what, self.log, timeout=timeout)

    def _config_set(self, key: str, value: str) -> None:
        """``pg_autoctl config set`` of this node's keeper (or the monitor's)."""
        self._step(
            "pg_autoctl config set",
            *("pg_autoctl", "config", "set", "--pgdata", self.pgdata, key, value),
        )

    # --- install ------------------------------------------------------------------------------
    def installed(self) -> bool:
        return self.tsdb.installed() and (self.rootfs / "usr/bin/pg_autoctl").exists()

    def install(self, progress: Progress) -> None:
        if not self.tsdb.installed():
            self.tsdb.install(progress)
        apt_install(PACKAGES, self.log, progress, chroot=self.rootfs)

    # --- first start -------------------------------------------------------------------------
    def credentials(self) -> DatabaseCredentials:
        return self.stack_credentials.ensure_database(HA_DATABASE_SERVICE)

    def _dirs(self) -> None:
        uid, gid = self.tsdb._ids()
        for path in (HA_ROOT, "/run/postgresql"):
            self._inside(path).mkdir(parents=True, exist_ok=True)
            os.chown(self._inside(path), uid, gid)

    def _initdb(self, options: dict[str, str], progress: Progress) -> None:
        """initdb with the generated superuser password, scram on TCP, then this instance's
        settings (postgresql.auto.conf wins over pg_autoctl's tuning, and pg_basebackup
        copies it to a standby) and pg_hba.conf with pg_auto_failover's users first."""
        if (self._inside(self.pgdata) / "PG_VERSION").exists():
            return
        progress(f"  initdb {self.pgdata} (first time only)")
        uid, gid = self.tsdb._ids()
        pwfile = self._inside("/run/postgresql/.pw-ha")
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.credentials().superuser_password + "\n")
        os.chown(pwfile, uid, gid)
        try:
            self._step(
                "initdb",
                f"{PG_BIN}/initdb",
                "-D",
                self.pgdata,
                "-U",
                self.credentials().superuser,
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--pwfile=/run/postgresql/.pw-ha",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        data = self._inside(self.pgdata)
        auto = "".join(f"{k} = '{v}'\n" for k, v in options.items())
        (data / "postgresql.auto.conf").write_text(
            "# Written by ioc stack up --database ha (ALTER SYSTEM may rewrite it).\n" + auto
        )
        hba = [
            "local all all peer",
            "local replication all peer",
            *TRUSTED_HBA[self.kind],
            "host all all 127.0.0.1/32 scram-sha-256",
        ]
        (data / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        for name in ("postgresql.auto.conf", "pg_hba.conf"):
            os.chown(data / name, uid, gid)

    def command(self) -> list[str]:
        return self._chroot("pg_autoctl", "run", "--pgdata", self.pgdata)

    # --- probes -------------------------------------------------------------------------------
    def superuser_dsn(self, database: str = "postgres") -> str:
        creds = self.credentials()
        return creds.dsn(creds.superuser, self.port, database)

    def probe(self) -> tuple[bool, str, dict[str, Any]]:
        try:
            return asyncio.run(self._probe())
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}", {}

    async def _probe(self) -> tuple[bool, str, dict[str, Any]]:
        raise NotImplementedError


class HaMonitor(_Keeper):
    """The pg_auto_failover monitor: health-checks the nodes and assigns their roles."""

    name = "pg-monitor"
    kind = "monitor"

    @property
    def port(self) -> int:
        return self.settings.postgres_ha_port

    @property
    def uri(self) -> str:
        return f"postgres://autoctl_node@127.0.0.1:{self.port}/pg_auto_failover?sslmode=disable"

    def prepare(self, progress: Progress) -> None:
        self._dirs()
        if self.created():
            return
        self._initdb(MONITOR_OPTIONS, progress)
        progress("  pg_autoctl create monitor (first time only)")
        self._step(
            "pg_autoctl create monitor",
            "pg_autoctl",
            "create",
            "monitor",
            "--pgdata",
            self.pgdata,
            "--pgport",
            str(self.port),
            "--hostname",
            "127.0.0.1",
            "--skip-pg-hba",  # pg_hba.conf is ours (_initdb)
            "--no-ssl",
        )
        self._config_set("postgresql.listen_addresses", "127.0.0.1")

    async def _probe(self) -> tuple[bool, str, dict[str, Any]]:
        import asyncpg

        conn = await asyncpg.connect(self.superuser_dsn("pg_auto_failover"), timeout=3)
        try:
            rows = await conn.fetch(
                "SELECT nodename, reportedstate::text AS reported, goalstate::text AS goal "
                "FROM pgautofailover.node WHERE formationid = $1 ORDER BY nodeid",
                FORMATION,
            )
        finally:
            await conn.close()
        states = {r["nodename"]: f"{r['reported']}/{r['goal']}" for r in rows}
        detail = ", ".join(f"{n} {s}" for n, s in states.items()) or "no nodes yet"
        return True, f"monitor: {detail}", {"nodes": states}

    def states(self) -> dict[str, tuple[str, str]]:
        """Each node's (reported, goal) state, as the monitor sees it."""
        ok, _, extra = self.probe()
        if not ok:
            return {}
        return {n: (s.split("/")[0], s.split("/")[1]) for n, s in extra["nodes"].items()}


def _asyncpg_transient() -> tuple[type[Exception], ...]:
    """asyncpg's errors of a connection closed, refused or not accepted yet."""
    import asyncpg

    return (
        asyncpg.PostgresConnectionError,
        # 57P01 admin shutdown (a keeper restarting PostgreSQL mid-statement), 57P03 cannot
        # connect now, crash shutdown: all operator interventions
        asyncpg.exceptions.OperatorInterventionError,
        asyncpg.InterfaceError,
    )


class HaNode(_Keeper):
    """A data node: PostgreSQL 17 + TimescaleDB under its keeper, primary or standby."""

    index = 0

    @property
    def port(self) -> int:
        return self.settings.postgres_ha_node_ports[self.index - 1]

    def _others_created(self) -> bool:
        return any(
            node(self.settings).created() for node in HA_NODE_TYPES if node is not type(self)
        )

    def prepare(self, progress: Progress) -> None:
        self._dirs()
        if self.created():
            return
        if not self._others_created():  # the first node starts the formation with our initdb;
            self._initdb(NODE_OPTIONS, progress)  # the others are pg_basebackup copies of it
        progress(f"  pg_autoctl create postgres {self.name} (first time only)")
        create = threading.Thread(target=self._create, daemon=True)
        create.start()
        while create.is_alive():  # a standby's pg_basebackup waits for a spread checkpoint
            create.join(3)  # (minutes); asking for an immediate one makes it finish now
            self._checkpoint_others()
        if self._create_error is not None:
            raise self._create_error
        for key, value in KEEPER_TIMEOUTS.items():
            self._config_set(key, value)

    _create_error: StackError | None = None

    def _checkpoint_others(self) -> None:
        async def checkpoint(node: HaNode) -> None:
            import asyncpg

            conn = await asyncpg.connect(node.superuser_dsn(), timeout=2)
            try:
                await conn.execute("CHECKPOINT")
            finally:
                await conn.close()

        for kind in HA_NODE_TYPES:
            if kind is not type(self):
                with contextlib.suppress(Exception):
                    asyncio.run(checkpoint(kind(self.settings)))

    def _create(self) -> None:
        try:
            self._pg_autoctl_create()
        except StackError as exc:
            self._create_error = exc

    def _pg_autoctl_create(self) -> None:
        self._step(
            "pg_autoctl create postgres",
            "pg_autoctl",
            "create",
            "postgres",
            "--pgdata",
            self.pgdata,
            "--pgport",
            str(self.port),
            "--pgctl",
            f"{PG_BIN}/pg_ctl",
            "--listen",
            "127.0.0.1",
            "--hostname",
            "127.0.0.1",
            "--name",
            self.name,
            "--username",
            self.credentials().superuser,
            "--dbname",
            "postgres",
            "--monitor",
            HaMonitor(self.settings).uri,
            "--skip-pg-hba",  # pg_hba.conf is ours (_initdb)
            "--no-ssl",
            "--replication-quorum",
            "true",
            timeout=900,
        )

    async def _probe(self) -> tuple[bool, str, dict[str, Any]]:
        import asyncpg

        conn = await asyncpg.connect(self.superuser_dsn(), timeout=3)
        try:
            standby = bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
            sync = await conn.fetchval("SHOW synchronous_standby_names")
        finally:
            await conn.close()
        role = "standby" if standby else "primary"
        detail = role if standby else f"primary, synchronous_standby_names={sync!r}"
        return True, detail, {"role": role, "synchronous_standby_names": sync}

    def after_ready(self, progress: Progress) -> None:
        """Bootstrap on the primary once its keeper has settled. A keeper that just started
        (or just saw the other node join) may still restart or reconfigure its PostgreSQL,
        closing our connection mid-statement (seen in CI): the bootstrap is idempotent, so
        wait for the monitor to report the node in its goal state and retry for a while."""
        deadline = time.monotonic() + BOOTSTRAP_TIMEOUT_S
        while True:
            if self.probe()[2].get("role") != "primary":
                return
            if self._settled():
                transient: tuple[type[BaseException], ...] = (TimeoutError, OSError)
                transient += _asyncpg_transient()
                try:
                    asyncio.run(self._bootstrap(progress))
                    return
                except transient as exc:
                    if time.monotonic() > deadline:
                        raise StackError(
                            f"{self.name}: bootstrap kept failing for {BOOTSTRAP_TIMEOUT_S} s: "
                            f"{type(exc).__name__}: {exc}"
                        ) from exc
                    progress(
                        f"  {self.name}: bootstrap interrupted ({type(exc).__name__}), retrying"
                    )
            elif time.monotonic() > deadline:
                raise StackError(
                    f"{self.name}: the monitor did not report it settled within "
                    f"{BOOTSTRAP_TIMEOUT_S} s: {HaMonitor(self.settings).states()}"
                )
            time.sleep(1)

    def _settled(self) -> bool:
        """The monitor sees this node in a writable state it has reached (reported = goal)."""
        reported, goal = HaMonitor(self.settings).states().get(self.name, ("", ""))
        return reported == goal and reported in WRITABLE_STATES

    async def _bootstrap(self, progress: Progress) -> None:
        """The roles, the database and its privileges, on the primary (idempotent; the
        standby gets them by replication)."""
        creds = self.credentials()
        sql = bootstrap_sql(lambda role: sql_literal(creds.password(role)), self.settings.db_schema)
        if not creds.initialised:
            progress(f"  creating database {creds.database}, roles {'/'.join(ROLES)}, extension")
        await apply_bootstrap(
            sql,
            creds.database,
            server_dsn=self.superuser_dsn(),
            database_dsn=self.superuser_dsn(creds.database),
        )
        if not creds.initialised:
            creds.initialised = True
            self.stack_credentials.save_database(creds, HA_DATABASE_SERVICE)


class HaNode1(HaNode):
    name = "pg-node1"
    index = 1


class HaNode2(HaNode):
    name = "pg-node2"
    index = 2


HA_NODE_TYPES: tuple[type[HaNode], ...] = (HaNode1, HaNode2)
HA_SERVICE_TYPES: tuple[type[Service], ...] = (HaMonitor, *HA_NODE_TYPES)


def ha_services(settings: Settings) -> tuple[HaMonitor, HaNode, HaNode]:
    """The monitor and both data nodes of ``settings``' stack."""
    return HaMonitor(settings), HaNode1(settings), HaNode2(settings)


def primary(settings: Settings) -> HaNode | None:
    """The data node that accepts writes now, if any."""
    for node in ha_services(settings)[1:]:
        assert isinstance(node, HaNode)
        ok, _, extra = node.probe()
        if ok and extra.get("role") == "primary":
            return node
    return None


def connection_info(settings: Settings) -> dict[str, Any]:
    """The multi-host DSNs of the three roles and the monitor's URI (for `ioc stack status
    --json`); empty before the stack generated the passwords."""
    creds = StackCredentials(settings.stack_dir).database(HA_DATABASE_SERVICE)
    if creds is None:
        return {}
    ports = settings.postgres_ha_node_ports
    return {
        "dsn": creds.multi_host_dsn(RUNTIME_ROLE, ports),
        "admin_dsn": creds.multi_host_dsn(ADMIN_ROLE, ports),
        "grafana_dsn": creds.multi_host_dsn(READONLY_ROLE, ports),
        "monitor_uri": HaMonitor(settings).uri,
    }
