"""A stream worker's probes of its broker and database, and the Kafka round-trip gauge
(ioc.streams.dependencies): no Kafka or database needed."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import asyncpg
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import REGISTRY

from ioc.config import Settings
from ioc.contract import metrics as m
from ioc.streams import dependencies
from ioc.streams.consumer import FeedConsumer
from ioc.streams.dependencies import (
    DatabaseProbe,
    DependencyProbes,
    KafkaStats,
    coordinator_rtt_s,
)
from ioc.streams.processor import FeedProcessor


def _window(p99_us: int, cnt: int) -> dict[str, int]:
    return {"min": 0, "max": p99_us, "avg": p99_us, "p99": p99_us, "cnt": cnt}


def _stats(coordinator: dict[str, int] | None, fetch_p99_us: int = 500_000) -> dict[str, Any]:
    brokers: dict[str, Any] = {
        "127.0.0.1:19092/bootstrap": {"source": "configured", "nodeid": -1, "rtt": _window(0, 0)},
        # a fetch waits at the broker for data: its rtt says nothing about the network
        "127.0.0.1:19092/1": {"source": "learned", "nodeid": 1, "rtt": _window(fetch_p99_us, 9)},
    }
    if coordinator is not None:
        brokers["GroupCoordinator"] = {"source": "logical", "nodeid": 1, "rtt": coordinator}
    return {"type": "consumer", "brokers": brokers}


def test_the_round_trip_is_the_coordinators_not_the_fetches() -> None:
    assert coordinator_rtt_s(_stats(_window(3_000, 3))) == pytest.approx(0.003)
    assert coordinator_rtt_s(_stats(_window(320_000, 2), fetch_p99_us=1_000)) == 0.32
    assert coordinator_rtt_s(_stats(_window(0, 0))) is None  # nothing completed
    assert coordinator_rtt_s(_stats(None)) is None  # no coordinator yet
    assert coordinator_rtt_s({}) is None


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_the_stats_callback_sets_or_removes_the_gauge_and_never_raises() -> None:
    stats = KafkaStats("w-stats")
    stats(json.dumps(_stats(_window(250_000, 4))))
    assert _value(m.KAFKA_RTT.series, worker="w-stats") == 0.25
    stats(json.dumps(_stats(_window(0, 0))))
    assert _value(m.KAFKA_RTT.series, worker="w-stats") is None
    stats("not json")  # an exception here would come out of consume()
    stats(json.dumps({"brokers": {"x": {"source": "logical", "rtt": {"cnt": 1, "p99": "?"}}}}))


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_database_that_refuses_or_never_answers_is_unreachable_within_the_timeout() -> None:
    refused = DatabaseProbe(f"postgresql://u:p@127.0.0.1:{_refused_port()}/db", timeout=2)
    assert await refused() is False

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers: a cut network or a hung server

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        probe = DatabaseProbe(f"postgresql://u:p@127.0.0.1:{port}/db", timeout=0.5)
        started = time.monotonic()
        assert await probe() is False
        assert time.monotonic() - started < 1.5
    finally:
        server.close()


class _Conn:
    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.terminated = False

    def is_closed(self) -> bool:
        return self.terminated

    async def fetchval(self, query: str) -> int:
        if not self.answers:
            await asyncio.sleep(10)
        return 1

    def terminate(self) -> None:
        self.terminated = True


async def test_a_failed_probe_drops_its_connection_and_the_next_opens_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[_Conn] = []
    plan = [True, False, True]

    async def connect(dsn: str, **kwargs: Any) -> _Conn:
        assert kwargs["server_settings"]["application_name"] == dependencies.APPLICATION_NAME
        opened.append(_Conn(plan[len(opened)]))
        return opened[-1]

    monkeypatch.setattr(asyncpg, "connect", connect)
    probe = DatabaseProbe("postgresql://x", timeout=0.2)
    assert await probe() is True
    opened[0].answers = False  # the network is cut under the open connection
    assert await probe() is False
    assert opened[0].terminated
    assert await probe() is False  # a new connection, which does not answer either
    assert await probe() is True
    assert len(opened) == 3 and opened[1].terminated and not opened[2].terminated


class _Kafka:
    def __init__(self, answer: bool | Exception | None) -> None:
        self.answer = answer

    async def reachable(self, timeout: float) -> bool | None:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_a_round_of_probes_sets_the_gauges(monkeypatch: pytest.MonkeyPatch) -> None:
    kafka = _Kafka(True)
    probes = DependencyProbes(kafka, "postgresql://x", "w-probes", timeout=0.2)
    database = {"ok": False}

    async def answer() -> bool:
        return database["ok"]

    monkeypatch.setattr(probes, "database", answer)
    up = m.DEPENDENCY_UP.series
    assert await probes.run_once() == {"kafka": True, "database": False}
    assert _value(up, worker="w-probes", dependency="kafka") == 1
    assert _value(up, worker="w-probes", dependency="database") == 0
    kafka.answer, database["ok"] = False, True
    await probes.run_once()
    assert _value(up, worker="w-probes", dependency="kafka") == 0
    assert _value(up, worker="w-probes", dependency="database") == 1
    # no feed consumer to ask, or a probe with a bug: the last answer stands, nothing raises
    for kafka.answer in (None, RuntimeError("bug")):
        assert await probes.run_once() == {"database": True}
        assert _value(up, worker="w-probes", dependency="kafka") == 0


class _Client:
    """The part of a confluent-kafka Consumer that reachable() uses."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.asked: list[tuple[str, float]] = []

    def list_topics(self, topic: str, timeout: float) -> object:
        self.asked.append((topic, timeout))
        if self.error is not None:
            raise self.error
        return object()


def _feeds() -> FeedConsumer:
    async def ready() -> FeedProcessor:
        raise AssertionError

    return FeedConsumer(Settings(), ready)


async def test_the_kafka_probe_asks_the_feed_consumer_for_a_feed_topic() -> None:
    feeds = _feeds()
    assert await feeds.reachable(1.0) is None  # no consumer yet
    client = _Client()
    feeds.consumer = client  # type: ignore[assignment]
    assert await feeds.reachable(1.5) is True
    assert client.asked == [(next(iter(feeds.feed_of)), 1.5)]
    client.error = KafkaException(KafkaError(KafkaError._TIMED_OUT))
    assert await feeds.reachable(1.5) is False
    client.error = RuntimeError("Consumer closed")
    assert await feeds.reachable(1.5) is False


async def test_the_kafka_probe_never_uses_a_consumer_being_closed() -> None:
    feeds = _feeds()
    client = _Client()
    feeds.consumer = client  # type: ignore[assignment]
    with feeds._client_lock:  # close() holds it
        probing = asyncio.ensure_future(feeds.reachable(1.0))
        await asyncio.sleep(0.05)
        feeds.consumer = None  # run() drops it before closing
    assert await probing is None
    assert client.asked == []


class _StuckClient(_Client):
    """A client whose every call waits, as confluent-kafka's do behind a synchronous commit
    that waits on a broker cut off by the network."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def list_topics(self, topic: str, timeout: float) -> object:
        self.asked.append((topic, timeout))
        self.release.wait(10)
        return object()

    def assignment(self) -> list[TopicPartition]:
        self.release.wait(10)
        return [TopicPartition(next(iter(_feeds().feed_of)), 0)]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, 100


async def test_a_client_stuck_on_the_broker_is_unreachable_and_never_blocks_the_loop() -> None:
    feeds = _feeds()
    client = _StuckClient()
    feeds.consumer = client  # type: ignore[assignment]
    started = time.monotonic()
    assert await feeds.reachable(0.2) is False
    assert await feeds.reachable(0.2) is False  # the same stuck probe, not a second one
    assert len(client.asked) == 1
    assert await feeds.lag_soon({}, timeout=0.2) == {}  # no answer yet: none to repeat
    assert time.monotonic() - started < 2
    client.release.set()
    await asyncio.sleep(0.1)
    assert await feeds.reachable(0.5) is True  # the stuck probe answered at last
    lags = await feeds.lag_soon({}, timeout=1)
    assert list(lags.values()) == [100]
    client.release.clear()  # stuck again: the last answer stands
    assert await feeds.lag_soon({}, timeout=0.2) == lags
    client.release.set()
