"""The plain Faust peer: the pipeline's work as a hand-written faust-streaming agent.

What a Faust user writes first: one agent over the feed topics taking batches with
``stream.take_events(...)``, doing the shared peer work (bench/peer_work.py: the contract's
validation, dead letters, the same raw rows and the product's 1-minute device rollup) and
writing them with asyncpg ``executemany`` before Faust acks and commits the batch. It runs in
the product's virtualenv (faust-streaming is a dependency), so it shows what plain Faust costs
next to the product's own consumer.

    .venv/bin/python bench/faust_agent_peer.py --prefix P. --schema S

bench/baselines.py starts it against a backlog and measures it exactly like the product.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import faust
from peer_work import PeerWork, raw_sql, rollup_sql

from ioc.config import load_settings
from ioc.contract.deadletter import PRODUCER_MAX_REQUEST_BYTES
from ioc.contract.topics import DEAD_LETTER, FEED_TOPICS
from ioc.db import connect
from ioc.kafka_clients import faust_broker

BATCH = 10_000


def build(prefix: str, schema: str, datadir: Path) -> faust.App:
    """The agent app: consumer group ``<prefix>faust-agent-peer``."""
    settings = load_settings().model_copy(
        update={"kafka_topic_prefix": prefix, "db_schema": schema}
    )
    app = faust.App(
        f"{prefix}faust-agent-peer",
        **faust_broker(settings),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        stream_buffer_maxsize=BATCH * 2,
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        consumer_max_fetch_size=4 * 1024 * 1024,
    )
    feed_of = {settings.topic(spec.name): feed for feed, spec in FEED_TOPICS.items()}
    source = app.topic(
        *feed_of,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=False,
    )
    dlq = app.topic(
        settings.topic(DEAD_LETTER.name),
        key_serializer="raw",
        value_serializer="raw",
        internal=False,
    )
    state: dict[str, Any] = {}
    ready = asyncio.Event()

    @app.task
    async def open_db() -> None:
        conn = await connect(settings.admin_dsn())
        await conn.execute(f"SET search_path TO {schema}, public")
        state["conn"] = conn
        state["work"] = PeerWork(dict(await conn.fetch("SELECT id, device_class FROM devices")))
        ready.set()

    @app.agent(source)
    async def pipeline(stream: Any) -> None:
        async for events in stream.take_events(BATCH, within=1.0):
            await ready.wait()
            work: PeerWork = state["work"]
            batch = work.process(
                (
                    feed_of[e.message.topic],
                    e.message.topic,
                    e.message.partition,
                    e.message.offset,
                    e.key,
                    e.value,
                )
                for e in events
            )
            for d in batch.dead:
                await dlq.send(key=d.key, value=d.value)
            conn = state["conn"]
            async with conn.transaction():
                for feed, rows in batch.raw.items():
                    await conn.executemany(raw_sql(feed), rows)
                for feed, rows in batch.rollup.items():
                    await conn.executemany(rollup_sql(feed), rows)

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--prefix", required=True, help="topic prefix of the backlog")
    parser.add_argument("--schema", required=True, help="database schema to write into")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    datadir = Path("/tmp/faust-agent-peer") / args.schema
    datadir.mkdir(parents=True, exist_ok=True)
    app = build(args.prefix, args.schema, datadir)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
