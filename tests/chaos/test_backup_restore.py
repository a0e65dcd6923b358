"""Chaos: point-in-time restore of TimescaleDB reconciles with what was acknowledged.

A worker writes while the simulator produces; a base backup is taken mid-run (the stack's
server archives its WAL, deploy/ioc/deploy/local/backup.py); at a target time the consumer
group's committed offsets say what the pipeline had acknowledged. The run goes on, then the
database is restored into a fresh PostgreSQL (port 1545x, same chroot) up to the target:
every acknowledged row must be there exactly once, and nothing committed after the target.
Then the operator's procedure (docs/backup.md) is finished: the consumer group is rewound and
a worker replays Kafka into the restored database, after which it reconciles with everything
produced, as the live database does.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import schemas as s
from ioc.contract.deadletter import source_key
from ioc.contract.tables import RAW
from ioc.contract.topics import FEED_TOPICS
from ioc.deploy.local.backup import Backups, rewind_consumers
from ioc.kafka_clients import librdkafka_consumer
from ioc.streams.consumer import consumer_group
from tests.support.db import landed, query
from tests.support.kafka import dlq_by_source
from tests.support.processes import Worker
from tests.support.reconcile import assert_accounting, reconcile
from tests.support.wait import wait_for

from .faults import Production

pytestmark = pytest.mark.chaos

PORT = 15451  # helper range 15450-15459; `ioc db restore` defaults to 15450

Offsets = dict[tuple[str, int], int]
Seqs = dict[str, set[int]]  # device -> sequence numbers


def committed_offsets(settings: Settings) -> Offsets:
    """The feed consumers' committed offsets now: what the pipeline has acknowledged."""
    conf = librdkafka_consumer(settings, consumer_group(settings), "pitr-check")
    consumer = Consumer({**conf, "enable.auto.commit": False})
    try:
        wanted = []
        for spec in FEED_TOPICS.values():
            topic = settings.topic(spec.name)
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            wanted += [TopicPartition(topic, p) for p in meta.partitions]
        done = consumer.committed(wanted, timeout=10)
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in done}
    finally:
        consumer.close()


def acknowledged(settings: Settings, offsets: Offsets) -> tuple[dict[str, Seqs], int, int]:
    """Per feed, the (device, seq) of every valid message below the committed offsets; and
    how many acknowledged messages were dead-lettered and how many are unaccounted for."""
    dead = set(asyncio.run(dlq_by_source(settings)))
    feed_of = {settings.topic(spec.name): feed for feed, spec in FEED_TOPICS.items()}
    conf = librdkafka_consumer(settings, f"{settings.kafka_topic_prefix}pitr-reader", "pitr")
    consumer = Consumer({**conf, "enable.auto.commit": False})
    seqs: dict[str, Seqs] = defaultdict(lambda: defaultdict(set))
    dead_lettered = unaccounted = 0
    try:
        todo = {tp: end for tp, end in offsets.items() if end > 0}
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in todo])
        deadline = time.monotonic() + 60
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 1.0):
                if msg.error():
                    continue
                tp = (msg.topic(), msg.partition())
                offset = msg.offset()
                if offset is None or tp not in todo or offset >= todo[tp]:
                    continue
                if offset == todo[tp] - 1:
                    del todo[tp]
                if source_key(tp[0], tp[1], offset) in dead:
                    dead_lettered += 1
                    continue
                try:
                    value = s.check_record(msg.key(), msg.value())
                    m = s.decode(value, feed=feed_of[tp[0]], key=msg.key())
                except s.InvalidMessage:
                    unaccounted += 1  # acknowledged, invalid, yet not dead-lettered
                    continue
                seqs[feed_of[tp[0]]][m.device_id].add(m.seq)
        assert not todo, f"could not read the acknowledged range of {sorted(todo)}"
    finally:
        consumer.close()
    return seqs, dead_lettered, unaccounted


def stored(settings: Settings) -> dict[str, Counter[tuple[str, int]]]:
    """Per feed, how often each (device, seq) is in its raw table."""
    out: dict[str, Counter[tuple[str, int]]] = {}
    for feed, table in RAW.items():
        rows = query(settings, f"SELECT device_id, seq, count(*) AS n FROM {table} GROUP BY 1, 2")
        out[feed] = Counter({(r["device_id"], r["seq"]): r["n"] for r in rows})
    return out


def server_now(settings: Settings) -> datetime:
    value = query(settings, "SELECT clock_timestamp() AS t")[0]["t"]
    assert isinstance(value, datetime)
    return value


def test_point_in_time_restore_keeps_every_acknowledged_row(
    namespace: Settings, tmp_path: Path
) -> None:
    asyncio.run(bootstrap(namespace, "demo"))
    backups = Backups(namespace)
    backups.require_archiving()
    restored_settings = namespace.model_copy(update={"postgres_port": PORT})
    backups.discard(PORT)  # a previous run's leftovers
    worker = Worker(namespace, "demo", tmp_path / "worker.log").start()
    replay: Worker | None = None
    base_name = ""
    try:
        production = Production(namespace, 50)
        time.sleep(12)
        t0 = time.monotonic()
        base = backups.take(print, verify=True)
        base_name = base.name
        backup_s = time.monotonic() - t0
        time.sleep(15)
        # in this order: rows committed before `live_before` and every acknowledged row
        # (its offset commit follows its database commit) precede the target
        live_before = landed(namespace)
        offsets = committed_offsets(namespace)
        target = server_now(namespace)
        time.sleep(0.2)
        live_after = landed(namespace)
        production.finish_and_reconcile(worker, "live database")
        segment = backups.switch_wal()
        restored = backups.restore(print, target_time=target, port=PORT)
        assert restored.backup == base.name  # the newest backup finished before the target

        acked, dead_lettered, unaccounted = acknowledged(namespace, offsets)
        rows = stored(restored_settings)
        print(
            f"\nbase backup {base.name}: {base.bytes / 1e6:.0f} MB in {backup_s:.1f} s; WAL "
            f"archived to {segment}; restored to {target.isoformat()} in "
            f"{restored.seconds:.1f} s on port {PORT}"
        )
        header = (
            f"{'feed':<14}{'acknowledged':>13}{'restored':>10}{'present once':>14}"
            f"{'lost':>6}{'duplicates':>11}{'unacked extra':>15}"
        )
        print(header)
        totals = Counter[str]()
        for feed in sorted(RAW):
            want = {(d, q) for d, qs in acked.get(feed, {}).items() for q in qs}
            have = rows[feed]
            figures = {
                "acknowledged": len(want),
                "restored": sum(have.values()),
                "once": sum(1 for k in want if have.get(k) == 1),
                "lost": sum(1 for k in want if k not in have),
                "duplicates": sum(n - 1 for n in have.values()),
                "extra": sum(1 for k in have if k not in want),
            }
            totals.update(figures)
            print(
                f"{feed:<14}{figures['acknowledged']:>13}{figures['restored']:>10}"
                f"{figures['once']:>14}{figures['lost']:>6}{figures['duplicates']:>11}"
                f"{figures['extra']:>15}"
            )
        print(
            f"{'total':<14}{totals['acknowledged']:>13}{totals['restored']:>10}"
            f"{totals['once']:>14}{totals['lost']:>6}{totals['duplicates']:>11}"
            f"{totals['extra']:>15}"
        )
        print(
            f"acknowledged and dead-lettered {dead_lettered}, unaccounted {unaccounted}; live rows "
            f"{live_before} before and {live_after} after the target, restored "
            f"{totals['restored']}"
        )
        assert totals["acknowledged"] > 0 and totals["restored"] < landed(namespace)
        assert totals["once"] == totals["acknowledged"], totals
        assert totals["lost"] == 0 and totals["duplicates"] == 0, totals
        assert unaccounted == 0
        # the restore stopped at the target: everything committed before it, nothing after
        assert live_before <= totals["restored"] <= live_after, (live_before, live_after)

        # the rest of the operator's procedure: rewind the group, replay Kafka into the
        # restored database (the writes are idempotent), reconcile with everything produced
        worker.stop()
        # from 15 s before the target: more than the consumer lag then, less than the run
        rewound = rewind_consumers(namespace, target - timedelta(seconds=15))
        t0 = time.monotonic()
        replay = Worker(restored_settings, "demo", tmp_path / "replay.log", name="replay").start()
        valid = sum(production.summary.stats.valid_by_feed.values())
        wait_for(
            lambda: landed(restored_settings) >= valid,
            120,
            interval=2,
            what=f"{valid} rows in the restored database ({replay.log_tail() if replay else ''})",
        )
        print(
            f"replayed {len(rewound)} partitions from 15 s before the target into the restored "
            f"database in {time.monotonic() - t0:.1f} s"
        )
        reconcile(restored_settings, production.summary, "restored + replayed")
        print(f"replay worker accounting {assert_accounting(replay)}")
    finally:
        if replay is not None:
            replay.stop()
        worker.stop()
        backups.discard(PORT)
        if base_name:
            shutil.rmtree(backups.base_dir / base_name, ignore_errors=True)
