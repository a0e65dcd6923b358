"""The evaluator's word on the feed backlog, from a real broker: every feed partition's end,
and whether the group has committed (landed) up to it, whichever worker owns the partition.

How the evaluator uses it: tests/unit/test_evaluator_hold.py; why: a leader killed
mid-outage (tests/chaos/test_leader_killed.py)."""

from __future__ import annotations

import asyncio
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from ioc.config import Settings
from ioc.contract.feeds import Feed
from ioc.contract.topics import FEED_TOPICS
from ioc.kafka import ensure_topics
from ioc.kafka_clients import librdkafka_consumer, librdkafka_producer
from ioc.streams.consumer import FeedBacklog, consumer_group
from tests.support.ports import free_ports


def test_marks_and_landed_follow_the_groups_commits(namespace: Settings) -> None:
    asyncio.run(ensure_topics(namespace))
    topic = namespace.topic(FEED_TOPICS[Feed.CAMERA].name)
    producer = Producer(librdkafka_producer(namespace))
    for i in range(7):
        producer.produce(topic, value=b"x", partition=i % 2)
    assert producer.flush(10) == 0
    backlog = FeedBacklog(namespace)
    # a worker of the feed group, which owns the partitions, commits what it landed
    worker = Consumer(librdkafka_consumer(namespace, consumer_group(namespace), "a-worker"))
    try:

        async def scenario() -> None:
            assert await backlog.backlog_landed({}) is True
            marks = await backlog.backlog_marks()
            assert marks is not None
            assert set(marks) == {
                (namespace.topic(spec.name), p)
                for spec in FEED_TOPICS.values()
                for p in range(spec.partitions)
            }
            assert marks[(topic, 0)] == 4 and marks[(topic, 1)] == 3
            assert sum(marks.values()) == 7  # the other feeds are empty: nothing to land
            assert await backlog.backlog_landed(marks) is False  # no commit yet
            worker.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
            assert await backlog.backlog_landed(marks) is False  # partition 1 not yet
            worker.commit(offsets=[TopicPartition(topic, 1, 3)], asynchronous=False)
            assert await backlog.backlog_landed(marks) is True

        asyncio.run(scenario())
    finally:
        worker.close()


def test_no_broker_no_word(namespace: Settings) -> None:
    """The evaluator then holds for each class's heartbeat timeout, as without it."""
    port = free_ports()
    nowhere = namespace.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{port}"})
    backlog = FeedBacklog(nowhere, timeout=1.0)

    async def scenario() -> None:
        assert nowhere.bootstrap_servers == f"127.0.0.1:{port}"
        started = time.monotonic()
        assert await backlog.backlog_marks() is None
        assert await backlog.backlog_landed({("t", 0): 1}) is None
        assert time.monotonic() - started < 6

    asyncio.run(scenario())
