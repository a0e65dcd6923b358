"""The Quix Streams peer: the pipeline's work written the way a Quix Streams user would.

Runs in its own virtualenv (``make bench-venv``: Quix Streams pins older confluent-kafka and
pydantic than the product uses). For each feed topic a Quix dataframe feeds a batching sink
that does the shared peer work (bench/peer_work.py): the contract's validation and device
classes, dead letters to the namespace's DLQ topic, the same raw rows into the same raw
hypertables (``ON CONFLICT DO NOTHING``) and the product's 1-minute device rollup columns
into ``rollup_<feed>_1m``, all written at Quix's checkpoint before it commits the offsets.

    .venv-quix/bin/python bench/quix_peer.py --prefix P. --schema S

bench/baselines.py starts it against a backlog and measures it exactly like the product.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from psycopg2.extras import execute_values
from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBatch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_work import PeerWork, peer_start, raw_sql, rollup_sql, values_sql

from ioc.contract.topics import DEAD_LETTER, FEED_TOPICS


class PeerSink(BatchingSink):
    """One feed's records at each checkpoint: validated, stored, rolled up, dead-lettered."""

    def __init__(self, feed: str, work: PeerWork, conn: Any, producer: Producer, dlq: str) -> None:
        super().__init__()
        self.feed, self.work, self.conn, self.producer, self.dlq = feed, work, conn, producer, dlq

    def write(self, batch: SinkBatch) -> None:
        done = self.work.process(
            (self.feed, batch.topic, batch.partition, i.offset, i.key, i.value) for i in batch
        )
        for d in done.dead:
            self.producer.produce(self.dlq, key=d.key, value=d.value)
        with self.conn.cursor() as cur:
            for feed, rows in done.raw.items():
                execute_values(cur, values_sql(raw_sql(feed, "%s")), rows, page_size=1000)
            for feed, rows in done.rollup.items():
                execute_values(cur, values_sql(rollup_sql(feed, "%s")), rows, page_size=1000)
        self.conn.commit()
        if done.dead:
            self.producer.flush()


def main() -> int:
    args, conn, work = peer_start(__doc__.split("\n")[0])
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    dlq = f"{args.prefix}{DEAD_LETTER.name}"

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"{args.prefix}quix-peer",
        auto_offset_reset="earliest",
        commit_interval=1.0,
        state_dir=f"/tmp/quix-peer-state/{args.schema}",
        loglevel="WARNING",
        consumer_extra_config={"max.partition.fetch.bytes": 4 * 1024 * 1024},
    )
    for feed, spec in FEED_TOPICS.items():
        topic = app.topic(
            f"{args.prefix}{spec.name}", key_deserializer="bytes", value_deserializer="bytes"
        )
        app.dataframe(topic).sink(PeerSink(feed, work, conn, producer, dlq))
    app.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
