"""Chaos: the replicated local Kafka (``ioc stack up --brokers 3``) loses two of its three nodes.

The leader of the busiest partitions is SIGKILLed mid-run, then a second node, leaving one:
with ``min.insync.replicas=2`` no write can be acknowledged, so producers must wait (their
messages never time out) and consumers pause; then both come back. Sequence numbers
reconcile (nothing lost, nothing doubled), the worker's accounting balances, and a table
gives how long rows stopped landing in each stage.

The cluster is brought up if it is not running and stopped at the end (three JVMs cost
memory and CPU); the single broker of the default stack is not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ioc.bootstrap import bootstrap, drop_namespace
from ioc.config import Settings
from ioc.contract.topics import FEED_TOPICS
from ioc.deploy.local.kafka_cluster import KafkaNode
from ioc.deploy.local.stack import Stack
from ioc.kafka_clients import librdkafka_admin, librdkafka_consumer
from tests.support.db import landed
from tests.support.processes import Worker
from tests.support.wait import wait_for

from .faults import Production

pytestmark = pytest.mark.chaos

PRODUCE_S = 105
RATE = 400


@dataclass
class LandingClock:
    """Polls the rows landed in the namespace and when the count last grew."""

    settings: Settings
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # the database is not the fault here: a failed sample is skipped
            with contextlib.suppress(Exception):
                self.samples.append((time.monotonic(), landed(self.settings)))
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def stage(self, start: float, end: float) -> tuple[float, int]:
        """(longest stretch without a new row, rows landed) between ``start`` and ``end``."""
        inside = [(t, n) for t, n in self.samples if start <= t <= end]
        before = [n for t, n in self.samples if t < start]
        last_t, last_n = start, (before[-1] if before else 0)
        longest = 0.0
        first_n = last_n
        for t, n in inside:
            if n > last_n:
                longest = max(longest, t - last_t)
                last_t, last_n = t, n
        longest = max(longest, end - last_t)
        return longest, last_n - first_n


def feed_leaders(settings: Settings) -> dict[int, int]:
    """Per node: messages in the feed-topic partitions it leads (the busiest leader first)."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient(librdkafka_admin(settings)).list_topics(timeout=10)
    consumer = Consumer(librdkafka_consumer(settings, "ioc-chaos-watermarks", "ioc-chaos"))
    load: dict[int, int] = {}
    try:
        for spec in FEED_TOPICS.values():
            name = settings.topic(spec.name)
            for pid, partition in metadata.topics[name].partitions.items():
                low, high = consumer.get_watermark_offsets(TopicPartition(name, pid), timeout=10)
                load[partition.leader] = load.get(partition.leader, 0) + high - low
    finally:
        consumer.close()
    return dict(sorted(load.items(), key=lambda kv: -kv[1]))


def topic_durability(settings: Settings) -> list[tuple[str, int, str]]:
    """(topic, replicas, min.insync.replicas) of the namespace's feed topics."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, see
        AdminClient,  # ioc.deploy.local.kafka_broker
        ConfigResource,
    )

    admin = AdminClient(librdkafka_admin(settings))
    metadata = admin.list_topics(timeout=10)
    out = []
    for spec in FEED_TOPICS.values():
        name = settings.topic(spec.name)
        replicas = min(len(p.replicas) for p in metadata.topics[name].partitions.values())
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        configs = admin.describe_configs([resource])[resource].result(timeout=10)
        out.append((name, replicas, configs["min.insync.replicas"].value))
    return out


def test_two_of_three_brokers_killed_loses_and_doubles_nothing(
    namespace: Settings, tmp_path: Path
) -> None:
    cluster = namespace.with_kafka_brokers(3)
    stack = Stack(cluster)
    nodes = {node.node: node for node in stack.select(["kafka"]) if isinstance(node, KafkaNode)}
    assert sorted(nodes) == [1, 2, 3]
    started = time.monotonic()
    stack.up(["kafka"], progress=print)  # idempotent: seconds when already running
    print(f"cluster up in {time.monotonic() - started:.1f} s: {cluster.bootstrap_servers}")
    worker: Worker | None = None
    clock: LandingClock | None = None
    try:
        asyncio.run(bootstrap(cluster, "demo"))
        for name, replicas, min_isr in topic_durability(cluster):
            assert (replicas, min_isr) == (3, "2"), (name, replicas, min_isr)
        worker = Worker(cluster, "demo", tmp_path / "worker.log").start()
        worker.wait_serving()
        clock = LandingClock(cluster)
        production = Production(cluster, PRODUCE_S, rate=RATE)
        stages: list[tuple[str, float, float]] = []
        wait_for(lambda: landed(cluster) > 0, 60, interval=0.5, what="the first row landed")
        mark = time.monotonic()

        def stage(name: str, seconds: float = 0) -> None:
            """The stage since the last one ended, after ``seconds`` more."""
            nonlocal mark
            time.sleep(seconds)
            now = time.monotonic()
            stages.append((name, mark, now))
            mark = now

        stage("3 brokers (steady)", 20)
        load = feed_leaders(cluster)
        first = next(iter(load))
        print(f"messages by leader: {load}; SIGKILL kafka-{first}")
        assert nodes[first].kill() is not None, f"{nodes[first].name} is not running"
        stage(f"2 brokers (kafka-{first} killed, leader)", 25)
        second = next(n for n in nodes if n != first)
        print(f"SIGKILL kafka-{second}: one broker left, below min.insync.replicas")
        assert nodes[second].kill() is not None, f"{nodes[second].name} is not running"
        stage(f"1 broker (kafka-{second} killed too)", 20)
        assert worker.alive(), worker.log_tail()
        nodes[first].up(print)  # starts every stopped node, then waits for this one
        nodes[second].up(print)
        stage("restart of both, until both are ready")
        try:
            production.finish_and_reconcile(worker, "replicated Kafka, 2 of 3 killed", timeout=180)
        finally:
            stage("3 brokers again, to the last row landed")
            clock.stop()
            print(f"\n{'stage':<42} {'length s':>9} {'no rows landing s':>18} {'rows':>7}")
            for name, start, end in stages:
                pause, rows = clock.stage(start, end)
                print(f"{name:<42} {end - start:>9.1f} {pause:>18.1f} {rows:>7}")
        print(f"producer delivery errors: {production.summary.errors} (messages never time out)")
        assert worker.alive(), worker.log_tail()
    finally:
        if clock is not None:
            clock.stop()
        if worker is not None:
            worker.stop()
        try:
            for node in nodes.values():
                if node.pid() is None:
                    node.up(print)
            asyncio.run(drop_namespace(cluster))
        finally:
            stack.down(["kafka"], progress=print)  # the cluster's three JVMs: not left running
