"""Where produced feed records go: Kafka (librdkafka, for throughput) or a JSONL file.

Shared by every producer of feed messages: the simulators (``ioc simulate``) and the
collectors of real sources (``ioc collect``, :mod:`ioc.services.collect`). It lives in the
core because the runtime components may not import the simulators
(tests/unit/test_dependencies.py).

confluent-kafka rather than aiokafka: librdkafka batches, compresses and sends from its own C
threads, so the Python side only formats messages and the GIL is not the ceiling of load
mode.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from ioc.config import Settings
from ioc.contract.topics import FAULT_LOG, FEED_TOPICS, province_topic
from ioc.errors import ServiceUnavailable
from ioc.kafka_clients import LibrdkafkaLog, librdkafka_admin, librdkafka_producer


class Record(Protocol):
    """What a sink sends: the feed (a registered feed or ``faults``), the Kafka key (the
    device id) and the encoded message. The simulators' ``Out`` is one."""

    @property
    def feed(self) -> str: ...

    @property
    def key(self) -> bytes: ...

    @property
    def value(self) -> bytes: ...


class Sink:
    errors = 0
    sent = 0

    def send(self, record: Record) -> None:
        raise NotImplementedError

    def poll(self) -> None:
        """Serve delivery reports; cheap, called once per tick."""

    def flush(self, timeout: float = 60.0) -> None:
        """Block until everything sent has been acknowledged."""

    def wait(self, seconds: float) -> None:
        """Idle until the next tick; Kafka serves delivery reports meanwhile."""
        time.sleep(seconds)

    def latency_samples_ms(self) -> list[float]:
        return []


def topic_names(
    settings: Settings, *, fault_log: bool = True, province: str | None = None
) -> dict[str, str]:
    """Physical topic per record feed: every feed's, and the fault log's unless ``fault_log``
    is false (a collector injects no faults, and its Kafka user cannot even see that topic).
    With ``province`` (a province's own producer, ``ioc collect --province``): that
    province's topic of each feed and no fault log, since its Kafka user may write nothing
    else (:func:`ioc.contract.access.province_acls`)."""
    if province is not None:
        return {
            feed: settings.topic(province_topic(spec, province).name)
            for feed, spec in FEED_TOPICS.items()
        }
    names = {feed: settings.topic(spec.name) for feed, spec in FEED_TOPICS.items()}
    if fault_log:
        names["faults"] = settings.topic(FAULT_LOG.name)
    return names


class ProvinceRouting:
    """Where each device's records go with per-province topics on
    (``IOC_KAFKA_PROVINCE_TOPICS``): its province's topic of the feed
    (``ioc.p.<code>.<feed>.v1``) instead of the shared one. ``province_of``: device id (the
    Kafka key, as bytes) -> province code. A record whose key names no device of the scenario
    (a hostile test record) and the fault log stay on the shared topics."""

    def __init__(self, settings: Settings, province_of: Mapping[bytes, str]) -> None:
        self.province_of = province_of
        self.topics = {
            (feed, province): settings.topic(province_topic(spec, province).name)
            for province in set(province_of.values())
            for feed, spec in FEED_TOPICS.items()
        }

    def topic(self, feed: str, key: bytes, shared: str) -> str:
        province = self.province_of.get(key)
        if province is None:
            return shared
        return self.topics.get((feed, province), shared)


CLIENT_ID = "ioc-simulator"
"""The default librdkafka ``client.id``; a collector passes its own."""

PRODUCER_TUNING: dict[str, Any] = {
    # idempotent, acks=all, batched and compressed
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 20_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 512 * 1024,
    "message.max.bytes": 2_000_000,
    "socket.nagle.disable": True,
    "partitioner": "murmur2_random",  # same partition per key as the Java/aiokafka clients
}


class KafkaSink(Sink):
    def __init__(
        self,
        settings: Settings,
        sample_every: int = 97,
        client_id: str = CLIENT_ID,
        province_of: Mapping[bytes, str] | None = None,
    ) -> None:
        from confluent_kafka import KafkaException, Producer
        from confluent_kafka.admin import AdminClient

        self.settings = settings
        # Fail fast with one clear line if the broker is not there (the admin client's
        # librdkafka lines are not served: the failure is that line).
        try:
            admin = AdminClient(librdkafka_admin(settings, client_id))
            metadata = admin.list_topics(timeout=10)
        except KafkaException as exc:
            raise ServiceUnavailable(
                f"Kafka broker at {settings.bootstrap_servers} is unreachable ({exc}); "
                "is the stack up? (`ioc stack up`)"
            ) from None
        self.topics = topic_names(settings)
        self.routing = None if province_of is None else ProvinceRouting(settings, province_of)
        every = [*self.topics.values(), *(self.routing.topics.values() if self.routing else ())]
        missing = [t for t in every if t not in metadata.topics]
        if missing:
            raise ServiceUnavailable(
                f"topics {', '.join(missing)} do not exist; run `ioc topics create`"
            )
        conf = librdkafka_producer(settings, client_id, **PRODUCER_TUNING)
        self.rdkafka_log: LibrdkafkaLog = conf["logger"]
        self.producer = Producer(conf)
        self.sample_every = sample_every
        self._count = 0
        self._latencies: list[float] = []
        self.first_error: str | None = None

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = str(err)
            return
        self.sent += 1

    def _on_delivery_sampled(self, err: Any, msg: Any) -> None:
        self._on_delivery(err, msg)
        if err is None:
            latency = msg.latency()
            if latency is not None:
                self._latencies.append(latency * 1000.0)

    def send(self, record: Record) -> None:
        self._count += 1
        callback = (
            self._on_delivery_sampled if self._count % self.sample_every == 0 else self._on_delivery
        )
        topic = self.topics[record.feed]
        if self.routing is not None:
            topic = self.routing.topic(record.feed, record.key, topic)
        while True:
            try:
                self.producer.produce(topic, record.value, record.key, on_delivery=callback)
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let librdkafka drain

    def poll(self) -> None:
        self.producer.poll(0)

    def wait(self, seconds: float) -> None:
        # Serving reports while idle keeps the measured produce latency honest
        # (librdkafka timestamps a report when it is served, not when the ack arrived).
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.producer.poll(min(left, 0.005))

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for every message; what is still queued after ``timeout`` is counted as an
        error (messages never time out by themselves, so this is the only way one is given
        up, and it is never silent)."""
        deadline = time.monotonic() + timeout
        while self.producer.flush(1.0) > 0 and time.monotonic() < deadline:
            pass
        left = len(self.producer)
        if left:
            self.errors += left
            if self.first_error is None:
                self.first_error = f"{left} messages not acknowledged after {timeout:.0f} s"
        self.rdkafka_log.flush()

    def latency_samples_ms(self) -> list[float]:
        return self._latencies


class FileSink(Sink):
    """One JSON object per line: topic, key and the exact message bytes (as text)."""

    def __init__(
        self,
        settings: Settings,
        path: Path,
        province_of: Mapping[bytes, str] | None = None,
        *,
        province: str | None = None,
    ) -> None:
        """``province_of`` routes each device to its province's topics (the simulator);
        ``province`` sends everything to one province's (its collector)."""
        self.topics = topic_names(settings, province=province)
        self.routing = None if province_of is None else ProvinceRouting(settings, province_of)
        self.path = path
        self.fh: IO[bytes] = path.open("wb")

    def send(self, record: Record) -> None:
        topic = self.topics[record.feed]
        if self.routing is not None:
            topic = self.routing.topic(record.feed, record.key, topic)
        self.fh.write(
            orjson.dumps(
                {
                    "topic": topic,
                    "key": record.key.decode(),
                    "value": record.value.decode("utf-8", "replace"),
                }
            )
        )
        self.fh.write(b"\n")
        self.sent += 1

    def flush(self, timeout: float = 60.0) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()
