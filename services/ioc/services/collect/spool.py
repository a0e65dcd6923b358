"""A bounded on-disk spool in front of Kafka, so a collector that loses the broker loses
nothing (docs/collectors.md, "The spool").

Every record a collector produces is appended to the spool first, then handed to librdkafka
from the spool's read cursor, at most ``window`` records in flight; a record leaves the spool
when the broker acknowledges it. While Kafka is away the records pile up on disk (not in
librdkafka's memory, which holds only the window) and are sent in the order they were
written when it is back, also after a restart of the collector: the spool is replayed from
its files first. A record acknowledged just before a crash may be sent again; the raw tables
drop the duplicate (they key rows by ``(ts, device_id, seq)``).

The spool is a directory of segment files (``NNNNNNNNNNNN.seg``), each a sequence of frames
(length, CRC-32, the record's feed, key and value). A segment is closed at ``segment_bytes``
or after ``segment_age_s`` and deleted once every record in it was acknowledged. It is
bounded by ``max_bytes``: when a new record would not fit, the oldest segment is dropped, its
unacknowledged records are counted (``ioc_collector_spool_dropped_total``, alert
``CollectorSpoolDropping``) and logged. Never silent, never unbounded.

:class:`Spool` is the file format and the bookkeeping (tested without Kafka);
:class:`SpoolingSink` is the :class:`ioc.sinks.Sink` that puts it in front of a producer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, NamedTuple

from prometheus_client import REGISTRY, CollectorRegistry

from ioc.config import Settings
from ioc.contract import metrics as m
from ioc.errors import ServiceUnavailable
from ioc.kafka_clients import LibrdkafkaLog, librdkafka_admin, librdkafka_producer
from ioc.observability import counter, gauge
from ioc.sinks import PRODUCER_TUNING, Record, Sink, topic_names

log = logging.getLogger(__name__)

_FRAME: Final = struct.Struct("!IIHH")  # body length, crc32 of body, feed length, key length
SUFFIX: Final = ".seg"
MAX_RECORD_BYTES: Final = 4 * 1024 * 1024
"""A frame longer than this is corruption, not a record (messages are at most 64 KiB)."""


class SpoolRecord(NamedTuple):
    """A record read back from the spool (an :class:`ioc.sinks.Record`)."""

    feed: str
    key: bytes
    value: bytes


def encode_frame(feed: str, key: bytes, value: bytes) -> bytes:
    """One record as a frame: header (body length, CRC-32, feed and key lengths), body."""
    feed_b = feed.encode()
    body = feed_b + key + value
    return _FRAME.pack(len(body), zlib.crc32(body), len(feed_b), len(key)) + body


def decode_frames(data: bytes) -> tuple[list[SpoolRecord], int]:
    """The whole frames at the start of ``data`` and the offset where they end: a torn or
    corrupt tail (a crash mid-write) stops the reading there."""
    records: list[SpoolRecord] = []
    offset = 0
    while offset + _FRAME.size <= len(data):
        length, crc, feed_len, key_len = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        body = data[start : start + length]
        if (
            length > MAX_RECORD_BYTES
            or len(body) < length
            or feed_len + key_len > length
            or zlib.crc32(body) != crc
        ):
            break
        try:
            feed = body[:feed_len].decode()
        except UnicodeDecodeError:
            break
        records.append(
            SpoolRecord(feed, body[feed_len : feed_len + key_len], body[feed_len + key_len :])
        )
        offset = start + length
    return records, offset


@dataclass
class Segment:
    """One segment file and what is known of its records."""

    number: int
    path: Path
    count: int = 0
    size: int = 0
    acked: int = 0
    opened: float = field(default_factory=time.monotonic)

    @property
    def unacked(self) -> int:
        return self.count - self.acked


RecordId = tuple[int, int]
"""(segment number, index of the record in it)."""


class Spool:
    """The bounded FIFO of segment files in ``directory`` (see the module doc).

    ``append`` writes, ``take`` reads the next record not yet handed out (oldest first),
    ``ack`` marks one delivered."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        segment_bytes: int | None = None,
        segment_age_s: float = 5.0,
        on_drop: Callable[[int], None] = lambda n: None,
    ) -> None:
        if segment_bytes is None:  # 1 MiB, or a quarter of a smaller spool
            segment_bytes = max(1, min(1024 * 1024, max_bytes // 4))
        if max_bytes < 2 * segment_bytes:
            raise ValueError(f"spool of {max_bytes} bytes: at least two segments are needed")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.segment_age_s = segment_age_s
        self.on_drop = on_drop
        self.dropped = 0
        self.recovered = 0
        self.torn = 0
        directory.mkdir(parents=True, exist_ok=True)
        self.segments: list[Segment] = []
        self._writer: IO[bytes] | None = None
        # Read cursor: the segment being read, the index and offset of its next record.
        self._reader: IO[bytes] | None = None
        self._read_seg: Segment | None = None
        self._read_index = 0
        self._buffer: list[SpoolRecord] = []
        self._pending = b""
        self._last_number = 0
        self._load()

    # --- opening -------------------------------------------------------------------------
    def _load(self) -> None:
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                number = int(path.stem)
            except ValueError:
                continue
            data = path.read_bytes()
            records, end = decode_frames(data)
            if end < len(data):  # a torn tail: keep the whole frames before it
                self.torn += 1
                log.warning(
                    "spool %s: %d bytes of a torn or corrupt tail cut off", path, len(data) - end
                )
                with path.open("r+b") as fh:
                    fh.truncate(end)
            if not records:
                path.unlink()
                continue
            self.segments.append(Segment(number, path, len(records), end))
            self.recovered += len(records)
        if self.recovered:
            log.info(
                "spool %s: %d records from before are sent first", self.directory, self.recovered
            )

    # --- state ---------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Records on disk not yet acknowledged by the broker."""
        return sum(s.unacked for s in self.segments)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)

    def _segment(self, number: int) -> Segment | None:
        for seg in self.segments:
            if seg.number == number:
                return seg
        return None

    # --- writing -------------------------------------------------------------------------
    def _roll(self) -> Segment:
        if self._writer is not None:
            self._writer.close()
        # Never reused within a process: a late acknowledgement of a dropped segment's record
        # must not count for a new segment of the same number.
        self._last_number = max([self._last_number, *(s.number for s in self.segments)]) + 1
        number = self._last_number
        seg = Segment(number, self.directory / f"{number:012d}{SUFFIX}")
        # Unbuffered: one write(2) per frame, so a failed write leaves nothing behind in a
        # Python buffer and its partial frame can be cut off at once.
        self._writer = seg.path.open("ab", buffering=0)
        self.segments.append(seg)
        self._collect()  # the segment closed by this roll may be fully acknowledged already
        return seg

    def _writable(self, frame_len: int) -> Segment:
        last = self.segments[-1] if self.segments else None
        if (
            last is None
            or self._writer is None
            or last.size + frame_len > self.segment_bytes
            or time.monotonic() - last.opened > self.segment_age_s
        ):
            last = self._roll()
        return last

    def append(self, feed: str, key: bytes, value: bytes) -> RecordId:
        """Write one record at the end (dropping the oldest segments first if it would not
        fit), flushed to the operating system before this returns."""
        frame = encode_frame(feed, key, value)
        seg = self._writable(len(frame))
        while self.size + len(frame) > self.max_bytes and self.segments[0] is not seg:
            self._drop_oldest()
        assert self._writer is not None
        try:
            written = self._writer.write(frame)
            if written != len(frame):
                raise OSError(f"short write ({written} of {len(frame)} bytes)")
        except OSError:
            # A full or failing disk: cut the partial frame off (the reader never meets it)
            # and start a new segment at the next append.
            with contextlib.suppress(OSError):
                os.ftruncate(self._writer.fileno(), seg.size)
            with contextlib.suppress(OSError):
                self._writer.close()
            self._writer = None
            raise
        seg.size += len(frame)
        seg.count += 1
        return seg.number, seg.count - 1

    def _drop_oldest(self) -> None:
        seg = self.segments.pop(0)
        lost = seg.unacked
        if self._read_seg is seg:
            self._close_reader()
        seg.path.unlink(missing_ok=True)
        self.dropped += lost
        log.error(
            "spool full (%d MiB): dropped its oldest segment, %d records never delivered",
            self.max_bytes // (1024 * 1024),
            lost,
        )
        self.on_drop(lost)

    # --- reading -------------------------------------------------------------------------
    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._read_seg = None
        self._read_index = 0
        self._buffer = []

    def take(self) -> tuple[RecordId, SpoolRecord] | None:
        """The oldest record not handed out yet, or None when every record was."""
        while True:
            seg = self._read_seg
            if seg is None:
                seg = self._next_segment(None)
                if seg is None:
                    return None
                self._open_reader(seg)
            if self._read_index < seg.count:
                if not self._buffer:
                    self._fill()
                if self._buffer:
                    record = self._buffer.pop(0)
                    self._read_index += 1
                    return (seg.number, self._read_index - 1), record
                return None  # written but not yet readable: cannot happen after flush
            following = self._next_segment(seg)
            if following is None:
                return None  # the writer's segment, read to its end
            self._close_reader()
            self._open_reader(following)

    def _next_segment(self, after: Segment | None) -> Segment | None:
        for seg in self.segments:
            if after is None or seg.number > after.number:
                return seg
        return None

    def _open_reader(self, seg: Segment) -> None:
        self._reader = seg.path.open("rb")
        self._read_seg = seg
        self._read_index = 0
        self._buffer = []
        self._pending = b""

    def _fill(self) -> None:
        assert self._reader is not None
        data = self._pending + self._reader.read(256 * 1024)
        records, end = decode_frames(data)
        self._pending = data[end:]
        self._buffer.extend(records)

    def ack(self, record: RecordId) -> None:
        """The broker has the record; a segment whose every record is acknowledged (and
        which is no longer written) is deleted."""
        seg = self._segment(record[0])
        if seg is None:  # dropped while in flight: already counted
            return
        seg.acked += 1
        self._collect()

    def _collect(self) -> None:
        while self.segments:
            seg = self.segments[0]
            writing = seg is self.segments[-1] and self._writer is not None
            if seg.acked < seg.count or writing:
                return
            if self._read_seg is seg:
                self._close_reader()
            self.segments.pop(0)
            seg.path.unlink(missing_ok=True)

    def close(self) -> None:
        self._close_reader()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def records(self) -> Iterator[SpoolRecord]:
        """Every record on disk, oldest first (for tests and inspection)."""
        for seg in self.segments:
            records, _ = decode_frames(seg.path.read_bytes())
            yield from records


DEFAULT_MAX_MB: Final = 256
WINDOW: Final = 10_000
"""Records handed to librdkafka and not yet acknowledged, at most: the rest waits on disk."""


class SpoolingSink(Sink):
    """A :class:`ioc.sinks.Sink` that writes through a :class:`Spool` to Kafka.

    It starts whether or not the broker answers (the point of a spool): an unreachable broker
    at start is one warning line, and the records wait on disk. ``flush`` waits for the
    broker at most ``timeout`` seconds; what it did not take stays spooled for the next
    start and is not an error.

    With ``province`` (``ioc collect --province``, logged in as the province's user) every
    record goes to that province's topic of its feed, the only topics that user may write
    or even see; the spool keeps feeds, not topics, so the routing is decided when a record
    is sent."""

    def __init__(
        self,
        settings: Settings,
        directory: Path,
        *,
        max_bytes: int = DEFAULT_MAX_MB * 1024 * 1024,
        client_id: str,
        window: int = WINDOW,
        registry: CollectorRegistry = REGISTRY,
        producer: Any = None,
        province: str | None = None,
    ) -> None:
        self._dropped = counter(m.COLLECT_SPOOL_DROPPED, registry)
        self._depth = gauge(m.COLLECT_SPOOL_RECORDS, registry)
        self._bytes = gauge(m.COLLECT_SPOOL_BYTES, registry)
        self.spool = Spool(directory, max_bytes, on_drop=self._dropped.inc)
        # what devices answered only: never the fault log
        self.topics = topic_names(settings, fault_log=False, province=province)
        self.window = window
        self.in_flight = 0
        self._held: tuple[RecordId, SpoolRecord] | None = None
        self.bypassed = 0
        self._bypassing = False
        self._spool_errors = counter(m.COLLECT_ERRORS, registry).labels("spool", "write_failed")
        self.first_error: str | None = None
        self.rdkafka_log: LibrdkafkaLog | None = None
        if producer is None:
            from confluent_kafka import KafkaException, Producer
            from confluent_kafka.admin import AdminClient

            try:
                metadata = AdminClient(librdkafka_admin(settings, client_id)).list_topics(timeout=5)
            except KafkaException as exc:
                log.warning(
                    "Kafka at %s does not answer (%s): records are spooled to %s until it does",
                    settings.bootstrap_servers,
                    exc,
                    directory,
                )
            else:
                # A broker that answers without the topics would refuse every record for good
                # (auto-creation is off): say so now rather than count them as errors later.
                missing = [t for t in self.topics.values() if t not in metadata.topics]
                if missing:
                    self.spool.close()
                    # Metadata lists only what the user may describe: a province's user sees
                    # its own province's topics and nothing else.
                    raise ServiceUnavailable(
                        f"topics {', '.join(missing)} do not exist"
                        + (
                            f" or Kafka user {settings.kafka_sasl_username} may not write them"
                            if province is not None
                            else ""
                        )
                        + "; run `ioc topics create`"
                    )
            conf = librdkafka_producer(settings, client_id, **PRODUCER_TUNING)
            self.rdkafka_log = conf["logger"]
            producer = Producer(conf)
        self.producer = producer
        self._gauges()

    def _gauges(self) -> None:
        self._depth.set(self.spool.depth)
        self._bytes.set(self.spool.size)

    @property
    def dropped(self) -> int:
        return self.spool.dropped

    def send(self, record: Record) -> None:
        try:
            self.spool.append(record.feed, record.key, record.value)
        except OSError as exc:
            self._bypass(record, exc)
            return
        if self._bypassing:
            self._bypassing = False
            log.info("the spool %s is written again", self.spool.directory)
        self._pump()

    def _bypass(self, record: Record, exc: OSError) -> None:
        """The spool cannot be written (disk full or failing): the record goes straight to
        librdkafka's memory queue, counted and logged (once per failing spell), rather than
        being lost; it is not kept across a restart and may overtake spooled records."""
        self.bypassed += 1
        self._spool_errors.inc()
        if not self._bypassing:
            log.error(
                "cannot write the spool %s (%s): records bypass it", self.spool.directory, exc
            )
        self._bypassing = True
        topic = self.topics.get(record.feed)
        if topic is None:
            self.errors += 1
            return

        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                self.sent += 1
            else:
                self.errors += 1
                self.first_error = self.first_error or str(err)

        try:
            self.producer.produce(topic, record.value, record.key, on_delivery=delivered)
        except BufferError:
            self.errors += 1
            log.error("librdkafka's queue is full too: a record is lost (counted)")

    def _pump(self) -> None:
        while self.in_flight < self.window:
            taken, self._held = self._held or self.spool.take(), None
            if taken is None:
                break
            record_id, record = taken
            topic = self.topics.get(record.feed)
            if topic is None:  # a feed this build does not know (an old spool): counted
                self.errors += 1
                log.error("spooled record of unknown feed %r dropped", record.feed)
                self.spool.ack(record_id)
                continue
            try:
                self.producer.produce(
                    topic, record.value, record.key, on_delivery=self._callback(record_id)
                )
            except BufferError:  # librdkafka's queue is full: this record goes first next time
                self._held = taken
                break
            self.in_flight += 1
        self._gauges()

    def _callback(self, record_id: RecordId) -> Callable[[Any, Any], None]:
        def delivered(err: Any, msg: Any) -> None:
            self.in_flight -= 1
            if err is not None:
                # No message timeout: only a permanent refusal (size, authorisation) lands
                # here. Counted and logged; keeping it would block the spool for ever.
                self.errors += 1
                if self.first_error is None:
                    self.first_error = str(err)
                log.error("the broker refused a spooled record: %s", err)
            else:
                self.sent += 1
            self.spool.ack(record_id)

        return delivered

    def poll(self) -> None:
        self.producer.poll(0)
        self._pump()
        if self.rdkafka_log is not None:
            self.rdkafka_log.flush()

    def flush(self, timeout: float = 60.0) -> None:
        """Send what the spool holds for up to ``timeout`` s; the rest stays on disk."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._pump()
            if self.in_flight == 0 and self._held is None and self.spool.depth == 0:
                break
            self.producer.poll(0.1)
        self.producer.flush(max(0.0, deadline - time.monotonic()))
        self._gauges()
        if self.spool.depth:
            log.warning(
                "%d records still spooled in %s: they are sent at the next start",
                self.spool.depth,
                self.spool.directory,
            )
        if self.rdkafka_log is not None:
            self.rdkafka_log.flush()

    def close(self) -> None:
        self.spool.close()


def default_directory(
    stack_dir: Path, shard: int, shards: int, province: str | None = None
) -> Path:
    """``<stack dir>/collector/spool-K-of-N`` (``spool-p<code>-K-of-N`` for a province's
    collector): beside the local stack's state, one directory per shard and province (two
    collectors must never share one, and a province's spool must not be replayed by a
    collector that writes other topics as another user)."""
    scope = "" if province is None else f"p{province}-"
    return stack_dir / "collector" / f"spool-{scope}{shard}-of-{shards}"
