"""The replicated local Kafka (``ioc stack up --brokers 3``): three KRaft nodes on loopback.

Each node is broker and controller and every node a voter, so the cluster keeps its metadata
quorum with one node down. Topics have 3 replicas and ``min.insync.replicas=2``
(deploy/ioc/deploy/local/kafka/cluster.properties): an ``acks=all`` write survives the loss of
any one node, and with a single node left producers wait instead of losing. The cluster runs
beside the single broker (``IOC_KAFKA_PORT``) on its own ports (``IOC_KAFKA_CLUSTER_PORT``),
with the single broker's jars (resolved once, in ``<stack>/kafka/libs``), its SCRAM users
(``<stack>/kafka/credentials.json``) and one state directory per node in
``<stack>/kafka-cluster/kafka-<n>``.
"""

from __future__ import annotations

import uuid
from base64 import urlsafe_b64encode
from pathlib import Path
from typing import Any

from ioc.config import Settings, min_insync_replicas
from ioc.deploy.local.credentials import KafkaCredentials, StackCredentials
from ioc.deploy.local.kafka_broker import Kafka, listener_properties, render_private
from ioc.deploy.local.process import Progress
from ioc.deploy.local.service import Health
from ioc.kafka_clients import librdkafka_admin

CLUSTER_DIR = "kafka-cluster"
CONTROLLER_SECURITY = frozenset(
    {"listener.security.protocol.map", "sasl.mechanism.controller.protocol"}
)
"""Properties whose change must reach every node at once (see :meth:`KafkaNode.up`)."""


def node_settings(settings: Settings, node: int) -> Settings:
    """``settings`` as seen from one node: its ports in place of the single broker's, and a
    bootstrap of that node alone (its endpoint; its probe and SCRAM set-up go through
    :meth:`Kafka.admin_settings`: PLAINTEXT, or SCRAM as ``ioc`` with PLAINTEXT off)."""
    port, sasl_port, controller_port = settings.kafka_node_ports(node)
    update: dict[str, Any] = {
        "kafka_port": port,
        "kafka_sasl_port": sasl_port,
        "kafka_controller_port": controller_port,
        "kafka_heap": settings.kafka_cluster_heap,
        "kafka_bootstrap_servers": f"127.0.0.1:{port if settings.kafka_plaintext else sasl_port}",
    }
    if settings.kafka_plaintext:
        update["kafka_security_protocol"] = "PLAINTEXT"
    return settings.model_copy(update=update)


def cluster_nodes(settings: Settings) -> list[KafkaNode]:
    """The nodes of the local cluster, ``kafka-1`` ... ``kafka-<IOC_KAFKA_BROKERS>``."""
    return [KafkaNode(settings, n) for n in range(1, settings.kafka_brokers + 1)]


def render_node_config(
    settings: Settings,
    node: int,
    dest: Path,
    data_dir: Path,
    creds: KafkaCredentials | None = None,
) -> None:
    """Node ``node``'s server.properties (the cluster's settings, not the node's view), mode
    0600; ``creds``: the stack's Kafka users (default: read, or generated, from its dir)."""
    voters = ",".join(
        f"{n}@127.0.0.1:{settings.kafka_node_ports(n)[2]}"
        for n in range(1, settings.kafka_brokers + 1)
    )
    port, sasl_port, controller_port = settings.kafka_node_ports(node)
    replicas = min(3, settings.kafka_brokers)
    if creds is None:
        creds = StackCredentials(settings.stack_dir).ensure_kafka()
    render_private(
        "kafka/cluster.properties",
        dest,
        node_id=node,
        voters=voters,
        data_dir=data_dir,
        replication_factor=replicas,
        min_insync=min_insync_replicas(replicas),
        **listener_properties(
            settings, creds, port=port, sasl_port=sasl_port, controller_port=controller_port
        ),
    )


class KafkaNode(Kafka):
    """One node of the cluster: the single broker's life cycle with its own config and ports.

    ``up`` starts every stopped node before waiting for this one: a node answers metadata
    only once a majority of the controllers runs, so starting and waiting node by node would
    wait forever on the first.
    """

    start_timeout = 120.0

    def __init__(self, settings: Settings, node: int) -> None:
        self.node = node
        self.name = f"kafka-{node}"
        self.cluster_settings = settings
        super().__init__(node_settings(settings, node))
        self.dir = settings.stack_dir / CLUSTER_DIR / self.name
        self.pidfile = self.dir / f"{self.name}.pid"
        self.log = self.dir / f"{self.name}.log"

    @property
    def libs(self) -> Path:
        return self.single_broker.libs

    @property
    def single_broker(self) -> Kafka:
        return Kafka(self.cluster_settings)

    @property
    def credentials_path(self) -> Path:
        return self.stack_credentials.kafka_path

    @property
    def cluster_id_path(self) -> Path:
        return self.cluster_settings.stack_dir / CLUSTER_DIR / "cluster.id"

    def cluster_id(self) -> str:
        """The id all nodes are formatted with, made once."""
        path = self.cluster_id_path
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
        return path.read_text().strip()

    def install(self, progress: Progress) -> None:
        """The single broker's jars: resolved with mvn into ``<stack>/kafka/libs`` once."""
        broker = self.single_broker
        broker.dir.mkdir(parents=True, exist_ok=True)
        if not broker.installed():
            broker.install(progress)

    def _render_config(self, dest: Path) -> None:
        render_node_config(
            self.cluster_settings,
            self.node,
            dest,
            self.data_dir,
            self.stack_credentials.ensure_kafka(),
        )

    def launch(self, progress: Progress) -> None:
        """Install if missing and start if stopped, without waiting for readiness."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.installed():
            self.install(progress)
        if self.pid() is None:
            self.prepare(progress)
            progress(f"[{self.name}] starting on {self.endpoint}")
            self.start()

    def up(self, progress: Progress) -> Health:
        nodes = cluster_nodes(self.cluster_settings)
        # A controller listener's security (IOC_KAFKA_PLAINTEXT switched) must change on every
        # voter at once: a node restarted alone could not reach the others' quorum.
        running = [n for n in nodes if n.pid() is not None]
        if any(CONTROLLER_SECURITY & n.config_changes() for n in running):
            progress("[kafka] controller security changed: restarting every node")
            for node in running:
                node.stop()
        for node in nodes:
            node.launch(progress)
        return super().up(progress)

    def probe(self) -> tuple[bool, str, dict[str, Any]]:
        """Ready once this node is a registered broker of a cluster that answers metadata;
        the detail counts live brokers and partitions missing a replica."""
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient(librdkafka_admin(self.admin_settings(), "ioc-stack"))
            metadata = admin.list_topics(timeout=4)
        except Exception as exc:  # any failure here means "not ready yet"
            self._refuse_locked_out()
            return False, f"metadata: {type(exc).__name__}: {exc}", {}
        brokers = sorted(metadata.brokers)
        partitions = [
            p for name, t in metadata.topics.items() for p in t.partitions.values() if name
        ]
        under = sum(1 for p in partitions if len(p.isrs) < len(p.replicas))
        leading = sum(1 for p in partitions if p.leader == self.node)
        user_topics = [t for t in metadata.topics if not t.startswith("__")]
        extra = {
            "brokers": brokers,
            "topics": len(user_topics),
            "leader_of": leading,
            "under_replicated": under,
        }
        detail = (
            f"brokers {brokers} of {self.cluster_settings.kafka_brokers}, "
            f"{len(user_topics)} topics, leads {leading} partitions, "
            f"{under} under-replicated"
        )
        return self.node in metadata.brokers, detail, extra
