"""Offsets are committed in order, only for rounds that landed (pure logic, no Kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from ioc.config import Settings
from ioc.streams.consumer import FeedConsumer, Offsets, Packed, _InFlight
from ioc.streams.processor import FeedProcessor, KafkaRecord, Prepared, Record


class _RecordingConsumer(FeedConsumer):
    """Commits into a list instead of to Kafka."""

    def __init__(self) -> None:
        async def ready() -> FeedProcessor:  # never called here
            raise AssertionError

        super().__init__(Settings(), ready)
        self.committed: list[Offsets] = []

    async def _commit(self, offsets: Offsets) -> None:
        if offsets:
            self.committed.append(dict(offsets))


def make() -> tuple[FeedConsumer, list[Offsets]]:
    consumer = _RecordingConsumer()
    return consumer, consumer.committed


def test_a_round_that_lands_early_waits_for_the_rounds_before_it() -> None:
    async def scenario() -> list[Offsets]:
        consumer, committed = make()
        gates = [asyncio.Event() for _ in range(3)]

        async def write(i: int) -> None:
            await gates[i].wait()

        for i in range(3):
            task = asyncio.ensure_future(write(i))
            consumer._in_flight.append(_InFlight(task, {("t", 0): 10 * (i + 1)}))
        gates[2].set()  # the last round lands first
        await asyncio.sleep(0)
        await consumer._finish(3)
        assert committed == []  # nothing before round 0 landed
        gates[0].set()
        await asyncio.sleep(0)
        await consumer._finish(3)
        assert committed == [{("t", 0): 10}]  # round 1 still open: round 2 must wait
        gates[1].set()
        await consumer._finish(0)
        return committed

    assert asyncio.run(scenario()) == [{("t", 0): 10}, {("t", 0): 30}]


def test_a_failed_or_cancelled_round_is_never_committed() -> None:
    async def scenario() -> list[Offsets]:
        consumer, committed = make()

        async def never() -> None:
            await asyncio.Event().wait()

        task = asyncio.ensure_future(never())
        consumer._in_flight.append(_InFlight(task, {("t", 0): 5}))
        await asyncio.sleep(0)
        task.cancel()  # a stop mid-batch
        await asyncio.sleep(0)
        assert consumer._take_landed() == {}
        return committed

    assert asyncio.run(scenario()) == []


class _Message:
    """The parts of a confluent-kafka Message that _prepare reads."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._where = (topic, partition, offset)

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"v"

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000 + self._where[2])  # TIMESTAMP_CREATE_TIME


class _Processor(FeedProcessor):
    """Records what _prepare hands over; validates nothing."""

    def __init__(self) -> None:  # no topology, pool or metrics: only prepare() is called
        self.calls: list[tuple[str, int, dict[tuple[str, int], int]]] = []
        self.sources: list[Callable[[int], KafkaRecord]] = []
        self.provinces: list[Sequence[str | None] | None] = []

    def prepare(
        self,
        feed: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None],
        source: Callable[[int], KafkaRecord],
        positions: dict[tuple[str, int], int],
        provinces: Sequence[str | None] | None = None,
    ) -> Prepared:
        self.calls.append((feed, len(values), positions))
        self.sources.append(source)
        self.provinces.append(provinces)
        return Prepared(feed=feed, count=len(values), batch=None, valid=[])


def test_prepare_groups_by_feed_and_tracks_the_last_offset_of_each_partition() -> None:
    consumer, _committed = make()
    camera, netnode = (t for t, f in consumer.feed_of.items() if f in ("camera", "netnode"))
    messages = [
        _Message(camera, 0, 7),
        _Message(netnode, 2, 40),
        _Message(camera, 1, 3),
        _Message(camera, 0, 8),
        _Message(netnode, 2, 41),
    ]
    processor = _Processor()
    prepared, offsets = consumer._prepare(processor, messages)
    assert [p.feed for p in prepared] == ["camera", "netnode"]
    assert offsets == {(camera, 0): 9, (camera, 1): 4, (netnode, 2): 42}
    assert processor.calls == [
        ("camera", 3, {(camera, 0): 8, (camera, 1): 3}),
        ("netnode", 2, {(netnode, 2): 41}),
    ]
    # a dead letter's source, from what the round keeps instead of the client's messages
    assert processor.sources[0](2) == Record(camera, 0, 8, b"k", b"v", 1_700_000_000_008)
    assert processor.sources[1](0) == Record(netnode, 2, 40, b"k", b"v", 1_700_000_000_040)


def test_packed_keeps_each_byte_string_none_and_empty_apart() -> None:
    items: list[bytes | None] = [b"abc", None, b"", b"de", None, b"\x00f"]
    packed = Packed(items)
    assert len(packed) == len(items)
    assert [packed[i] for i in range(len(items))] == items
    assert len(Packed([])) == 0
