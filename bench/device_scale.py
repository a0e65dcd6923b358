"""Device scale: one state-evaluation round and its memory at 1,000, 10,000 and 100,000 devices.

Issue 18's goal: with the ``national`` scenario (100,110 devices) one round takes p99 < 1 s and
the worker stays under 500 MiB RSS. For each size, in a private namespace bootstrapped with
the scenario (yen-bai-2022: 1,089 devices; the first provinces of ``national`` up to 10,000;
``national``), the bench keeps every device's facts in ``device_last_seen`` the way the writers
do (every device reporting; a rolling cohort of ``--churn`` of them silent for 20 s, so every
round has devices going down and coming back) and runs ``--rounds`` rounds of the real
:meth:`Evaluator.run_once` 5 s of event time apart: the facts query, the state machine, the
transitions (``device_state``, intervals, the outbox), the open-incident counts, the meeting
readiness and the gauges. Every other round runs without the cyclic collector paused (the
worker pauses it for its rounds, :func:`ioc.memory.collector_paused`; ``--no-compare``: none),
so both are measured in one run, on the same data, interleaved. It reports each phase's median
and p99 of the paused rounds, the unpaused rounds' round time beside (the first round, when every
device goes from unknown to up, apart), and this process's RSS (topology, machine, evaluator:
the evaluating part of a worker) after the rounds. ``--worker`` then starts a real ``ioc
worker`` on ``national`` (every device reporting every 5 s), waits until its first two
rounds have run (their moves from unknown to up are not published: ``is_news``), and
reads its RSS and its own round histogram over ``--worker-s``.

    .venv/bin/python bench/device_scale.py [--sizes 1k,10k,100k] [--rounds 41]
        [--worker] [--out bench/results/device_scale.json]

Needs the stack (`ioc stack up`). Writes JSON + a plot (round time and RSS against devices).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from bench_machine import machine, percentile, results_dir, status_mib

from ioc.bootstrap import bootstrap, drop_namespace
from ioc.config import Settings, load_settings
from ioc.contract import tables as t
from ioc.contract.feeds import Feed
from ioc.contract.topology import Topology, load_scenario
from ioc.db import connect
from ioc.simulators.province import builtin_specs, materialise, write_scenario
from ioc.streams.evaluator import Evaluator
from ioc.streams.writer import open_pool

RESULTS = results_dir()
STEP_MS = 5000
SILENT_ROUNDS = 4
"""A churned device is silent this many rounds (20 s: past every built-in heartbeat timeout)."""
PHASES = (
    "facts",
    "evaluate",
    "transitions",
    "outbox",
    "readiness",
    "export",
    "gc",
    "gc_after",
    "round",
)
"""``gc``: the part of the round spent in CPython's cyclic garbage collector (any phase);
``gc_after``: collections between the round's end and the next round (the round pauses the
collector, :func:`ioc.memory.collector_paused`: what it defers is counted here, not hidden)."""


class GcClock:
    """Time spent in the cyclic garbage collector, and how many full collections, through
    ``gc.callbacks``: a round allocates 100,000 facts, and a full collection walks every
    object the process holds, wherever in the round it happens to fall."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self._on)

    def close(self) -> None:
        gc.callbacks.remove(self._on)

    def _on(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info.get("generation") == 2


def national_subset(devices: int, folder: Path) -> str:
    """A scenario file of the first ``national`` provinces holding at least ``devices``."""
    spec = yaml.safe_load(builtin_specs()["national"])
    provinces = spec["generate"]["national"]["provinces"]
    for k in range(1, len(provinces) + 1):
        spec["generate"]["national"]["provinces"] = provinces[:k]
        spec["scenario"] = f"national-{k}p"
        path = folder / f"national-{k}p.yaml"
        path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
        out = folder / f"national-{k}p.json"
        write_scenario(materialise(str(path), "json"), out)
        if len(load_scenario(str(out)).devices) >= devices:
            return str(out)
    raise SystemExit(f"national has fewer than {devices} devices")


def scenario_for(size: str, folder: Path) -> str:
    if size == "10k":
        return national_subset(10_000, folder)
    return {"1k": "yen-bai-2022", "100k": "national"}[size]


class Phases:
    """Wall time of each phase of a round, by wrapping the evaluator's steps."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.now: dict[str, float] = {}
        steps: list[tuple[object, str, str, bool]] = [
            (evaluator, "facts", "facts", True),
            (evaluator, "_write_transitions", "transitions", True),
            (evaluator, "_outbox", "outbox", True),
            (evaluator.vconf, "collect", "readiness", True),
            (evaluator.machine, "evaluate", "evaluate", False),
            (evaluator, "_export", "export", False),
        ]
        for owner, attribute, phase, is_async in steps:
            step = getattr(owner, attribute)
            setattr(owner, attribute, (self._async if is_async else self._sync)(phase, step))

    def _async(self, name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.now[name] = self.now.get(name, 0.0) + time.perf_counter() - started

        return timed

    def _sync(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.now[name] = self.now.get(name, 0.0) + time.perf_counter() - started

        return timed


async def _seed(settings: Settings, topo: Topology, now_ms: int) -> None:
    """Every device's facts as the writers leave them: reporting, probes good, quality fine."""
    at = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    rows = []
    for dev in topo.devices.values():
        cls = dev.device_class
        node, cam, tele = cls == Feed.NETNODE, cls == Feed.CAMERA, cls == Feed.TELEHEALTH
        # the columns each class's reports fill (ioc.streams.rows.LastSeen.add); the others
        # stay NULL, as they do in a deployment
        rows.append(
            (
                dev.id,
                cls,
                at,
                1,
                at if node else None,
                True if node else None,
                at if node or cam or tele else None,
                25.0 if cam else None,
                False if cam else None,
                20.0 if node or tele else None,
                5.0 if tele else None,
                0.1 if node or tele else None,
                1 if tele else None,
                at if node else None,
            )
        )
    conn = await connect(
        settings.database_dsn(), server_settings={"search_path": f"{settings.db_schema},public"}
    )
    try:
        await conn.execute(f"DELETE FROM {t.DEVICE_LAST_SEEN}")
        await conn.copy_records_to_table(
            t.DEVICE_LAST_SEEN,
            records=rows,
            columns=[
                "device_id",
                "device_class",
                "last_ts",
                "last_seq",
                "probe_ts",
                "probe_reachable",
                "quality_ts",
                "fps",
                "frozen",
                "rtt_ms",
                "jitter_ms",
                "loss_pct",
                "sessions_active",
                "probe_ok_ts",
            ],
        )
    finally:
        await conn.close()


async def _report(settings: Settings, now_ms: int, silent: list[str]) -> float:
    """Every device but ``silent`` reported at ``now_ms`` (a probe too, for nodes)."""
    at = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    started = time.perf_counter()
    conn = await connect(
        settings.database_dsn(), server_settings={"search_path": f"{settings.db_schema},public"}
    )
    try:
        await conn.execute(
            f"""UPDATE {t.DEVICE_LAST_SEEN} SET last_ts = $1::timestamptz,
                  quality_ts = CASE WHEN quality_ts IS NOT NULL THEN $1::timestamptz END,
                  probe_ts = CASE WHEN probe_ts IS NOT NULL THEN $1::timestamptz END,
                  probe_ok_ts = CASE WHEN probe_ok_ts IS NOT NULL THEN $1::timestamptz END,
                  updated_at = now()
                WHERE device_id <> ALL($2::text[])""",
            at,
            silent,
        )
    finally:
        await conn.close()
    return time.perf_counter() - started


async def one_size(
    size: str, scenario: str, rounds: int, churn: float, freeze: bool = True, compare: bool = True
) -> dict[str, Any]:
    """``compare``: every other round runs without the collector paused (the worker's
    default pauses it), so both are measured in the same run; the headline figures are the
    paused rounds'."""
    tag = f"dscale{uuid.uuid4().hex[:6]}"
    settings = load_settings().model_copy(
        update={"kafka_topic_prefix": f"{tag}.", "db_schema": tag}
    )
    started = time.perf_counter()
    topo = await bootstrap(settings, scenario)
    boot_s = time.perf_counter() - started
    n = len(topo.devices)
    print(f"{size}: {scenario}, {n:,} devices, bootstrapped in {boot_s:.1f} s", flush=True)
    try:
        # not the nodes: a silent node's devices would be unreachable, not churn of their own
        candidates = sorted(d.id for d in topo.devices.values() if d.device_class != Feed.NETNODE)
        cohort = max(1, round(churn * n))
        now_ms = (int(time.time() * 1000) // STEP_MS) * STEP_MS
        await _seed(settings, topo, now_ms)
        pool = await open_pool(settings.database_dsn(), settings.db_schema, size=2)
        per_round: list[dict[str, float]] = []
        transitions: list[int] = []
        clock = GcClock()
        gc_ended = 0.0
        try:
            evaluator = Evaluator(topo, pool)
            evaluator.freeze_after_restore = freeze  # the worker's default: True
            phases = Phases(evaluator)
            for r in range(rounds):
                now_ms += STEP_MS
                # cohort r is silent for rounds r..r+SILENT_ROUNDS-1, then reports again
                silent = [
                    candidates[(c * cohort + i) % len(candidates)]
                    for c in range(max(0, r - SILENT_ROUNDS + 1), r + 1)
                    for i in range(cohort)
                ]
                if per_round:
                    per_round[-1]["gc_after"] = clock.seconds - gc_ended
                await _report(settings, now_ms, silent)
                phases.now = {}
                evaluator.pause_collector = not (compare and r % 2 == 0)
                gc_before, full_before = clock.seconds, clock.full
                t0 = time.perf_counter()
                verdict = await evaluator.run_once(wall_ms=now_ms)
                phases.now["round"] = time.perf_counter() - t0
                phases.now["gc"] = clock.seconds - gc_before
                gc_ended = clock.seconds
                phases.now["full_collections"] = clock.full - full_before
                per_round.append(dict(phases.now))
                transitions.append(len(verdict.transitions) if verdict is not None else 0)
                print(
                    f"  round {r + 1:>3}: {phases.now['round']:.3f} s "
                    f"({len(verdict.transitions) if verdict else 0} transitions; "
                    + ", ".join(
                        f"{k} {v:.3f}"
                        for k, v in phases.now.items()
                        if k not in ("round", "full_collections")
                    )
                    + ")",
                    flush=True,
                )
        finally:
            clock.close()
            await pool.close()
        rss, hwm = round(status_mib("VmRSS"), 1), round(status_mib("VmHWM"), 1)
        # round 0 (every device unknown -> up) apart; odd rounds paused, even ones not
        steady = [p for r, p in enumerate(per_round) if r > 0 and (not compare or r % 2 == 1)]
        unpaused = [p for r, p in enumerate(per_round) if r > 0 and compare and r % 2 == 0]
        figures = {
            phase: {
                "median_s": round(statistics.median(r.get(phase, 0.0) for r in steady), 4),
                "p99_s": round(percentile([r.get(phase, 0.0) for r in steady], 0.99) or 0.0, 4),
            }
            for phase in PHASES
        }
        return {
            "size": size,
            "scenario": scenario if size != "10k" else Path(scenario).stem,
            "devices": n,
            "bootstrap_s": round(boot_s, 1),
            "first_round_s": round(per_round[0]["round"], 3),
            "first_round_transitions": transitions[0],
            "steady_transitions_per_round_median": statistics.median(transitions[1:]),
            "round_median_s": figures["round"]["median_s"],
            "round_p99_s": figures["round"]["p99_s"],
            "phases": figures,
            "full_collections_per_round_median": statistics.median(
                p["full_collections"] for p in steady
            ),
            "without_collector_pause": {
                "rounds": len(unpaused),
                "round_median_s": round(statistics.median(p["round"] for p in unpaused), 4),
                "round_p99_s": round(percentile([p["round"] for p in unpaused], 0.99) or 0.0, 4),
                "gc_median_s": round(statistics.median(p["gc"] for p in unpaused), 4),
                "full_collections_per_round_median": statistics.median(
                    p["full_collections"] for p in unpaused
                ),
            }
            if unpaused
            else None,
            "process_rss_mib": rss,
            "process_hwm_mib": hwm,
        }
    finally:
        await drop_namespace(settings)


def _rounds(scrape: list[tuple[str, dict[str, str], float]]) -> dict[str, float]:
    """The worker's round histogram (count, sum, the 1 s bucket) and its published events."""

    def total(sample: str, **labels: str) -> float:
        return sum(
            v
            for name, have, v in scrape
            if name == sample and all(have.get(k) == x for k, x in labels.items())
        )

    return {
        "count": total("ioc_state_evaluation_seconds_count"),
        "sum": total("ioc_state_evaluation_seconds_sum"),
        "within_1s": total("ioc_state_evaluation_seconds_bucket", le="1.0"),
        "published": total("ioc_device_events_published_total"),
    }


def worker_rss(scenario: str, seconds: float, drain_max_s: float = 600.0) -> dict[str, Any]:
    """A real worker on ``scenario`` (facts seeded, every device reporting every 5 s): its
    RSS, and its own rounds over ``seconds`` once its first round's transitions (every
    device from unknown to up: a device event each, through the incident agent) are out."""
    import psutil

    from ioc.processes import WorkerProcess, stop_all

    tag = f"dscalew{uuid.uuid4().hex[:6]}"
    settings = load_settings().model_copy(
        update={"kafka_topic_prefix": f"{tag}.", "db_schema": tag}
    )
    topo = asyncio.run(bootstrap(settings, scenario))
    asyncio.run(_seed(settings, topo, int(time.time() * 1000)))
    log = Path(tempfile.gettempdir()) / f"{tag}-worker.log"
    worker = WorkerProcess(settings, scenario, log, "w0").start()
    peak = rss = 0.0

    def tick() -> None:
        nonlocal peak, rss
        time.sleep(5)
        proc = psutil.Process(worker.pid)
        rss = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20
        peak = max(peak, rss)
        asyncio.run(_report(settings, int(time.time() * 1000), []))

    try:
        worker.wait_serving(timeout=300)
        started = time.monotonic()
        while time.monotonic() - started < drain_max_s:
            tick()
            drained = _rounds(worker.scrape())
            print(
                f"  worker: {drained['count']:.0f} rounds, "
                f"{drained['published']:,.0f} device events published",
                flush=True,
            )
            if drained["count"] >= 2:  # the first round and one after it
                break
        drain_s = time.monotonic() - started
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            tick()
        end = _rounds(worker.scrape())
        rounds = end["count"] - drained["count"]
        return {
            "scenario": scenario,
            "seconds": seconds,
            "first_round_events_drained_s": round(drain_s),
            "first_round_events_published": drained["published"],
            "rounds_during_drain": drained["count"],
            "rss_mib_last": round(rss, 1),
            "rss_mib_peak": round(peak, 1),
            "rounds": rounds,
            "round_mean_s": round((end["sum"] - drained["sum"]) / rounds, 3) if rounds else None,
            "rounds_within_1s": end["within_1s"] - drained["within_1s"],
        }
    finally:
        stop_all([worker])
        asyncio.run(drop_namespace(settings))


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = result["sizes"]
    devices = [s["devices"] for s in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for phase in PHASES:
        left.plot(
            devices,
            [s["phases"][phase]["p99_s"] for s in sizes],
            marker="o",
            linewidth=2.5 if phase == "round" else 1,
            label=f"{phase} p99",
        )
    unpaused = [(s["devices"], s["without_collector_pause"]) for s in sizes]
    if all(u for _d, u in unpaused):
        left.plot(
            [d for d, _u in unpaused],
            [u["round_p99_s"] for _d, u in unpaused],
            marker="x",
            linestyle=":",
            color="black",
            label="round p99, collector not paused",
        )
    left.axhline(1.0, color="red", linestyle="--", linewidth=1, label="goal: round p99 1 s")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("devices")
    left.set_ylabel("seconds")
    left.set_title("one evaluation round, by phase (p99)")
    left.legend(fontsize=7)
    right.plot(devices, [s["process_rss_mib"] for s in sizes], marker="o", label="evaluator RSS")
    if result.get("worker"):
        right.scatter(
            [devices[-1]], [result["worker"]["rss_mib_peak"]], color="black", label="worker RSS"
        )
    right.axhline(500, color="red", linestyle="--", linewidth=1, label="goal: 500 MiB")
    right.set_xscale("log")
    right.set_xlabel("devices")
    right.set_ylabel("MiB")
    right.set_title("memory")
    right.legend(fontsize=7)
    fig.suptitle(f"device scale ({result['date']}, {result['machine']['cores']} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1k,10k,100k")
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--churn", type=float, default=0.005, help="share silent per cohort")
    parser.add_argument("--worker", action="store_true", help="also a real national worker")
    parser.add_argument("--worker-s", type=float, default=90.0)
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="leave the long-lived objects to the cyclic collector (ioc.memory)",
    )
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="pause the collector every round (default: every other round without, compared)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "device_scale.json")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory() as folder:
        results = []
        for size in sizes:
            scenario = scenario_for(size, Path(folder))
            results.append(
                asyncio.run(
                    one_size(
                        size,
                        scenario,
                        args.rounds,
                        args.churn,
                        freeze=not args.no_freeze,
                        compare=not args.no_compare,
                    )
                )
            )
    result: dict[str, Any] = {
        "benchmark": "device_scale",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "command": " ".join(["bench/device_scale.py", *sys.argv[1:]]),
        "rounds": args.rounds,
        "churn": args.churn,
        "gc_freeze": not args.no_freeze,
        "sizes": results,
    }
    if args.worker:
        result["worker"] = worker_rss("national", args.worker_s)
    largest = results[-1]
    if largest["devices"] >= 100_000:
        result["eval_round_p99_s_100k"] = largest["round_p99_s"]
        result["worker_rss_mib_100k"] = (
            result["worker"]["rss_mib_peak"] if "worker" in result else largest["process_rss_mib"]
        )
    print()
    print(
        f"{'size':>5} {'devices':>8} {'first s':>8} {'median s':>9} {'p99 s':>7} {'RSS MiB':>8}"
        "   without the pause: median s  p99 s"
    )
    for s in results:
        other = s["without_collector_pause"] or {}
        print(
            f"{s['size']:>5} {s['devices']:>8,} {s['first_round_s']:>8.2f} "
            f"{s['round_median_s']:>9.3f} {s['round_p99_s']:>7.3f} {s['process_rss_mib']:>8.0f}"
            f"   {other.get('round_median_s', float('nan')):>25.3f}"
            f" {other.get('round_p99_s', float('nan')):>6.3f}"
        )
    if "worker" in result:
        print(f"worker: {result['worker']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"result: {args.out}")
    try:
        plot(result, args.out.with_suffix(".png"))
        print(f"plot: {args.out.with_suffix('.png')}")
    except ImportError:
        print("(matplotlib not installed: no plot)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
