"""Benchmark: the pipeline against a minimal raw pipeline, on the same backlog, in one run.

1. The simulators produce a backlog of yen-bai-2022 events into a private namespace.
2. Raw baseline (the practical ceiling for Python here): aiokafka ``getmany`` -> orjson ->
   asyncpg COPY into one table, no validation, no aggregation.
3. The product: ``ioc worker`` process(es) drain the same backlog into the raw tables.

Each drain rate is events landed per second; the ratio product/raw is what to compare
(machines are shared: absolute numbers move, ratios measured in one run hold better).

    .venv/bin/python bench/baselines.py [--events 300000] [--workers 1,2]

4. The peers drain the same backlog into their own schemas, measured like the product, each
   doing the product's work (bench/peer_work.py: validation, dead letters, raw rows, the
   1-minute device rollup): Quix Streams (bench/quix_peer.py) and Pathway
   (bench/pathway_peer.py), each in its own virtualenv from `make bench-venv`, and a plain
   faust-streaming agent with ``stream.take_events`` (bench/faust_agent_peer.py).

    .venv/bin/python bench/baselines.py --events 200000 --repeat 1 --peers quix,faust

Writes bench/results/baselines.json and baselines.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
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
from ioc.contract import feeds
from ioc.contract.tables import RAW, ROLLUP_DEVICE_1M
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


ROOT = Path(__file__).resolve().parent.parent
PEERS: dict[str, tuple[Path, str, str]] = {
    # name: (its interpreter, its script, its consumer group after the topic prefix)
    "quix": (ROOT / ".venv-quix" / "bin" / "python", "quix_peer.py", "quix-peer"),
    "pathway": (ROOT / ".venv-pathway" / "bin" / "python", "pathway_peer.py", "pathway-peer"),
    "faust": (Path(sys.executable), "faust_agent_peer.py", "faust-agent-peer"),
}
"""The peers (each doing bench/peer_work.py), the interpreter of their own virtualenv."""
PEER_TITLES = {"quix": "Quix Streams", "pathway": "Pathway", "faust": "Faust agent"}


def peer_drain(name: str, settings: Settings, expected: int, log_dir: Path) -> float | None:
    """One peer drains the backlog into its own schema, measured exactly like the product."""
    python, script, group = PEERS[name]
    if not python.exists():
        print(f"{PEER_TITLES[name]} peer skipped: run `make bench-venv` first", file=sys.stderr)
        return None
    args = [str(python), str(Path(__file__).with_name(script))]
    args += ["--prefix", settings.kafka_topic_prefix, "--schema", settings.db_schema]
    if name != "faust":  # the peers in other virtualenvs cannot load the product's settings
        args += [
            "--bootstrap",
            settings.bootstrap_servers,
            "--credentials",
            str(settings.stack_credentials_path("timescaledb")),
            "--port",
            str(settings.postgres_port),
        ]
    proc = Process(args, log_dir / f"{settings.db_schema}-{name}.log", name=f"{name} peer").start()
    try:
        return _measure_drain(
            settings,
            expected,
            proc.alive,
            f"{name} peer",
            f"{settings.kafka_topic_prefix}{group}",
        )
    finally:
        proc.stop()


async def rollup_mismatches(settings: Settings) -> tuple[int, int]:
    """(device-minutes, mismatches): a peer's ``rollup_<feed>_1m`` against the product's own
    device rollup expressions run over the peer's raw rows (reals to float4 precision)."""
    conn = await connect(settings.admin_dsn())
    checked = bad = 0
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        for feed in RAW:
            spec = feeds.spec(feed)
            cols = ", ".join(a.name for a in spec.device_rollup)
            want = {
                (r[0], r[1]): tuple(r[2:])
                for r in await conn.fetch(
                    f"SELECT date_bin('1 minute', ts, 'epoch'), device_id, "
                    f"{', '.join(a.expr for a in spec.device_rollup)} FROM {RAW[feed]} "
                    "GROUP BY 1, 2"
                )
            }
            got = {
                (r[0], r[1]): tuple(r[2:])
                for r in await conn.fetch(
                    f"SELECT bucket, device_id, {cols} FROM {ROLLUP_DEVICE_1M[feed]}"
                )
            }
            checked += len(want)
            bad += len(want.keys() ^ got.keys())
            for k in want.keys() & got.keys():
                if not all(_same(a, b) for a, b in zip(want[k], got[k], strict=True)):
                    bad += 1
                    if bad <= 3:  # enough to see which column drifts
                        say(f"  {feed} {k}: product {want[k]} peer {got[k]}")
    finally:
        await conn.close()
    return checked, bad


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
    return bool(a == b)


async def stored_rows(settings: Settings) -> int:
    """Rows in the namespace's raw tables."""
    conn = await connect(settings.admin_dsn())
    try:
        tables = " UNION ALL ".join(f"SELECT count(*) AS n FROM {t}" for t in RAW.values())
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        return int(await conn.fetchval(f"SELECT sum(n) FROM ({tables}) x"))
    finally:
        await conn.close()


def committed(settings: Settings, group: str) -> int:
    """Messages of the feed topics a consumer group has committed (cheap to poll).

    Every contender commits offsets only after their rows are in the database, so the
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


def produce_backlog(settings: Settings, events: int) -> int:
    """About ``events`` of the scenario's messages into the namespace's topics, as fast as the
    simulators go (two processes): the backlog every contender drains. Returns the valid ones."""
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
    return sum(summary.stats.valid_by_feed.values())


def measure(
    events: int,
    workers_list: list[int],
    repeat: int,
    log_dir: Path,
    peers: list[str] | None = None,
) -> dict[str, Any]:
    """One backlog; ``repeat`` rounds of raw, product (per worker count) and peer drains
    (``peers``: default all of :data:`PEERS`; those not installed are skipped).

    Rounds interleave the contenders so that machine noise hits them alike; the result
    holds every figure and the medians. Ratios are of medians measured in this one run.
    """
    peers = list(PEERS) if peers is None else peers
    result: dict[str, Any] = {
        "benchmark": "baselines",
        "scenario": SCENARIO,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "events": events,
        "repeat": repeat,
        "peers": peers,
        "rollup_check": {},
        "runs": {
            "raw": [],
            **{f"product_{w}w": [] for w in workers_list},
            **{p: [] for p in peers},
        },
    }
    tag = f"base{uuid.uuid4().hex[:6]}"
    settings = namespace(tag)
    asyncio.run(bootstrap(settings, SCENARIO))
    runs = result["runs"]
    try:
        valid = produce_backlog(settings, events)
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
                forget_group(consumer_group(settings), settings)
            for peer in peers:
                peer_settings = settings.model_copy(update={"db_schema": f"{tag}{peer[0]}{r}"})
                asyncio.run(bootstrap(peer_settings, SCENARIO))
                try:
                    got = peer_drain(peer, peer_settings, valid, log_dir)
                except SystemExit as exc:  # one broken peer must not lose the others' round
                    say(f"[{r + 1}/{repeat}] {PEER_TITLES[peer]} peer failed: {exc}")
                    got = None
                if got == 0:  # its first commit already held the whole backlog
                    say(f"[{r + 1}/{repeat}] {PEER_TITLES[peer]} peer: backlog too small to time")
                if got:
                    checked, bad = asyncio.run(rollup_mismatches(peer_settings))
                    result["rollup_check"][peer] = {"device_minutes": checked, "mismatches": bad}
                    say(f"[{r + 1}/{repeat}] {peer}: {bad} of {checked} device-minutes differ")
                asyncio.run(drop_schema(peer_settings))
                forget_group(f"{settings.kafka_topic_prefix}{PEERS[peer][2]}", settings)
                if got:
                    runs[peer].append(round(got))
                    say(f"[{r + 1}/{repeat}] {PEER_TITLES[peer]} peer: {got:,.0f} ev/s")
    finally:
        asyncio.run(drop_namespace(settings))
        # groups that were still leaving when their drain ended (nothing reads them again)
        stale = [f"{settings.kafka_topic_prefix}pathway-peer-read"]
        stale += [f"{settings.db_schema}-raw{r}" for r in range(repeat)]
        for group in stale:
            with contextlib.suppress(Exception):
                forget_group(group, settings)
    medians = {k: round(statistics.median(v)) for k, v in runs.items() if v}
    result["medians"] = medians
    products = {k: v for k, v in medians.items() if k.startswith("product_")}
    best_key = max(products, key=lambda k: products[k])
    result["events_per_s"] = products[best_key]
    result["best_product"] = best_key
    result["raw_baseline_events_per_s"] = medians["raw"]
    result["ratio_to_raw"] = round(products[best_key] / medians["raw"], 3)
    for peer, key in (("quix", "quix"), ("pathway", "pathway"), ("faust", "faust_agent")):
        result[f"{key}_events_per_s"] = medians.get(peer)
        if medians.get(peer):
            result[f"ratio_to_{key}"] = round(products[best_key] / medians[peer], 3)
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
    parser.add_argument(
        "--peers", default=",".join(PEERS), help="peers to measure (those installed of them)"
    )
    args = parser.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    if unknown := set(peers) - set(PEERS):
        parser.error(f"unknown peers: {', '.join(sorted(unknown))} (known: {', '.join(PEERS)})")
    log_dir = Path("bench/out")
    log_dir.mkdir(parents=True, exist_ok=True)
    result = measure(
        args.events, [int(w) for w in args.workers.split(",")], args.repeat, log_dir, peers
    )
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
    colors = {"raw": "#808080"}  # the products blue, the peers orange
    ax.bar(
        names,
        medians,
        color=[colors.get(k, "#3274D9" if k.startswith("product_") else "#E0752D") for k in names],
    )
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


def forget_group(group: str, settings: Settings) -> None:
    """The next measurement drains the same backlog from the start: drop the group."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(librdkafka_admin(settings, "ioc-bench"))
    for future in admin.delete_consumer_groups([group], request_timeout=30).values():
        try:
            future.result()
        except KafkaException as exc:  # a peer that failed before its first commit
            if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
                raise


if __name__ == "__main__":
    sys.exit(main())
