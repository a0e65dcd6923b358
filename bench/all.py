"""Every benchmark of the performance issue in one command, and one summary of its goals.

    .venv/bin/python bench/all.py             # make bench: hours; writes bench/results/
    .venv/bin/python bench/all.py --quick     # make bench-quick: about 10 minutes, small
                                              # sizes; writes bench/out/quick/, not results/
    .venv/bin/python bench/all.py --summary-only   # the summary of the results already there

Runs the benchmarks one after another (each prints its own figures), then gathers the keys
the issue asks for from their result files into ``summary.json``, with each goal's target,
the measured figure and whether it is met, and draws ``summary.png`` (every goal as measured
over target, the pass line at 1). A benchmark that exits non-zero (it failed, or it judged
one of its own goals missed, as bench/history.py does) is reported and the others still run;
the exit status is 1 when one did or a goal is missed.

``IOC_BENCH_RESULTS`` (set here for ``--quick``) is where every benchmark writes
(bench_machine.results_dir). Needs the stack (`ioc stack up`); the peers need
`make bench-venv`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_machine import machine

from ioc.bootstrap import drop_schema
from ioc.config import Settings, load_settings

BENCH = Path(__file__).resolve().parent
QUICK_RESULTS = BENCH / "out" / "quick"
HISTORY_QUICK_SCHEMA = "bench_history_quick"
SUSTAIN_GOAL_S = 600.0


@dataclass(frozen=True)
class Step:
    """One benchmark invocation: what it measures, its script and its arguments."""

    name: str
    script: str
    args: str = ""


FULL: tuple[Step, ...] = (
    Step("load generator", "simulator_load.py"),
    # goals 1 and 3 (one backlog: raw, product, peers), 2 (sweep to saturation, then hold
    # 10 minutes), 6 (cost per event at the sustained point)
    Step(
        "hot path, peers, saturation, sustained, cost",
        "pipeline.py",
        "--baselines 1000000 --repeat 3 --rates 20000,40000,60000,80000 --workers 1,2 "
        "--sustain 600 --sustain-rate 75000",
    ),
    Step("join burst", "burst.py"),
    Step("device scale (goal 4)", "device_scale.py", "--worker"),
    # goal 5: 90 days of national history (most of an hour to load), then every panel
    Step("history: load 90 days", "history.py", "--generate"),
    Step("history: every panel (goal 5)", "history.py", "--time"),
    Step("history: monthly SLA report, whole country (goal 5)", "history.py", "--sla-only"),
)

QUICK_HISTORY = f"--scenario yen-bai-2022 --schema {HISTORY_QUICK_SCHEMA}"
QUICK: tuple[Step, ...] = (
    Step(
        "hot path, peers, sustained, cost (small)",
        "pipeline.py",
        "--baselines 100000 --repeat 1 --rates 20000 --workers 1 --duration 30 "
        "--sustain 45 --sustain-rate 20000",
    ),
    Step("device scale (1k, 10k)", "device_scale.py", "--sizes 1k,10k --rounds 9"),
    Step("history: 3 days of one province", "history.py", f"--generate --days 3 {QUICK_HISTORY}"),
    Step("history: every panel", "history.py", f"--time --repeat 3 {QUICK_HISTORY}"),
    Step(
        "history: monthly SLA report",
        "history.py",
        f"--sla-only --sla-runs 1 --repeat 3 {QUICK_HISTORY}",
    ),
)


@dataclass(frozen=True)
class Goal:
    """A goal of the issue: the summary key it is judged on, its target and direction."""

    key: str
    what: str
    target: float
    at_least: bool  # True: measured >= target; False: measured < target


GOALS: tuple[Goal, ...] = (
    Goal("ratio_to_raw", "1. hot path: product (1 worker) over the raw baseline", 0.75, True),
    Goal("sustained_events_per_s", "2. sustained 10 minutes, lag bounded", 75_000, True),
    Goal("freshness_p99_s", "2. freshness p99 at the sustained point, s", 2.0, False),
    Goal("ratio_to_quix", "3. product over the Quix Streams peer", 1.0, True),
    Goal("ratio_to_pathway", "3. product over the Pathway peer", 1.0, True),
    Goal("ratio_to_faust_agent", "3. product over the plain Faust agent", 1.0, True),
    Goal("eval_round_p99_s_100k", "4. evaluation round p99 at 100k devices, s", 1.0, False),
    Goal("worker_rss_mib_100k", "4. worker RSS at 100k devices, MiB", 500.0, False),
    Goal("panel_query_p95_ms_90d", "5. worst dashboard panel p95 over 90 days, ms", 500.0, False),
    Goal("sla_report_s_100k", "5. monthly SLA report over 100k devices, s", 5.0, False),
)


def read(results: Path, name: str) -> dict[str, Any]:
    path = results / name
    return json.loads(path.read_text()) if path.exists() else {}


def summarise(results: Path) -> dict[str, Any]:
    """The issue's keys from the benchmarks' result files (None where a file or key is
    missing), each goal judged, and where each figure came from."""
    pipeline = read(results, "pipeline.json")
    # the drains of one backlog: bench/pipeline.py --baselines carries them, and
    # bench/baselines.py run alone writes its own file; whichever ran last
    base = max(
        [b for b in (pipeline.get("baselines") or {}, read(results, "baselines.json")) if b]
        or [{}],
        key=lambda b: str(b.get("date", "")),
    )
    sustained = pipeline.get("sustained") or {}
    scale = read(results, "device_scale.json")
    history = read(results, "history.json")
    sla = read(results, "sla_report.json")
    medians = base.get("medians") or {}
    product_1w = medians.get("product_1w")
    raw = base.get("raw_baseline_events_per_s")
    # the report over every device (sla_report.json, --sla-only); history.json's is a province's
    country = sla.get("whole_country") or (history.get("sla") or {}).get("whole_country") or {}
    sla_country = country.get("p50_s")
    held = sustained and not sustained.get("lag_growing")
    out: dict[str, Any] = {
        "benchmark": "summary",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": pipeline.get("machine") or machine(),
        "events_per_s": pipeline.get("events_per_s"),
        "raw_baseline_events_per_s": raw,
        # goal 1 is about one worker: the product's 1-worker drain over the raw one
        "ratio_to_raw": round(product_1w / raw, 3) if product_1w and raw else None,
        "quix_events_per_s": base.get("quix_events_per_s"),
        "ratio_to_quix": base.get("ratio_to_quix"),
        "pathway_events_per_s": base.get("pathway_events_per_s"),
        "ratio_to_pathway": base.get("ratio_to_pathway"),
        "faust_agent_events_per_s": base.get("faust_agent_events_per_s"),
        "ratio_to_faust_agent": base.get("ratio_to_faust_agent"),
        "freshness_p99_s": sustained.get("freshness_p99_s", pipeline.get("freshness_p99_s")),
        "lag_growing": sustained.get("lag_growing", pipeline.get("lag_growing")),
        "sustained_events_per_s": sustained.get("achieved_events_per_s") if held else 0,
        "sustained_s": sustained.get("duration_s"),
        "eval_round_p99_s_100k": scale.get("eval_round_p99_s_100k"),
        "worker_rss_mib_100k": scale.get("worker_rss_mib_100k"),
        "panel_query_p95_ms_90d": history.get("panel_query_p95_ms_90d"),
        "sla_report_s_100k": sla_country,
        "cpu_s_per_1000_events": pipeline.get("cpu_s_per_1000_events"),
        "disk_bytes_per_event": pipeline.get("disk_bytes_per_event"),
        "from": {
            "pipeline.json": pipeline.get("date"),
            "baselines": base.get("date"),
            "device_scale.json": scale.get("date"),
            "history.json": history.get("at"),
            "sla_report.json": sla.get("period"),
        },
    }
    verdicts = []
    for goal in GOALS:
        measured = out.get(goal.key)
        met = None
        if isinstance(measured, int | float):
            met = measured >= goal.target if goal.at_least else measured < goal.target
        if goal.key == "sustained_events_per_s" and (out["sustained_s"] or 0) < SUSTAIN_GOAL_S:
            met = False if measured is not None else None  # held, but not for 10 minutes
        verdicts.append(
            {
                "key": goal.key,
                "goal": goal.what,
                "target": goal.target,
                "measured": measured,
                "met": met,
            }
        )
    out["goals"] = verdicts
    return out


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\n{'goal':<58} {'target':>10} {'measured':>12}  met")
    for v in summary["goals"]:
        measured = "-" if v["measured"] is None else f"{v['measured']:,}"
        met = {True: "yes", False: "NO", None: "not measured"}[v["met"]]
        print(f"{v['goal']:<58} {v['target']:>10,} {measured:>12}  {met}")


def plot(summary: dict[str, Any], out: Path) -> None:
    """Every measured goal as a bar of measured over target (inverted for upper bounds, so
    longer is always better), with the pass line at 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [v for v in summary["goals"] if isinstance(v["measured"], int | float)]
    scores = []
    for v in rows:
        target, measured = float(v["target"]), float(v["measured"])
        if v["key"].startswith("ratio_to_") or v["key"] == "sustained_events_per_s":
            scores.append(measured / target)
        else:
            scores.append(target / measured if measured > 0 else 10.0)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    colours = ["tab:green" if v["met"] else "tab:red" for v in rows]
    ax.barh([v["goal"] for v in rows], scores, color=colours)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("measured against target (right of the line: met)")
    ax.set_title(f"Performance goals ({summary['date'][:10]})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def run(steps: tuple[Step, ...], env: dict[str, str]) -> list[str]:
    """Run every step (progress on stderr); the names of those that exited non-zero."""
    failed = []
    t0 = time.monotonic()
    for i, step in enumerate(steps, 1):
        print(
            f"[{i}/{len(steps)} {time.monotonic() - t0:6.0f} s] {step.name}: "
            f"bench/{step.script} {step.args}",
            file=sys.stderr,
            flush=True,
        )
        code = subprocess.call(
            [sys.executable, str(BENCH / step.script), *shlex.split(step.args)],
            cwd=BENCH.parent,
            env=env,
        )
        if code != 0:
            failed.append(f"{step.name} (exit {code})")
            print(f"    {step.name} exited {code}", file=sys.stderr, flush=True)
    print(f"[{len(steps)}/{len(steps)} {time.monotonic() - t0:6.0f} s] done", file=sys.stderr)
    return failed


def quick_history_settings() -> Settings:
    """The quick history's schema, as a private namespace (so that it may be dropped)."""
    private = {"db_schema": HISTORY_QUICK_SCHEMA, "kafka_topic_prefix": f"{HISTORY_QUICK_SCHEMA}."}
    return load_settings().model_copy(update=private)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, about 10 minutes")
    mode.add_argument("--summary-only", action="store_true", help="only gather the results")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.quick:
        env["IOC_BENCH_RESULTS"] = str(QUICK_RESULTS)
    results = Path(env.get("IOC_BENCH_RESULTS") or BENCH / "results")
    results.mkdir(parents=True, exist_ok=True)
    if args.quick:  # its history is loaded afresh each time, and not kept
        asyncio.run(drop_schema(quick_history_settings()))
    failed = [] if args.summary_only else run(QUICK if args.quick else FULL, env)
    if args.quick:
        asyncio.run(drop_schema(quick_history_settings()))
    summary = summarise(results)
    summary["mode"] = "quick" if args.quick else "full"
    summary["failed_steps"] = failed
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    try:
        plot(summary, results / "summary.png")
    except ImportError:
        print("(matplotlib not installed: no plot; pip install -e '.[bench]')")
    print(
        f"\n{results / 'summary.json'}"
        + (f"; exited non-zero: {', '.join(failed)}" if failed else "")
    )
    missed = any(v["met"] is False for v in summary["goals"])
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main())
