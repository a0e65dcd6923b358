"""The replicated local Kafka (``--brokers 3``): settings, node configs, stack selection and
the producers' durability settings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from ioc.config import ENV_PREFIX, Settings, load_settings
from ioc.contract.topics import CAMERA
from ioc.deploy.local.kafka_cluster import KafkaNode, cluster_nodes, render_node_config
from ioc.deploy.local.process import StackError
from ioc.deploy.local.stack import Stack
from ioc.errors import ConfigError
from ioc.kafka import topic_configs
from ioc.kafka_clients import (
    LibrdkafkaLog,
    aiokafka_producer,
    faust_idempotent_producer,
    librdkafka_producer,
)
from ioc.processes import ioc_env

CLUSTER = "127.0.0.1:19101,127.0.0.1:19102,127.0.0.1:19103"


def test_one_broker_is_the_default_and_three_switch_every_client(
    clean_env: pytest.MonkeyPatch,
) -> None:
    single = load_settings()
    assert (single.kafka_brokers, single.bootstrap_servers) == (1, "127.0.0.1:19092")
    assert (single.kafka_replication_factor, single.kafka_min_insync_replicas) == (1, 1)
    clean_env.setenv("IOC_KAFKA_BROKERS", "3")
    cluster = load_settings()
    assert cluster.bootstrap_servers == CLUSTER
    assert cluster.sasl_bootstrap_servers == "127.0.0.1:19111,127.0.0.1:19112,127.0.0.1:19113"
    assert (cluster.kafka_replication_factor, cluster.kafka_min_insync_replicas) == (3, 2)
    assert cluster.kafka_node_ports(2) == (19102, 19112, 19122)


def test_an_explicit_replication_factor_or_bootstrap_wins(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("IOC_KAFKA_BROKERS", "3")
    clean_env.setenv("IOC_KAFKA_REPLICATION_FACTOR", "1")
    clean_env.setenv("IOC_KAFKA_BOOTSTRAP_SERVERS", "k1.example:9092")
    settings = load_settings()
    assert settings.kafka_replication_factor == 1
    assert settings.bootstrap_servers == "k1.example:9092"


def test_two_brokers_are_refused_with_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("IOC_KAFKA_BROKERS", "2")
    with pytest.raises(ConfigError, match=r"IOC_KAFKA_BROKERS: .*quorum"):
        load_settings()


def test_with_kafka_brokers_moves_the_replication_factor_both_ways(
    clean_env: pytest.MonkeyPatch,
) -> None:
    cluster = load_settings().with_kafka_brokers(3)
    assert (cluster.bootstrap_servers, cluster.kafka_replication_factor) == (CLUSTER, 3)
    single = cluster.with_kafka_brokers(1)
    assert (single.bootstrap_servers, single.kafka_replication_factor) == ("127.0.0.1:19092", 1)


def test_the_brokers_setting_reaches_a_child_process(clean_env: pytest.MonkeyPatch) -> None:
    env = ioc_env(load_settings().with_kafka_brokers(3))
    assert env["IOC_KAFKA_BROKERS"] == "3"
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            clean_env.setenv(name, value)
    child = load_settings()
    assert (child.bootstrap_servers, child.kafka_replication_factor) == (CLUSTER, 3)


def properties(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    return dict(line.split("=", 1) for line in lines)


def test_node_config_has_three_voters_its_own_ports_and_durable_defaults(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = load_settings().with_kafka_brokers(3)
    render_node_config(settings, 2, tmp_path / "server.properties", tmp_path / "data")
    text = (tmp_path / "server.properties").read_text()
    assert "$" not in text.replace("$$", "")
    props = properties(tmp_path / "server.properties")
    assert props["node.id"] == "2"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:19121,2@127.0.0.1:19122,3@127.0.0.1:19123"
    )
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:19102,SASL_PLAINTEXT://127.0.0.1:19112,CONTROLLER://127.0.0.1:19122"
    )
    assert props["log.dirs"] == str(tmp_path / "data")
    for key, value in {
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "unclean.leader.election.enable": "false",
        "auto.create.topics.enable": "false",
    }.items():
        assert props[key] == value, key


def test_nodes_share_the_single_brokers_jars_users_and_one_cluster_id(
    clean_env: pytest.MonkeyPatch,
) -> None:
    settings = load_settings().with_kafka_brokers(3)
    nodes = cluster_nodes(settings)
    assert [n.name for n in nodes] == ["kafka-1", "kafka-2", "kafka-3"]
    stack_dir = settings.stack_dir
    assert {n.libs for n in nodes} == {stack_dir / "kafka" / "libs"}
    assert {n.credentials_path for n in nodes} == {stack_dir / "kafka" / "credentials.json"}
    assert len({n.dir for n in nodes}) == 3
    assert nodes[1].endpoint == "127.0.0.1:19102"
    assert nodes[1].settings.kafka_heap == settings.kafka_cluster_heap
    assert nodes[0].cluster_id() == nodes[2].cluster_id()


def test_the_stack_swaps_the_single_broker_for_the_nodes(clean_env: pytest.MonkeyPatch) -> None:
    single = Stack(load_settings())
    assert "kafka" in single.services and "kafka-1" not in single.services
    cluster = Stack(load_settings().with_kafka_brokers(3))
    assert "kafka" not in cluster.services
    selected = cluster.select(["kafka"])
    assert [s.name for s in selected] == ["kafka-1", "kafka-2", "kafka-3"]
    assert all(isinstance(s, KafkaNode) for s in selected)
    assert [s.name for s in cluster.select(["kafka-2", "timescaledb"])] == [
        "kafka-2",
        "timescaledb",
    ]
    assert cluster.kafka.name == "kafka-1"
    with pytest.raises(StackError, match="kafka-4"):
        cluster.select(["kafka-4"])


def test_project_topics_get_min_insync_replicas_from_the_replication_factor(
    clean_env: pytest.MonkeyPatch,
) -> None:
    single, cluster = load_settings(), load_settings().with_kafka_brokers(3)
    assert topic_configs(single, CAMERA)["min.insync.replicas"] == "1"
    assert topic_configs(cluster, CAMERA) == {**CAMERA.configs(), "min.insync.replicas": "2"}


def test_producers_are_idempotent_acks_all_and_never_time_out(
    clean_env: pytest.MonkeyPatch,
) -> None:
    settings: Settings = load_settings()
    conf = librdkafka_producer(settings, "x", **{"linger.ms": 5})
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"
    assert conf["message.timeout.ms"] == 0  # infinite: back-pressure, never a silent drop
    bounded = librdkafka_producer(settings, "x", **{"message.timeout.ms": 1000})
    assert bounded["message.timeout.ms"] == 1000
    kwargs = aiokafka_producer(settings)
    assert (kwargs["acks"], kwargs["enable_idempotence"]) == ("all", True)


def test_faust_producer_is_made_idempotent_once() -> None:
    from faust.transport.drivers import aiokafka as driver

    faust_idempotent_producer()
    producer = driver.Transport.Producer
    faust_idempotent_producer()
    assert driver.Transport.Producer is producer
    assert getattr(producer, "idempotent", False)
    assert issubclass(producer, driver.Producer)
    instance = producer.__new__(producer)  # no Faust app needed for its settings
    instance.__dict__["app"] = SimpleNamespace(in_transaction=False)
    assert instance._settings_extra() == {"acks": "all", "enable_idempotence": True}


class _StuckProducer:
    """A librdkafka producer whose brokers never come back: 3 messages stay queued."""

    def flush(self, timeout: float) -> int:
        return 3

    def __len__(self) -> int:
        return 3


def test_a_simulator_run_counts_what_it_could_not_deliver() -> None:
    from ioc.sinks import KafkaSink

    sink = KafkaSink.__new__(KafkaSink)  # no broker: only flush's accounting
    sink.producer = _StuckProducer()  # type: ignore[assignment]
    sink.first_error = None
    sink.rdkafka_log = LibrdkafkaLog()
    sink.flush(timeout=0.0)
    assert sink.errors == 3
    assert sink.first_error == "3 messages not acknowledged after 0 s"
