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

import orjson
from aiokafka import AIOKafkaProducer

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import schemas as s
from ioc.contract.topics import FEED_TOPICS
from ioc.contract.topology import Topology, load_scenario
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


def _doc(kind: str, device: str, **fields: Any) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    return {"kind": kind, "v": 1, "device_id": device, "seq": 1, "ts_ms": now_ms} | fields


def _valid_docs(topology: Topology) -> dict[str, tuple[str, dict[str, Any]]]:
    """A valid message per feed (device id, document), which each hostile record bends."""
    by_class: dict[str, str] = {}
    for device in topology.devices.values():
        by_class.setdefault(device.device_class, device.id)
    camera, station, node = by_class["camera"], by_class["telehealth"], by_class["netnode"]
    return {
        "camera": (
            camera,
            _doc("camera.incident", camera, incident_id="i-1", incident="congestion", state="open"),
        ),
        "telehealth": (
            station,
            _doc("telehealth.session", station, session_id="s-1", event="start"),
        ),
        "netnode": (
            node,
            _doc(
                "netnode.counters",
                node,
                interface="ge-0/0/0",
                interval_s=60,
                in_bps=1.0,
                out_bps=1.0,
                in_errors=0,
                out_errors=0,
                capacity_bps=1e9,
            ),
        ),
    }


TEXT_FIELD = {"camera": "incident_id", "telehealth": "session_id", "netnode": "interface"}
INT_OVERFLOW = {
    "camera": ("camera.stream", "dropped_frames", 2**31),
    "telehealth": ("telehealth.heartbeat", "waiting_patients", 10_001),
    "netnode": ("netnode.counters", "in_errors", 2**53 + 1),
}
OTHER_FEED_KIND = {
    "camera": "netnode.link",
    "telehealth": "camera.heartbeat",
    "netnode": "telehealth.session",
}


def hostile_records(topology: Topology, seed: int) -> list[Hostile]:
    """Generated hostile records of every class the ingestion issue lists, for every feed."""
    rng = random.Random(seed)
    out: list[Hostile] = []
    for feed, (device, doc) in _valid_docs(topology).items():
        key = device.encode()
        enc = orjson.dumps

        def bent(doc: dict[str, Any] = doc, /, **changes: Any) -> bytes:
            return orjson.dumps(doc | changes)

        kind, field, too_big = INT_OVERFLOW[feed]
        overflow = doc | {field: too_big}
        if feed == "camera":
            overflow = _doc(
                kind,
                device,
                fps=25.0,
                bitrate_kbps=1.0,
                dropped_frames=too_big,
                frozen=False,
                black=False,
            )
        elif feed == "telehealth":
            overflow = _doc(kind, device, status="ok", waiting_patients=too_big, active_sessions=1)
        text = TEXT_FIELD[feed]
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
            Hostile(feed, key, bent(**{text: "x" * 129}), s.REASON_SCHEMA, "long text"),
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
            Hostile(
                feed,
                key,
                enc(_doc(OTHER_FEED_KIND[feed], device, interface="x", state="up")),
                s.REASON_WRONG_FEED,
                "another feed's kind",
            ),
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
    topology = load_scenario(SCENARIO)
    hostile = hostile_records(topology, seed=12)
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
