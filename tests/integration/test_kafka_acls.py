"""Kafka ACLs per service user (ioc.contract.access), against the stack's broker with its
authorizer: bootstrap's ACL step for a fresh namespace, then each service's user does its job
and is refused what it must not do; dropping the namespace removes its ACLs.

Kafka only (no database): the namespace is a topic prefix, dropped here.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from confluent_kafka import Consumer, KafkaException, Producer, TopicCollection
from confluent_kafka import KafkaError as KafkaErrorCode
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from ioc.bootstrap import drop_kafka_namespace
from ioc.config import Settings
from ioc.contract import topics as t
from ioc.contract.access import SERVICE_USERS, AclGrant, kafka_acls
from ioc.deploy.local.credentials import KAFKA_SASL_MECHANISM
from ioc.kafka import (
    KafkaTopicError,
    _service_grants,
    admin_client,
    ensure_acls,
    ensure_topics,
)
from ioc.kafka_clients import (
    aiokafka_common,
    aiokafka_producer,
    librdkafka_admin,
    librdkafka_consumer,
    librdkafka_producer,
)

FEED = t.CAMERA
FEED_NAME = next(feed for feed, spec in t.FEED_TOPICS.items() if spec == FEED)


@dataclass(frozen=True)
class Answer:
    """A record as a collector sends it (:class:`ioc.sinks.Record`)."""

    feed: str
    key: bytes
    value: bytes


def through_sasl(settings: Settings) -> Settings:
    """The admin over the SASL listener, as the stack's processes get it."""
    password = settings.stack_kafka_users()["ioc"]
    return settings.model_copy(
        update={
            "kafka_bootstrap_servers": settings.sasl_bootstrap_servers,
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": KAFKA_SASL_MECHANISM,
            "kafka_sasl_username": "ioc",
            "kafka_sasl_password": SecretStr(password),
        }
    )


@pytest.fixture
async def admin(base_settings: Settings, stack: object) -> AsyncIterator[Settings]:
    """A fresh namespace through the SASL listener as the admin: topics and ACLs made."""
    tag = f"a{uuid.uuid4().hex[:10]}"
    settings = through_sasl(
        base_settings.model_copy(update={"kafka_topic_prefix": f"{tag}.", "db_schema": tag})
    )
    try:
        await ensure_topics(settings)
        result = await ensure_acls(settings)
        if not result.enabled:
            pytest.skip("the broker has no authorizer")
        assert result.created == len(kafka_acls(settings.kafka_topic_prefix))
        assert (await ensure_acls(settings)).created == 0, "idempotent"
        yield settings
    finally:
        await drop_kafka_namespace(settings)


def as_service(admin: Settings, service: str) -> Settings:
    settings = admin.for_kafka_service(service)
    assert settings.kafka_sasl_username == SERVICE_USERS[service]
    return settings


async def send(settings: Settings, topic: str, value: bytes) -> None:
    """One idempotent acks=all write (as the Faust producer and the ops service do)."""
    producer = AIOKafkaProducer(**aiokafka_producer(settings), request_timeout_ms=10_000)
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"k"), 20)
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str, partitions: int) -> list[bytes]:
    """Everything on ``topic``, without a consumer group (the ops service's way)."""
    consumer = AIOKafkaConsumer(
        **aiokafka_common(settings), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await asyncio.wait_for(consumer.seek_to_beginning(*tps), 20)
        end = await asyncio.wait_for(consumer.end_offsets(tps), 20)
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            assert time.monotonic() < deadline, "read timed out"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values += [r.value for r in records if r.value is not None]
        return values
    finally:
        await consumer.stop()


async def refused(what: object) -> None:
    """``what`` (a coroutine) fails for lack of authorization."""
    assert asyncio.iscoroutine(what)
    with pytest.raises((TopicAuthorizationFailedError, KafkaError)) as failure:
        await asyncio.wait_for(what, 20)
    assert "uthoriz" in repr(failure.value), repr(failure.value)


def authorized(settings: Settings, topics: list[str]) -> dict[str, set[str]]:
    """What the broker's authorizer lets ``settings``' user do on each topic (Metadata's
    authorized operations; none for a topic it may not even describe)."""
    client = AdminClient(librdkafka_admin(settings))
    futures = client.describe_topics(
        TopicCollection(topics), include_authorized_operations=True, request_timeout=10
    )
    allowed: dict[str, set[str]] = {}
    for name, future in futures.items():
        try:
            allowed[name] = {op.name for op in future.result().authorized_operations}
        except KafkaException as exc:
            assert exc.args[0].code() == KafkaErrorCode.TOPIC_AUTHORIZATION_FAILED, exc
            allowed[name] = set()
    return allowed


def consume_one(settings: Settings, topic: str, group: str) -> bytes:
    """One message of ``topic`` through the worker's librdkafka consumer, offset committed."""
    consumer = Consumer(
        librdkafka_consumer(
            settings,
            group,
            "acl-test",
            **{"enable.auto.commit": False, "auto.offset.reset": "earliest"},
        )
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            consumer.commit(message=msg, asynchronous=False)
            value = msg.value()
            assert value is not None
            return value
        raise AssertionError(f"nothing consumed from {topic}")
    finally:
        consumer.close()


def namespace_grants(admin: Settings) -> list[AclGrant]:
    """The services' ACLs on the cluster in ``admin``'s namespace."""
    grants = _service_grants(admin, AdminClient(librdkafka_admin(admin))) or []
    return [g for g in grants if g.name.startswith(admin.kafka_topic_prefix)]


async def test_each_service_user_does_its_job_and_nothing_else(admin: Settings) -> None:
    """One namespace for every check (topics and ACLs take seconds to make)."""
    from ioc.services.collect.spool import SpoolingSink
    from ioc.sinks import KafkaSink
    from ioc.streams.consumer import consumer_group

    assert sorted(namespace_grants(admin)) == kafka_acls(admin.kafka_topic_prefix)

    # The broker's own view, reads included (a refused fetch is only retried by the clients,
    # not reported): each user's operations per topic are the derivation's, Describe implied.
    topics = [admin.topic(s.name) for s in t.all_topics()]
    for service in SERVICE_USERS:
        derived: dict[str, set[str]] = {name: set() for name in topics}
        for grant in kafka_acls(admin.kafka_topic_prefix, [service]):
            if grant.resource_type == "TOPIC":
                derived[grant.name] |= {grant.operation, "DESCRIBE"}
        allowed = await asyncio.to_thread(authorized, as_service(admin, service), topics)
        assert allowed == derived, service

    simulator, worker = as_service(admin, "simulator"), as_service(admin, "worker")
    ops, pager = as_service(admin, "ops"), as_service(admin, "pager")
    feed, dlq = admin.topic(FEED.name), admin.topic(t.DEAD_LETTER.name)
    device_events, incidents = (
        admin.topic(t.DEVICE_EVENTS.name),
        admin.topic(t.INCIDENT_EVENTS.name),
    )

    # simulator: its sink's start-up check sees its topics; an idempotent write to a feed.
    # Not: reading the dead letters (above: no operation at all), writing incidents.
    sink = KafkaSink(simulator)
    sink.producer.produce(feed, b"reading", b"cam-1")
    assert sink.producer.flush(20) == 0
    await refused(send(simulator, incidents, b"forged"))

    # collector: its own user writes a feed through `ioc collect`'s spooling sink (whose
    # start-up check must not need the fault log it cannot see); not the fault log, which
    # only the simulator's fault injection writes.
    collector = as_service(admin, "collector")
    with tempfile.TemporaryDirectory(prefix="ioc-spool-") as spool_dir:
        spool = SpoolingSink(
            collector, Path(spool_dir), client_id="ioc-collector-test", registry=CollectorRegistry()
        )
        try:
            spool.send(Answer(FEED_NAME, b"nn-1", b"answered"))
            spool.flush(20)
            assert (spool.sent, spool.errors, spool.spool.depth) == (1, 0, 0)
        finally:
            spool.close()
    await refused(send(collector, admin.topic(t.FAULT_LOG.name), b"forged fault"))

    # worker: every contract topic visible (`ioc worker`'s verify), the feed read with its
    # group, dead letters, device and incident events written. Not: creating a topic,
    # writing a feed, another group.
    client = await admin_client(worker)
    try:
        visible = set(await client.list_topics())
    finally:
        await client.close()
    assert set(topics) <= visible
    # the feed holds the simulator's record and the collector's, on their keys' partitions:
    # whichever the consumer fetches first
    read = await asyncio.to_thread(consume_one, worker, feed, consumer_group(worker))
    assert read in (b"reading", b"answered"), read
    for topic in (dlq, device_events, incidents):
        await send(worker, topic, b"from-worker")
    with pytest.raises(KafkaTopicError, match="error 29"):  # TOPIC_AUTHORIZATION_FAILED
        await ensure_topics(worker, [t.TopicSpec("ioc.rogue.v1", 1, t.DAY_MS)])
    await refused(send(worker, feed, b"forged"))
    other_group = f"{admin.kafka_topic_prefix}other"
    with pytest.raises(Exception, match=r"(?i)authoriz"):
        await asyncio.to_thread(consume_one, worker, feed, other_group)

    # ops: an operator command on the device events, the incident stream read (no group).
    # Not: reading feeds (above), writing incidents. The pager: the incident stream only.
    await send(ops, device_events, b"command")
    assert b"from-worker" in await read_all(ops, incidents, t.INCIDENT_EVENTS.partitions)
    await refused(send(ops, incidents, b"forged"))
    assert b"from-worker" in await read_all(pager, incidents, t.INCIDENT_EVENTS.partitions)
    await refused(send(pager, device_events, b"forged"))

    # dropping the namespace removes its ACLs with its topics
    await drop_kafka_namespace(admin)
    assert namespace_grants(admin) == []
    metadata = Producer(librdkafka_producer(admin)).list_topics(timeout=10)
    assert metadata.topics.keys().isdisjoint(topics)
