"""Benchmark: the whole pipeline against its baselines, at a series of offered rates.

For each offered rate (and worker count) the simulators produce yen-bai-2022 in load mode into
a private namespace while ``ioc worker`` processes consume it; every 2 s the harness samples

- rows committed by the workers (their ioc_events_written_total; end-to-end events/s is the
  median rate of that counter),
- consumer lag (their ioc_consumer_lag_messages): bounded, or growing,
- freshness = wall clock minus the newest event time stored (p50/p99),
- CPU seconds and RSS of each worker.

``--sustain S`` holds ``--sustain-rate`` for S seconds (the 5-minute target run), and
``--baselines N`` first drains one backlog of N events with the raw baseline, the product and
the Quix Streams peer, ``--repeat`` rounds (bench/baselines.py), so the ratios come from
this same run:

    .venv/bin/python bench/pipeline.py --baselines 1000000 --sustain 300

Prints a table and writes bench/results/pipeline.json (+ pipeline.png with matplotlib).
Needs the stack (`ioc stack up`) and, for the Quix peer, `make bench-venv`.
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

from bench_machine import machine, percentile, results_dir

from ioc.bootstrap import bootstrap, drop_namespace
from ioc.config import Settings, load_settings
from ioc.contract import metrics as m
from ioc.contract.tables import RAW
from ioc.db import connect
from ioc.processes import WorkerProcess, stop_all
from ioc.simulators.replay import describe
from ioc.simulators.run import SimConfig, Summary, run_simulation

RESULTS = results_dir()
SCENARIO = "yen-bai-2022"


async def newest_event_age(settings: Settings) -> float | None:
    """Freshness: wall clock minus the newest event time stored (cheap: the ts-first key)."""
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        newest = None
        for table in RAW.values():
            ts = await conn.fetchval(f"SELECT max(ts) FROM {table}")
            if ts is not None and (newest is None or ts.timestamp() > newest):
                newest = ts.timestamp()
        return (time.time() - newest) if newest is not None else None
    finally:
        await conn.close()


def worker_counters(workers: list[WorkerProcess]) -> tuple[float, float]:
    """Rows written (committed) and consumer lag, summed over the workers' /metrics.

    Read from the workers rather than counted in the database: a count(*) of millions of
    rows every 2 s would load the database under test.
    """
    written = lag = 0.0
    for w in workers:
        try:
            totals = w.metric_totals()
        except OSError:
            continue
        written += totals.get(m.EVENTS_WRITTEN.series, 0.0)
        lag += totals.get(m.CONSUMER_LAG.series, 0.0)
    return written, lag


def proc_stats(pid: int | None) -> tuple[float, float]:
    """CPU seconds (user + system) and RSS MiB of a process and its live children, the CPU
    including the children it reaped (PostgreSQL's backends come and go); zeros without
    psutil or the process."""
    try:
        import psutil
    except ImportError:
        return 0.0, 0.0
    if pid is None:
        return 0.0, 0.0
    try:
        proc = psutil.Process(pid)
        own = proc.cpu_times()
        cpu = own.user + own.system + own.children_user + own.children_system
        rss = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                times, mem = child.cpu_times(), child.memory_info()
            except psutil.Error:  # a child that ended meanwhile: its parent reaps it
                continue
            cpu += times.user + times.system
            rss += mem.rss
        return float(cpu), rss / 2**20
    except psutil.Error:
        return 0.0, 0.0


def stack_cpu_s(settings: Settings) -> dict[str, float]:
    """CPU seconds so far of the broker(s), the database and this process (the load
    generator runs in it, on a thread; the 2 s sampling is a small part)."""
    from ioc.deploy.local.stack import Stack

    services = Stack(settings).services
    return {
        "kafka": sum(
            proc_stats(svc.pid())[0] for n, svc in services.items() if n.startswith("kafka")
        ),
        "postgresql": proc_stats(services["timescaledb"].pid())[0],
        "load_generator": time.process_time(),
    }


async def disk_bytes(settings: Settings) -> dict[str, int]:
    """Bytes the namespace holds on disk now: raw hypertables, the 1-minute rollups (device
    and unit; the hourly and daily are views or continuous aggregates over them), and its
    Kafka topics' log segments."""
    from ioc.contract.tables import ROLLUP_DEVICE_1M, ROLLUP_UNIT_1M
    from ioc.deploy.local.stack import Stack

    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")

        async def size(table: str) -> int:
            # a hypertable's bytes are in its chunks; a plain table's in itself
            value = await conn.fetchval(
                "SELECT coalesce(hypertable_size(c.oid), pg_total_relation_size(c.oid)) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relname = $2",
                settings.db_schema,
                table,
            )
            return int(value or 0)

        raw = sum([await size(t) for t in RAW.values()])
        rollups = sum(
            [await size(t) for t in [*ROLLUP_DEVICE_1M.values(), *ROLLUP_UNIT_1M.values()]]
        )
    finally:
        await conn.close()
    kafka = 0
    for name, svc in Stack(settings).services.items():
        data = getattr(svc, "data_dir", None)
        if name.startswith("kafka") and isinstance(data, Path) and data.is_dir():
            for part in data.glob(f"{settings.kafka_topic_prefix}*"):
                kafka += sum(f.stat().st_size for f in part.glob("*.log"))
    return {"raw": raw, "rollups": rollups, "kafka": kafka}


def costs(
    cpu0: dict[str, float], cpu1: dict[str, float], disk: dict[str, int], events: float
) -> dict[str, Any]:
    """Per 1,000 events: each component's CPU seconds; per event: bytes on disk."""
    per = 1000 / events if events else 0.0
    return {
        "events": round(events),
        "cpu_s_per_1000_events": {k: round((cpu1[k] - cpu0[k]) * per, 4) for k in cpu1},
        "disk_bytes_per_event": {
            k: round(v / events, 1) if events else None for k, v in disk.items()
        },
    }


def run_point(
    rate: float, duration: float, workers: int, log_dir: Path, replay_cycle_s: float
) -> dict[str, Any]:
    tag = f"bench{uuid.uuid4().hex[:6]}"
    settings = load_settings().model_copy(
        update={"kafka_topic_prefix": f"{tag}.", "db_schema": tag}
    )
    asyncio.run(bootstrap(settings, SCENARIO))
    procs = [
        WorkerProcess(settings, SCENARIO, log_dir / f"{tag}-w{i}.log", f"w{i}").start()
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
                        replay_cycle_s=replay_cycle_s or None,
                    ),
                ),
            )
        )
        started = time.time()
        cpu0 = [proc_stats(w.pid)[0] for w in procs]
        stack0 = {**stack_cpu_s(settings), "worker": sum(cpu0)}
        thread.start()
        samples: list[tuple[float, float, float | None, float]] = []
        last_note = time.time()
        while thread.is_alive():
            time.sleep(2)
            written, lag = worker_counters(procs)
            fresh = asyncio.run(newest_event_age(settings))
            samples.append((time.time() - started, written, fresh, lag))
            if time.time() - last_note >= 30:
                last_note = time.time()
                print(
                    f"  {samples[-1][0]:.0f} s: {written:,.0f} rows, lag {lag:,.0f}, "
                    f"freshness {fresh if fresh is None else round(fresh, 1)} s",
                    file=sys.stderr,
                    flush=True,
                )
        thread.join()
        cpu1 = [proc_stats(w.pid) for w in procs]
        summary = result["s"]
        # drain: how long until everything produced has landed
        produced = sum(summary.stats.valid_by_feed.values())
        drain_started = time.time()
        while time.time() - drain_started < 120:
            if worker_counters(procs)[0] >= produced:
                break
            time.sleep(1)
        drain_s = time.time() - drain_started
        # the cost of what was produced: from the load's start until it had all landed
        stack1 = {
            **stack_cpu_s(settings),
            "worker": sum(proc_stats(w.pid)[0] for w in procs),
        }
        cost = costs(stack0, stack1, asyncio.run(disk_bytes(settings)), produced)
        steady = [s for s in samples if s[0] >= 10]  # skip the first 10 s (warm-up)
        rates = [
            (b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(steady) if b[0] > a[0]
        ]
        fresh_values = sorted(s[2] for s in steady if s[2] is not None)
        # Lag (messages behind the end of the topics, from the workers) bounded or growing:
        # the last third's median must not exceed the first third's by 2 s of input.
        lags = [s[3] for s in steady]
        third = max(1, len(lags) // 3)
        growing = len(lags) >= 3 and statistics.median(lags[-third:]) > (
            statistics.median(lags[:third]) + rate * 2
        )
        return {
            "offered": rate,
            "workers": workers,
            "produced": produced,
            "achieved_events_per_s": round(statistics.median(rates)) if rates else 0,
            "freshness_p50_s": round(fresh_values[len(fresh_values) // 2], 2)
            if fresh_values
            else None,
            "freshness_p99_s": None
            if (p99 := percentile(fresh_values, 0.99)) is None
            else round(p99, 2),
            "lag_growing": growing,
            "drain_s": round(drain_s, 1),
            "worker_cpu_per_s": [
                round((c[0] - c0) / summary.elapsed_s, 2) for c, c0 in zip(cpu1, cpu0, strict=False)
            ],
            "worker_rss_mib": [round(c[1]) for c in cpu1],
            "cost": cost,
            "lag_median": round(statistics.median(lags)) if lags else None,
            "lag_max": round(max(lags)) if lags else None,
            "samples": [
                (round(a, 1), round(b), None if c is None else round(c, 2), round(d))
                for a, b, c, d in samples
            ],
        }
    finally:
        stop_all(procs)
        asyncio.run(drop_namespace(settings))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="10000,20000,30000,40000")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument(
        "--sustain", type=float, default=0, help="also hold --sustain-rate for this many s"
    )
    parser.add_argument("--sustain-rate", type=float, default=30_000)
    parser.add_argument("--sustain-workers", type=int, default=2)
    parser.add_argument(
        "--baselines",
        type=int,
        default=0,
        metavar="EVENTS",
        help="first drain a backlog of EVENTS with the raw baseline, the product and the "
        "Quix Streams peer (bench/baselines.py) in this same run",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the baselines")
    parser.add_argument(
        "--replay-cycle",
        type=float,
        default=10.0,
        help="s of simulated load generated once and replayed (ioc.simulators.replay), so the "
        "load generator leaves the cores to the pipeline; 0: simulate all the way",
    )
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw the plot from the result JSON"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "pipeline.json")
    args = parser.parse_args()
    if args.plot_only:
        saved = json.loads(args.out.read_text())
        extra = [saved["sustained"]] if saved.get("sustained") else []
        plot(saved["points"] + extra, saved.get("baselines"), args.out)
        return 0
    log_dir = Path("bench/out")
    log_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "pipeline",
        "scenario": SCENARIO,
        "duration_s": args.duration,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "load_generator": describe(args.replay_cycle),
    }
    if args.baselines:
        from baselines import measure

        base = measure(args.baselines, [1, 2], args.repeat, log_dir)
        result["baselines"] = {k: v for k, v in base.items() if k != "machine"}
    points = []
    for workers in [int(w) for w in args.workers.split(",") if w]:
        for rate in [float(r) for r in args.rates.split(",") if r]:
            points.append(
                announce(
                    run_point(rate, args.duration, workers, log_dir, args.replay_cycle),
                    args.duration,
                )
            )
    sustained = None
    if args.sustain:
        sustained = announce(
            run_point(
                args.sustain_rate, args.sustain, args.sustain_workers, log_dir, args.replay_cycle
            ),
            args.sustain,
        )
        result["sustained"] = sustained
    result["points"] = points
    ok = [p for p in points if not p["lag_growing"]]
    if sustained is not None and not sustained["lag_growing"]:
        ok.append(sustained)
    best = max(
        ok or points or ([sustained] if sustained else []), key=lambda p: p["achieved_events_per_s"]
    )
    result["events_per_s"] = best["achieved_events_per_s"]
    result["events_per_s_from"] = (
        f"{best['workers']} worker(s) at {best['offered']:,.0f} offered for {best['duration_s']} s"
    )
    result["freshness_p99_s"] = best["freshness_p99_s"]
    # issue 18 goal 6: cost per event at the sustained point (else the best point)
    costed = sustained if sustained is not None else best
    result["cost_per_event_from"] = (
        f"{costed['workers']} worker(s) at {costed['offered']:,.0f} offered for "
        f"{costed['duration_s']} s"
    )
    result["cpu_s_per_1000_events"] = costed["cost"]["cpu_s_per_1000_events"]
    result["disk_bytes_per_event"] = costed["cost"]["disk_bytes_per_event"]
    result["lag_growing"] = best["lag_growing"]
    if "baselines" in result:
        b = result["baselines"]
        result["raw_baseline_events_per_s"] = b["raw_baseline_events_per_s"]
        result["quix_events_per_s"] = b["quix_events_per_s"]
        result["drain_events_per_s"] = b["events_per_s"]
        result["ratio_to_raw"] = b["ratio_to_raw"]
        result["ratio_to_quix"] = b.get("ratio_to_quix")
        for key in ("pathway", "faust_agent"):
            result[f"{key}_events_per_s"] = b.get(f"{key}_events_per_s")
            result[f"ratio_to_{key}"] = b.get(f"ratio_to_{key}")
        result["scale_out_2w_over_1w"] = b.get("scale_out_2w_over_1w")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(
        f"\n{'workers':>7} {'offered':>9} {'seconds':>7} {'achieved':>9} {'fresh p50':>9} "
        f"{'fresh p99':>9} {'lag':>8}"
    )
    for p in [*points, *([sustained] if sustained else [])]:
        print(
            f"{p['workers']:>7} {p['offered']:>9,.0f} {p['duration_s']:>7.0f} "
            f"{p['achieved_events_per_s']:>9,} {p['freshness_p50_s']!s:>9} "
            f"{p['freshness_p99_s']!s:>9} {'growing' if p['lag_growing'] else 'bounded':>8}"
        )
    print(
        f"best sustained: {result['events_per_s']:,} events/s ({result['events_per_s_from']}), "
        f"freshness p99 {result['freshness_p99_s']} s"
    )
    if "baselines" in result:
        print(
            f"drain, same backlog, medians of {args.repeat}: product "
            f"{result['drain_events_per_s']:,} ev/s = {result['ratio_to_raw']}x raw "
            f"({result['raw_baseline_events_per_s']:,}), {result['ratio_to_quix']}x Quix "
            f"({result['quix_events_per_s']}), {result['ratio_to_pathway']}x Pathway "
            f"({result['pathway_events_per_s']}), {result['ratio_to_faust_agent']}x Faust "
            f"agent ({result['faust_agent_events_per_s']}); 2 workers / 1 worker "
            f"{result['scale_out_2w_over_1w']}"
        )
    print(
        f"cost ({result['cost_per_event_from']}): CPU s per 1,000 events "
        + ", ".join(f"{k} {v}" for k, v in result["cpu_s_per_1000_events"].items())
        + "; bytes on disk per event "
        + ", ".join(f"{k} {v}" for k, v in result["disk_bytes_per_event"].items())
    )
    try:
        plot(points + ([sustained] if sustained else []), result.get("baselines"), args.out)
    except ImportError:
        print("(matplotlib not installed: no plot; pip install -e '.[bench]')")
    return 0


def announce(point: dict[str, Any], duration: float) -> dict[str, Any]:
    point["duration_s"] = duration
    print(
        f"{point['workers']} worker(s), offered {point['offered']:,.0f} ev/s for {duration:.0f} s:"
        f" achieved {point['achieved_events_per_s']:,} ev/s, freshness p50 "
        f"{point['freshness_p50_s']} s p99 {point['freshness_p99_s']} s, lag "
        f"{'GROWING' if point['lag_growing'] else 'bounded'} (median {point['lag_median']}), "
        f"drained in {point['drain_s']} s, worker CPU {point['worker_cpu_per_s']} cores, "
        f"RSS {point['worker_rss_mib']} MiB; CPU s per 1,000 events "
        f"{point['cost']['cpu_s_per_1000_events']}, bytes per event "
        f"{point['cost']['disk_bytes_per_event']}",
        file=sys.stderr,
        flush=True,
    )
    return point


def plot(
    points: list[dict[str, Any]],
    baselines: dict[str, Any] | None = None,
    out: Path = RESULTS / "pipeline.json",
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (thr, lag), (fresh, drain) = axes
    sweep = [p for p in points if p.get("duration_s", 0) <= 120]
    long_runs = [p for p in points if p.get("duration_s", 0) > 120]
    for workers in sorted({p["workers"] for p in sweep}):
        mine = sorted((p for p in sweep if p["workers"] == workers), key=lambda p: p["offered"])
        label = f"{workers} worker(s)"
        offered = [p["offered"] for p in mine]
        thr.plot(offered, [p["achieved_events_per_s"] for p in mine], "o-", label=label)
        lag.plot(offered, [p["lag_median"] or 0 for p in mine], "o-", label=label)
        fresh.plot(offered, [p["freshness_p99_s"] for p in mine], "o-", label=label)
    for p in long_runs:
        label = f"{p['workers']} worker(s), {p['duration_s'] / 60:.0f} min"
        thr.plot([p["offered"]], [p["achieved_events_per_s"]], "r*", markersize=14, label=label)
        lag.plot([p["offered"]], [p["lag_median"] or 0], "r*", markersize=14, label=label)
        fresh.plot([p["offered"]], [p["freshness_p99_s"]], "r*", markersize=14, label=label)
    if points:
        top = max(p["offered"] for p in points)
        thr.plot([0, top], [0, top], "--", color="grey", label="landed = offered")
    thr.set(xlabel="offered events/s", ylabel="rows landed per second (median)")
    thr.set_title("End-to-end throughput (yen-bai-2022, Kafka + DB on the same 2 cores)")
    lag.set(xlabel="offered events/s", ylabel="consumer lag, median (messages)")
    lag.set_title("Consumer lag")
    fresh.axhline(5, color="red", linewidth=0.8, label="goal: p99 < 5 s")
    fresh.set(xlabel="offered events/s", ylabel="freshness p99 (s)")
    fresh.set_title("Now minus newest stored event time")
    if baselines:
        med = baselines["medians"]
        names = [
            ("raw", "raw baseline"),
            ("product_1w", "product\n1 worker"),
            ("product_2w", "product\n2 workers"),
            ("quix", "Quix Streams\npeer"),
            ("pathway", "Pathway\npeer"),
            ("faust", "Faust agent\npeer"),
        ]
        shown = [(label, med[k]) for k, label in names if k in med]
        colors = ["grey", "C0", "C1", "C2", "C3", "C4"][: len(shown)]
        drain.bar([s[0] for s in shown], [s[1] for s in shown], color=colors)
        for i, (_label, value) in enumerate(shown):
            drain.text(i, value, f"{value:,}", ha="center", va="bottom")
        drain.set_ylabel("events/s draining the same backlog (median)")
        drain.set_title(f"Same backlog, same run ({baselines['repeat']} rounds)")
    else:
        drain.axis("off")
    for ax in (thr, lag, fresh):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out.with_suffix(".png")
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
