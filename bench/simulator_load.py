"""Benchmark: how many events/s the simulators produce to the local Kafka.

Runs ``ioc simulate`` in load mode (yen-bai-2022) at a series of offered rates with 1 and 2
worker processes, repeats each point, and prints the median achieved rate and produce
latency. Machines are shared and noisy: compare the medians within one run.

    .venv/bin/python bench/simulator_load.py [--duration 10] [--repeat 3] [--rates 50000,...]

Writes bench/results/simulator_load.json (and a PNG plot when matplotlib is installed).
Needs the stack: `ioc stack up`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench_machine import machine, results_dir

from ioc.config import load_settings
from ioc.contract.topics import ALL_TOPICS
from ioc.kafka import delete_topics, ensure_topics
from ioc.simulators.run import SimConfig, run_simulation

RESULTS = results_dir()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rates", default="50000,100000,150000")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--scenario", default="yen-bai-2022")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]

    tag = f"bench{uuid.uuid4().hex[:6]}"
    settings = load_settings().model_copy(update={"kafka_topic_prefix": f"{tag}."})
    asyncio.run(ensure_topics(settings, ALL_TOPICS))
    points: list[dict[str, Any]] = []
    try:
        for workers in worker_counts:
            for rate in rates:
                runs: list[dict[str, Any]] = []
                for rep in range(args.repeat):
                    cpu_before = os.times()
                    summary = run_simulation(
                        settings,
                        SimConfig(
                            scenario=args.scenario,
                            mode="rate",
                            rate=rate,
                            duration_s=args.duration,
                            workers=workers,
                            progress=False,
                        ),
                    )
                    cpu_after = os.times()
                    cpu = (
                        cpu_after.user
                        + cpu_after.children_user
                        - cpu_before.user
                        - cpu_before.children_user
                    )
                    runs.append(
                        {
                            "achieved": summary.events_per_s,
                            "sent": summary.sent,
                            "errors": summary.errors,
                            "p50_ms": summary.latency_p50_ms,
                            "p99_ms": summary.latency_p99_ms,
                            "cpu_s_per_s": round(cpu / summary.elapsed_s, 2),
                        }
                    )
                    print(
                        f"workers={workers} offered={rate:>9,.0f} rep={rep + 1}: "
                        f"{summary.events_per_s:>9,.0f} ev/s  p50 {summary.latency_p50_ms} ms"
                        f"  p99 {summary.latency_p99_ms} ms  errors {summary.errors}",
                        file=sys.stderr,
                        flush=True,
                    )
                point = {
                    "workers": workers,
                    "offered": rate,
                    "achieved_median": round(statistics.median(r["achieved"] for r in runs)),
                    "latency_p50_ms_median": statistics.median(r["p50_ms"] or 0 for r in runs),
                    "latency_p99_ms_median": statistics.median(r["p99_ms"] or 0 for r in runs),
                    "errors": sum(r["errors"] for r in runs),
                    "runs": runs,
                }
                points.append(point)
    finally:
        asyncio.run(delete_topics(settings, [settings.topic(t.name) for t in ALL_TOPICS]))

    best = max(points, key=lambda p: p["achieved_median"])
    result = {
        "benchmark": "simulator_load",
        "scenario": args.scenario,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": args.duration,
        "repeat": args.repeat,
        "machine": machine(),
        "best_events_per_s": best["achieved_median"],
        "best_workers": best["workers"],
        "points": points,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "simulator_load.json").write_text(json.dumps(result, indent=2))
    print(f"\n{'workers':>7} {'offered':>10} {'achieved (median)':>18} {'p50 ms':>7} {'p99 ms':>7}")
    for p in points:
        print(
            f"{p['workers']:>7} {p['offered']:>10,.0f} {p['achieved_median']:>18,} "
            f"{p['latency_p50_ms_median']:>7} {p['latency_p99_ms_median']:>7}"
        )
    print(
        f"best: {best['achieved_median']:,} events/s with {best['workers']} worker(s) "
        f"on {result['machine']['cores']} cores"
    )
    try:
        plot(points, RESULTS / "simulator_load.png")
    except ImportError:
        print("(matplotlib not installed: no plot; pip install -e '.[bench]')")
    return 0


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for workers in sorted({p["workers"] for p in points}):
        mine = [p for p in points if p["workers"] == workers]
        ax.plot(
            [p["offered"] for p in mine],
            [p["achieved_median"] for p in mine],
            "o-",
            label=f"{workers} worker(s)",
        )
    top = max(p["offered"] for p in points)
    ax.plot([0, top], [0, top], "--", color="grey", label="offered = achieved")
    ax.axhline(100_000, color="red", linewidth=0.8, label="target 100k ev/s")
    ax.set_xlabel("offered events/s")
    ax.set_ylabel("achieved events/s (median)")
    ax.set_title("Simulator load mode into local Kafka (yen-bai-2022)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
