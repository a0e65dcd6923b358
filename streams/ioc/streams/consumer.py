"""Batch consumption of the feed topics: ``consume`` -> validate -> write -> commit.

Why not Faust agents for the feeds: a profile of a worker draining a backlog showed ~90 % of
its time in Faust's per-message stream plumbing (a future, a task switch and an ack per
message). Why not aiokafka's ``getmany`` either: it builds every record in Python, 15-20 %
of a worker's time once the rest was batched. The worker reads the feeds with librdkafka
(confluent-kafka, already the simulators' client): fetching and decompression run in C
threads, ``consume(n)`` hands over up to ``n`` messages in one call on a dedicated thread,
and the event loop only sees whole batches, which it gives to the
:class:`~ioc.streams.processor.FeedProcessor`. Faust still owns the worker's lifecycle,
timers and the dead-letter producer (docs/streams.md, docs/performance.md).

Delivery: offsets are committed only after a batch's rows are committed in the database and
its dead letters acknowledged, so a crash, a SIGKILL or a stop mid-batch replays the batch
(the writes are idempotent) and nothing is lost. Validation of batch N+1 overlaps the database
writes of the rounds before it (up to ``max_in_flight`` rounds, each one transaction per feed);
offsets are committed in order, only for rounds that landed and every round before them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ioc.config import Settings
from ioc.contract.topics import FEED_TOPICS, parse_province_topic, province_topic_pattern
from ioc.kafka_clients import LibrdkafkaLog, aiokafka_common, librdkafka_consumer
from ioc.streams.processor import FeedProcessor, Prepared, Record

log = logging.getLogger(__name__)
_T = TypeVar("_T")

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read


def consumer_group(settings: Settings) -> str:
    """The feed consumers' group (Faust's own group is ``{prefix}ioc-streams``)."""
    return f"{settings.kafka_topic_prefix}ioc-streams-feeds"


CONSUMER_TUNING: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    # Round-robin over every partition of every subscribed topic. The range assignor deals
    # each topic out on its own: with per-province topics (408 topics of 2 partitions on
    # `national`) the first two of four workers took every province partition and the
    # other two sat idle (bench/national.py, 2026-11-28). Eager like range: the assign
    # and revoke callbacks see whole assignments, as before.
    "partition.assignment.strategy": "roundrobin",
    # The prefetch queue is what a catch-up fills, and these sizes are a trade-off measured
    # with bench/catchup_rss.py (20,000 ev/s, 850,000-event backlogs, docs/performance.md,
    # "Catch-up peak"): as here, peak RSS 640 MiB while draining at a median 32,900 ev/s;
    # an 8 MiB queue, 20,000 queued messages and 8 MiB fetches halved the peak (303-311 MiB)
    # but drained at 28,200 ev/s, which makes a catch-up under 20,000 ev/s of input about
    # 1.5x longer. Kept for the drain rate until a middle setting is measured.
    "fetch.max.bytes": 32 * 1024 * 1024,
    "max.partition.fetch.bytes": 4 * 1024 * 1024,
    "queued.max.messages.kbytes": 64 * 1024,
    # A database outage stalls the loop in the writer's retry; stay in the group
    # meanwhile instead of being evicted and rebalancing every 5 minutes.
    "max.poll.interval.ms": 30 * 60 * 1000,
    # A worker that dies (SIGKILL, OOM, lost host) holds its partitions until the
    # session times out: 10 s (librdkafka's heartbeats run on their own thread) keeps
    # that stall short; the broker's group.min.session.timeout.ms is 6 s.
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 2_000,
}


PATTERN_REFRESH_MS = 60_000
"""With per-province topics: how often the consumer refreshes the cluster's metadata, so a
province added since (its topics made by ``ioc bootstrap``) is subscribed without a restart."""

STATS_INTERVAL_MS = 5_000
"""librdkafka's statistics interval when ``on_stats`` is given (ioc.streams.dependencies: the
coordinator round-trip window); the JSON is parsed once per interval, off the message path."""


class _InFlight:
    """One round of writes (every feed of one ``consume``) and the offsets it completes."""

    def __init__(self, task: asyncio.Task[None], offsets: Offsets) -> None:
        self.task = task
        self.offsets = offsets

    def landed(self) -> bool:
        return self.task.done() and not self.task.cancelled() and self.task.exception() is None


class FeedConsumer:
    def __init__(
        self,
        settings: Settings,
        ready: Callable[[], Awaitable[FeedProcessor]],
        *,
        batch_size: int = 10_000,
        batch_within_s: float = 0.5,
        max_in_flight: int = 3,
        client_id: str = "ioc-worker",
        on_stats: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._ready = ready
        self.batch_size = batch_size
        self.batch_within_s = batch_within_s
        self.max_in_flight = max_in_flight
        self.client_id = client_id
        self.feed_of = {settings.topic(spec.name): feed for feed, spec in FEED_TOPICS.items()}
        """The shared feed topics -> their feed."""
        self.topic_of = {feed: topic for topic, feed in self.feed_of.items()}
        # With per-province topics (IOC_KAFKA_PROVINCE_TOPICS), each feed's are subscribed by
        # pattern beside its shared topic: librdkafka finds a new province's topics at its
        # next metadata refresh (topic.metadata.refresh.interval.ms), no restart needed.
        self.patterns = (
            [province_topic_pattern(settings.kafka_topic_prefix, s) for s in FEED_TOPICS.values()]
            if settings.kafka_province_topics
            else []
        )
        self._routes: dict[str, tuple[str, str | None] | None] = {
            topic: (feed, None) for topic, feed in self.feed_of.items()
        }
        self.consumer: Consumer | None = None
        self._in_flight: deque[_InFlight] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committer: ThreadPoolExecutor | None = None  # made by run(), per run
        self.on_stats = on_stats  # librdkafka's stats_cb, every STATS_INTERVAL_MS, in consume()
        # held while a probe (reachable()) or close() uses the client: never both at once
        self._client_lock = threading.Lock()
        self._probe: asyncio.Future[bool | None] | None = None
        self._lag_call: asyncio.Future[dict[tuple[str, int], int]] | None = None
        self._last_lag: dict[tuple[str, int], int] = {}

    # -- the loop -----------------------------------------------------------------------
    async def run(self) -> None:
        processor = await self._ready()
        loop = self._loop = asyncio.get_running_loop()
        poller = ThreadPoolExecutor(1, thread_name_prefix="ioc-feed-poll")
        committer = self._committer = ThreadPoolExecutor(1, thread_name_prefix="ioc-feed-commit")
        stats: dict[str, Any] = {}
        if self.on_stats is not None:
            stats = {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self.on_stats}
        if self.patterns:
            # librdkafka matches the patterns against the cluster's topics at each metadata
            # refresh (default every 5 min): a new province's topics are read within a minute
            stats["topic.metadata.refresh.interval.ms"] = PATTERN_REFRESH_MS
        conf = librdkafka_consumer(
            self.settings,
            consumer_group(self.settings),
            self.client_id,
            **CONSUMER_TUNING,
            **stats,
        )
        rdkafka_log: LibrdkafkaLog = conf["logger"]
        consumer = Consumer(conf)
        consumer.subscribe(
            [*self.feed_of, *self.patterns], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        self.consumer = consumer
        polling: asyncio.Future[list[Any]] | None = None
        try:
            while True:
                polling = loop.run_in_executor(
                    poller, consumer.consume, self.batch_size, self.batch_within_s
                )
                messages = await polling
                polling = None
                if not messages:
                    await self._finish(0)
                    continue
                prepared, offsets = self._prepare(processor, messages)
                del messages  # freed now, not when the next consume() returns
                await self._finish(self.max_in_flight - 1)  # commits what landed meanwhile
                if prepared:
                    task = asyncio.ensure_future(self._write(processor, prepared))
                    self._in_flight.append(_InFlight(task, offsets))
        finally:
            # A stop mid-batch cancels the writes: their transactions roll back and their
            # offsets stay uncommitted, so whoever takes the partitions over replays them.
            for in_flight in self._in_flight:
                in_flight.task.cancel()
            self._in_flight.clear()
            self.consumer = None
            # A commit in flight uses the client on the committer's thread: let it finish
            # (bounded by the client's socket timeout) before the client is destroyed.
            await asyncio.shield(loop.run_in_executor(None, committer.shutdown, True))
            # close() after the consume() in progress returns (same thread, FIFO); it
            # leaves the group so the partitions move at once.
            await asyncio.shield(loop.run_in_executor(poller, self._close, consumer))
            rdkafka_log.flush()
            poller.shutdown(wait=False)

    def route(self, topic: str) -> tuple[str, str | None] | None:
        """(feed, province) of a subscribed topic: province None for a shared feed topic,
        the code for a per-province one (read from its name, once per topic); None for a
        topic that is neither."""
        try:
            return self._routes[topic]
        except KeyError:
            parsed = None
            if self.patterns:
                found = parse_province_topic(self.settings.kafka_topic_prefix, topic)
                if found is not None:
                    parsed = (found[1], found[0])
            self._routes[topic] = parsed
            return parsed

    def partition_label(self, topic: str, partition: int) -> tuple[str, str] | None:
        """The (feed, partition) labels of a partition's metrics: ``"3"`` for a shared
        topic's, ``"15:1"`` for province 15's topic's (a feed's partitions of every topic
        under one ``feed`` label, told apart)."""
        route = self.route(topic)
        if route is None:
            return None
        feed, province = route
        return feed, str(partition) if province is None else f"{province}:{partition}"

    def _close(self, consumer: Consumer) -> None:
        with self._client_lock:  # not under a probe's feet
            consumer.close()

    # -- off the event loop ------------------------------------------------------------------
    # confluent-kafka runs one call at a time per client: any call (assignment(), a metadata
    # request) waits behind a synchronous commit, which waits on the broker up to
    # socket.timeout.ms (60 s) when the network is cut. So the event loop never calls the
    # client itself: it asks a thread and waits a bounded time.

    async def reachable(self, timeout: float) -> bool | None:
        """Whether a broker answers a metadata request for a feed topic within ``timeout``
        (ioc.streams.dependencies), asked on this consumer (its own connections) from another
        thread, so neither a consume loop held up by the database nor a commit waiting on the
        broker hides it; None while there is no consumer to ask. A probe still waiting from
        the round before is waited for, not doubled."""
        consumer = self.consumer
        if consumer is None:
            return None
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(
                asyncio.to_thread(self._metadata_answers, consumer, timeout)
            )
        try:
            return await asyncio.wait_for(asyncio.shield(self._probe), timeout)
        except TimeoutError:
            return False  # the client is stuck behind a request the broker does not answer

    def _metadata_answers(self, consumer: Consumer, timeout: float) -> bool | None:
        with self._client_lock:
            if self.consumer is not consumer:  # closed (or closing) meanwhile
                return None
            try:
                consumer.list_topics(next(iter(self.feed_of)), timeout=timeout)
            except (KafkaException, RuntimeError):
                return False
            return True

    def _prepare(
        self, processor: FeedProcessor, messages: list[Any]
    ) -> tuple[list[Prepared], Offsets]:
        """Validate one ``consume``'s messages per topic. What the rounds in flight keep of
        them is :class:`Sources`, not the client's message objects."""
        by_topic: dict[str, Batched] = {}
        offsets: Offsets = {}
        for msg in messages:
            if msg.error() is not None:
                self._on_error(msg.error())
                continue
            topic = msg.topic()
            batched = by_topic.get(topic)
            if batched is None:
                batched = by_topic[topic] = Batched(topic)
            partition, offset = msg.partition(), msg.offset()
            batched.keys.append(msg.key())
            batched.values.append(msg.value())
            batched.partitions.append(partition)
            batched.offsets.append(offset)
            batched.timestamps.append(msg.timestamp()[1])
            offsets[(topic, partition)] = offset + 1
        # One Prepared per feed (one COPY per feed per round), whichever of the feed's topics
        # (shared, per province) and partitions its messages came from.
        by_feed: dict[str, list[tuple[Batched, str | None]]] = {}
        for topic, batched in by_topic.items():
            route = self.route(topic)
            if route is None:  # not subscribed: never assigned
                log.warning("messages from unexpected topic %s skipped", topic)
                continue
            by_feed.setdefault(route[0], []).append((batched, route[1]))
        prepared = []
        for feed, parts in by_feed.items():
            topics = {batched.topic for batched, _province in parts}
            # the last offset read per partition: one before the next one to read
            positions = {tp: next_ - 1 for tp, next_ in offsets.items() if tp[0] in topics}
            provinces: list[str | None] | None
            if len(parts) == 1:
                batched, province = parts[0]
                values, keys = batched.values, batched.keys
                source = batched.sources().record
                provinces = None if province is None else [province] * len(values)
            else:
                values, keys, starts, sources = [], [], [], []
                province_list: list[str | None] = []
                for batched, province in parts:
                    starts.append(len(values))
                    values += batched.values
                    keys += batched.keys
                    province_list += [province] * len(batched.values)
                    sources.append(batched.sources())
                source = Joined(sources, starts).record
                provinces = province_list if any(province_list) else None
            prepared.append(processor.prepare(feed, values, keys, source, positions, provinces))
        return prepared, offsets

    @staticmethod
    def _on_error(error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        log.warning("Kafka consumer error: %s", error)

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
            await self._commit(self._take_landed())
        await self._commit(self._take_landed())

    def _take_landed(self) -> Offsets:
        offsets: Offsets = {}
        while self._in_flight and self._in_flight[0].landed():
            offsets.update(self._in_flight.popleft().offsets)
        return offsets

    async def _commit(self, offsets: Offsets) -> None:
        consumer, loop = self.consumer, self._loop
        if not offsets or consumer is None or loop is None or self._committer is None:
            return
        await loop.run_in_executor(self._committer, self._commit_sync, consumer, offsets)

    @staticmethod
    def _commit_sync(consumer: Consumer, offsets: Offsets) -> None:
        owned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        parts = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in owned]
        if not parts:
            return
        try:
            consumer.commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            # Lost the partitions or the broker: the batch is stored, so the new owner's
            # replay of it is absorbed by the idempotent writes.
            log.warning("offset commit failed (%s); the batch will be replayed", exc)

    # -- rebalances (called on the poll thread, inside consume()) -------------------------
    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Let the writes in flight land and commit them, so the next owner need not replay."""
        loop = self._loop
        if loop is None or not partitions:
            return
        try:
            landed = asyncio.run_coroutine_threadsafe(self._land_in_flight(), loop).result(35)
        except Exception as exc:  # the loop is stopping, or the writes are stuck
            log.warning("partitions revoked with writes in flight (%s): they will replay", exc)
            return
        self._commit_sync(consumer, landed)

    async def _land_in_flight(self) -> Offsets:
        if self._in_flight:
            await asyncio.wait([f.task for f in self._in_flight], timeout=30)
        return self._take_landed()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %d feed partitions", len(partitions))

    # -- metrics ------------------------------------------------------------------------
    async def lag_soon(
        self, positions: dict[tuple[str, int], int], timeout: float = 1.0
    ) -> dict[tuple[str, int], int]:
        """:meth:`lag` on a thread, waited for up to ``timeout``; the last answer when the
        client is busy waiting on the broker (its partitions then look stalled, as they are)."""
        if self._lag_call is None or self._lag_call.done():
            self._lag_call = asyncio.ensure_future(asyncio.to_thread(self.lag, dict(positions)))
        with contextlib.suppress(TimeoutError):
            self._last_lag = await asyncio.wait_for(asyncio.shield(self._lag_call), timeout)
        return self._last_lag

    def lag(self, positions: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Messages behind the high-water mark per (topic, partition) this worker owns
        (:meth:`partition_label` names them in metrics)."""
        consumer = self.consumer
        out: dict[tuple[str, int], int] = {}
        if consumer is None:
            return out
        with self._client_lock:  # a thread (lag_soon): never while close() destroys it
            if self.consumer is not consumer:  # closed (or closing) meanwhile
                return out
            try:
                assignment = consumer.assignment()
            except (KafkaException, RuntimeError):
                return out
            for tp in assignment:
                if self.route(tp.topic) is None:
                    continue
                try:
                    _low, high = consumer.get_watermark_offsets(tp, cached=True)
                except (KafkaException, RuntimeError):
                    continue
                if high < 0:
                    continue
                done = positions.get((tp.topic, tp.partition), -1)
                out[(tp.topic, tp.partition)] = max(0, high - done - 1)
        return out


class StallClock:
    """How long each partition has had lag without progress, whatever the cause (a poison
    record, a database or broker outage, a stuck write): the ``PartitionStalled`` alert."""

    def __init__(self) -> None:
        self._since: dict[tuple[str, int], tuple[int, float]] = {}

    def observe(self, key: tuple[str, int], position: int, lag: int, now: float) -> float:
        previous = self._since.get(key)
        if lag <= 0 or previous is None or previous[0] != position:
            self._since[key] = (position, now)
            return 0.0
        return now - previous[1]

    def forget(self, keep: set[tuple[str, int]]) -> list[tuple[str, int]]:
        """Drop partitions this worker no longer owns; returns them."""
        gone = [key for key in self._since if key not in keep]
        for key in gone:
            del self._since[key]
        return gone


class Packed:
    """Byte strings (or None) of one round in one buffer.

    A round in flight keeps every message's key and value for its dead letters (a record the
    database refuses is only found while writing). As a list they are two small objects per
    message in CPython's arenas, and what a catch-up's rounds hold there is what the worker
    keeps after it (docs/performance.md); one buffer is one allocation, freed whole."""

    __slots__ = ("buffer", "lengths", "starts")

    def __init__(self, items: list[bytes | None]) -> None:
        self.buffer = b"".join(filter(None, items))
        self.lengths = array("q", [-1 if b is None else len(b) for b in items])  # -1: None
        self.starts = array("q", accumulate((n if n > 0 else 0 for n in self.lengths), initial=0))

    def __getitem__(self, i: int) -> bytes | None:
        n = self.lengths[i]
        if n < 0:
            return None
        start = self.starts[i]
        return self.buffer[start : start + n]

    def __len__(self) -> int:
        return len(self.lengths)


class Batched:
    """One topic's messages of a ``consume``, as read: what validation needs (keys, values)
    and where each came from."""

    __slots__ = ("keys", "offsets", "partitions", "timestamps", "topic", "values")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []
        self.partitions = array("i")
        self.offsets = array("q")
        self.timestamps = array("q")

    def sources(self) -> Sources:
        return Sources(self)


class Joined:
    """Several topics' :class:`Sources` of one feed's round, as one sequence of records:
    value ``i`` of the round is value ``i - starts[j]`` of ``sources[j]``."""

    __slots__ = ("sources", "starts")

    def __init__(self, sources: list[Sources], starts: list[int]) -> None:
        self.sources = sources
        self.starts = starts

    def record(self, i: int) -> Record:
        j = bisect_right(self.starts, i) - 1
        return self.sources[j].record(i - self.starts[j])


class Sources:
    """Where each value of one topic's round came from: enough to dead-letter any of them,
    without the client's message objects (those and a topic string per message were a third
    of a round's Python heap). Only dead-lettered messages become :class:`Record` objects."""

    __slots__ = ("keys", "offsets", "partitions", "timestamps", "topic", "values")

    def __init__(self, batched: Batched) -> None:
        self.topic = batched.topic
        self.keys = Packed(batched.keys)
        self.values = Packed(batched.values)
        self.partitions = batched.partitions
        self.offsets = batched.offsets
        self.timestamps = batched.timestamps

    def record(self, i: int) -> Record:
        """The ``i``-th message as a dead letter's source."""
        return Record(
            self.topic,
            self.partitions[i],
            self.offsets[i],
            self.keys[i],
            self.values[i],
            self.timestamps[i],
        )


class FeedBacklog:
    """Where every feed partition ends, and whether the feed group (whichever worker owns
    each partition) has committed up to there: landed in the database, since offsets are
    committed only after the write. The evaluator's hold after a takeover or a stall ends on
    it (ioc.streams.evaluator).

    aiokafka clients of its own, on the event loop: asked of the feed consumer's librdkafka
    client, these calls slowed the consume loop they measure; librdkafka's admin client
    aborted the worker (an assertion in rd_kafka_enq_once) when its requests timed out with
    two of three brokers down. A call that fails or times out drops the clients, and the
    next one starts afresh."""

    def __init__(self, settings: Settings, timeout: float = 2.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self.topics = [settings.topic(spec.name) for spec in FEED_TOPICS.values()]
        self._clients: tuple[AIOKafkaConsumer, AIOKafkaAdminClient] | None = None

    async def backlog_marks(self) -> Offsets | None:
        """Every feed partition's end now; None when the broker does not say in time."""
        return await self._ask(self._marks)

    async def backlog_landed(self, marks: Offsets) -> bool | None:
        """Whether the group has committed every partition of ``marks`` up to its mark; None
        when the broker does not say in time."""
        return await self._ask(lambda consumer, admin: self._landed(admin, marks))

    async def close(self) -> None:
        clients, self._clients = self._clients, None
        if clients is not None:
            consumer, admin = clients
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await admin.close()

    async def _ask(
        self, call: Callable[[AIOKafkaConsumer, AIOKafkaAdminClient], Awaitable[_T]]
    ) -> _T | None:
        async def answer() -> _T:
            if self._clients is None:
                common = aiokafka_common(self.settings)
                consumer = AIOKafkaConsumer(
                    **common, group_id=None, enable_auto_commit=False, client_id="ioc-backlog"
                )
                admin = AIOKafkaAdminClient(**common, client_id="ioc-backlog")
                self._clients = (consumer, admin)
                await consumer.start()
                await admin.start()
            return await call(*self._clients)

        try:
            return await asyncio.wait_for(answer(), self.timeout)
        except Exception as exc:  # the broker away or slow: no word, the hold times out
            log.info("feed backlog not known: %s", exc or type(exc).__name__)
            await self.close()
            return None

    async def _marks(self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient) -> Offsets:
        wanted: list[AioTopicPartition] = []
        topics = list(self.topics)
        if self.settings.kafka_province_topics:  # and every province's, as the group reads
            prefix = self.settings.kafka_topic_prefix
            topics += sorted(
                name
                for name in await admin.list_topics()
                if parse_province_topic(prefix, name) is not None
            )
        for topic in await admin.describe_topics(topics):
            if topic["error_code"] != 0:
                raise for_code(topic["error_code"])(topic["topic"])
            name = topic["topic"]
            wanted += [AioTopicPartition(name, p["partition"]) for p in topic["partitions"]]
        ends = await consumer.end_offsets(wanted)
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def _landed(self, admin: AIOKafkaAdminClient, marks: Offsets) -> bool:
        wanted = [AioTopicPartition(t, p) for (t, p), end in marks.items() if end > 0]
        if not wanted:
            return True  # nothing was produced: nothing to land
        committed = await admin.list_consumer_group_offsets(
            consumer_group(self.settings), partitions=wanted
        )
        # a partition the group never committed has offset -1: not landed
        return all(
            tp in committed and committed[tp].offset >= marks[(tp.topic, tp.partition)]
            for tp in wanted
        )
