"""The Quix Streams peer: the pipeline's work written the way a Quix Streams user would.

Runs in its own virtualenv (``make bench-venv``: Quix Streams pins older confluent-kafka and
pydantic than the product uses). For each feed topic: validate every message with the
contract's decoder and the topology's device classes, send invalid ones to a dead-letter
topic, store valid ones in the same raw hypertables with Quix's own PostgreSQLSink
(``ON CONFLICT DO NOTHING`` on the same key), and aggregate per device and minute in a Quix
tumbling window (reports, mean and max of the feed's main gauge) into ``peer_rollup_1m``.
That aggregation is lighter than the product's (one window of three values per device; the
product computes 12-14 columns per device and every unit level), which favours the peer.

    .venv-quix/bin/python bench/quix_peer.py --prefix P. --schema S

bench/baselines.py starts it against a backlog and measures it exactly like the product.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
from quixstreams import Application
from quixstreams.dataframe.windows import Count, Max, Mean
from quixstreams.sinks.community.postgresql import PostgreSQLSink

from ioc.contract import feeds
from ioc.contract import schemas as s
from ioc.contract.feeds import Feed
from ioc.contract.raw import RAW_COLUMNS, column_types
from ioc.contract.tables import RAW
from ioc.contract.topics import FEED_TOPICS
from ioc.streams.rows import raw_row

GAUGE: dict[str, str] = {Feed.CAMERA: "fps", Feed.TELEHEALTH: "rtt_ms", Feed.NETNODE: "rtt_ms"}
"""The feed's main gauge that the peer's window averages; other feeds: their first numeric."""


def gauge_of(feed: str) -> str:
    if feed in GAUGE:
        return GAUGE[feed]
    types = column_types(feeds.spec(feed).messages)
    numeric = ("real", "double precision", "integer", "bigint", "smallint")
    return next(name for name, sql in types.items() if sql in numeric)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prefix", required=True, help="topic prefix of the backlog")
    parser.add_argument("--schema", required=True, help="database schema to write into")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--credentials", required=True, help="the stack's credentials.json")
    parser.add_argument("--port", type=int, default=15432)
    args = parser.parse_args()
    creds = json.loads(Path(args.credentials).read_text())
    db = {
        "host": "127.0.0.1",
        "port": args.port,
        "dbname": creds["database"],
        "user": "ioc_admin",  # Quix's sink runs CREATE SCHEMA IF NOT EXISTS
        "password": creds["roles"]["ioc_admin"],
    }
    with psycopg2.connect(**db, options=f"-c search_path={args.schema},public") as conn:
        cur = conn.cursor()
        cur.execute("SELECT id, device_class FROM devices")
        class_of = dict(cur.fetchall())

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"{args.prefix}quix-peer",
        auto_offset_reset="earliest",
        commit_interval=1.0,
        state_dir=f"/tmp/quix-peer-state/{args.schema}",
        loglevel="WARNING",
        consumer_extra_config={"max.partition.fetch.bytes": 4 * 1024 * 1024},
    )
    dlq = app.topic(f"{args.prefix}quix-peer.dlq", value_serializer="json")

    for feed, spec in FEED_TOPICS.items():
        topic = app.topic(
            f"{args.prefix}{spec.name}", key_deserializer="bytes", value_deserializer="bytes"
        )
        columns = RAW_COLUMNS[feed]
        expected_class = s.DEVICE_CLASS_OF_FEED[feed]

        def validate(
            value: bytes,
            key: bytes,
            timestamp: int,
            headers: Any,
            columns: tuple[str, ...] = columns,
            expected_class: str = expected_class,
            feed: str = feed,
        ) -> dict[str, Any]:
            try:
                msg = s.decode(value, feed=feed, key=key, now_ms=int(time.time() * 1000))
                if class_of.get(msg.device_id) != expected_class:
                    raise s.InvalidMessage(s.REASON_UNKNOWN_DEVICE, msg.device_id)
            except s.InvalidMessage as exc:
                return {"_invalid": exc.reason, "detail": exc.detail}
            row = dict(zip(columns, raw_row(msg), strict=True))
            row["_ts_ms"] = msg.ts_ms
            return row

        sdf = app.dataframe(topic).apply(validate, metadata=True)
        sdf[sdf.contains("_invalid")].to_topic(dlq)
        valid = sdf[~sdf.contains("_invalid")]
        valid.apply(lambda row: {k: v for k, v in row.items() if k != "_ts_ms"}).sink(
            PostgreSQLSink(
                **db,
                table_name=RAW[feed],
                schema_name=args.schema,
                schema_auto_update=False,
                primary_key_columns=["device_id", "seq", "ts"],
                on_conflict_do_nothing=True,
                include_metadata=False,
            )
        )
        gauge = gauge_of(feed)
        (
            valid.tumbling_window(timedelta(minutes=1))
            .agg(reports=Count(), gauge_avg=Mean(gauge), gauge_max=Max(gauge))
            .final()
            .apply(
                lambda w, key, ts, headers, feed=feed: {
                    "feed": feed,
                    "device_id": key.decode(),
                    "bucket": datetime.fromtimestamp(w["start"] / 1000, UTC),
                    "reports": w["reports"],
                    "gauge_avg": w["gauge_avg"],
                    "gauge_max": w["gauge_max"],
                },
                metadata=True,
            )
            .sink(
                PostgreSQLSink(
                    **db,
                    table_name="peer_rollup_1m",
                    schema_name=args.schema,
                    schema_auto_update=False,
                    primary_key_columns=["feed", "device_id", "bucket"],
                    upsert_on_primary_key=True,
                    include_metadata=False,
                )
            )
        )
    app.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
