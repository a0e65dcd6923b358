"""Batch consumption of the feed topics: ``getmany`` -> validate -> write -> commit.

Why not Faust agents for the feeds: a profile of a worker draining a backlog showed ~90 % of
its time in Faust's per-message stream plumbing (a future, a task switch and an ack per
message), and the project's own batch path at 5 %. The worker therefore reads the feeds with
aiokafka's ``getmany`` in its own consumer group and hands whole batches to the
:class:`~ioc.streams.processor.FeedProcessor`; Faust still owns the worker's lifecycle,
timers, leader election and the dead-letter producer (docs/performance.md).

Delivery: offsets are committed only after the batch's rows are committed in the database and
its dead letters acknowledged, so a crash, a SIGKILL or a stop mid-batch replays the batch
(the writes are idempotent) and nothing is lost. Validation of batch N+1 overlaps the database
write of the rounds before it (up to ``max_in_flight`` rounds, each one transaction per feed);
offsets are committed in order, only for rounds that landed and every round before them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from ioc.config import Settings
from ioc.contract.topics import FEED_TOPICS
from ioc.streams.processor import FeedProcessor, Prepared

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]


def consumer_group(settings: Settings) -> str:
    """The feed consumers' group (Faust's own group is ``{prefix}ioc-streams``)."""
    return f"{settings.kafka_topic_prefix}ioc-streams-feeds"


class _InFlight:
    """One round of writes (every feed of one ``getmany``) and the offsets it completes."""

    def __init__(self, task: asyncio.Task[None], offsets: Offsets) -> None:
        self.task = task
        self.offsets = offsets

    def landed(self) -> bool:
        return self.task.done() and not self.task.cancelled() and self.task.exception() is None


class FeedConsumer(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        settings: Settings,
        ready: Callable[[], Any],
        *,
        batch_size: int = 10_000,
        batch_within_s: float = 0.5,
        max_in_flight: int = 3,
        client_id: str = "ioc-worker",
    ) -> None:
        self.settings = settings
        self._ready = ready  # coroutine function returning the FeedProcessor
        self.batch_size = batch_size
        self.batch_within_ms = int(batch_within_s * 1000)
        self.client_id = client_id
        self.feed_of = {settings.topic(spec.name): feed for feed, spec in FEED_TOPICS.items()}
        self.max_in_flight = max_in_flight
        self.consumer: AIOKafkaConsumer | None = None
        self._in_flight: deque[_InFlight] = deque()

    # -- the loop -----------------------------------------------------------------------
    async def run(self) -> None:
        processor: FeedProcessor = await self._ready()
        consumer = AIOKafkaConsumer(
            **self.settings.aiokafka_kwargs(),
            group_id=consumer_group(self.settings),
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            # A database outage stalls the loop in the writer's retry; stay in the group
            # meanwhile instead of being evicted and rebalancing every 5 minutes.
            max_poll_interval_ms=30 * 60 * 1000,
        )
        consumer.subscribe(list(self.feed_of), listener=self)
        await self._start(consumer)
        self.consumer = consumer
        try:
            while True:
                batches = await consumer.getmany(
                    timeout_ms=self.batch_within_ms, max_records=self.batch_size
                )
                if not batches:
                    await self._finish(0)
                    continue
                prepared, offsets = self._prepare(processor, batches)
                await self._finish(self.max_in_flight - 1)
                self._in_flight.append(
                    _InFlight(asyncio.ensure_future(self._write(processor, prepared)), offsets)
                )
        finally:
            # A stop mid-batch cancels the writes: their transactions roll back and their
            # offsets stay uncommitted, so whoever takes the partitions over replays them.
            for in_flight in self._in_flight:
                in_flight.task.cancel()
            self._in_flight.clear()
            self.consumer = None
            await consumer.stop()

    async def _start(self, consumer: AIOKafkaConsumer) -> None:
        delay = 0.5
        while True:
            try:
                await consumer.start()
                return
            except KafkaError as exc:
                log.warning("Kafka not reachable (%s); retry in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)

    def _prepare(
        self, processor: FeedProcessor, batches: dict[TopicPartition, list[Any]]
    ) -> tuple[list[Prepared], Offsets]:
        by_feed: dict[str, list[Any]] = {}
        offsets: Offsets = {}
        for tp, records in batches.items():
            if not records:
                continue
            by_feed.setdefault(self.feed_of[tp.topic], []).extend(records)
            offsets[tp] = records[-1].offset + 1
        return [processor.prepare(feed, rs) for feed, rs in by_feed.items()], offsets

    @staticmethod
    async def _write(processor: FeedProcessor, prepared: list[Prepared]) -> None:
        # One transaction per feed, concurrently: the database works while Python validates.
        await asyncio.gather(*[processor.write(p) for p in prepared])

    async def _finish(self, keep: int) -> None:
        """Wait until at most ``keep`` rounds are in flight; commit the offsets that landed.

        Rounds may land out of order (they are independent, idempotent transactions), but
        offsets are committed strictly in order: a round's offsets only once every earlier
        round has landed too.
        """
        while len(self._in_flight) > keep:
            await self._in_flight[0].task
            await self._commit_landed()
        await self._commit_landed()

    async def _commit_landed(self) -> None:
        offsets: Offsets = {}
        while self._in_flight and self._in_flight[0].landed():
            offsets.update(self._in_flight.popleft().offsets)
        if offsets:
            await self._commit(offsets)

    async def _commit(self, offsets: Offsets) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        owned = {tp: o for tp, o in offsets.items() if tp in consumer.assignment()}
        if not owned:
            return
        try:
            await consumer.commit(owned)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # Lost the partitions or the broker: the batch is stored, so the new owner's
            # replay of it is absorbed by the idempotent writes.
            log.warning("offset commit failed (%s); the batch will be replayed", exc)

    # -- rebalances ---------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Let the writes in flight land and commit them, so the next owner need not replay."""
        if not self._in_flight or not revoked:
            return
        await asyncio.wait([f.task for f in self._in_flight], timeout=30)
        await self._commit_landed()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %d feed partitions", len(assigned))

    # -- metrics ------------------------------------------------------------------------
    def lag(self, positions: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Messages behind the high-water mark per (feed, partition) this worker owns."""
        consumer = self.consumer
        out: dict[tuple[str, int], int] = {}
        if consumer is None:
            return out
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None or tp.topic not in self.feed_of:
                continue
            done = positions.get((tp.topic, tp.partition), -1)
            out[(self.feed_of[tp.topic], tp.partition)] = max(0, highwater - done - 1)
        return out
