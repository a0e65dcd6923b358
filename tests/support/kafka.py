"""What a test namespace's Kafka topics hold."""

from __future__ import annotations

from collections import Counter

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ioc.config import Settings
from ioc.contract import deadletter as dl
from ioc.contract import events as ev
from ioc.contract.topics import DEVICE_EVENTS, STREAMS_APP_ID
from ioc.kafka import admin_client
from ioc.kafka_clients import aiokafka_common
from ioc.streams.deadletter_cli import read_dead_letters


async def dlq_by_source(settings: Settings) -> dict[str, dl.DeadLetter]:
    """Dead letters by source record (topic/partition/offset), read to the topic's end the
    way `ioc deadletter` reads it: a replayed batch repeats its keys, so the newest one per
    source stands (as compaction leaves it)."""
    scan = await read_dead_letters(settings, lambda _letter: True)
    assert scan.undecodable == 0, f"{scan.undecodable} records are not dead letters"
    for key, letter in scan.selected.items():
        assert key == letter.source, (key, letter.source)
    return scan.selected


async def dlq_count(settings: Settings) -> Counter[str]:
    """Dead letters by reason, one per source message."""
    return Counter(letter.reason for letter in (await dlq_by_source(settings)).values())


async def _read(
    settings: Settings, tps: list[TopicPartition]
) -> tuple[dict[TopicPartition, int], list[ConsumerRecord[bytes, bytes]]]:
    """Every record of ``tps`` up to their end offsets when called, partition by partition,
    without a consumer group, and those end offsets. A partition that yields nothing for
    10 s short of its end raises TimeoutError naming it, rather than waiting forever."""
    consumer = AIOKafkaConsumer(
        **aiokafka_common(settings), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            while (position := await consumer.position(tp)) < end[tp]:
                batch = (await consumer.getmany(tp, timeout_ms=10_000)).get(tp)
                if not batch:
                    raise TimeoutError(f"{tp}: nothing fetched in 10 s at {position} of {end[tp]}")
                out += batch
    finally:
        await consumer.stop()
    return end, out


async def records(settings: Settings, topics: dict[str, int]) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of every record on ``topics`` (name -> partitions) up to their end
    offsets when called, partition by partition, without a consumer group."""
    tps = [TopicPartition(topic, p) for topic, n in topics.items() for p in range(n)]
    _end, read = await _read(settings, tps)
    return [(r.topic, r.key or b"", r.value or b"") for r in read]


async def device_events(settings: Settings) -> list[ev.DeviceEvent]:
    """Every event on the namespace's device-events topic (transitions and operators'
    commands) up to its end offsets when called, partition by partition."""
    topic = settings.topic(DEVICE_EVENTS.name)
    return [
        ev.decode_device_event(value)
        for _topic, _key, value in await records(settings, {topic: DEVICE_EVENTS.partitions})
    ]


async def incident_agent_positions(settings: Settings) -> list[str]:
    """Per partition of the device-events topic: its end offset, the offset the incident
    agent's group committed, and the transitions on it (id and device), for a test that
    waited in vain for an incident: was the event published, and was it consumed?"""
    admin = await admin_client(settings)
    try:
        committed = await admin.list_consumer_group_offsets(settings.topic(STREAMS_APP_ID))
    finally:
        await admin.close()
    topic = settings.topic(DEVICE_EVENTS.name)
    tps = [TopicPartition(topic, p) for p in range(DEVICE_EVENTS.partitions)]
    end, read = await _read(settings, tps)
    seen: dict[int, list[str]] = {}
    for r in read:
        event = ev.decode_device_event(r.value or b"")
        if isinstance(event, ev.DeviceTransition):
            seen.setdefault(r.partition, []).append(
                f"@{r.offset} #{event.id} {event.device_id} -> {event.new}"
            )
    return [
        f"{tp.topic}[{tp.partition}]: end {end[tp]}, agent committed "
        f"{committed[tp].offset if tp in committed else None}: "
        + ", ".join(seen.get(tp.partition, []))
        for tp in tps
        if tp.partition in seen or tp in committed
    ]
