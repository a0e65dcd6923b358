"""What the collector's tests share: a sink that keeps what it is sent, the plan ``ioc
collect`` would make, a closed port, and reading the collector's messages back from Kafka."""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from ioc.config import Settings
from ioc.contract import schemas as s
from ioc.contract.topics import FEED_TOPICS
from ioc.kafka_clients import aiokafka_common
from ioc.services.collect.cli import Plan, plan_of
from ioc.sinks import Record, Sink


class RecordingSink(Sink):
    """Keeps every record it is sent, in order (a collector's rounds without Kafka)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def send(self, record: Record) -> None:
        self.records.append(record)
        self.sent += 1

    def messages(self, feed: str) -> list[s.Message]:
        return [s.decode(r.value, feed=feed) for r in self.records]


def collect_plan(scenario: Path, protocols: str, **options: object) -> Plan:
    """What ``ioc collect --scenario SCENARIO --protocols PROTOCOLS`` with ``options`` (the
    command's other arguments: ``trap_port``, ``http_credentials``...) would do here."""
    args = argparse.Namespace(
        scenario=str(scenario),
        shard=0,
        shards=1,
        trap_port=None,
        trap_host="127.0.0.1",
        snmp_credentials=None,
        protocols=protocols,
    )
    vars(args).update(options)
    plan, _ = plan_of(args, Settings(), protocols.split(","))
    return plan


def closed_port() -> int:
    """A loopback TCP port nothing listens on (a device that refuses, Kafka that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def read_back(
    settings: Settings, feeds: Sequence[str], until: int, check: str, timeout: float = 60.0
) -> list[s.Message]:
    """The ``feeds``' messages in the namespace's topics (each in partition order), once
    ``until`` arrived or ``timeout`` passed, and a little longer, to catch extras; read as
    consumer group ``<schema>-<check>-check``."""
    topic_feed = {settings.topic(FEED_TOPICS[f].name): f for f in feeds}
    consumer = AIOKafkaConsumer(
        *topic_feed,
        **aiokafka_common(settings),
        group_id=f"{settings.db_schema}-{check}-check",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[s.Message] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < until and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                feed = topic_feed[tp.topic]
                out += [s.decode(r.value, feed=feed, key=r.key) for r in records]
        for tp, records in (await consumer.getmany(timeout_ms=1500)).items():
            feed = topic_feed[tp.topic]
            out += [s.decode(r.value, feed=feed, key=r.key) for r in records]
    finally:
        await consumer.stop()
    return out
