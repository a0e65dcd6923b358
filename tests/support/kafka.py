"""What a test namespace's Kafka topics hold."""

from __future__ import annotations

import time
from collections import Counter

from aiokafka import AIOKafkaConsumer

from ioc.config import Settings
from ioc.contract import deadletter as dl
from ioc.contract.topics import DEAD_LETTER
from ioc.kafka_clients import aiokafka_common


async def dlq_by_source(settings: Settings) -> dict[str, dl.DeadLetter]:
    """Dead letters by source record (topic/partition/offset); a replayed batch repeats its
    keys, so the newest one per source stands (as compaction leaves it)."""
    consumer = AIOKafkaConsumer(
        settings.topic(DEAD_LETTER.name),
        **aiokafka_common(settings),
        group_id=f"{settings.db_schema}-dlq-check-{time.monotonic_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    by_source: dict[str, dl.DeadLetter] = {}
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=3000)
            if not batch:
                break
            for msgs in batch.values():
                for m in msgs:
                    assert m.value is not None
                    letter = dl.decode(m.value)
                    assert m.key is not None and m.key.decode() == letter.source
                    by_source[letter.source] = letter
    finally:
        await consumer.stop()
    return by_source


async def dlq_count(settings: Settings) -> Counter[str]:
    """Dead letters by reason, one per source message."""
    return Counter(letter.reason for letter in (await dlq_by_source(settings)).values())
