"""Benchmark: the pipeline against a minimal raw pipeline, on the same backlog, in one run.

1. The simulators produce a backlog of yen-bai-2022 events into a private namespace.
2. Raw baseline (the practical ceiling for Python here): aiokafka ``getmany`` -> orjson ->
   asyncpg COPY into one table, no validation, no aggregation.
3. The product: ``ioc worker`` process(es) drain the same backlog into the raw tables.

Each drain rate is events landed per second; the ratio product/raw is what to compare
(machines are shared: absolute numbers move, ratios measured in one run hold better).

    .venv/bin/python bench/baselines.py [--events 300000] [--workers 1,2]

4. The Quix Streams peer (bench/quix_peer.py, its own virtualenv from `make bench-venv`)
   drains the same backlog into its own schema, measured like the product.

Writes bench/results/baselines.json and baselines.png.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from bench_machine import machine, results_dir

from ioc.bootstrap import bootstrap, drop_namespace, drop_schema
from ioc.config import Settings, load_settings
from ioc.contract.tables import RAW
from ioc.contract.topics import FEED_TOPICS
from ioc.db import connect
from ioc.kafka_clients import aiokafka_common, librdkafka_admin
from ioc.processes import Process, WorkerProcess, stop_all
from ioc.simulators.run import SimConfig, run_simulation
from ioc.streams.consumer import consumer_group

RESULTS = results_dir()
SCENARIO = "yen-bai-2022"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def namespace(tag: str) -> Settings:
    return load_settings().model_copy(update={"kafka_topic_prefix": f"{tag}.", "db_schema": tag})


async def raw_drain(settings: Settings, expected: int, round_: int = 0) -> float:
    """aiokafka getmany -> orjson -> asyncpg COPY; returns events/s."""
    conn = await connect(settings.admin_dsn())
    await conn.execute(f"SET search_path TO {settings.db_schema}, public")
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS raw_baseline "
        "(ts timestamptz, device_id text, seq bigint, kind text)"
    )
    await conn.execute("TRUNCATE raw_baseline")
    consumer = AIOKafkaConsumer(
        *[settings.topic(s.name) for s in FEED_TOPICS.values()],
        **aiokafka_common(settings),
        group_id=f"{settings.db_schema}-raw{round_}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    done = 0
    first: tuple[float, int] | None = None
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
                if first is None:  # measured like the others: from the first commit
                    first = (time.perf_counter(), done)
    finally:
        await consumer.stop()
        await conn.close()
    assert first is not None
    return (done - first[1]) / max(time.perf_counter() - first[0], 1e-6)


def product_drain(settings: Settings, expected: int, workers: int, log_dir: Path) -> float:
    procs = [
        WorkerProcess(settings, SCENARIO, log_dir / f"{settings.db_schema}-w{i}.log", f"w{i}")
        for i in range(workers)
    ]
    for w in procs:
        w.start()
    try:
        return _measure_drain(
            settings,
            expected,
            lambda: all(w.alive() for w in procs),
            "product worker(s)",
            consumer_group(settings),
        )
    finally:
        stop_all(procs)


QUIX_PYTHON = Path(__file__).resolve().parent.parent / ".venv-quix" / "bin" / "python"


def quix_drain(settings: Settings, expected: int, log_dir: Path) -> float | None:
    """The Quix Streams peer (bench/quix_peer.py), measured exactly like the product."""
    if not QUIX_PYTHON.exists():
        print("Quix Streams peer skipped: run `make bench-venv` first", file=sys.stderr)
        return None
    asyncio.run(_create_peer_rollup(settings))
    proc = Process(
        [
            str(QUIX_PYTHON),
            str(Path(__file__).with_name("quix_peer.py")),
            "--prefix",
            settings.kafka_topic_prefix,
            "--schema",
            settings.db_schema,
            "--bootstrap",
            settings.bootstrap_servers,
            "--credentials",
            str(settings.stack_credentials_path("timescaledb")),
            "--port",
            str(settings.postgres_port),
        ],
        log_dir / f"{settings.db_schema}-quix.log",
        name="quix peer",
    ).start()
    try:
        return _measure_drain(
            settings,
            expected,
            proc.alive,
            "quix peer",
            f"{settings.kafka_topic_prefix}quix-peer",
        )
    finally:
        proc.stop()


async def stored_rows(settings: Settings) -> int:
    """Rows in the namespace's raw tables."""
    conn = await connect(settings.admin_dsn())
    try:
        tables = " UNION ALL ".join(f"SELECT count(*) AS n FROM {t}" for t in RAW.values())
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        return int(await conn.fetchval(f"SELECT sum(n) FROM ({tables}) x"))
    finally:
        await conn.close()


async def _create_peer_rollup(settings: Settings) -> None:
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS peer_rollup_1m (feed text, device_id text, "
            "bucket timestamptz, reports bigint, gauge_avg double precision, "
            "gauge_max double precision, PRIMARY KEY (feed, device_id, bucket))"
        )
        await conn.execute("GRANT ALL ON peer_rollup_1m TO ioc_app")
    finally:
        await conn.close()


def committed(settings: Settings, group: str) -> int:
    """Messages of the feed topics a consumer group has committed (cheap to poll).

    All three contenders commit offsets only after their rows are in the database, so the
    group's committed total is their progress; counting rows instead (count(*) over a growing
    table every half second) would load the very database under test.
    """
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(librdkafka_admin(settings, "ioc-bench"))
    feeds = {settings.topic(s.name) for s in FEED_TOPICS.values()}
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    try:
        result = futures[group].result(timeout=10)
    except Exception:  # the group does not exist yet
        return 0
    parts: list[TopicPartition] = result.topic_partitions or []
    return sum(tp.offset for tp in parts if tp.topic in feeds and tp.offset > 0)


def _measure_drain(
    settings: Settings, expected: int, alive: Callable[[], bool], what: str, group: str
) -> float:
    """Messages per second the group committed, from its first commit (start-up and group
    join excluded) until everything is committed; then checks every row landed."""
    started = time.perf_counter()
    first = None
    while True:
        n = committed(settings, group)
        if n and first is None:
            first = (time.perf_counter(), n)
        if n >= expected:
            break
        if not alive():
            raise SystemExit(f"{what} exited after committing {n}/{expected}")
        if time.perf_counter() - started > 900:
            raise SystemExit(f"{what} drained only {n}/{expected} in 900 s")
        time.sleep(0.25)
    end = time.perf_counter()
    assert first is not None
    stored = asyncio.run(stored_rows(settings))
    if stored != expected:
        raise SystemExit(f"{what}: committed everything but {stored}/{expected} rows are stored")
    return (expected - first[1]) / max(end - first[0], 1e-6)


def measure(events: int, workers_list: list[int], repeat: int, log_dir: Path) -> dict[str, Any]:
    """One backlog; ``repeat`` rounds of raw, product (per worker count) and Quix drains.

    Rounds interleave the contenders so that machine noise hits them alike; the result
    holds every figure and the medians. Ratios are of medians measured in this one run.
    """
    result: dict[str, Any] = {
        "benchmark": "baselines",
        "scenario": SCENARIO,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "events": events,
        "repeat": repeat,
        "runs": {"raw": [], "quix": [], **{f"product_{w}w": [] for w in workers_list}},
    }
    tag = f"base{uuid.uuid4().hex[:6]}"
    settings = namespace(tag)
    asyncio.run(bootstrap(settings, SCENARIO))
    runs = result["runs"]
    try:
        rate = 120_000.0
        summary = run_simulation(
            settings,
            SimConfig(
                scenario=SCENARIO,
                mode="rate",
                rate=rate,
                duration_s=events / rate,
                progress=False,
                workers=2,
            ),
        )
        valid = sum(summary.stats.valid_by_feed.values())
        result["backlog_events"] = valid
        say(f"backlog: {valid:,} events produced")
        for r in range(repeat):
            raw = asyncio.run(raw_drain(settings.model_copy(update={"db_schema": tag}), valid, r))
            runs["raw"].append(round(raw))
            say(f"[{r + 1}/{repeat}] raw baseline (getmany -> orjson -> COPY): {raw:,.0f} ev/s")
            for workers in workers_list:
                # a fresh schema and consumer group per measurement, same backlog topics
                run_settings = settings.model_copy(update={"db_schema": f"{tag}w{workers}r{r}"})
                asyncio.run(bootstrap(run_settings, SCENARIO))
                rate_w = product_drain(run_settings, valid, workers, log_dir)
                runs[f"product_{workers}w"].append(round(rate_w))
                say(f"[{r + 1}/{repeat}] product, {workers} worker(s): {rate_w:,.0f} ev/s")
                asyncio.run(drop_schema(run_settings))
                _forget_group(consumer_group(settings), settings)
            quix_settings = settings.model_copy(update={"db_schema": f"{tag}q{r}"})
            asyncio.run(bootstrap(quix_settings, SCENARIO))
            quix = quix_drain(quix_settings, valid, log_dir)
            asyncio.run(drop_schema(quix_settings))
            _forget_group(f"{settings.kafka_topic_prefix}quix-peer", settings)
            if quix:
                runs["quix"].append(round(quix))
                say(f"[{r + 1}/{repeat}] Quix Streams peer: {quix:,.0f} ev/s")
    finally:
        asyncio.run(drop_namespace(settings))
    medians = {k: round(statistics.median(v)) for k, v in runs.items() if v}
    result["medians"] = medians
    products = {k: v for k, v in medians.items() if k.startswith("product_")}
    best_key = max(products, key=lambda k: products[k])
    result["events_per_s"] = products[best_key]
    result["best_product"] = best_key
    result["raw_baseline_events_per_s"] = medians["raw"]
    result["quix_events_per_s"] = medians.get("quix")
    result["ratio_to_raw"] = round(products[best_key] / medians["raw"], 3)
    if medians.get("quix"):
        result["ratio_to_quix"] = round(products[best_key] / medians["quix"], 3)
    if "product_1w" in medians and "product_2w" in medians:
        result["scale_out_2w_over_1w"] = round(medians["product_2w"] / medians["product_1w"], 3)
    return result


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    log_dir = Path("bench/out")
    log_dir.mkdir(parents=True, exist_ok=True)
    result = measure(args.events, [int(w) for w in args.workers.split(",")], args.repeat, log_dir)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "baselines.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    try:
        plot(result, RESULTS / "baselines.png")
    except ImportError:
        print("(matplotlib not installed: no plot; pip install -e '.[bench]')")
    return 0


def plot(result: dict[str, Any], path: Path) -> None:
    """Every drain of the run as a dot, the median as a bar, ratios to the raw baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {k: v for k, v in result["runs"].items() if v}
    names = list(runs)
    raw = result["medians"]["raw"]
    fig, ax = plt.subplots(figsize=(7, 4))
    medians = [result["medians"][k] / 1000 for k in names]
    ax.bar(names, medians, color=["#808080" if k == "raw" else "#3274D9" for k in names])
    for i, k in enumerate(names):
        ax.scatter([i] * len(runs[k]), [v / 1000 for v in runs[k]], color="black", s=12, zorder=3)
        ax.annotate(
            f"{result['medians'][k] / raw:.2f}x raw",
            (i, medians[i]),
            ha="center",
            va="bottom",
            xytext=(0, 4),
            textcoords="offset points",
        )
    ax.set_ylabel("events/s landed (thousands)")
    ax.set_title(
        f"Draining {result['backlog_events']:,} {result['scenario']} events, "
        f"{result['repeat']} rounds ({result['date'][:10]})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _forget_group(group: str, settings: Settings) -> None:
    """The next measurement drains the same backlog from the start: drop the group."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(librdkafka_admin(settings, "ioc-bench"))
    for future in admin.delete_consumer_groups([group], request_timeout=30).values():
        future.result()


if __name__ == "__main__":
    sys.exit(main())
