"""`ioc simulate` against the real local Kafka: everything produced arrives, decodable."""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import orjson
from aiokafka import AIOKafkaConsumer

from ioc.config import Settings
from ioc.contract import schemas as s
from ioc.contract.topics import FAULT_LOG, FEED_TOPICS, all_topics
from ioc.kafka import ensure_topics
from ioc.kafka_clients import aiokafka_common
from ioc.simulators.run import SimConfig, run_simulation


async def consume_all(
    settings: Settings, expected: int, timeout: float = 60.0
) -> list[tuple[str, bytes, bytes]]:
    topics = [settings.topic(t.name) for t in (*FEED_TOPICS.values(), FAULT_LOG)]
    consumer = AIOKafkaConsumer(
        *topics,
        **aiokafka_common(settings),
        group_id=f"{settings.db_schema}-check",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    records: list[tuple[str, bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for tp, msgs in batches.items():
                records += [(tp.topic, m.key, m.value) for m in msgs]
        # a little longer, to catch anything unexpected beyond the expected count
        extra = await consumer.getmany(timeout_ms=1500)
        for tp, msgs in extra.items():
            records += [(tp.topic, m.key, m.value) for m in msgs]
    finally:
        await consumer.stop()
    return records


async def test_load_mode_with_faults_lands_every_record_in_kafka(namespace: Settings) -> None:
    await ensure_topics(namespace, all_topics())
    summary = run_simulation(
        namespace,
        SimConfig(
            scenario="demo",
            mode="rate",
            rate=3000,
            duration_s=4,
            progress=False,
            fault_flags=[
                "duplicate:0.01",
                "malformed:0.01",
                "late:0.01",
                "node_down:netnode#3@1+2",
            ],
        ),
    )
    assert summary.errors == 0
    records = await consume_all(namespace, summary.sent)
    assert len(records) == summary.sent

    feed_of_topic = {namespace.topic(spec.name): feed for feed, spec in FEED_TOPICS.items()}
    now = int(time.time() * 1000)
    valid: list[s.Message] = []
    invalid: Counter[str] = Counter()
    faults = []
    for topic, key, value in records:
        if topic == namespace.topic(FAULT_LOG.name):
            faults.append(orjson.loads(value))
            continue
        try:
            valid.append(s.decode(value, feed=feed_of_topic[topic], key=key, now_ms=now))
        except s.InvalidMessage as exc:
            invalid[exc.reason] += 1
    assert dict(invalid) == dict(summary.stats.invalid_by_reason)
    assert len(valid) == sum(summary.stats.valid_by_feed.values()) + summary.stats.duplicates
    seqs: dict[str, set[int]] = defaultdict(set)
    for m in valid:
        seqs[m.device_id].add(m.seq)
    for dev, got in seqs.items():  # per-device sequence numbers have no gaps
        assert got == set(range(1, max(got) + 1)), dev
    assert [f["event"] for f in faults if f["type"] == "node_down"] == ["start", "end"]


async def test_realtime_yen_bai_produces_every_device_class(namespace: Settings) -> None:
    await ensure_topics(namespace, all_topics())
    summary = run_simulation(
        namespace,
        SimConfig(scenario="yen-bai-2022", mode="realtime", duration_s=12, progress=False),
    )
    assert summary.errors == 0
    records = await consume_all(namespace, summary.sent)
    assert len(records) == summary.sent
    kinds: Counter[str] = Counter()
    devices: set[str] = set()
    for _topic, _key, value in records:
        msg = s.decode(value)
        kinds[msg.kind] += 1
        devices.add(msg.device_id)
    assert {
        "camera.heartbeat",
        "camera.stream",
        "telehealth.heartbeat",
        "netnode.probe",
        "netnode.counters",
        "vconf.bridge",
        "soc.sensor",
    } <= set(kinds)
    # every device with a report period of 10 s or less reports within 12 s (a portal desk's
    # dossiers come once a minute: some of them only); nothing outside the scenario
    from ioc.contract.topology import load_scenario
    from ioc.simulators.behaviour import sim_class

    topology = load_scenario("yen-bai-2022")
    frequent = {
        d.id
        for d in topology.devices.values()
        if min(sim_class(d.device_class).periods.values()) <= 10_000
    }
    assert frequent - devices == set()
    assert devices <= set(topology.devices)
