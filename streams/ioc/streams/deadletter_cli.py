"""``ioc deadletter list | show | redrive``: inspect the dead-letter topic and re-drive records.

Every command reads the dead-letter topic (:data:`ioc.contract.topics.DEAD_LETTER`) once, from
its beginning to the end offsets it has when the command starts, with a consumer that has no
group and commits nothing, so it never disturbs the workers and always terminates. Repeats of
a key (a batch dead-lettered again after a crash) collapse onto the newest record, as
compaction would leave them.

``redrive`` produces the original key and value of the selected dead letters to their source
topic and partition, in source offset order (idempotent producer, ``acks=all``), after the
cause is fixed (e.g. a device added to the topology for ``unknown_device``). The dead letters
themselves stay; a record that fails again gets a new dead letter keyed by its new offset.
Records whose kept value or key is cut, and tombstones, cannot be reproduced and are refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from ioc.config import Settings
from ioc.contract import deadletter as dl
from ioc.contract.schemas import DLQ_REASONS
from ioc.contract.topics import DEAD_LETTER, FEED_TOPICS
from ioc.errors import IocError, ServiceUnavailable
from ioc.kafka_clients import aiokafka_common

SOURCE_SYNTAX = "TOPIC/PARTITION/OFFSET"
_SOURCE = re.compile(
    r"^(?P<topic>[A-Za-z0-9._\-]{1,249})/(?P<partition>\d{1,10})/(?P<offset>\d{1,19})$"
)
DEFAULT_LIMIT = 100
DETAIL_WIDTH = 60
HEX_DUMP_BYTES = 256
REDRIVE_HEADER = "ioc.redrive.source"
"""Header on every re-driven record: the dead letter's source ``topic/partition/offset``."""
STALL_TIMEOUT_S = 30.0
"""Reading the dead-letter topic gives up when no partition advances for this long."""


class UsageError(IocError):
    """A command line that cannot be run as given (shown as one line, exit status 2)."""


# --- selection -----------------------------------------------------------------------------


def parse_source(text: str) -> str:
    """``topic/partition/offset`` normalised like :func:`ioc.contract.deadletter.source_key`."""
    match = _SOURCE.match(text.strip())
    if match is None:
        raise UsageError(
            f"bad source {text!r}: expected {SOURCE_SYNTAX}, e.g. ioc.camera.v1/3/1234"
        )
    return dl.source_key(match["topic"], int(match["partition"]), int(match["offset"]))


@dataclass(frozen=True)
class Selector:
    """Which dead letters a command acts on; every given criterion must hold."""

    reasons: frozenset[str] = frozenset()
    feeds: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Selector:
        return cls(
            reasons=frozenset(args.reason or ()),
            feeds=frozenset(args.feed or ()),
            sources=frozenset(parse_source(s) for s in args.source or ()),
        )

    @property
    def empty(self) -> bool:
        return not (self.reasons or self.feeds or self.sources)

    def __call__(self, letter: dl.DeadLetter) -> bool:
        return (
            (not self.reasons or letter.reason in self.reasons)
            and (not self.feeds or letter.feed in self.feeds)
            and (not self.sources or letter.source in self.sources)
        )

    def describe(self) -> str:
        parts = [
            f"{name} {', '.join(sorted(values))}"
            for name, values in (
                ("reason", self.reasons),
                ("feed", self.feeds),
                ("source", self.sources),
            )
            if values
        ]
        return "; ".join(parts) or "all"


# --- formatting ----------------------------------------------------------------------------


def utc_iso(ms: int | None, timespec: str = "milliseconds") -> str:
    if ms is None:
        return "-"
    try:
        moment = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def escape(text: str, keep: str = "") -> str:
    """``text`` safe for a terminal: control and invisible characters as ``\\xNN`` escapes
    (dead letters hold hostile bytes), except those in ``keep``."""
    if text.isprintable() and not keep:
        return text
    return "".join(
        ch if ch.isprintable() or ch in keep else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def shorten(text: str, width: int = DETAIL_WIDTH) -> str:
    text = escape(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 3] + "..."


def size_text(letter: dl.DeadLetter) -> str:
    if letter.value_length is None:
        return "none"
    return f"{letter.value_length} cut" if letter.value_truncated else str(letter.value_length)


def bytes_text(data: bytes | None) -> str | None:
    """Bytes as escaped UTF-8 text, or ``None`` if they are not UTF-8."""
    if data is None:
        return None
    try:
        return escape(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def key_text(letter: dl.DeadLetter) -> str:
    key = letter.key()
    if key is None:
        return "none"
    text = bytes_text(key)
    shown = (
        repr(text) if text is not None else f"0x{key[:32].hex()}" + ("..." if len(key) > 32 else "")
    )
    if letter.key_truncated:
        return f"{shown} (cut: first {len(key)} of {letter.key_length} bytes kept)"
    return f"{shown} ({len(key)} bytes)"


def hexdump(data: bytes, limit: int = HEX_DUMP_BYTES) -> list[str]:
    lines = []
    for start in range(0, min(len(data), limit), 16):
        chunk = data[start : min(start + 16, limit)]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{start:08x}  {hexes:<47}  |{text}|")
    if len(data) > limit:
        lines.append(f"... {len(data) - limit} more bytes")
    return lines


def list_record(letter: dl.DeadLetter) -> dict[str, Any]:
    """One dead letter for ``list --json``: everything but the kept value's bytes."""
    doc = msgspec.structs.asdict(letter)
    doc.pop("value_b64")
    doc.pop("key_b64")
    key = letter.key()
    return {
        "source": letter.source,
        "dead_lettered_at": utc_iso(letter.dead_lettered_at_ms),
        "key": None if key is None else key.decode("utf-8", "backslashreplace"),
        **doc,
    }


def table(letters: Sequence[dl.DeadLetter]) -> list[str]:
    header = ("source", "reason", "feed", "when", "size", "detail")
    rows = [
        (
            escape(letter.source),
            escape(letter.reason),
            escape(letter.feed or "-"),
            utc_iso(letter.dead_lettered_at_ms, "seconds"),
            size_text(letter),
            shorten(letter.detail),
        )
        for letter in letters
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in (header, *rows)
    ]


def reason_counts(reasons: Iterable[str]) -> str:
    counts = Counter(reasons)
    return ", ".join(f"{escape(r)} {n}" for r, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def show_lines(letter: dl.DeadLetter, hex_bytes: int = HEX_DUMP_BYTES) -> list[str]:
    value = letter.value()
    lines = [
        f"source         {escape(letter.source)}",
        f"reason         {escape(letter.reason)}",
        f"feed           {escape(letter.feed or '-')}",
        f"detail         {escape(letter.detail)}",
        f"dead-lettered  {utc_iso(letter.dead_lettered_at_ms)}",
        f"kafka time     {utc_iso(letter.kafka_timestamp_ms)}",
        f"key            {key_text(letter)}",
    ]
    if value is None:
        lines.append("value          none (a tombstone): cannot be re-driven")
        return lines
    lines.append(f"value          {letter.value_length} bytes, sha256 {letter.value_sha256}")
    if letter.value_truncated:
        lines.append(
            f"               CUT: only the first {len(value)} of {letter.value_length} bytes "
            "are kept (the sha256 is of the whole original): cannot be re-driven"
        )
    text = bytes_text(value)
    if text is not None:
        lines.append(f"--- kept value, UTF-8 text ({len(value)} bytes) ---")
        lines.append(escape(value.decode("utf-8"), keep="\n\t"))
    else:
        shown = min(len(value), hex_bytes)
        lines.append(f"--- kept value, not UTF-8: first {shown} of {len(value)} bytes ---")
        lines.extend(hexdump(value, hex_bytes))
    return lines


def refusal(letter: dl.DeadLetter) -> str | None:
    """Why a dead letter cannot be re-driven as its original record, or ``None``."""
    if letter.value_b64 is None:
        return "tombstone (no value)"
    if letter.value_truncated:
        return (
            f"value cut: {len(letter.value() or b'')} of {letter.value_length} bytes kept, "
            f"sha256 {letter.value_sha256}"
        )
    if letter.key_truncated:
        return f"key cut: {len(letter.key() or b'')} of {letter.key_length} bytes kept"
    return None


# --- reading the topic ---------------------------------------------------------------------


@dataclass
class Scan:
    topic: str
    exists: bool = True
    records: int = 0
    """Records read, repeats and undecodable ones included."""
    undecodable: int = 0
    selected: dict[str, dl.DeadLetter] = field(default_factory=dict)
    """The newest dead letter of each selected source (key)."""
    reasons: dict[str, str] = field(default_factory=dict)
    """The newest reason of every source, selected or not."""
    partitions: dict[str, int] = field(default_factory=dict)
    """Every topic of the cluster with its partition count (for re-driving)."""


async def _stop(client: Any) -> None:
    """Stop an aiokafka client. Stopped right after a failure, aiokafka may cancel one of its
    tasks before it ever ran and raise that task's CancelledError from ``stop()``; that must
    not hide the failure (a real cancellation of ours is still raised)."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def cluster_topics(settings: Settings) -> dict[str, int]:
    """Every topic with its partition count (one metadata request, which never creates)."""
    from ioc.kafka import admin_client

    admin = await admin_client(settings)
    try:
        described = await admin.describe_topics(None)
    finally:
        await admin.close()
    return {str(t["topic"]): len(t["partitions"]) for t in described if t.get("error_code", 0) == 0}


async def read_dead_letters(
    settings: Settings,
    select: Callable[[dl.DeadLetter], bool],
    *,
    slim: bool = False,
    stall_timeout: float = STALL_TIMEOUT_S,
) -> Scan:
    """The dead-letter topic from its beginning to its end offsets at the start, collapsed by
    key; ``slim`` drops the kept values of the selected records (for listing)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from ioc.kafka import unreachable

    scan = Scan(topic=settings.topic(DEAD_LETTER.name))
    scan.partitions = await cluster_topics(settings)
    if scan.topic not in scan.partitions:
        scan.exists = False
        return scan
    tps = [TopicPartition(scan.topic, p) for p in range(scan.partitions[scan.topic])]
    consumer = AIOKafkaConsumer(
        **aiokafka_common(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15_000,
    )
    try:
        try:
            await asyncio.wait_for(consumer.start(), 15)
            consumer.assign(tps)
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
        except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as exc:
            raise unreachable(settings, exc) from None
        remaining = {tp: end[tp] for tp in tps if end[tp] > begin[tp]}
        for tp in tps:
            consumer.seek(tp, begin[tp])
        progress_at = time.monotonic()
        positions = {tp: begin[tp] for tp in remaining}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for messages in batch.values():
                for message in messages:
                    if message.offset < remaining.get(
                        TopicPartition(message.topic, message.partition), 0
                    ):
                        _take(scan, message.key, message.value, select, slim)
            for tp in list(remaining):
                position = await consumer.position(tp)
                if position != positions[tp]:  # records, or only offsets compaction left out
                    positions[tp], progress_at = position, time.monotonic()
                if position >= remaining[tp]:
                    del remaining[tp]
            if remaining and time.monotonic() - progress_at > stall_timeout:
                where = ", ".join(f"{tp.topic}/{tp.partition}" for tp in remaining)
                raise ServiceUnavailable(
                    f"reading {where} from the broker at {settings.bootstrap_servers} made no "
                    f"progress for {stall_timeout:.0f} s"
                )
    finally:
        await _stop(consumer)
    return scan


def _take(
    scan: Scan,
    key: bytes | None,
    value: bytes | None,
    select: Callable[[dl.DeadLetter], bool],
    slim: bool,
) -> None:
    scan.records += 1
    name = None if key is None else key.decode("utf-8", "replace")
    if value is None:  # a tombstone on the dead-letter topic deletes its key
        if name is not None:
            scan.selected.pop(name, None)
            scan.reasons.pop(name, None)
        return
    try:
        letter = dl.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        scan.undecodable += 1
        return
    name = name or letter.source
    scan.reasons[name] = letter.reason
    if not select(letter):
        scan.selected.pop(name, None)  # a newer record of this source is no longer selected
        return
    if slim:
        letter = msgspec.structs.replace(letter, value_b64=None)
    scan.selected[name] = letter


def _read(settings: Settings, select: Callable[[dl.DeadLetter], bool], slim: bool = False) -> Scan:
    scan = asyncio.run(read_dead_letters(settings, select, slim=slim))
    if scan.undecodable:
        print(
            f"ioc: warning: skipped {scan.undecodable} records of {scan.topic} that are not "
            "dead letters (ioc.deadletter.v1)",
            file=sys.stderr,
        )
    return scan


def _nothing_selected(scan: Scan, selector: Selector) -> str:
    if not scan.exists:
        return (
            f"no dead letters: the dead-letter topic {scan.topic} does not exist "
            "(`ioc topics create` and the workers create it)"
        )
    if not scan.reasons:
        return f"no dead letters in {scan.topic}"
    return (
        f"no dead letters match ({selector.describe()}); {scan.topic} holds "
        f"{len(scan.reasons)}: {reason_counts(scan.reasons.values())}"
    )


# --- commands ------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    selector = Selector.from_args(args)
    if args.limit < 0:
        raise UsageError(f"--limit must be 0 (all) or more, got {args.limit}")
    scan = _read(settings, selector, slim=True)
    letters = sorted(scan.selected.values(), key=lambda x: (x.dead_lettered_at_ms, x.source))
    if not letters:
        print(_nothing_selected(scan, selector))
        return 0
    shown = letters[-args.limit :] if args.limit else letters
    if args.json:
        for letter in shown:
            print(json.dumps(list_record(letter)))  # ASCII: no raw control characters
        return 0
    for line in table(shown):
        print(line)
    more = (
        f" (the newest {len(shown)} shown; --limit 0 for all)" if len(shown) < len(letters) else ""
    )
    print(
        f"{len(letters)} dead letters{more}: {reason_counts(x.reason for x in letters)}"
        f" ({scan.records} records read from {scan.topic})"
    )
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    source = parse_source(args.source)
    scan = _read(settings, Selector(sources=frozenset({source})))
    letter = scan.selected.get(source) or next(iter(scan.selected.values()), None)
    if letter is None:
        raise IocError(
            f"no dead letter for {source}"
            + ("" if scan.exists else f": the dead-letter topic {scan.topic} does not exist")
        )
    if args.json:
        print(json.dumps(msgspec.structs.asdict(letter)))  # the stored record, ASCII
    else:
        for line in show_lines(letter, args.hex_bytes):
            print(line)
    return 0


@dataclass
class Outcome:
    letter: dl.DeadLetter
    refused: str | None = None
    """Why this dead letter cannot be re-driven (nothing was sent)."""
    failed: str | None = None
    """Why sending it failed."""
    landed: str | None = None
    """Where it was produced, ``topic/partition/offset``."""


def plan(letters: Iterable[dl.DeadLetter], partitions: dict[str, int]) -> list[Outcome]:
    """The dead letters in source order (a device's records keep their order), each refused
    or to be produced."""
    outcomes = []
    for letter in sorted(letters, key=lambda x: (x.topic, x.partition, x.offset)):
        why = refusal(letter)
        if why is None and letter.topic not in partitions:
            why = f"source topic {letter.topic} does not exist"
        elif why is None and letter.partition >= partitions[letter.topic]:
            why = f"source topic {letter.topic} has no partition {letter.partition}"
        outcomes.append(Outcome(letter, refused=why))
    return outcomes


async def produce(settings: Settings, outcomes: Sequence[Outcome]) -> None:
    """Produce the original key and value of every outcome not refused to its source topic
    and partition, and wait for each; sets ``landed`` or ``failed``."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from ioc.kafka import unreachable

    producer = AIOKafkaProducer(
        **aiokafka_common(settings),
        acks="all",
        enable_idempotence=True,
        max_request_size=dl.PRODUCER_MAX_REQUEST_BYTES,
        request_timeout_ms=30_000,
    )
    try:
        await asyncio.wait_for(producer.start(), 15)
    except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as exc:
        await _stop(producer)
        raise unreachable(settings, exc) from None
    try:
        pending: list[tuple[Outcome, Any]] = []
        for outcome in outcomes:
            if outcome.refused is not None:
                continue
            letter = outcome.letter
            try:
                future = await producer.send(
                    letter.topic,
                    value=letter.value(),
                    key=letter.key(),
                    partition=letter.partition,
                    headers=[(REDRIVE_HEADER, letter.source.encode())],
                )
            except KafkaError as exc:
                outcome.failed = str(exc) or type(exc).__name__
                continue
            pending.append((outcome, future))
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        for (outcome, _), result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                outcome.failed = str(result) or type(result).__name__
            else:
                outcome.landed = dl.source_key(result.topic, result.partition, result.offset)
    finally:
        await _stop(producer)


def cmd_redrive(args: argparse.Namespace, settings: Settings) -> int:
    selector = Selector.from_args(args)
    if selector.empty and not args.yes:
        raise UsageError(
            "redrive needs --reason, --feed or --source to select dead letters "
            "(or --yes to re-drive every one)"
        )
    scan = _read(settings, selector)
    missing = sorted(selector.sources - {x.source for x in scan.selected.values()})
    for source in missing:
        print(f"not found  {escape(source)}: no dead letter with this source")
    if not scan.selected:
        print(_nothing_selected(scan, selector))
        return 1 if missing else 0
    outcomes = plan(scan.selected.values(), scan.partitions)
    if not args.dry_run:
        asyncio.run(produce(settings, outcomes))
    for o in outcomes:
        what = f"{escape(o.letter.source)} [{escape(o.letter.reason)}]"
        size = len(o.letter.value() or b"")
        if o.refused is not None:
            print(f"refused    {what}: {escape(o.refused)}")
        elif o.failed is not None:
            print(f"failed     {what}: {escape(o.failed)}")
        elif args.dry_run:
            print(
                f"would send {what} -> {escape(o.letter.topic)}/{o.letter.partition}: {size} bytes"
            )
        else:
            print(f"redriven   {what} -> {o.landed}: {size} bytes")
    refused = sum(o.refused is not None for o in outcomes)
    failed = sum(o.failed is not None for o in outcomes)
    done = len(outcomes) - refused - failed
    print(
        f"{'would re-drive' if args.dry_run else 're-drove'} {done} of {len(outcomes)} "
        f"dead letters ({selector.describe()})"
        + (f"; {refused} refused" if refused else "")
        + (f"; {failed} failed" if failed else "")
        + (f"; {len(missing)} not found" if missing else "")
    )
    return 1 if refused or failed or missing else 0


# --- parser --------------------------------------------------------------------------------


def _add_selectors(p: argparse.ArgumentParser, source_help: str) -> None:
    p.add_argument(
        "--reason", action="append", choices=DLQ_REASONS, metavar="R", help="only this reason"
    )
    p.add_argument(
        "--feed", action="append", choices=sorted(FEED_TOPICS), metavar="F", help="only this feed"
    )
    p.add_argument("--source", action="append", metavar=SOURCE_SYNTAX, help=source_help)


def register(sub: Any) -> None:
    d = sub.add_parser("deadletter", help="inspect and re-drive the dead-letter topic")
    dsub = d.add_subparsers(dest="deadletter_command", required=True, metavar="ACTION")

    p = dsub.add_parser("list", help="dead letters, newest per source, with counts by reason")
    _add_selectors(p, "only this source record (repeatable)")
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"show the newest N (default {DEFAULT_LIMIT}; 0 = all)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=cmd_list)

    p = dsub.add_parser("show", help="one dead letter with its original bytes")
    p.add_argument("source", metavar="SOURCE", help=f"the source record, {SOURCE_SYNTAX}")
    p.add_argument("--json", action="store_true", help="the dead-letter record as it is stored")
    p.add_argument(
        "--hex-bytes",
        type=int,
        default=HEX_DUMP_BYTES,
        metavar="N",
        help=f"bytes of a non-UTF-8 value to dump (default {HEX_DUMP_BYTES})",
    )
    p.set_defaults(handler=cmd_show)

    p = dsub.add_parser("redrive", help="produce the original records again to their source topic")
    _add_selectors(p, "this source record (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="say what would be sent, send nothing")
    p.add_argument("--yes", action="store_true", help="allow re-driving with no selector (all)")
    p.set_defaults(handler=cmd_redrive)
