"""Benchmark: sustained end-to-end events/s of the stream pipeline, and data freshness.

For each offered rate, the simulators produce yen-bai-2022 in load mode into a private
namespace while ``ioc worker`` processes consume it; the harness samples every 2 s:

- rows landed in the raw tables (end-to-end events/s = rows landed per second),
- freshness = wall clock minus the newest event time stored (p50/p99),
- backlog = messages produced minus rows landed (bounded or growing),
- CPU and RSS of each worker.

    .venv/bin/python bench/pipeline.py [--rates 2000,5000,10000] [--duration 60] [--workers 1]

Prints a table and writes bench/results/pipeline.json (+ pipeline.png with matplotlib).
Needs the stack (`ioc stack up`). Machines are shared: read the medians, compare in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_machine import machine  # type: ignore[import-not-found]
from integration.workers import Worker, drop_namespace

from ioc.config import Settings, load_settings
from ioc.contract.tables import RAW
from ioc.db import connect
from ioc.simulators.run import SimConfig, Summary, run_simulation
from ioc.streams.cli import prepare

RESULTS = Path(__file__).parent / "results"
SCENARIO = "yen-bai-2022"


async def sample(settings: Settings) -> tuple[int, float | None]:
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        counts = 0
        newest = None
        for table in RAW.values():
            # approximate row count is too coarse for short runs; count(*) on a fresh schema
            counts += await conn.fetchval(f"SELECT count(*) FROM {table}")
            ts = await conn.fetchval(f"SELECT max(ts) FROM {table}")
            if ts is not None and (newest is None or ts.timestamp() > newest):
                newest = ts.timestamp()
        return counts, (time.time() - newest) if newest is not None else None
    finally:
        await conn.close()


def proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds (user+system) and RSS MiB of a process and its children."""
    try:
        import psutil
    except ImportError:
        return 0.0, 0.0
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        cpu = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
        rss = sum(p.memory_info().rss for p in procs) / 2**20
        return cpu, rss
    except psutil.Error:
        return 0.0, 0.0


def run_point(rate: float, duration: float, workers: int, log_dir: Path) -> dict[str, Any]:
    tag = f"bench{uuid.uuid4().hex[:6]}"
    settings = load_settings().model_copy(
        update={"kafka_topic_prefix": f"{tag}.", "db_schema": tag}
    )
    asyncio.run(prepare(settings, SCENARIO))
    procs = [
        Worker(settings, SCENARIO, log_dir / f"{tag}-w{i}.log", f"w{i}").start()
        for i in range(workers)
    ]
    try:
        time.sleep(10)  # join the group before load starts
        result: dict[str, Summary] = {}
        thread = threading.Thread(
            target=lambda: result.setdefault(
                "s",
                run_simulation(
                    settings,
                    SimConfig(
                        scenario=SCENARIO,
                        mode="rate",
                        rate=rate,
                        duration_s=duration,
                        progress=False,
                        workers=1,
                    ),
                ),
            )
        )
        started = time.time()
        cpu0 = [proc_stats(w.proc.pid)[0] for w in procs if w.proc]
        thread.start()
        samples: list[tuple[float, int, float | None]] = []
        while thread.is_alive():
            time.sleep(2)
            landed, fresh = asyncio.run(sample(settings))
            samples.append((time.time() - started, landed, fresh))
        thread.join()
        cpu1 = [proc_stats(w.proc.pid) for w in procs if w.proc]
        summary = result["s"]
        # drain: how long until everything produced has landed
        produced = sum(summary.stats.valid_by_feed.values())
        drain_started = time.time()
        while time.time() - drain_started < 120:
            landed, fresh = asyncio.run(sample(settings))
            if landed >= produced:
                break
            time.sleep(1)
        drain_s = time.time() - drain_started
        steady = [s for s in samples if s[0] >= 10]  # skip the first 10 s (warm-up)
        rates = [
            (b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(steady) if b[0] > a[0]
        ]
        fresh_values = sorted(s[2] for s in steady if s[2] is not None)
        backlog = [summary.sent * (s[0] / summary.elapsed_s) - s[1] for s in steady]
        half = len(backlog) // 2
        growing = bool(backlog) and statistics.median(backlog[half:]) > (
            statistics.median(backlog[:half] or [0]) + rate * 2
        )
        return {
            "offered": rate,
            "workers": workers,
            "produced": produced,
            "achieved_events_per_s": round(statistics.median(rates)) if rates else 0,
            "freshness_p50_s": round(fresh_values[len(fresh_values) // 2], 2)
            if fresh_values
            else None,
            "freshness_p99_s": round(
                fresh_values[min(len(fresh_values) - 1, int(0.99 * len(fresh_values)))], 2
            )
            if fresh_values
            else None,
            "lag_growing": growing,
            "drain_s": round(drain_s, 1),
            "worker_cpu_per_s": [
                round((c[0] - c0) / summary.elapsed_s, 2) for c, c0 in zip(cpu1, cpu0, strict=False)
            ],
            "worker_rss_mib": [round(c[1]) for c in cpu1],
            "samples": [
                (round(a, 1), b, None if c is None else round(c, 2)) for a, b, c in samples
            ],
        }
    finally:
        for w in procs:
            w.stop()
        asyncio.run(drop_namespace(settings))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="2000,5000,10000")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--workers", default="1")
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw the plot from bench/results/pipeline.json"
    )
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads((RESULTS / "pipeline.json").read_text())["points"])
        return 0
    log_dir = Path("bench/out")
    log_dir.mkdir(parents=True, exist_ok=True)
    points = []
    for workers in [int(w) for w in args.workers.split(",")]:
        for rate in [float(r) for r in args.rates.split(",")]:
            print(
                f"offered {rate:,.0f} ev/s with {workers} worker(s) for {args.duration:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            point = run_point(rate, args.duration, workers, log_dir)
            print(
                f"  achieved {point['achieved_events_per_s']:,} ev/s, freshness p50 "
                f"{point['freshness_p50_s']} s p99 {point['freshness_p99_s']} s, lag "
                f"{'GROWING' if point['lag_growing'] else 'bounded'}, drained in "
                f"{point['drain_s']} s, worker CPU {point['worker_cpu_per_s']} cores, "
                f"RSS {point['worker_rss_mib']} MiB",
                file=sys.stderr,
                flush=True,
            )
            points.append(point)
    sustained = [p for p in points if not p["lag_growing"]]
    best = max(sustained or points, key=lambda p: p["achieved_events_per_s"])
    result = {
        "benchmark": "pipeline",
        "scenario": SCENARIO,
        "duration_s": args.duration,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "events_per_s": best["achieved_events_per_s"],
        "freshness_p99_s": best["freshness_p99_s"],
        "lag_growing": best["lag_growing"],
        "points": points,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2))
    print(
        f"\n{'workers':>7} {'offered':>9} {'achieved':>9} {'fresh p50':>9} {'fresh p99':>9} "
        f"{'lag':>8}"
    )
    for p in points:
        print(
            f"{p['workers']:>7} {p['offered']:>9,.0f} {p['achieved_events_per_s']:>9,} "
            f"{p['freshness_p50_s']!s:>9} {p['freshness_p99_s']!s:>9} "
            f"{'growing' if p['lag_growing'] else 'bounded':>8}"
        )
    print(
        f"best sustained: {best['achieved_events_per_s']:,} events/s "
        f"(freshness p99 {best['freshness_p99_s']} s)"
    )
    try:
        plot(points)
    except ImportError:
        print("(matplotlib not installed: no plot; pip install -e '.[bench]')")
    return 0


def plot(points: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.3))
    for workers in sorted({p["workers"] for p in points}):
        mine = [p for p in points if p["workers"] == workers]
        left.plot(
            [p["offered"] for p in mine],
            [p["achieved_events_per_s"] for p in mine],
            "o-",
            label=f"{workers} worker(s)",
        )
        right.plot(
            [p["offered"] for p in mine],
            [p["freshness_p99_s"] for p in mine],
            "o-",
            label=f"{workers} worker(s)",
        )
    top = max(p["offered"] for p in points)
    left.plot([0, top], [0, top], "--", color="grey", label="offered = landed")
    left.set_xlabel("offered events/s")
    left.set_ylabel("rows landed per second (median)")
    left.set_title("End-to-end throughput (yen-bai-2022)")
    right.axhline(5, color="red", linewidth=0.8, label="goal: p99 < 5 s")
    right.set_xlabel("offered events/s")
    right.set_ylabel("freshness p99 (s)")
    right.set_title("Now minus newest stored event time")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = RESULTS / "pipeline.png"
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
