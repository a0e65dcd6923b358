"""The no-Docker local stack as one object: ``Stack(settings).up() / down() / status()``.

Every service runs on loopback from one state directory (``IOC_STACK_DIR``, default
``~/.local/share/ioc/stack``), never inside the repository. The parts, by concern:

==================  ===========================================================================
``process.py``      pidfiles, spawning, stopping, log tails, one-shot steps (StackError)
``install.py``      apt-get, debootstrap and mvn installers
``credentials.py``  the stack's generated credentials (Kafka SCRAM users, database role
                    passwords, pager token) and the DSN builder; also read by ioc.config
``service.py``      the life cycle every service shares (Service, Health, config rendering)
``kafka_broker.py`` Kafka 4.x in KRaft mode (jars from Maven, Java 17), SCRAM users
``kafka_cluster.py`` the replicated three-node Kafka of ``--brokers 3`` (IOC_KAFKA_BROKERS)
``timescaledb.py``  PostgreSQL 17 + TimescaleDB in a Debian chroot; roles from ioc.db.roles
``postgres_ha.py``  the replicated database of ``--database ha`` (pg_auto_failover, 2 nodes)
``monitoring.py``   Prometheus and Alertmanager from Debian's packages
``stack.py``        this facade, used by ``ioc stack``, ``ioc run`` and the tests
==================  ===========================================================================

Every operation is idempotent: ``up`` installs only what is missing and starts only what is
stopped, then waits until each service really answers (Kafka metadata, ``SELECT 1`` with the
timescaledb extension, ``/-/ready``), printing progress, and fails with the log tail if not.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, TypeVar

from ioc.config import Settings
from ioc.deploy.local.credentials import KAFKA_SASL_MECHANISM, KAFKA_USER
from ioc.deploy.local.install import ensure_worker_allocator
from ioc.deploy.local.kafka_broker import Kafka
from ioc.deploy.local.kafka_cluster import cluster_nodes
from ioc.deploy.local.monitoring import Alertmanager, AlertmanagerPeer, Prometheus
from ioc.deploy.local.process import Progress, StackError
from ioc.deploy.local.service import Health, Service, print_progress
from ioc.deploy.local.timescaledb import DATABASE, ROLES, TimescaleDB

__all__ = [
    "DATABASE",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_USER",
    "ROLES",
    "SERVICE_NAMES",
    "SERVICE_TYPES",
    "Alertmanager",
    "AlertmanagerPeer",
    "Health",
    "Kafka",
    "Progress",
    "Prometheus",
    "Service",
    "Stack",
    "StackError",
    "TimescaleDB",
]

S = TypeVar("S", bound=Service)

SERVICE_TYPES: tuple[type[Service], ...] = (
    Kafka,
    TimescaleDB,
    Prometheus,
    Alertmanager,
    AlertmanagerPeer,  # the two Alertmanagers are one cluster: either can be lost
)
SERVICE_NAMES = tuple(t.name for t in SERVICE_TYPES)


class Stack:
    """The services together, in dependency order. With ``IOC_KAFKA_BROKERS=3`` Kafka is
    the replicated cluster's nodes ``kafka-1`` ... ``kafka-3`` (``kafka`` names them all),
    and the single broker is left as it is."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: dict[str, Service] = {}
        for kind in SERVICE_TYPES:
            if kind is Kafka and settings.kafka_brokers > 1:
                self.services.update((node.name, node) for node in cluster_nodes(settings))
            else:
                self.services[kind.name] = kind(settings)
        if settings.database_ha:  # the replicated database (--database ha), beside the single
            from ioc.deploy.local.postgres_ha import HA_SERVICE_TYPES

            self.services.update((kind.name, kind(settings)) for kind in HA_SERVICE_TYPES)

    def select(self, names: list[str] | None) -> list[Service]:
        if not names:
            return list(self.services.values())
        nodes = [n for n in self.services if n.startswith(f"{Kafka.name}-")]
        wanted = {m for n in names for m in (nodes if n == Kafka.name and nodes else [n])}
        unknown = [n for n in wanted if n not in self.services]
        if unknown:
            raise StackError(
                f"unknown service {', '.join(unknown)}; choose from {', '.join(self.services)}"
            )
        return [svc for name, svc in self.services.items() if name in wanted]

    def up(
        self, names: list[str] | None = None, progress: Progress = print_progress
    ) -> list[Health]:
        self.settings.stack_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        logs = self.settings.stack_dir / "logs"
        ensure_worker_allocator(logs / "allocator-install.log", progress)
        result = [svc.up(progress) for svc in self.select(names)]
        progress(
            f"stack ready in {time.monotonic() - started:.1f} s "
            f"(state in {self.settings.stack_dir})"
        )
        return result

    def down(self, names: list[str] | None = None, progress: Progress = print_progress) -> None:
        for svc in reversed(self.select(names)):
            svc.down(progress)

    def status(self) -> list[Health]:
        return [svc.health() for svc in self.services.values()]

    def _service(self, kind: type[S]) -> S:
        svc = self.services[kind.name]
        assert isinstance(svc, kind)
        return svc

    @property
    def kafka(self) -> Kafka:
        """The single broker, or the cluster's first node."""
        if Kafka.name not in self.services:
            node = self.services[f"{Kafka.name}-1"]
            assert isinstance(node, Kafka)
            return node
        return self._service(Kafka)

    @property
    def timescaledb(self) -> TimescaleDB:
        return self._service(TimescaleDB)

    @property
    def prometheus(self) -> Prometheus:
        return self._service(Prometheus)

    @property
    def alertmanager(self) -> Alertmanager:
        return self._service(Alertmanager)

    @property
    def alertmanager_peer(self) -> AlertmanagerPeer:
        return self._service(AlertmanagerPeer)

    def status_document(self) -> dict[str, Any]:
        """What `ioc stack status --json` prints: enough for scripts to connect."""
        health = self.status()
        db = self.timescaledb.connection_info()
        return {
            "stack_dir": str(self.settings.stack_dir),
            "healthy": all(h.ok for h in health),
            "kafka_bootstrap_servers": self.settings.bootstrap_servers,
            "kafka_brokers": self.settings.kafka_brokers,
            "kafka_sasl": {
                "bootstrap_servers": self.settings.sasl_bootstrap_servers,
                "security_protocol": "SASL_PLAINTEXT",
                "mechanism": KAFKA_SASL_MECHANISM,
                "username": KAFKA_USER,
                "password_file": str(self.kafka.credentials_path),
            },
            "database_dsn": db.get("dsn"),
            "database_admin_dsn": db.get("admin_dsn"),
            "database_grafana_dsn": db.get("grafana_dsn"),
            "prometheus_url": self.settings.prometheus_url,
            "alertmanager_url": self.settings.alertmanager_url,
            "alertmanager_urls": self.settings.alertmanager_urls,
            "services": [asdict(h) | {"ok": h.ok} for h in health],
        } | self._database_ha()

    def _database_ha(self) -> dict[str, Any]:
        """The replicated database's DSNs (``--database ha``), which clients then use."""
        if not self.settings.database_ha:
            return {}
        from ioc.deploy.local.postgres_ha import connection_info

        return {"database_ha": connection_info(self.settings)}

    def log_tail(self, name: str, lines: int) -> str:
        return self.select([name])[0].log_tail(lines)
