"""The Pathway peer: the pipeline's work on Pathway's engine, Kafka in, PostgreSQL out.

Runs in its own virtualenv (``make bench-venv``; Pathway brings its own engine and pins its
own dependencies). Pathway's Kafka connector reads the feed topics as raw key/value rows with
their topic, partition and offset; each closed minibatch (``pw.io.subscribe``'s
``on_time_end``) goes through the shared peer work (bench/peer_work.py: the contract's
validation, dead letters, the same raw rows into the same raw hypertables with ``ON CONFLICT
DO NOTHING``, the product's 1-minute device rollup columns), written to PostgreSQL in one
transaction. Pathway's own PostgreSQL writer cannot do that (it appends ``time``/``diff``
columns or upserts a snapshot keyed on its own row ids), so the rows go out via psycopg2.

Pathway keeps its read position itself rather than in a Kafka consumer group, so after each
minibatch is stored the peer commits the minibatch's offsets to the group
``<prefix>pathway-peer``: bench/baselines.py reads progress from it like the others'.

    .venv-pathway/bin/python bench/pathway_peer.py --prefix P. --schema S --credentials C
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pathway as pw
from confluent_kafka import Consumer, Producer, TopicPartition
from psycopg2.extras import execute_values

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_work import peer_start, raw_sql, rollup_sql, values_sql

from ioc.contract.topics import DEAD_LETTER, FEED_TOPICS


def main() -> int:
    args, conn, work = peer_start((__doc__ or "").split("\n")[0])
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    committer = Consumer(
        {"bootstrap.servers": args.bootstrap, "group.id": f"{args.prefix}pathway-peer"}
    )
    dlq = f"{args.prefix}{DEAD_LETTER.name}"
    feed_of = {f"{args.prefix}{spec.name}": feed for feed, spec in FEED_TOPICS.items()}

    # one reader per topic: Pathway's connector reads only the first of a list
    table = pw.Table.concat_reindex(
        *[
            pw.io.kafka.read(
                {
                    "bootstrap.servers": args.bootstrap,
                    "group.id": f"{args.prefix}pathway-peer-read",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": "false",
                },
                topic=topic,
                format="raw",
                autogenerate_key=True,  # every record is a row (the Kafka key is the device id)
                with_metadata=True,
                autocommit_duration_ms=1000,
            )
            for topic in feed_of
        ]
    )
    pending: list[tuple[str, str, int, int, bytes | None, bytes | None]] = []

    def on_change(key: Any, row: dict[str, Any], time: int, is_addition: bool) -> None:
        if not is_addition:
            return
        meta = row["_metadata"].as_dict()
        topic = meta["topic"]
        pending.append(
            (feed_of[topic], topic, meta["partition"], meta["offset"], row["key"], row["data"])
        )

    def on_time_end(time: int) -> None:
        if not pending:
            return
        done = work.process(pending)
        for d in done.dead:
            producer.produce(dlq, key=d.key, value=d.value)
        with conn.cursor() as cur:
            for feed, rows in done.raw.items():
                execute_values(cur, values_sql(raw_sql(feed, "%s")), rows, page_size=1000)
            for feed, rows in done.rollup.items():
                execute_values(cur, values_sql(rollup_sql(feed, "%s")), rows, page_size=1000)
        conn.commit()
        if done.dead:
            producer.flush()
        nxt: dict[tuple[str, int], int] = {}
        for _, topic, partition, offset, _, _ in pending:
            nxt[(topic, partition)] = max(nxt.get((topic, partition), 0), offset + 1)
        committer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in nxt.items()], asynchronous=False
        )
        pending.clear()

    pw.io.subscribe(table, on_change=on_change, on_time_end=on_time_end)
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
