"""Run a simulation: pace it, split it over processes, report progress and a summary.

Modes:
- ``realtime``: every device reports at its natural period, paced to the wall clock.
- ``rate``: load mode; periods are compressed so the scenario offers ``rate`` events/s,
  event times stay on the wall clock (so freshness downstream stays meaningful).
- ``virtual``: no pacing, from ``start`` for ``duration`` of event time, as fast as possible
  (for ``--out`` files: an hour of data in seconds, identical for the same seed and start).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ioc.config import Settings
from ioc.contract.topology import Topology, load_scenario
from ioc.errors import IocError
from ioc.simulators.background import BACKGROUND_PREFIX, DEFAULT_HORIZON_S, background_plan
from ioc.simulators.behaviour import natural_rate
from ioc.simulators.engine import Simulator, Stats
from ioc.simulators.faults import FaultPlan, load_plan, resolve_targets
from ioc.simulators.replay import REPLAYED_OUTAGES, ReplayCycle, outage_devices
from ioc.sinks import FileSink, KafkaSink, Sink


@dataclass
class SimConfig:
    scenario: str
    mode: str = "realtime"  # realtime | rate | virtual
    rate: float | None = None
    duration_s: float | None = None
    seed: int | None = None
    start_ms: int | None = None
    faults_path: str | None = None
    fault_flags: list[str] = field(default_factory=list)
    background_faults: bool = False
    """Add the seeded background of everyday failures (ioc.simulators.background)."""
    out: str | None = None
    workers: int = 1
    progress: bool = True
    tick_ms: int = 100
    replay_cycle_s: float | None = None
    """Load mode: simulate this many seconds once, then replay them shifted in time
    (ioc.simulators.replay): a load generator at under a third of the simulators' CPU per event."""
    speedup: float = 1.0  # set by run_simulation in load mode


@dataclass
class Summary:
    scenario: str
    mode: str
    seed: int
    start_ms: int
    elapsed_s: float
    stats: Stats
    sent: int
    errors: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    offered_rate: float | None
    faults: list[dict[str, Any]]
    first_error: str | None = None

    @property
    def events_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "mode": self.mode,
            "seed": self.seed,
            "start_ms": self.start_ms,
            "elapsed_s": round(self.elapsed_s, 3),
            "sent": self.sent,
            "errors": self.errors,
            "events_per_s": round(self.events_per_s, 1),
            "offered_rate": self.offered_rate,
            "produce_latency_p50_ms": self.latency_p50_ms,
            "produce_latency_p99_ms": self.latency_p99_ms,
            **self.stats.as_dict(),
            "faults": self.faults,
            "first_error": self.first_error,
        }

    def render(self) -> str:
        s = self.stats
        lines = [
            f"simulated {self.scenario} ({self.mode}, seed {self.seed}) for "
            f"{self.elapsed_s:.1f} s: {self.sent:,} records sent, {self.errors} errors, "
            f"{self.events_per_s:,.0f} records/s",
            "  valid per feed: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(s.valid_by_feed.items())),
            "  invalid injected: "
            + (", ".join(f"{k} {v:,}" for k, v in sorted(s.invalid_by_reason.items())) or "none"),
            f"  duplicates {s.duplicates:,}, late {s.late:,}, suppressed by outages "
            f"{s.suppressed:,}, fault log records {s.fault_events}",
        ]
        if self.latency_p50_ms is not None:
            lines.append(
                f"  produce latency p50 {self.latency_p50_ms:.1f} ms, "
                f"p99 {self.latency_p99_ms:.1f} ms"
            )
        for fault in self.faults:
            lines.append(
                f"  fault {fault['fault_id']}: {fault['type']} target={fault['target']}"
                f" affected={len(fault['affected'])}"
            )
        if self.first_error:
            lines.append(f"  first delivery error: {self.first_error}")
        return "\n".join(lines)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def measured_rate(topology: Topology, seed: int, start_ms: int, seconds: int = 120) -> float:
    """Events/s the scenario produces in real time from ``start_ms``, measured by running it.

    Counting is more honest than adding up report periods: sessions, incidents and quality
    samples depend on the time of day. Load mode divides periods by ``rate / this``.
    """
    if len(topology.devices) > 20_000:
        return natural_rate(topology)
    sim = Simulator(topology, FaultPlan(), seed=seed, start_ms=start_ms)
    count = len(sim.advance(start_ms + seconds * 1000))
    return max(count / seconds, 1e-3)


def _make_sink(settings: Settings, cfg: SimConfig, topology: Topology) -> Sink:
    # With per-province topics each device's records go to its province's topic, all through
    # this one producer (the simulator's user may write every province's topics): the load
    # generator stands in for every province's producers at once, and one librdkafka client
    # per province would multiply its threads and connections (docs/scaling.md).
    province_of = None
    if settings.kafka_province_topics:
        province_of = {d.encode(): topology.province_of(d) for d in topology.devices}
    if cfg.out:
        return FileSink(settings, Path(cfg.out), province_of)
    return KafkaSink(settings, province_of=province_of)


def _run_shard(
    settings: Settings,
    cfg: SimConfig,
    plan: FaultPlan,
    start_ms: int,
    shard: int,
    shards: int,
    report: Any = None,
    stop: Any = None,
) -> dict[str, Any]:
    topology = load_scenario(cfg.scenario)
    seed = cfg.seed if cfg.seed is not None else topology.seed
    plan = resolve_targets(plan, topology)
    sim = Simulator(
        topology,
        FaultPlan([]) if cfg.replay_cycle_s else plan,  # a replay's capture is healthy
        seed=seed,
        start_ms=start_ms,
        speedup=cfg.speedup,
        shard=shard,
        shards=shards,
    )
    source: Simulator | ReplayCycle = sim
    paced = cfg.mode != "virtual"
    tick = cfg.tick_ms if paced else 1000
    end = start_ms + int(cfg.duration_s * 1000) if cfg.duration_s is not None else 2**62
    setup_s = 0.0
    if cfg.replay_cycle_s:
        captured = time.monotonic()
        source = ReplayCycle(sim, start_ms, round(cfg.replay_cycle_s * 1000), tick)
        capture_start_ms, start_ms = start_ms, int(time.time() * 1000)
        source.begin(capture_start_ms, start_ms)
        for fault in plan.faults:  # outages only (run_simulation refused the others)
            assert fault.target is not None
            source.silence(outage_devices(topology, fault), fault.start_ms, fault.end_ms)
        end = source.end_for(cfg.duration_s)
        setup_s = time.monotonic() - captured
    sink = _make_sink(settings, cfg, topology)
    t = start_ms
    last_report = time.monotonic()
    try:
        while t < end and not (stop is not None and stop.is_set()):
            t_next = min(t + tick, end)
            for record in source.advance(t_next):
                sink.send(record)
            sink.poll()
            if paced:
                ahead = t_next / 1000.0 - time.time()
                if ahead > 0:
                    sink.wait(ahead)
            t = t_next
            if report is not None and time.monotonic() - last_report >= 1.0:
                report.put(
                    (
                        "progress",
                        shard,
                        sink.sent,
                        sink.errors,
                        sum(sim.stats.invalid_by_reason.values()),
                        t,
                    )
                )
                last_report = time.monotonic()
    except KeyboardInterrupt:
        pass
    for record in source.finish():
        sink.send(record)
    sink.flush()
    if isinstance(sink, FileSink):
        sink.close()
    result = {
        "stats": source.stats.as_dict(),
        "sent": sink.sent,
        "errors": sink.errors,
        "latencies": sink.latency_samples_ms(),
        "seed": seed,
        "setup_s": setup_s,
        "first_error": getattr(sink, "first_error", None),
        "faults": [
            msgspec.to_builtins(sim.fault_record(f, "summary", start_ms))
            for f in sim.plan.faults
            if not f.id.startswith(BACKGROUND_PREFIX) or f.start_ms < t - start_ms
        ]
        if shard == 0
        else [],
    }
    if report is not None:
        report.put(("done", shard, result))
    return result


def _shard_main(
    settings_json: str,
    cfg: SimConfig,
    plan: FaultPlan,
    start_ms: int,
    shard: int,
    shards: int,
    report: Any,
    stop: Any,
) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    settings = Settings.model_validate_json(settings_json)
    try:
        from ioc.contract.feeds import load_extra_feeds

        load_extra_feeds()  # a spawned process: the parent's IOC_EXTRA_FEEDS, inherited
        _run_shard(settings, cfg, plan, start_ms, shard, shards, report, stop)
    except IocError as exc:
        report.put(("error", shard, str(exc)))


def run_simulation(settings: Settings, cfg: SimConfig) -> Summary:
    topology = load_scenario(cfg.scenario)  # validate early, in the parent
    plan = load_plan(cfg.faults_path, cfg.fault_flags)
    resolve_targets(plan, topology)
    seed = cfg.seed if cfg.seed is not None else topology.seed
    background = 0
    if cfg.background_faults:
        horizon = cfg.duration_s if cfg.duration_s is not None else DEFAULT_HORIZON_S
        extra = background_plan(topology, seed, horizon).faults
        plan, background = FaultPlan(plan.faults + extra), len(extra)
    if cfg.out and cfg.workers > 1:
        raise IocError("--out writes one ordered file: use --workers 1")
    if cfg.mode == "rate" and not cfg.rate:
        raise IocError("load mode needs --rate EVENTS_PER_S > 0")
    if cfg.replay_cycle_s and (
        cfg.mode != "rate" or any(f.type not in REPLAYED_OUTAGES for f in plan.faults)
    ):
        raise IocError(
            "--replay-cycle replays one healthy cycle in load mode: it needs --rate, and of "
            f"the faults only outages ({', '.join(REPLAYED_OUTAGES)}; no background faults: "
            "inject the others into the infrastructure)"
        )
    if cfg.mode == "virtual" and cfg.duration_s is None:
        raise IocError("a virtual-time run (--out without --realtime/--rate) needs --duration")
    start_ms = cfg.start_ms if cfg.start_ms is not None else int(time.time() * 1000)
    if cfg.mode != "virtual" and cfg.start_ms is None:
        start_ms = int(time.time() * 1000)
    natural = measured_rate(topology, seed, start_ms)
    if cfg.mode == "rate" and cfg.rate:
        cfg.speedup = cfg.rate / natural
    offered = cfg.rate if cfg.mode == "rate" and cfg.rate else natural
    started = time.monotonic()

    def say(message: str) -> None:
        if cfg.progress:
            print(message, file=sys.stderr, flush=True)

    say(
        f"simulating {topology.name}: {len(topology.devices)} devices, mode {cfg.mode}, "
        f"offered ~{offered:,.0f} events/s, {cfg.workers} worker(s), "
        f"{len(plan.faults) - background} planned fault(s)"
        + (f" + {background} background failure(s) (seed {seed})" if background else "")
        + f", output {cfg.out or settings.bootstrap_servers}"
    )

    exported = _Exported(settings, enabled=cfg.out is None and cfg.progress)
    results: list[dict[str, Any]] = []
    if cfg.workers <= 1:
        if cfg.progress and cfg.mode != "virtual":
            results.append(_run_with_thread_progress(settings, cfg, plan, start_ms, say, exported))
        else:
            results.append(_run_shard(settings, cfg, plan, start_ms, 0, 1))
    else:
        results = _run_processes(settings, cfg, plan, start_ms, say, exported)
    # A replay's capture is set-up, not load: the achieved rate counts from the first send.
    elapsed = time.monotonic() - started - max(r["setup_s"] for r in results)

    stats = Stats()
    latencies: list[float] = []
    for result in results:
        stats.merge(result["stats"])
        latencies += result["latencies"]
    faults: list[dict[str, Any]] = next((r["faults"] for r in results if r["faults"]), [])
    return Summary(
        scenario=topology.name,
        mode=cfg.mode,
        seed=results[0]["seed"],
        start_ms=start_ms,
        elapsed_s=elapsed,
        stats=stats,
        sent=sum(r["sent"] for r in results),
        errors=sum(r["errors"] for r in results),
        latency_p50_ms=_percentile(latencies, 0.50),
        latency_p99_ms=_percentile(latencies, 0.99),
        offered_rate=round(offered, 1),
        faults=faults,
        first_error=next((r["first_error"] for r in results if r["first_error"]), None),
    )


def _run_with_thread_progress(
    settings: Settings,
    cfg: SimConfig,
    plan: FaultPlan,
    start_ms: int,
    say: Any,
    exported: _Exported,
) -> dict[str, Any]:
    """One process: the simulation in this thread, a reporter reading its queue."""
    import threading

    report: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    printer = threading.Thread(
        target=_print_progress, args=(report, 1, start_ms, say, stop, exported), daemon=True
    )
    printer.start()
    try:
        return _run_shard(settings, cfg, plan, start_ms, 0, 1, report, None)
    finally:
        stop.set()
        printer.join(timeout=2)


class _Exported:
    """Simulator counters on /metrics (Kafka runs only), fed from the progress reports."""

    def __init__(self, settings: Settings, enabled: bool) -> None:
        self.enabled = enabled
        self.sent = self.errors = 0
        if enabled:
            from ioc.contract import metrics as m
            from ioc.observability import counter, serve_metrics

            self.sent_counter = counter(m.SIM_SENT)
            self.error_counter = counter(m.SIM_ERRORS)
            try:
                serve_metrics(settings, "simulator", settings.simulator_metrics_port)
            except IocError:
                self.enabled = False

    def update(self, sent: int, errors: int) -> None:
        if self.enabled:
            self.sent_counter.inc(max(0, sent - self.sent))
            self.error_counter.inc(max(0, errors - self.errors))
        self.sent, self.errors = max(self.sent, sent), max(self.errors, errors)


def _print_progress(
    report: Any, shards: int, start_ms: int, say: Any, stop: Any, exported: _Exported
) -> None:
    sent: dict[int, int] = {}
    errors: dict[int, int] = {}
    invalid: dict[int, int] = {}
    last_total, last_time = 0, time.monotonic()
    while not stop.is_set():
        try:
            item = report.get(timeout=0.5)
        except queue.Empty:
            continue
        if item[0] != "progress":
            continue
        _, shard, n_sent, n_err, n_invalid, t = item
        sent[shard], errors[shard], invalid[shard] = n_sent, n_err, n_invalid
        exported.update(sum(sent.values()), sum(errors.values()))
        now = time.monotonic()
        if now - last_time >= 2.0:
            total = sum(sent.values())
            rate = (total - last_total) / (now - last_time)
            behind = max(0.0, time.time() - t / 1000.0)
            say(
                f"  t={int((t - start_ms) / 1000):>5d}s  sent {total:>12,}  "
                f"{rate:>10,.0f} ev/s  invalid {sum(invalid.values()):,}  "
                f"errors {sum(errors.values())}  behind schedule {behind:.1f}s"
            )
            last_total, last_time = total, now


def _run_processes(
    settings: Settings,
    cfg: SimConfig,
    plan: FaultPlan,
    start_ms: int,
    say: Any,
    exported: _Exported,
) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    report = ctx.Queue()
    stop = ctx.Event()
    procs = [
        ctx.Process(
            target=_shard_main,
            name=f"ioc-sim-{i}",
            args=(settings.model_dump_json(), cfg, plan, start_ms, i, cfg.workers, report, stop),
        )
        for i in range(cfg.workers)
    ]
    for proc in procs:
        proc.start()
    results: dict[int, dict[str, Any]] = {}
    sent: dict[int, int] = {}
    errors: dict[int, int] = {}
    last_total, last_time = 0, time.monotonic()
    failure: str | None = None
    try:
        while len(results) < len(procs):
            try:
                item = report.get(timeout=1.0)
            except queue.Empty:
                if all(not p.is_alive() for p in procs) and report.empty():
                    failure = failure or "simulator worker exited without a result"
                    break
                continue
            if item[0] == "done":
                results[item[1]] = item[2]
            elif item[0] == "error":
                failure = item[2]
                stop.set()
                results[item[1]] = {
                    "stats": Stats().as_dict(),
                    "sent": 0,
                    "errors": 0,
                    "latencies": [],
                    "seed": 0,
                    "faults": [],
                    "first_error": item[2],
                }
            else:
                _, shard, n_sent, n_err, _n_invalid, t = item
                sent[shard], errors[shard] = n_sent, n_err
                exported.update(sum(sent.values()), sum(errors.values()))
                now = time.monotonic()
                if now - last_time >= 2.0:
                    total = sum(sent.values())
                    say(
                        f"  t={int((t - start_ms) / 1000):>5d}s  sent {total:>12,}  "
                        f"{(total - last_total) / (now - last_time):>10,.0f} ev/s  "
                        f"errors {sum(errors.values())}"
                    )
                    last_total, last_time = total, now
    except KeyboardInterrupt:
        say("stopping workers")
        stop.set()
        while len(results) < len(procs):
            try:
                item = report.get(timeout=30)
            except queue.Empty:
                break
            if item[0] == "done":
                results[item[1]] = item[2]
    for proc in procs:
        proc.join(timeout=30)
    if failure:
        raise IocError(failure)
    return [results[i] for i in sorted(results)]
