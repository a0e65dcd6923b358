"""Per-province feed topics against the local stack (``IOC_KAFKA_PROVINCE_TOPICS``,
docs/scaling.md): two provinces, every process over SASL as its own user.

Bootstrap makes each province's topics, its user (SCRAM), its ACL and its quota; province
10's user writes its own topics and is refused province 20's and the shared ones; province
10's collector (``ioc collect --province 10``'s spooling sink) logs in as that user and lands
its record on province 10's topic, and one routed to province 20's is refused; a worker
(as ``ioc-worker``) lands what the simulator (as ``ioc-simulator``) wrote to the provinces'
topics; a record for a device of province 20 sent on province 10's topic is dead-lettered
with ``wrong_province``; every valid record sent lands, none twice.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry as Registry

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import access
from ioc.contract import schemas as s
from ioc.contract import topics as t
from ioc.contract.topology import load_scenario
from ioc.errors import ServiceUnavailable
from ioc.kafka import admin_client, describe_user_quotas
from ioc.kafka_clients import aiokafka_producer, librdkafka_producer
from ioc.services.collect.cli import spooling_sink
from ioc.services.collect.province import kafka_settings
from ioc.services.collect.spool import SpoolingSink
from ioc.simulators.run import SimConfig, run_simulation
from ioc.sinks import PRODUCER_TUNING
from tests.integration.test_kafka_acls import Answer, refused, through_sasl
from tests.support.db import query
from tests.support.kafka import dlq_by_source, records
from tests.support.processes import Worker
from tests.support.wait import wait_for
from tests.unit.test_province_topics import TWO_PROVINCES

HOSTILE_SEQ = 900_001
"""The seq of the record province 10's user sends for province 20's camera."""
COLLECTED_SEQ = 800_005
"""The seq of the record province 10's collector sends for its own camera."""


def _heartbeat(device: str, seq: int) -> tuple[bytes, bytes]:
    """A camera's heartbeat as its producer sends it: (key, value)."""
    now = int(time.time() * 1000)
    return device.encode(), s.encode(
        s.CameraHeartbeat(v=1, device_id=device, seq=seq, ts_ms=now, status="ok", uptime_s=seq)
    )


async def send(settings: Settings, topic: str, record: tuple[bytes, bytes]) -> None:
    """One idempotent acks=all write of (key, value)."""
    producer = AIOKafkaProducer(**aiokafka_producer(settings), request_timeout_ms=10_000)
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, record[1], key=record[0]), 20)
    finally:
        await producer.stop()


@pytest.mark.timeout(600)
def test_provinces_write_only_their_own_topics_and_the_worker_lands_them(
    namespace: Settings, tmp_path: Path
) -> None:
    scenario = tmp_path / "two-provinces.yaml"
    scenario.write_text(TWO_PROVINCES)
    topology = load_scenario(str(scenario))
    settings = through_sasl(namespace).model_copy(update={"kafka_province_topics": True})
    prefix = settings.kafka_topic_prefix

    # --- bootstrap: topics, users, ACLs, quotas (twice: idempotent) ----------------------
    asyncio.run(bootstrap(settings, str(scenario)))
    asyncio.run(bootstrap(settings, str(scenario)))

    async def topic_partitions() -> dict[str, int]:
        admin = await admin_client(settings)
        try:
            names = [settings.topic(spec.name) for spec in t.province_topics(topology)]
            return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)}
        finally:
            await admin.close()

    made = asyncio.run(topic_partitions())
    assert len(made) == 2 * len(t.FEED_TOPICS)
    assert set(made.values()) == {t.PROVINCE_PARTITIONS}
    users = [access.province_user(province) for province in ("10", "20")]
    assert set(users) <= set(settings.stack_kafka_users())

    def quotas_served() -> bool:
        quotas = [asyncio.run(describe_user_quotas(settings, user)) for user in users]
        return all(q == access.PROVINCE_QUOTAS for q in quotas)

    wait_for(lambda: quotas_served() or None, 30, interval=0.5, what="the provinces' quotas")

    # --- a province's user writes its own topics, and no other --------------------------
    own = settings.topic(t.province_topic(t.CAMERA, "10").name)
    other = settings.topic(t.province_topic(t.CAMERA, "20").name)
    p10 = settings.for_kafka_province("10")
    assert p10.kafka_sasl_username == "ioc-p-10"
    asyncio.run(send(p10, own, _heartbeat("cam-10", 800_001)))
    asyncio.run(refused(send(p10, other, _heartbeat("cam-20", 800_002))))
    asyncio.run(refused(send(p10, settings.topic(t.CAMERA.name), _heartbeat("cam-10", 800_003))))
    asyncio.run(send(settings.for_kafka_province("20"), other, _heartbeat("cam-20", 800_004)))
    # allowed by the ACL (its own topic), refused by the validator: not its device
    asyncio.run(send(p10, own, _heartbeat("cam-20", HOSTILE_SEQ)))

    # --- a province's collector (`ioc collect --province`): its user, its topics only ------
    assert kafka_settings(settings, "10").kafka_sasl_username == "ioc-p-10"
    collector = spooling_sink(
        settings, tmp_path / "spool-10", shard=0, shards=1, province="10", registry=Registry()
    )
    try:
        collector.send(Answer("camera", *_heartbeat("cam-10", COLLECTED_SEQ)))
        collector.flush(20)
        assert (collector.sent, collector.errors, collector.spool.depth) == (1, 0, 0)
    finally:
        collector.close()
    # Logged in as province 10, sent to province 20's topics: its start-up check cannot see
    # them (metadata lists what a user may describe), and the broker refuses the write.
    with pytest.raises(ServiceUnavailable, match="Kafka user ioc-p-10 may not write them"):
        SpoolingSink(p10, tmp_path / "spool-x", client_id="t", registry=Registry(), province="20")
    forged = SpoolingSink(
        p10,
        tmp_path / "spool-20",
        client_id="t",
        registry=Registry(),
        province="20",
        producer=Producer(librdkafka_producer(p10, "t", **PRODUCER_TUNING)),
    )
    try:
        forged.send(Answer("camera", *_heartbeat("cam-20", 800_006)))
        forged.flush(20)
        assert (forged.sent, forged.errors, forged.spool.depth) == (0, 1, 0)
        assert "uthoriz" in (forged.first_error or ""), forged.first_error
    finally:
        forged.close()

    # --- the simulator (its own user) writes each device to its province's topic ---------
    worker = Worker(settings, str(scenario), tmp_path / "w1.log", "w1").start()
    try:
        worker.wait_serving(120)
        start = int(time.time() * 1000) - 300_000
        summary = run_simulation(
            settings.for_kafka_service("simulator"),
            SimConfig(
                scenario=str(scenario),
                mode="virtual",
                start_ms=start,
                duration_s=240,
                progress=False,
            ),
        )
        assert summary.errors == 0 and summary.sent > 0, summary.first_error

        feeds = {settings.topic(spec.name): spec.partitions for spec in t.FEED_TOPICS.values()}
        provinces = {
            settings.topic(spec.name): spec.partitions for spec in t.province_topics(topology)
        }
        written = asyncio.run(records(settings, {**feeds, **provinces}))
        assert not [r for r in written if r[0] in feeds], "the shared feed topics stay empty"
        expected: set[tuple[str, int]] = set()
        for topic, key, value in written:
            province, feed = t.parse_province_topic(prefix, topic) or ("", "")
            message = s.decode(value, feed=feed, key=key, now_ms=int(time.time() * 1000))
            if topology.province_of(message.device_id) == province:
                assert topic.startswith(f"{prefix}ioc.p.{province}.")
                expected.add((message.device_id, message.seq))
        assert ("cam-10", 800_001) in expected and ("cam-20", 800_004) in expected
        assert ("cam-10", COLLECTED_SEQ) in expected, "the collector's record"
        assert ("cam-20", 800_006) not in expected, "refused: never written"
        assert ("cam-20", HOSTILE_SEQ) not in expected
        assert {d for d, _seq in expected} == set(topology.devices), "every device reported"

        def stored() -> set[tuple[str, int]]:
            from ioc.contract.tables import RAW

            union = " UNION ALL ".join(f"SELECT device_id, seq FROM {r}" for r in RAW.values())
            return {(r["device_id"], r["seq"]) for r in query(settings, union)}

        wait_for(lambda: stored() >= expected or None, 120, what=f"{len(expected)} records")
        assert stored() == expected, "nothing lost, nothing else stored"

        def hostile() -> list[str]:
            letters = asyncio.run(dlq_by_source(settings)).values()
            return [letter.reason for letter in letters if letter.topic == own]

        assert wait_for(lambda: hostile() or None, 60, what="the dead letter") == [
            s.REASON_WRONG_PROVINCE
        ]
        assert worker.alive()
    finally:
        worker.stop()
