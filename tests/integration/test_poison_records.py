"""No record can stop ingestion: hostile records on every feed, from a plain Kafka client,
mixed with valid traffic on all feeds, with the worker SIGKILLed and replaced mid-run.

End to end (counters die with a killed process): every valid record is stored once, every
hostile one is dead-lettered with its reason, distinct stored rows + distinct dead-lettered
sources = distinct records produced, and no partition stalls for more than 30 s.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec.inspect as mi
import orjson
from aiokafka import AIOKafkaProducer

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import schemas as s
from ioc.contract.topics import FEED_TOPICS
from ioc.kafka_clients import aiokafka_common
from ioc.simulators.run import SimConfig, Summary, run_simulation
from tests.support.db import landed, query
from tests.support.kafka import dlq_by_source
from tests.support.metrics import max_metric
from tests.support.processes import Worker
from tests.support.reconcile import PER_DEVICE_SQL, assert_accounting
from tests.support.wait import wait_for

SCENARIO = "demo"


@dataclass(frozen=True)
class Hostile:
    feed: str
    key: bytes | None
    value: bytes | None
    reason: str
    what: str


def _base(t: mi.Type) -> mi.Type:
    """A field's value type without its Meta and without ``| None``."""
    if isinstance(t, mi.Metadata):
        return _base(t.type)
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        return _base(members[0]) if len(members) == 1 else t
    return t


SAMPLE_START_MS = 1_763_949_600_000
"""Monday 24 November 2025, 09:00 in Vietnam: clinics, offices and meetings are busy."""
ENVELOPE_FIELDS = {"kind", "v", "device_id", "seq", "ts_ms"}


def _fields(kind: str) -> dict[str, mi.Type]:
    info = mi.type_info(s.TYPE_OF_KIND[kind])
    assert isinstance(info, mi.StructType)
    return {f.encode_name: _base(f.type) for f in info.fields if f.name not in ENVELOPE_FIELDS}


@dataclass(frozen=True)
class FeedSample:
    """Valid documents of one feed, as its simulator produced them, and the fields that the
    hostile variants bend: a bounded text field, a bounded integer (its bound + 1 is beyond
    what the schema lets into the column) and another feed's kind."""

    device: str
    text_doc: dict[str, Any]
    text_field: str
    max_length: int
    int_doc: dict[str, Any]
    int_field: str
    too_big: int


def feed_samples(settings: Settings, tmp_path: Path) -> dict[str, FeedSample]:
    """One sample per registered feed, from ten minutes of the scenario in virtual time.

    Taken from the simulators (not written by hand here), so every feed declared in the
    contract gets the same hostile records, whatever its message kinds."""
    out = tmp_path / "sample.jsonl"
    run_simulation(
        settings,
        SimConfig(
            scenario=SCENARIO,
            mode="virtual",
            start_ms=SAMPLE_START_MS,
            duration_s=600,
            out=str(out),
            progress=False,
        ),
    )
    feed_of_topic = {settings.topic(t.name): feed for feed, t in FEED_TOPICS.items()}
    texts: dict[str, tuple[dict[str, Any], str, int]] = {}
    ints: dict[str, tuple[dict[str, Any], str, int]] = {}
    for line in out.read_bytes().splitlines():
        record = orjson.loads(line)
        feed = feed_of_topic[record["topic"]]
        try:
            doc = orjson.loads(record["value"])
        except orjson.JSONDecodeError:
            continue  # the scenario's own malformed records
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind not in s.TYPE_OF_KIND or s.FEED_OF_KIND[s.TYPE_OF_KIND[kind]] != feed:
            continue
        for name, t in _fields(kind).items():
            if name not in doc:
                continue
            if (
                feed not in texts
                and isinstance(t, mi.StrType)
                and t.max_length
                and t.pattern in (None, s.STORABLE_TEXT)
            ):
                texts[feed] = (doc, name, t.max_length)
            if feed not in ints and isinstance(t, mi.IntType) and t.le is not None:
                ints[feed] = (doc, name, int(t.le) + 1)
    samples: dict[str, FeedSample] = {}
    for feed in FEED_TOPICS:
        assert feed in texts and feed in ints, (
            f"ten simulated minutes of {SCENARIO} gave no {feed} message with a bounded text "
            "field and one with a bounded integer"
        )
        (text_doc, text_field, max_length), (int_doc, int_field, too_big) = texts[feed], ints[feed]
        samples[feed] = FeedSample(
            text_doc["device_id"], text_doc, text_field, max_length, int_doc, int_field, too_big
        )
    return samples


def _now(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as if sent now (inside the event-time window), from seq 1."""
    return doc | {"seq": 1, "ts_ms": int(time.time() * 1000)}


def hostile_records(samples: dict[str, FeedSample], seed: int) -> list[Hostile]:
    """Generated hostile records of every class the ingestion issue lists, for every feed."""
    rng = random.Random(seed)
    out: list[Hostile] = []
    feeds = sorted(samples)
    for feed, sample in samples.items():
        device = sample.device
        key = device.encode()
        enc = orjson.dumps
        doc = _now(sample.text_doc)
        overflow = _now(sample.int_doc) | {sample.int_field: sample.too_big, "device_id": device}
        other_feed = feeds[(feeds.index(feed) + 1) % len(feeds)]
        other_kind = _now(samples[other_feed].text_doc) | {"device_id": device}

        def bent(doc: dict[str, Any] = doc, /, **changes: Any) -> bytes:
            return orjson.dumps(doc | changes)

        text = sample.text_field
        garbage = b"\x00" + rng.randbytes(rng.randrange(10, 400))
        out += [
            Hostile(feed, key, None, s.REASON_TOMBSTONE, "tombstone"),
            Hostile(feed, key, b"", s.REASON_EMPTY, "empty value"),
            Hostile(feed, None, enc(doc), s.REASON_MISSING_KEY, "no key"),
            Hostile(feed, key, garbage, s.REASON_NOT_JSON, "random bytes"),
            Hostile(feed, key, b'{"kind": "\xed\xa0\x80"}', s.REASON_NOT_JSON, "not UTF-8"),
            Hostile(feed, key, b"7" + rng.randbytes(50), s.REASON_NOT_JSON, "digit + bytes"),
            Hostile(feed, key, bent(pad="x" * 200_000), s.REASON_OVERSIZED, "200 KB"),
            # larger than the dead-letter producer's request once wrapped, if it were not cut
            Hostile(feed, key, bent(pad="y" * 900_000), s.REASON_OVERSIZED, "900 KB"),
            Hostile(feed, b"k" * 100_000, enc(doc), s.REASON_KEY_MISMATCH, "100 KB key"),
            Hostile(feed, b"someone-else", enc(doc), s.REASON_KEY_MISMATCH, "wrong key"),
            Hostile(feed, key, bent(seq=0), s.REASON_SCHEMA, "seq 0"),
            Hostile(feed, key, bent(seq=2**62 + 1), s.REASON_SCHEMA, "seq too large"),
            Hostile(feed, key, enc(overflow), s.REASON_SCHEMA, "beyond the column's type"),
            Hostile(feed, key, bent(**{text: "a\u0000b"}), s.REASON_SCHEMA, "NUL in text"),
            Hostile(
                feed,
                key,
                bent(**{text: "SURROGATE"}).replace(b'"SURROGATE"', b'"\\ud800"'),
                s.REASON_NOT_JSON,
                "lone surrogate",
            ),
            Hostile(
                feed, key, bent(**{text: "x" * (sample.max_length + 1)}), s.REASON_SCHEMA, "long"
            ),
            Hostile(
                feed,
                key,
                bent(ts_ms=0).replace(b'"ts_ms":0', b'"ts_ms":1e400'),
                s.REASON_SCHEMA,
                "1e400",
            ),
            Hostile(feed, key, b"[" * 5000 + b"]" * 5000, s.REASON_SCHEMA, "deep array"),
            Hostile(feed, key, b"12", s.REASON_SCHEMA, "a bare number"),
            Hostile(feed, key, bent(v=2), s.REASON_UNKNOWN_VERSION, "version 2"),
            Hostile(feed, key, bent(kind=f"{feed}.teleport"), s.REASON_UNKNOWN_KIND, "kind"),
            Hostile(
                feed,
                b"ghost-1",
                bent(device_id="ghost-1"),
                s.REASON_UNKNOWN_DEVICE,
                "not in the topology",
            ),
            Hostile(feed, key, bent(ts_ms=1), s.REASON_EVENT_TIME, "1970"),
            Hostile(feed, key, enc(other_kind), s.REASON_WRONG_FEED, "another feed's kind"),
        ]
    rng.shuffle(out)
    return out


async def produce_hostile(
    settings: Settings, records: list[Hostile], spread_s: float
) -> dict[str, Hostile]:
    """Produce with aiokafka (not the simulators' client); returns them by source."""
    producer = AIOKafkaProducer(
        **aiokafka_common(settings), max_request_size=2 * 1024 * 1024, acks="all"
    )
    await producer.start()
    sources: dict[str, Hostile] = {}
    try:
        for record in records:
            topic = settings.topic(FEED_TOPICS[record.feed].name)
            meta = await producer.send_and_wait(topic, record.value, key=record.key)
            sources[f"{topic}/{meta.partition}/{meta.offset}"] = record
            await asyncio.sleep(spread_s / len(records))
    finally:
        await producer.stop()
    return sources


def test_hostile_records_on_every_feed_never_stop_ingestion(
    namespace: Settings, tmp_path: Path
) -> None:
    asyncio.run(bootstrap(namespace, SCENARIO))
    hostile = hostile_records(feed_samples(namespace, tmp_path), seed=12)
    workers = [Worker(namespace, SCENARIO, tmp_path / "w1.log", "w1").start()]
    stalled_max = 0.0
    done = threading.Event()

    def watch_stalls() -> None:
        nonlocal stalled_max
        while not done.is_set():
            for worker in list(workers):
                stalled_max = max(stalled_max, max_metric(worker, "ioc_partition_stalled_seconds"))
            time.sleep(1)

    result: dict[str, Any] = {}

    def simulate() -> None:
        result["summary"] = run_simulation(
            namespace,
            SimConfig(scenario=SCENARIO, mode="rate", rate=800, duration_s=24, progress=False),
        )

    watcher = threading.Thread(target=watch_stalls, daemon=True)
    simulator = threading.Thread(target=simulate)
    watcher.start()
    simulator.start()
    try:
        hostile_task: dict[str, Any] = {}
        producer = threading.Thread(
            target=lambda: hostile_task.update(
                sources=asyncio.run(produce_hostile(namespace, hostile, spread_s=20))
            )
        )
        producer.start()
        time.sleep(10)
        workers[0].kill()  # mid-batch: nothing it did not commit counts
        workers.append(Worker(namespace, SCENARIO, tmp_path / "w2.log", "w2").start())
        simulator.join()
        producer.join()
        summary: Summary = result["summary"]
        sources: dict[str, Hostile] = hostile_task["sources"]
        valid = sum(summary.stats.valid_by_feed.values())
        invalid = sum(summary.stats.invalid_by_reason.values())  # the scenario's own faults
        assert summary.errors == 0
        assert len(sources) == len(hostile)

        def all_dead_lettered() -> bool:
            return len(asyncio.run(dlq_by_source(namespace))) >= len(hostile) + invalid

        wait_for(lambda: landed(namespace) >= valid, 120, what=f"{valid} rows")
        wait_for(all_dead_lettered, 120, what="every hostile record dead-lettered")
        accounting = assert_accounting(workers[1])
    finally:
        done.set()
        for worker in workers:
            worker.stop()

    letters = asyncio.run(dlq_by_source(namespace))
    wrong = {
        src: (h.what, h.reason, letters[src].reason, letters[src].detail)
        for src, h in sources.items()
        if letters[src].reason != h.reason
    }
    assert not wrong, wrong
    assert all(letters[src].feed == h.feed for src, h in sources.items())
    others = Counter(letter.reason for src, letter in letters.items() if src not in sources)
    assert others == summary.stats.invalid_by_reason, "nothing valid is dead-lettered"
    cut = [letter for letter in letters.values() if letter.value_truncated]
    assert len(cut) == 2 * len(FEED_TOPICS), "the 200 KB and 900 KB values are cut"

    rows = query(namespace, PER_DEVICE_SQL)
    stored = sum(r["n"] for r in rows)
    distinct = sum(r["d"] for r in rows)
    gaps = sum(r["mx"] - r["d"] for r in rows)
    produced = valid + invalid + len(hostile)
    print(
        f"poison records: produced {valid} valid + {invalid} invalid + {len(hostile)} hostile on "
        f"{len(FEED_TOPICS)} feeds, stored {stored} ({distinct} distinct), dead-lettered "
        f"{len(letters)}, gaps {gaps}, longest partition stall {stalled_max:.0f} s, "
        f"replacement worker {accounting}"
    )
    assert stored == distinct == valid and gaps == 0
    assert distinct + len(letters) == produced
    assert stalled_max <= 30, f"a partition stalled for {stalled_max:.0f} s"
