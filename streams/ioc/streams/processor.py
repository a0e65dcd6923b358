"""One batch of one feed: validate at the edge, write valid rows, dead-letter the rest.

Nothing is acknowledged to Kafka until the batch's rows are committed in the database and
its dead letters are acknowledged by the broker. Transient failures (the database or the
broker away) are retried with back-off, never dropped; a record the database refuses for its
own data is isolated by bisecting the batch and dead-lettered with the database's reason, so
no record can hold up another record, partition or feed (docs/streams.md, "Poison records").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from ioc.contract import deadletter as dl
from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.contract.feeds import Feed
from ioc.contract.topology import Topology
from ioc.observability import counter, gauge, histogram
from ioc.streams.rows import Batch
from ioc.streams.writer import store

log = logging.getLogger(__name__)

SendDeadLetter = Callable[[bytes | None, bytes], Awaitable[Any]]


class KafkaRecord(Protocol):
    """What the processor reads of a Kafka message (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int | None: ...  # milliseconds


@dataclass
class Record:
    """A stand-alone :class:`KafkaRecord` (tests, replays)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None


@dataclass
class Prepared:
    """One feed's batch after validation (CPU work), ready for :meth:`FeedProcessor.write`."""

    feed: str
    count: int
    batch: Batch | None
    valid: list[s.Message]
    invalid: list[tuple[KafkaRecord, s.InvalidMessage]] = field(default_factory=list)
    now_ms: int = 0
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    valid_at: list[int] = field(default_factory=list)  # index of each valid message's record
    source: Callable[[int], KafkaRecord] | None = None


def dead_letter(
    record: KafkaRecord, reason: str, detail: str, now_ms: int, feed: str | None = None
) -> bytes:
    """The DLQ record (:mod:`ioc.contract.deadletter`): bounded, whatever the original's size."""
    return dl.encode(
        dl.make(
            reason=reason,
            detail=detail,
            feed=feed,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            kafka_timestamp_ms=record.timestamp,
            now_ms=now_ms,
        )
    )


def dead_letter_key(record: KafkaRecord) -> bytes:
    return dl.source_key(record.topic, record.partition, record.offset).encode()


class FeedProcessor:
    def __init__(
        self, topology: Topology, pool: asyncpg.Pool, send_dead_letter: SendDeadLetter
    ) -> None:
        self.topology = topology
        self.pool = pool
        self.send_dead_letter = send_dead_letter
        self.class_of = {d.id: d.device_class for d in topology.devices.values()}
        self.consumed = counter(m.EVENTS_CONSUMED)
        self.written = counter(m.EVENTS_WRITTEN)
        self.duplicate = counter(m.EVENTS_DUPLICATE)
        self.dlq = counter(m.DLQ_MESSAGES)
        self.dlq_send_errors = counter(m.DLQ_SEND_ERRORS)
        self.batch_size = histogram(m.BATCH_SIZE)
        self.write_seconds = histogram(m.DB_WRITE_SECONDS)
        self.write_errors = counter(m.DB_WRITE_ERRORS)
        self.last_write = gauge(m.LAST_WRITE)
        self.sessions_dropped = counter(m.TELEHEALTH_SESSIONS_DROPPED)
        self.region = {d: topology.region_of(d) for d in topology.devices}
        # per-province topics: the province a record's topic names must be its device's
        self.province_of = {d: topology.province_of(d) for d in topology.devices}
        self.newest_event_ms: dict[str, int] = {}
        self.positions: dict[tuple[str, int], int] = {}

    def validate(
        self,
        feed: str,
        records: Sequence[KafkaRecord],
        now_ms: int,
        provinces: Sequence[str | None] | None = None,
    ) -> tuple[list[s.Message], list[tuple[KafkaRecord, s.InvalidMessage]]]:
        """:meth:`validate_values` for whole records (tests, replays)."""
        valid, _at, bad = self.validate_values(
            feed, [r.value for r in records], [r.key for r in records], now_ms, provinces
        )
        return valid, [(records[i], problem) for i, problem in bad]

    def validate_values(
        self,
        feed: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None],
        now_ms: int,
        provinces: Sequence[str | None] | None = None,
    ) -> tuple[list[s.Message], list[int], list[tuple[int, s.InvalidMessage]]]:
        """Decode and check every value: the valid messages with the index of each, and the
        invalid ones by index, with a reason. ``provinces``: per value, the province whose
        per-province topic it came from (None: a shared topic); its device must be under
        that province (a province's producer may write only its own topics, and this keeps
        it to its own devices)."""
        valid: list[s.Message] = []
        valid_at: list[int] = []
        invalid: list[tuple[int, s.InvalidMessage]] = []
        expected_class = s.DEVICE_CLASS_OF_FEED[feed]
        class_of = self.class_of
        province_of = self.province_of
        for i, value in enumerate(values):
            try:
                key = keys[i]
                msg = s.decode(s.check_record(key, value), feed=feed, key=key, now_ms=now_ms)
                device_class = class_of.get(msg.device_id)
                if device_class != expected_class:
                    if device_class is None:
                        raise s.InvalidMessage(
                            s.REASON_UNKNOWN_DEVICE,
                            f"device {msg.device_id!r} is not in the topology",
                        )
                    raise s.InvalidMessage(
                        s.REASON_WRONG_FEED,
                        f"{msg.device_id} is a {device_class}, not a {expected_class}",
                    )
                if provinces is not None:
                    topic_province = provinces[i]
                    if topic_province is not None:
                        device_province = province_of[msg.device_id]
                        if device_province != topic_province:
                            raise s.InvalidMessage(
                                s.REASON_WRONG_PROVINCE,
                                f"{msg.device_id} is under province {device_province}, not "
                                f"under province {topic_province} whose topic carried it",
                            )
            except s.InvalidMessage as exc:
                invalid.append((i, exc))
                continue
            except Exception:  # defensive: nothing may escape validation
                log.exception("unexpected error validating a %s record", feed)
                invalid.append(
                    (i, s.InvalidMessage(s.REASON_SCHEMA, "the record could not be validated"))
                )
                continue
            valid.append(msg)
            valid_at.append(i)
        return valid, valid_at, invalid

    def prepare(
        self,
        feed: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None],
        source: Callable[[int], KafkaRecord],
        positions: dict[tuple[str, int], int],
        provinces: Sequence[str | None] | None = None,
    ) -> Prepared:
        """Validate and shape one feed's batch: the CPU half, overlapped with the last write.

        ``source(i)`` gives the full record of value ``i``; only dead letters need it.
        ``positions`` is the last offset of the batch per (topic, partition). ``provinces``:
        per value, the province of its per-province topic (None: a shared topic).
        """
        now_ms = int(time.time() * 1000)
        self.consumed.labels(feed).inc(len(values))
        self.batch_size.labels(feed).observe(len(values))
        valid, valid_at, bad = self.validate_values(feed, values, keys, now_ms, provinces)
        invalid = [(source(i), problem) for i, problem in bad]
        batch: Batch | None = None
        if valid:
            try:
                batch = Batch.build(feed, valid, s.DEVICE_CLASS_OF_FEED[feed])
            except Exception:  # the writer rebuilds it in parts and isolates the culprit
                log.exception("could not shape a %s batch; the writer will bisect it", feed)
        return Prepared(
            feed, len(values), batch, valid, invalid, now_ms, positions, valid_at, source
        )

    async def write(self, prepared: Prepared) -> None:
        """Store the valid rows and dead-letter the rest; returns only when both are durable.

        Accounting, per feed: consumed = written + duplicate + dead-lettered (by reason).
        """
        feed = prepared.feed
        invalid = list(prepared.invalid)
        if prepared.valid:
            started = time.perf_counter()

            def on_error(exc: BaseException, attempt: int) -> None:
                self.write_errors.labels(feed).inc()

            stored = await store(
                self.pool,
                feed,
                prepared.valid,
                s.DEVICE_CLASS_OF_FEED[feed],
                prepared.batch,
                on_error,
            )
            self.write_seconds.labels(feed).observe(time.perf_counter() - started)
            rejected = {i for i, _detail in stored.rejected}
            if stored.rejected:
                assert prepared.source is not None
                invalid += [
                    (
                        prepared.source(prepared.valid_at[i]),
                        s.InvalidMessage(s.REASON_DB_REJECTED, detail),
                    )
                    for i, detail in stored.rejected
                ]
            self.written.labels(feed).inc(stored.inserted)
            self.duplicate.labels(feed).inc(len(prepared.valid) - stored.inserted - len(rejected))
            self.last_write.labels(feed).set(time.time())
            kept = prepared.valid
            if rejected:
                kept = [msg for i, msg in enumerate(kept) if i not in rejected]
            if prepared.batch is not None and not rejected:
                newest = prepared.batch.newest_ts_ms
            else:
                newest = max((msg.ts_ms for msg in kept), default=0)
            self.newest_event_ms[feed] = max(self.newest_event_ms.get(feed, 0), newest)
            if feed == Feed.TELEHEALTH:
                for msg in kept:
                    if isinstance(msg, s.TelehealthSession) and msg.event == "dropped":
                        self.sessions_dropped.labels(self.region[msg.device_id]).inc()
        if invalid:
            await self._dead_letter(feed, invalid, prepared.now_ms)
        for key, offset in prepared.positions.items():
            if offset > self.positions.get(key, -1):
                self.positions[key] = offset

    async def process(
        self,
        feed: str,
        records: Sequence[KafkaRecord],
        provinces: Sequence[str | None] | None = None,
    ) -> None:
        """One batch of whole records, validated and written (tests, replays)."""
        if not records:
            return
        positions: dict[tuple[str, int], int] = {}
        for r in records:
            positions[(r.topic, r.partition)] = max(
                r.offset, positions.get((r.topic, r.partition), -1)
            )
        values = [r.value for r in records]
        keys = [r.key for r in records]
        await self.write(
            self.prepare(feed, values, keys, records.__getitem__, positions, provinces)
        )

    async def _dead_letter(
        self, feed: str, invalid: list[tuple[KafkaRecord, s.InvalidMessage]], now_ms: int
    ) -> None:
        """Produce the batch's dead letters; only the broker's absence can fail it (every
        record is bounded), so failures are retried with back-off, counted and never
        dropped: the batch's offsets wait for them, as they wait for the database."""
        letters = [
            (dead_letter_key(record), dead_letter(record, exc.reason, exc.detail, now_ms, feed))
            for record, exc in invalid
        ]
        delay = 0.2
        attempt = 0
        while True:
            try:
                # Keyed by where the message came from: a batch redelivered after a crash
                # dead-letters the same keys again, which readers (and compaction) collapse.
                pending = [await self.send_dead_letter(key, value) for key, value in letters]
                await asyncio.gather(*[p for p in pending if asyncio.isfuture(p)])
                break
            except Exception as error:  # broker trouble: keep the batch, retry
                attempt += 1
                self.dlq_send_errors.labels(feed).inc()
                log.warning(
                    "dead-lettering %d %s messages failed (attempt %d), retry in %.1f s: %s",
                    len(letters),
                    feed,
                    attempt,
                    delay,
                    error,
                )
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
        for _record, problem in invalid:
            self.dlq.labels(feed, problem.reason).inc()
