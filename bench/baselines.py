"""Benchmark: the pipeline against a minimal raw pipeline, on the same backlog, in one run.

1. The simulators produce a backlog of yen-bai-2022 events into a private namespace.
2. Raw baseline (the practical ceiling for Python here): aiokafka ``getmany`` -> orjson ->
   asyncpg COPY into one table, no validation, no aggregation.
3. The product: ``ioc worker`` process(es) drain the same backlog into the raw tables.

Each drain rate is events landed per second; the ratio product/raw is what to compare
(machines are shared: absolute numbers move, ratios measured in one run hold better).

    .venv/bin/python bench/baselines.py [--events 300000] [--workers 1,2]

Writes bench/results/baselines.json. The Quix Streams peer is not measured yet.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_machine import machine  # type: ignore[import-not-found]
from integration.workers import Worker, drop_namespace, drop_schema, landed

from ioc.config import Settings, load_settings
from ioc.contract.topics import FEED_TOPICS
from ioc.db import connect
from ioc.simulators.run import SimConfig, run_simulation
from ioc.streams.cli import prepare

RESULTS = Path(__file__).parent / "results"
SCENARIO = "yen-bai-2022"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def namespace(tag: str) -> Settings:
    return load_settings().model_copy(update={"kafka_topic_prefix": f"{tag}.", "db_schema": tag})


async def raw_drain(settings: Settings, expected: int) -> float:
    """aiokafka getmany -> orjson -> asyncpg COPY; returns events/s."""
    conn = await connect(settings.admin_dsn())
    await conn.execute(f"SET search_path TO {settings.db_schema}, public")
    await conn.execute(
        "CREATE TABLE raw_baseline (ts timestamptz, device_id text, seq bigint, kind text)"
    )
    consumer = AIOKafkaConsumer(
        *[settings.topic(s.name) for s in FEED_TOPICS.values()],
        **settings.aiokafka_kwargs(),
        group_id=f"{settings.db_schema}-raw",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    done = 0
    started = time.perf_counter()
    try:
        while done < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            rows = []
            for records in batches.values():
                for r in records:
                    try:
                        m = orjson.loads(r.value)
                        rows.append(
                            (
                                EPOCH + dt.timedelta(milliseconds=m["ts_ms"]),
                                m["device_id"],
                                m["seq"],
                                m["kind"],
                            )
                        )
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
            if rows:
                await conn.copy_records_to_table(
                    "raw_baseline", records=rows, columns=["ts", "device_id", "seq", "kind"]
                )
                await consumer.commit()
                done += len(rows)
    finally:
        await consumer.stop()
        await conn.close()
    return done / (time.perf_counter() - started)


def product_drain(settings: Settings, expected: int, workers: int, log_dir: Path) -> float:
    procs = [
        Worker(settings, SCENARIO, log_dir / f"{settings.db_schema}-w{i}.log", f"w{i}")
        for i in range(workers)
    ]
    started = time.perf_counter()
    for w in procs:
        w.start()
    try:
        first = None
        while True:
            n = landed(settings)
            if n and first is None:
                first = (time.perf_counter(), n)  # exclude start-up and group join
            if n >= expected:
                break
            if time.perf_counter() - started > 900:
                raise SystemExit(f"product drained only {n}/{expected} in 900 s")
            time.sleep(0.5)
        end = time.perf_counter()
        assert first is not None
        return (expected - first[1]) / max(end - first[0], 1e-6)
    finally:
        for w in procs:
            w.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    log_dir = Path("bench/out")
    log_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "baselines",
        "scenario": SCENARIO,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "events": args.events,
        "product": {},
    }
    tag = f"base{uuid.uuid4().hex[:6]}"
    settings = namespace(tag)
    asyncio.run(prepare(settings, SCENARIO))
    try:
        rate = 120_000.0
        summary = run_simulation(
            settings,
            SimConfig(
                scenario=SCENARIO,
                mode="rate",
                rate=rate,
                duration_s=args.events / rate,
                progress=False,
                workers=2,
            ),
        )
        valid = sum(summary.stats.valid_by_feed.values())
        print(f"backlog: {valid:,} events produced", file=sys.stderr)
        raw = asyncio.run(raw_drain(settings, valid))
        result["raw_baseline_events_per_s"] = round(raw)
        print(f"raw baseline (getmany -> orjson -> COPY): {raw:,.0f} events/s", file=sys.stderr)
        for workers in [int(w) for w in args.workers.split(",")]:
            # a fresh schema and consumer group per measurement, same backlog topics
            run_tag = f"{tag}w{workers}"
            run_settings = settings.model_copy(update={"db_schema": run_tag})
            asyncio.run(prepare(run_settings, SCENARIO))
            rate_w = product_drain(run_settings, valid, workers, log_dir)
            result["product"][str(workers)] = round(rate_w)
            print(
                f"product, {workers} worker(s): {rate_w:,.0f} events/s ({rate_w / raw:.2f}x raw)",
                file=sys.stderr,
            )
            asyncio.run(drop_schema(run_settings))
            _forget_group(f"{settings.kafka_topic_prefix}ioc-streams", settings)
    finally:
        asyncio.run(drop_namespace(settings))
    best = max(result["product"].values())
    result["events_per_s"] = best
    result["ratio_to_raw"] = round(best / result["raw_baseline_events_per_s"], 3)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "baselines.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


def _forget_group(group: str, settings: Settings) -> None:
    """The next measurement drains the same backlog from the start: drop the group."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for future in admin.delete_consumer_groups([group], request_timeout=30).values():
        future.result()


if __name__ == "__main__":
    sys.exit(main())
