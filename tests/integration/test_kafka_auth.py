"""Kafka authentication and authorization: the stack's SASL/SCRAM listener refuses anonymous
clients and wrong passwords, the broker's authorizer refuses a service user what no ACL
allows, and the whole pipeline (topic tooling, simulator, Faust worker) runs through SCRAM
from configuration alone."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from pydantic import SecretStr

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract.access import SERVICE_USERS
from ioc.deploy.local.stack import KAFKA_SASL_MECHANISM, KAFKA_USER
from ioc.kafka_clients import aiokafka_common, librdkafka_admin, librdkafka_common
from ioc.simulators.run import SimConfig, run_simulation
from tests.support.db import landed
from tests.support.processes import Worker
from tests.support.wait import wait_for


def sasl(settings: Settings, password: str | None = None) -> Settings:
    """The same namespace through the SASL listener, as a deployment would configure it."""
    update: dict[str, object] = {
        "kafka_bootstrap_servers": f"127.0.0.1:{settings.kafka_sasl_port}",
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": KAFKA_SASL_MECHANISM,
        "kafka_sasl_username": KAFKA_USER,
        "kafka_sasl_password": SecretStr(password or settings.stack_kafka_users()[KAFKA_USER]),
    }
    return settings.model_copy(update=update)


def anonymous(settings: Settings) -> Settings:
    """A client of the SASL listener configured without credentials."""
    update = {
        "kafka_bootstrap_servers": f"127.0.0.1:{settings.kafka_sasl_port}",
        "kafka_security_protocol": "PLAINTEXT",
    }
    return settings.model_copy(update=update)


def test_stack_generated_a_private_scram_password(namespace: Settings) -> None:
    path = namespace.stack_credentials_path("kafka")
    assert path.stat().st_mode & 0o077 == 0, "credentials must be readable by the owner only"
    users = json.loads(path.read_text())["users"]
    assert len(users[KAFKA_USER]) >= 24


async def test_unauthenticated_client_is_refused(namespace: Settings) -> None:
    producer = AIOKafkaProducer(**aiokafka_common(anonymous(namespace)), request_timeout_ms=5000)
    with pytest.raises((KafkaConnectionError, KafkaError, asyncio.TimeoutError)):
        await asyncio.wait_for(producer.start(), 20)
    await producer.stop()


def test_unauthenticated_tooling_is_refused(namespace: Settings) -> None:
    admin = AdminClient(librdkafka_admin(anonymous(namespace)))
    with pytest.raises(Exception) as failure:
        admin.list_topics(timeout=5)
    print(f"anonymous AdminClient refused: {failure.value}")


async def test_wrong_password_is_refused(
    namespace: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # `ioc.cli.main` (run in-process by unit tests) silences aiokafka; hear it here anyway.
    caplog.set_level(logging.ERROR, logger="aiokafka")
    producer = AIOKafkaProducer(**aiokafka_common(sasl(namespace, "not-the-password")))
    with pytest.raises(KafkaError):
        await asyncio.wait_for(producer.start(), 20)
    await producer.stop()
    assert "SaslAuthenticationFailed" in caplog.text, caplog.text


def test_pipeline_runs_end_to_end_over_scram(namespace: Settings, tmp_path: Path) -> None:
    secure = sasl(namespace)
    asyncio.run(bootstrap(secure, "demo"))  # topics created through the SASL listener
    worker = Worker(secure, "demo", tmp_path / "worker.log").start()
    try:
        summary = run_simulation(
            secure, SimConfig(scenario="demo", mode="rate", rate=2000, duration_s=5, progress=False)
        )
        assert summary.errors == 0
        produced = sum(summary.stats.valid_by_feed.values())
        assert produced > 0
        wait_for(
            lambda: landed(secure) >= produced, 90, what=f"rows landed ({worker.log_tail(2000)})"
        )
        assert landed(secure) == produced
        assert secure.kafka_sasl_password is not None
        log = worker.log_text()
        assert secure.kafka_sasl_password.get_secret_value() not in log, "secret logged"
    finally:
        worker.stop()


def produce_one(settings: Settings, topic: str) -> str | None:
    """Write one record; the error's name, or None once it is acknowledged."""
    producer = Producer({**librdkafka_common(settings), "message.timeout.ms": 10000})
    outcome: list[str | None] = []
    producer.produce(
        topic, b"x", on_delivery=lambda err, _m: outcome.append(err.name() if err else None)
    )
    producer.flush(15)
    return outcome[0] if outcome else "not delivered"


def read_one(settings: Settings, topic: str) -> str:
    """Read partition 0 from its start in a consumer group of its own: the record's value,
    or the first error's name."""
    consumer = Consumer(
        {**librdkafka_common(settings), "group.id": f"{topic}-reader", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        for _ in range(30):
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None:
                return bytes(message.value() or b"").decode()
            return str(error.name())
        return "nothing read"
    finally:
        consumer.close()


def describe(settings: Settings, topic: str) -> str | None:
    """The topic's metadata as this user sees it: the error's name, or None."""
    metadata = AdminClient(librdkafka_admin(settings)).list_topics(topic, timeout=10)
    error = metadata.topics[topic].error
    return error.name() if error is not None else None


def test_a_service_user_without_acls_is_refused_and_the_admin_is_not(
    base_settings: Settings, stack: object
) -> None:
    """The StandardAuthorizer denies what no ACL allows (allow.everyone.if.no.acl.found=false):
    a service user on a topic no ACL names may neither write nor read it; the admin, a super
    user, may. The topic is outside every namespace prefix, so no bootstrap grant covers it."""
    admin = sasl(base_settings)
    user = SERVICE_USERS["simulator"]
    password = base_settings.stack_kafka_users().get(user)
    assert password, f"the stack has no Kafka user {user}: run `ioc stack up`"
    service = admin.model_copy(
        update={"kafka_sasl_username": user, "kafka_sasl_password": SecretStr(password)}
    )
    topic = f"authz-probe-{uuid.uuid4().hex[:10]}"
    tool = AdminClient(librdkafka_admin(admin))
    tool.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=20)
    try:
        # CreateTopics answers once the controller has the topic; the broker's metadata
        # cache may learn it a moment later on loaded cores (UNKNOWN_TOPIC_OR_PART)
        wait_for(lambda: describe(admin, topic) is None or None, 30, what=f"{topic} in metadata")
        assert (describe(admin, topic), produce_one(admin, topic)) == (None, None)
        assert read_one(admin, topic) == "x"
        # no ACL: the topic is hidden, writes are refused, and so is reading it in a group
        assert describe(service, topic) == "TOPIC_AUTHORIZATION_FAILED"
        assert produce_one(service, topic) == "TOPIC_AUTHORIZATION_FAILED"
        assert read_one(service, topic) == "GROUP_AUTHORIZATION_FAILED"
    finally:
        tool.delete_topics([topic])[topic].result(timeout=20)
