"""Soak: an hour of load with a fault every few minutes; do workers leak, does lag come back?

The real pipeline on yen-bai-2022 in a private namespace: ``--workers`` ``ioc worker``
processes, the simulators in load mode at ``--rate`` events/s for ``--duration`` s, and a fault
every ``--fault-every`` s, rotated through what the local stack can do:

- ``worker``: SIGKILL the newest worker and start a replacement (the first worker is never
  the victim, so at least one process lives through the whole run and is judged for leaks);
- ``broker``: SIGKILL the Kafka broker (the cluster's first node with ``--brokers 3``),
  10 s down, restart (tests/chaos/test_broker_and_pager_faults.py);
- ``database``: stop TimescaleDB for ``--db-outage`` s, start it (test_database_outage.py).

Every ``--sample-every`` s it records, per worker process, RSS, open file descriptors
(/proc/PID/fd) and TCP connections to the database port; the database's own count of worker
connections (pg_stat_activity, application_name ``ioc-worker``); and consumer lag from Kafka
(the feed group's committed offsets against the end offsets; the workers' own lag gauge too).
Verdicts, measured after ``--warmup`` s (the baseline is the window before the first fault,
the end is the tail of the last window):

- RSS growth of every worker that lived through the whole run < 10 %, from the end of the
  window after one fault of each kind (``--rss-settle``): catching up after a fault fills
  buffers to a high-water mark that is never handed back, a leak grows with every round;
- no growth in its file descriptors (<= FD_SLACK) nor in database connections (<= CONN_SLACK);
- lag flat between faults: at the end of every inter-fault window, lag is back within the
  baseline + 2 s of input (bench/pipeline.py's bound for "growing").

At the end every valid event must be stored exactly once (sequence-number reconciliation, as
tests/support/reconcile.py does). 2 cores may not produce and consume the asked rate: the
achieved rate is printed beside the asked one, with the pipeline's measured capacity. The
load generator replays ``--replay-cycle`` s of simulated load (ioc.simulators.replay: about
13 us of CPU per event instead of the simulators' ~45) so that the cores go to the pipeline;
``--replay-cycle 0`` simulates all the way.

    .venv/bin/python bench/soak.py [--duration 3600] [--rate 20000] [--fault-every 300]

Prints a table and writes bench/results/soak.json (+ soak.png with matplotlib); ``--out``
writes elsewhere (a short trial must not replace the committed result).
Needs the stack (`ioc stack up`); it stops and restarts the stack's broker and database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_machine import machine, results_dir

from ioc.bootstrap import bootstrap, drop_namespace
from ioc.config import Settings, load_settings
from ioc.contract import metrics as m
from ioc.contract.tables import RAW
from ioc.contract.topics import FEED_TOPICS
from ioc.db import connect
from ioc.deploy.local.stack import Stack
from ioc.processes import WorkerProcess, stop_all
from ioc.simulators.replay import describe
from ioc.simulators.run import SimConfig, Summary, run_simulation

RESULTS = results_dir()
SCENARIO = "yen-bai-2022"
FAULTS = ("worker", "broker", "database")
RSS_GROWTH_MAX_PCT = 10.0
FD_SLACK = 5
"""File descriptors a worker may hold above its baseline at the end and still count as flat:
sockets being re-established (a broker or database reconnect) are not a leak."""
CONN_SLACK = 2
"""Database connections above the baseline at the end still counted as flat: the writer's
pool (1..10 per worker, ioc.streams.writer.open_pool) opens connections on demand."""
LAG_SLACK_S = 2.0
"""Lag at a window's end is flat when within the baseline + this many seconds of input."""
BROKER_DOWN_S = 10.0
WORKER_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ioc-worker' "
    "AND datname = current_database()"
)
PER_DEVICE_SQL = (
    "SELECT device_id, count(*) AS n, count(DISTINCT seq) AS d, max(seq) AS mx FROM ("
    + " UNION ALL ".join(f"SELECT device_id, seq FROM {table}" for table in RAW.values())
    + ") x GROUP BY device_id"
)
"""Per device: rows landed, distinct sequence numbers, highest (tests/support/reconcile.py)."""


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- what is measured ------------------------------------------------------------------------
@dataclass
class Tracked:
    """One worker process over its life: samples are (t, rss MiB, fds, db sockets, written)."""

    proc: WorkerProcess
    started_t: float
    ended_t: float | None = None
    samples: list[tuple[float, float, int, int, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.proc.name,
            "pid": self.proc.pid,
            "started_t": round(self.started_t, 1),
            "ended_t": None if self.ended_t is None else round(self.ended_t, 1),
            "samples": [
                (round(t, 1), round(r, 1), f, c, round(w)) for t, r, f, c, w in self.samples
            ],
        }


def process_figures(pid: int, db_port: int) -> tuple[float, int, int] | None:
    """RSS MiB, open file descriptors and TCP connections to the database of a process and
    its children (None: it is gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        rss = sum(p.memory_info().rss for p in procs) / 2**20
        fds = sum(p.num_fds() for p in procs)
        db = sum(
            1
            for p in procs
            for c in p.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == db_port and c.status == psutil.CONN_ESTABLISHED
        )
        return rss, fds, db
    except psutil.Error:
        return None


CPU_GROUPS = ("workers", "simulator", "kafka", "postgres")


class CpuMeter:
    """Where the 2 cores go, per sample interval: the workers (and their children), this
    process (the simulator's thread and the harness), Kafka (every broker JVM) and PostgreSQL
    (every backend), as cores busy; ``machine`` is the whole machine's busy cores. When the
    asked rate is not reached, this says who took the CPU."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.prev: dict[int, float] = {}
        self.prev_t = time.monotonic()
        self.prev_machine = self._machine_busy()

    def _machine_busy(self) -> float:
        t = self.psutil.cpu_times()
        return float(
            t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        )

    def _group_of(self, proc: Any, workers: set[int]) -> str | None:
        if proc.pid in workers:
            return "workers"
        if proc.pid == os.getpid():
            return "simulator"
        name = proc.info.get("name") or ""
        if name.startswith("postgres"):
            return "postgres"
        if name == "java" and "kafka.Kafka" in " ".join(proc.info.get("cmdline") or []):
            return "kafka"
        return None

    def sample(self, worker_pids: list[int]) -> dict[str, float]:
        psutil = self.psutil
        workers: set[int] = set(worker_pids)
        for pid in worker_pids:
            with contextlib.suppress(psutil.Error):
                workers.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        now: dict[int, float] = {}
        used = dict.fromkeys(CPU_GROUPS, 0.0)
        for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
            group = self._group_of(proc, workers)
            times = proc.info.get("cpu_times")
            if group is None or times is None:
                continue
            total = float(times.user + times.system)
            now[proc.pid] = total
            # a process first seen after the first sample started since: all its CPU is new
            used[group] += total - self.prev.get(proc.pid, 0.0 if self.prev else total)
        t, machine_busy = time.monotonic(), self._machine_busy()
        span = max(t - self.prev_t, 1e-3)
        cores = {k: round(max(v, 0.0) / span, 3) for k, v in used.items()}
        cores["machine"] = round((machine_busy - self.prev_machine) / span, 3)
        self.prev, self.prev_t, self.prev_machine = now, t, machine_busy
        return cores


class KafkaLag:
    """The feed group's lag from Kafka itself (end offsets minus committed offsets, summed):
    unlike the workers' gauge it survives a worker's death. None while the broker is down.
    ``topics``: the physical topics to count (default the shared feed topics; with
    per-province topics, bench/national.py adds those)."""

    def __init__(self, settings: Settings, topics: list[str] | None = None) -> None:
        from confluent_kafka import Consumer, TopicPartition
        from confluent_kafka.admin import AdminClient

        from ioc.kafka_clients import librdkafka_admin, librdkafka_consumer
        from ioc.streams.consumer import consumer_group

        conf = librdkafka_consumer(settings, consumer_group(settings), "ioc-soak-lag")
        conf.pop("logger", None)  # never polled for logs: let librdkafka's own log go to stderr
        conf["log_level"] = 0
        self.consumer = Consumer(conf)
        self.admin = AdminClient(librdkafka_admin(settings))
        if topics is None:
            topics = [settings.topic(spec.name) for spec in FEED_TOPICS.values()]
        meta = self.consumer.list_topics(timeout=10)
        self.partitions = [
            TopicPartition(topic, p) for topic in topics for p in meta.topics[topic].partitions
        ]

    def sample(self) -> tuple[int, int] | None:
        """(lag, sum of end offsets), or None when Kafka does not answer in time. The end
        offsets come in one ListOffsets request per leader (bench/national.py counts about
        450 partitions: one round trip each took longer than the sample interval)."""
        from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        try:
            committed = self.consumer.committed(self.partitions, timeout=4)
            futures = self.admin.list_offsets(
                dict.fromkeys(self.partitions, latest), request_timeout=4
            )
            ends = {
                (tp.topic, tp.partition): future.result(timeout=5).offset
                for tp, future in futures.items()
            }
        except Exception:  # any Kafka failure is "no sample" here
            return None
        done = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in committed}
        lag = sum(max(0, end - done.get(key, 0)) for key, end in ends.items())
        return lag, sum(ends.values())

    def close(self) -> None:
        self.consumer.close()


async def _db_worker_connections(settings: Settings) -> int:
    conn = await connect(settings.admin_dsn(), timeout=3)
    try:
        return int(await conn.fetchval(WORKER_SQL))
    finally:
        await conn.close()


def db_worker_connections(settings: Settings) -> int | None:
    """Worker connections as the database counts them (None: the database is down)."""
    try:
        return asyncio.run(_db_worker_connections(settings))
    except Exception:  # down or restarting: no sample
        return None


# --- the faults ------------------------------------------------------------------------------
class Pool:
    """The running workers; faults replace them from another thread."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        tag: str,
        t0: Callable[[], float],
        scenario: str = SCENARIO,
    ) -> None:
        self.settings, self.log_dir, self.tag, self.t0 = settings, log_dir, tag, t0
        self.scenario = scenario
        self.lock = threading.Lock()
        self.tracked: list[Tracked] = []
        self.count = 0

    def start(self) -> Tracked:
        name = f"w{self.count}"
        self.count += 1
        proc = WorkerProcess(
            self.settings, self.scenario, self.log_dir / f"{self.tag}-{name}.log", name
        ).start()
        tracked = Tracked(proc, self.t0())
        with self.lock:
            self.tracked.append(tracked)
        return tracked

    def alive(self) -> list[Tracked]:
        with self.lock:
            return [t for t in self.tracked if t.ended_t is None]


def kill_worker(pool: Pool) -> str:
    """SIGKILL the newest worker (never the first while another runs), start a replacement."""
    alive = pool.alive()
    victim = alive[-1]
    victim.proc.kill()
    victim.ended_t = pool.t0()
    replacement = pool.start()
    replacement.proc.wait_serving()
    return f"killed {victim.proc.name} (pid {victim.proc.pid}), {replacement.proc.name} serving"


def restart_broker(settings: Settings) -> str:
    kafka = Stack(settings).kafka
    if kafka.kill() is None:
        return "broker was not running"
    time.sleep(BROKER_DOWN_S)
    started = time.monotonic()
    kafka.up(lambda line: note(f"    kafka: {line}"))
    took = time.monotonic() - started
    return f"{kafka.name} SIGKILLed, down {BROKER_DOWN_S:.0f} s, up again in {took:.0f} s"


def database_outage(settings: Settings, seconds: float) -> str:
    db = Stack(settings).timescaledb
    db.down(lambda line: note(f"    timescaledb: {line}"))
    time.sleep(seconds)
    started = time.monotonic()
    db.up(lambda line: note(f"    timescaledb: {line}"))
    return f"stopped {seconds:.0f} s, up again in {time.monotonic() - started:.0f} s"


def restore_stack(settings: Settings) -> None:
    """Whatever a fault left down (an interrupted run) is started again."""
    stack = Stack(settings)
    if stack.kafka.pid() is None:
        stack.kafka.up(note)
    if stack.timescaledb.pid() is None:
        stack.timescaledb.up(note)


def schedule(duration: float, every: float) -> list[tuple[float, str]]:
    """Fault times and kinds: every ``every`` s, rotated; the last whole period is left
    fault-free so the end of the run is measured after recovery (a broker catch-up at
    20,000 ev/s took up to 450 s on 2026-11-28: half a period was not enough)."""
    out: list[tuple[float, str]] = []
    k = 1
    while k * every <= duration - every:
        out.append((k * every, FAULTS[(k - 1) % len(FAULTS)]))
        k += 1
    return out


def run_faults(
    plan: list[tuple[float, str]],
    pool: Pool,
    settings: Settings,
    db_outage: float,
    faults: list[dict[str, Any]],
    stop: threading.Event,
) -> None:
    for at, kind in plan:
        while pool.t0() < at:
            if stop.wait(0.5):
                return
        started = pool.t0()
        note(f"  {started:.0f} s: fault {kind}")
        record: dict[str, Any] = {"kind": kind, "at": round(started, 1)}
        faults.append(record)
        try:
            if kind == "worker":
                record["detail"] = kill_worker(pool)
            elif kind == "broker":
                record["detail"] = restart_broker(settings)
            else:
                record["detail"] = database_outage(settings, db_outage)
        except Exception as exc:  # recorded; the run goes on
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["done_at"] = round(pool.t0(), 1)
        note(f"  {record['done_at']:.0f} s: {kind}: {record.get('detail') or record.get('error')}")


# --- the run ---------------------------------------------------------------------------------
async def _reconcile(settings: Settings) -> tuple[list[Any], Counter[str]]:
    from ioc.streams.deadletter_cli import read_dead_letters

    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        await conn.execute("SET work_mem = '256MB'")
        rows = list(await conn.fetch(PER_DEVICE_SQL))
    finally:
        await conn.close()
    scan = await read_dead_letters(settings, lambda _letter: True)
    return rows, Counter(letter.reason for letter in scan.selected.values())


def reconcile(settings: Settings, summary: Summary) -> dict[str, Any]:
    """Every valid event stored exactly once (no duplicates, no gaps in any device's sequence),
    every invalid one dead-lettered with its reason."""
    valid = sum(summary.stats.valid_by_feed.values())
    invalid = Counter(dict(summary.stats.invalid_by_reason))
    rows, dlq = asyncio.run(_reconcile(settings))
    landed = sum(r["n"] for r in rows)
    duplicates = sum(r["n"] - r["d"] for r in rows)
    lost = sum(r["mx"] - r["d"] for r in rows) + max(0, valid - landed + duplicates)
    figures: dict[str, Any] = {
        "produced_valid": valid,
        "produced_invalid": sum(invalid.values()),
        "landed": landed,
        "dlq": sum(dlq.values()),
        "duplicates": duplicates,
        "lost": lost,
        "delivery_errors": summary.errors,
    }
    figures["ok"] = (
        landed == valid and duplicates == 0 and lost == 0 and dlq == invalid and not summary.errors
    )
    return figures


def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    tag = f"soak{uuid.uuid4().hex[:6]}"
    settings = load_settings().model_copy(
        update={"kafka_topic_prefix": f"{tag}.", "db_schema": tag}
    )
    asyncio.run(bootstrap(settings, SCENARIO))
    origin = [time.monotonic()]
    pool = Pool(settings, log_dir, tag, lambda: time.monotonic() - origin[0])
    stop = threading.Event()
    faults: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    lag_monitor: KafkaLag | None = None
    try:
        for _ in range(args.workers):
            pool.start()
        for tracked in pool.alive():
            tracked.proc.wait_serving()
        time.sleep(10)  # join the group before load starts
        lag_monitor = KafkaLag(settings)
        cpu_meter = CpuMeter()
        result: dict[str, Summary] = {}
        config = SimConfig(
            scenario=SCENARIO,
            mode="rate",
            rate=args.rate,
            duration_s=args.duration,
            progress=False,
            workers=args.sim_workers,
            replay_cycle_s=args.replay_cycle or None,
            fault_flags=[f"malformed:{args.malformed}"] if args.malformed else [],
        )
        producer = threading.Thread(
            target=lambda: result.setdefault("s", run_simulation(settings, config)), daemon=True
        )
        plan = schedule(args.duration, args.fault_every)
        origin[0] = time.monotonic()
        for tracked in pool.alive():
            tracked.started_t = -10.0
        producer.start()
        faulter = threading.Thread(
            target=run_faults,
            args=(plan, pool, settings, args.db_outage, faults, stop),
            daemon=True,
        )
        faulter.start()
        last_note = 0.0
        drain_started: float | None = None
        drained_at: float | None = None
        while True:
            t = pool.t0()
            sample = take_sample(t, pool, settings, lag_monitor, cpu_meter)
            samples.append(sample)
            if t - last_note >= 30:
                last_note = t
                note(
                    f"  {t:.0f} s: lag {sample['lag']}, workers {sample['alive']}, RSS "
                    f"{sample['rss_mib']} MiB, fds {sample['fds']}, db conns "
                    f"{sample['db_conns']}"
                )
            if not producer.is_alive() and not faulter.is_alive():
                if drain_started is None:
                    drain_started = t
                    note(f"  {t:.0f} s: production over, draining")
                if sample["lag"] == 0:
                    drained_at = t
                    break
                if t - drain_started > args.drain_timeout:
                    note(f"  not drained within {args.drain_timeout:.0f} s")
                    break
            time.sleep(max(0.0, args.sample_every - (pool.t0() - t)))
        summary = result["s"]
        note("  reconciling")
        figures = reconcile(settings, summary)
    finally:
        stop.set()
        if lag_monitor is not None:
            lag_monitor.close()
        stop_all([t.proc for t in pool.tracked])
        restore_stack(settings)
        asyncio.run(drop_namespace(settings))
    end_t = pool.t0()
    for tracked in pool.tracked:
        if tracked.ended_t is None:
            tracked.ended_t = end_t
    return {
        "namespace": tag,
        "summary": {
            "offered": summary.offered_rate,
            "sent": summary.sent,
            "errors": summary.errors,
            "elapsed_s": round(summary.elapsed_s, 1),
            "achieved_events_per_s": round(summary.events_per_s),
        },
        "production_end_t": None if drain_started is None else round(drain_started, 1),
        "drain_s": None
        if drained_at is None or drain_started is None
        else round(drained_at - drain_started, 1),
        "faults": faults,
        "samples": samples,
        "workers": [t.as_dict() for t in pool.tracked],
        "worker_allocator": settings.worker_allocator,
        "reconcile": figures,
    }


def take_sample(
    t: float, pool: Pool, settings: Settings, lag: KafkaLag, cpu: CpuMeter
) -> dict[str, Any]:
    alive = pool.alive()
    rss = fds = socks = 0
    worker_lag = 0.0
    for tracked in alive:
        figures = process_figures(tracked.proc.pid, settings.postgres_port)
        try:
            totals = tracked.proc.metric_totals()
        except OSError:
            totals = {}
        written = totals.get(m.EVENTS_WRITTEN.series, 0.0)
        worker_lag += totals.get(m.CONSUMER_LAG.series, 0.0)
        if figures is None:
            continue
        tracked.samples.append((t, figures[0], figures[1], figures[2], written))
        rss += round(figures[0])
        fds += figures[1]
        socks += figures[2]
    kafka = lag.sample()
    return {
        "t": round(t, 1),
        "alive": len(alive),
        "lag": None if kafka is None else kafka[0],
        "end_offsets": None if kafka is None else kafka[1],
        "worker_lag": round(worker_lag),
        "rss_mib": rss,
        "fds": fds,
        "db_sockets": socks,
        "db_conns": db_worker_connections(settings),
        "cpu": cpu.sample([tracked.proc.pid for tracked in alive]),
    }


# --- verdicts --------------------------------------------------------------------------------
def median_of(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def tail(start: float, end: float, every: float) -> tuple[float, float]:
    """The last quarter of a window (at least three samples): where it should have settled."""
    return max(start, end - max((end - start) / 4, 3 * every)), end


def judge(soak: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    samples = soak["samples"]
    faults = soak["faults"]
    prod_end = soak["production_end_t"] or samples[-1]["t"]
    first_fault = faults[0]["at"] if faults else prod_end
    base = (args.warmup, first_fault)
    final = tail(faults[-1]["at"] if faults else args.warmup, prod_end, args.sample_every)
    # RSS: buffers reach their high-water mark the first time each fault makes a backlog
    # (librdkafka's prefetch queue alone may hold 64 MiB while a worker catches up), and
    # neither glibc nor librdkafka hands that back. A leak grows with every repetition, a
    # high-water mark does not: the RSS baseline is the end of the window after one fault
    # of each kind, when the run has that many (else the window before the first fault).
    settled = len(faults) > args.rss_settle
    rss_base = (
        tail(faults[args.rss_settle - 1]["at"], faults[args.rss_settle]["at"], args.sample_every)
        if settled
        else base
    )

    def during(lo: float, hi: float, key: str) -> list[float]:
        return [s[key] for s in samples if lo <= s["t"] < hi and s[key] is not None]

    lag_base = median_of(during(*base, "lag")) or 0.0
    bound = lag_base + LAG_SLACK_S * args.rate
    windows = []
    for i, fault in enumerate(faults):
        end = faults[i + 1]["at"] if i + 1 < len(faults) else prod_end
        lo, hi = tail(fault["at"], end, args.sample_every)
        end_lag = median_of(during(lo, hi, "lag"))
        recovered = next(
            (
                s["t"] - fault["at"]
                for s in samples
                if fault.get("done_at", fault["at"]) <= s["t"] < prod_end
                and s["lag"] is not None
                and s["lag"] <= bound
            ),
            None,
        )
        windows.append(
            {
                "fault": fault["kind"],
                "at": fault["at"],
                "until": end,
                "fault_s": round(fault.get("done_at", fault["at"]) - fault["at"], 1),
                "lag_max": max(during(fault["at"], end, "lag"), default=None),
                "recovered_after_s": None if recovered is None else round(recovered, 1),
                "lag_at_end": end_lag,
                "flat": end_lag is not None and end_lag <= bound,
            }
        )
    workers = []
    for w in soak["workers"]:
        whole = w["started_t"] <= base[0] and (w["ended_t"] or 0) >= prod_end
        if whole:
            b, f, rb = base, final, rss_base
        else:  # a replacement: its own warm-up, then its own last window
            b = (w["started_t"] + args.warmup, w["started_t"] + args.warmup + args.fault_every / 4)
            f = tail(b[1], w["ended_t"] or prod_end, args.sample_every)
            rb = b
        pick = [s for s in w["samples"] if b[0] <= s[0] < b[1]]
        rss_pick = [s for s in w["samples"] if rb[0] <= s[0] < rb[1]] or pick
        last = [s for s in w["samples"] if f[0] <= s[0] < f[1]]
        if not pick or not last or f[0] < b[1]:
            workers.append({"name": w["name"], "whole_run": whole, "judged": False})
            continue
        rss_first = statistics.median(s[1] for s in pick)
        rss0, rss1 = (
            statistics.median(s[1] for s in rss_pick),
            statistics.median(s[1] for s in last),
        )
        fd0, fd1 = statistics.median(s[2] for s in pick), statistics.median(s[2] for s in last)
        db0, db1 = statistics.median(s[3] for s in pick), statistics.median(s[3] for s in last)
        workers.append(
            {
                "name": w["name"],
                "pid": w["pid"],
                "whole_run": whole,
                "judged": whole,
                "rss_mib": [round(rss0, 1), round(rss1, 1)],
                "rss_growth_pct": round((rss1 - rss0) / rss0 * 100, 1),
                "rss_before_faults_mib": round(rss_first, 1),
                "rss_growth_from_before_faults_pct": round((rss1 - rss_first) / rss_first * 100, 1),
                "fds": [fd0, fd1],
                "db_sockets": [db0, db1],
            }
        )
    judged = [w for w in workers if w["judged"]]
    conns0 = median_of(during(*base, "db_conns"))
    conns1 = median_of(during(*final, "db_conns"))
    achieved = soak["summary"]["achieved_events_per_s"]
    verdicts = {
        "rate_reached": achieved >= 0.95 * args.rate,
        "rss_growth_pct": max((w["rss_growth_pct"] for w in judged), default=None),
        "rss_ok": bool(judged) and all(w["rss_growth_pct"] < RSS_GROWTH_MAX_PCT for w in judged),
        "fd_growth": max((w["fds"][1] - w["fds"][0] for w in judged), default=None),
        "fd_ok": bool(judged) and all(w["fds"][1] - w["fds"][0] <= FD_SLACK for w in judged),
        "db_conns": [conns0, conns1],
        "db_conn_growth": None if conns0 is None or conns1 is None else conns1 - conns0,
        "db_conn_ok": conns0 is not None and conns1 is not None and conns1 - conns0 <= CONN_SLACK,
        "lag_baseline": lag_base,
        "lag_bound": bound,
        "lag_flat": all(w["flat"] for w in windows),
        "reconciled": soak["reconcile"]["ok"],
    }
    verdicts["pass"] = all(
        verdicts[k] for k in ("rss_ok", "fd_ok", "db_conn_ok", "lag_flat", "reconciled")
    )

    def cpu_in(lo: float, hi: float) -> dict[str, float | None]:
        picked = [s["cpu"] for s in samples if lo <= s["t"] < hi and s.get("cpu")]
        return {k: median_of([c[k] for c in picked]) for k in (*CPU_GROUPS, "machine")}

    return {
        "cpu_cores": {
            "baseline": cpu_in(*base),
            "final": cpu_in(*final),
            "whole": cpu_in(args.warmup, prod_end),
        },
        "baseline_window": list(base),
        "rss_baseline_window": [round(rss_base[0], 1), round(rss_base[1], 1)],
        "rss_baseline_settled": settled,
        "final_window": [round(final[0], 1), round(final[1], 1)],
        "windows": windows,
        "worker_figures": workers,
        "verdicts": verdicts,
    }


def capacity() -> dict[str, Any] | None:
    """What bench/pipeline.py measured on this machine (the committed result)."""
    try:
        saved = json.loads((RESULTS / "pipeline.json").read_text())
    except (OSError, ValueError):
        return None
    sustained = saved.get("sustained") or {}
    return {
        "sustained_events_per_s": sustained.get("achieved_events_per_s"),
        "sustained_offered": sustained.get("offered"),
        "drain_events_per_s": saved.get("drain_events_per_s"),
        "date": saved.get("date"),
    }


def report(result: dict[str, Any]) -> None:
    s, v, r = result["summary"], result["verdicts"], result["reconcile"]
    print(
        f"\nsoak: {result['duration_s']:.0f} s asked at {result['rate']:,.0f} ev/s, "
        f"{result['workers']} workers, a fault every {result['fault_every_s']:.0f} s"
    )
    print(f"load generator: {result['load_generator']}")
    print(f"worker allocator: {result['worker_allocator']} (IOC_WORKER_ALLOCATOR)")
    cap = result.get("capacity")
    reached = "reached" if v["rate_reached"] else "NOT REACHED"
    print(
        f"rate: asked {result['rate']:,.0f} ev/s, achieved {s['achieved_events_per_s']:,} ev/s "
        f"({s['sent']:,} sent in {s['elapsed_s']:.0f} s): {reached}"
        + (
            f"; pipeline.json measured {cap['sustained_events_per_s']:,} ev/s sustained "
            f"({cap['sustained_offered']:,.0f} offered), {cap['drain_events_per_s']:,} draining"
            if cap and cap.get("sustained_events_per_s") and cap.get("drain_events_per_s")
            else ""
        )
    )
    print(
        f"\n{'fault':>9} {'at s':>6} {'took s':>6} {'lag max':>9} {'back s':>7} {'lag end':>8} flat"
    )
    print(
        f"{'baseline':>9} {result['baseline_window'][0]:>6.0f} {'':>6} {'':>9} {'':>7} "
        f"{v['lag_baseline']:>8,.0f} (bound {v['lag_bound']:,.0f})"
    )
    for w in result["windows"]:
        lag_max = "-" if w["lag_max"] is None else f"{w['lag_max']:,.0f}"
        lag_end = "-" if w["lag_at_end"] is None else f"{w['lag_at_end']:,.0f}"
        print(
            f"{w['fault']:>9} {w['at']:>6.0f} {w['fault_s']:>6.0f} {lag_max:>9} "
            f"{w['recovered_after_s']!s:>7} {lag_end:>8} {'yes' if w['flat'] else 'NO'}"
        )
    cpu = result.get("cpu_cores") or {}
    for label, key in (("before faults", "baseline"), ("last window", "final"), ("whole", "whole")):
        figures = cpu.get(key) or {}
        if any(v is not None for v in figures.values()):
            print(
                f"CPU cores busy, median, {label}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in figures.items() if v is not None)
            )
    rb = result["rss_baseline_window"]
    print(
        f"\nRSS baseline {rb[0]:.0f}-{rb[1]:.0f} s ("
        + (
            f"after {result['rss_settle_faults']} faults"
            + (", one of each kind" if result["rss_settle_faults"] >= len(FAULTS) else "")
            if result["rss_baseline_settled"]
            else "before the first fault: too few faults to let buffers settle"
        )
        + f"); fds and connections from {result['baseline_window'][0]:.0f}-"
        f"{result['baseline_window'][1]:.0f} s; end {result['final_window'][0]:.0f}-"
        f"{result['final_window'][1]:.0f} s"
    )
    print(
        f"{'worker':>6} {'whole':>5} {'RSS MiB':>13} {'growth':>7} {'pre-fault':>10} {'fds':>9} "
        f"{'db socks':>9}"
    )
    for w in result["worker_figures"]:
        if "rss_mib" not in w:
            print(f"{w['name']:>6} {'yes' if w['whole_run'] else 'no':>5}   (too short to judge)")
            continue
        print(
            f"{w['name']:>6} {'yes' if w['whole_run'] else 'no':>5} "
            f"{w['rss_mib'][0]:>6.0f}->{w['rss_mib'][1]:<5.0f} {w['rss_growth_pct']:>6.1f}% "
            f"{w['rss_growth_from_before_faults_pct']:>9.1f}% "
            f"{w['fds'][0]:>4.0f}->{w['fds'][1]:<4.0f} {w['db_sockets'][0]:>4.0f}->"
            f"{w['db_sockets'][1]:<4.0f}"
        )
    print(
        f"\nreconcile: produced {r['produced_valid']:,} valid + {r['produced_invalid']:,} "
        f"invalid, landed {r['landed']:,}, DLQ {r['dlq']:,}, duplicates {r['duplicates']}, lost "
        f"{r['lost']}, delivery errors {r['delivery_errors']}; drained in {result['drain_s']} s"
    )

    def ok(flag: bool) -> str:
        return "ok" if flag else "FAIL"

    print(
        f"verdicts: RSS growth {v['rss_growth_pct']} % (< {RSS_GROWTH_MAX_PCT:.0f} %) "
        f"{ok(v['rss_ok'])}; fd growth {v['fd_growth']} (<= {FD_SLACK}) {ok(v['fd_ok'])}; "
        f"db connections {v['db_conns'][0]} -> {v['db_conns'][1]} (<= +{CONN_SLACK}) "
        f"{ok(v['db_conn_ok'])}; lag flat between faults {ok(v['lag_flat'])}; reconciled "
        f"{ok(v['reconciled'])}; rate {reached}"
    )
    print("PASS" if v["pass"] else "FAIL")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    with_cpu = any(s.get("cpu") for s in samples)
    fig, axes = plt.subplots(
        5 if with_cpu else 4, 1, figsize=(12, 15 if with_cpu else 12), sharex=True
    )
    rate_ax, lag_ax, rss_ax, fd_ax = axes[:4]
    ts = [s["t"] for s in samples]
    produced = [
        (b["t"], (b["end_offsets"] - a["end_offsets"]) / (b["t"] - a["t"]))
        for a, b in itertools.pairwise(samples)
        if a["end_offsets"] is not None and b["end_offsets"] is not None and b["t"] > a["t"]
    ]
    landed: dict[float, float] = {}
    for w in result["workers_raw"]:
        for a, b in itertools.pairwise(w["samples"]):
            if b[0] > a[0] and b[4] >= a[4]:
                # one take_sample() gives every worker the same t: sum them by it
                landed[b[0]] = landed.get(b[0], 0.0) + (b[4] - a[4]) / (b[0] - a[0])
    rate_ax.plot([p[0] for p in produced], [p[1] for p in produced], lw=0.8, label="produced")
    rate_ax.plot(sorted(landed), [landed[k] for k in sorted(landed)], lw=0.8, label="landed")
    rate_ax.axhline(result["rate"], color="grey", ls="--", lw=0.8, label="asked")
    rate_ax.set_ylabel("events/s")
    rate_ax.set_title(
        f"Soak: {result['duration_s'] / 60:.0f} min at {result['rate']:,.0f} ev/s asked "
        f"({result['summary']['achieved_events_per_s']:,} achieved), yen-bai-2022, 2 cores"
    )
    lag_ax.plot(ts, [s["lag"] for s in samples], lw=0.8, label="lag (Kafka committed vs end)")
    lag_ax.plot(ts, [s["worker_lag"] for s in samples], lw=0.6, alpha=0.6, label="workers' gauge")
    lag_ax.axhline(result["verdicts"]["lag_bound"], color="red", lw=0.8, label="flat bound")
    lag_ax.set_ylabel("messages behind")
    for w in result["workers_raw"]:
        rss_ax.plot(
            [s[0] for s in w["samples"]], [s[1] for s in w["samples"]], lw=0.8, label=w["name"]
        )
        fd_ax.plot(
            [s[0] for s in w["samples"]],
            [s[2] for s in w["samples"]],
            lw=0.8,
            label=f"{w['name']} fds",
        )
    rss_ax.set_ylabel("worker RSS (MiB)")
    fd_ax.plot(ts, [s["db_conns"] for s in samples], "k", lw=0.8, label="db connections (server)")
    fd_ax.set_ylabel("open fds / connections")
    if with_cpu:
        cpu_ax = axes[4]
        timed = [s for s in samples if s.get("cpu")]
        cpu_ax.stackplot(
            [s["t"] for s in timed],
            *[[s["cpu"][k] for s in timed] for k in CPU_GROUPS],
            labels=list(CPU_GROUPS),
            alpha=0.7,
        )
        cpu_ax.plot(
            [s["t"] for s in timed],
            [s["cpu"]["machine"] for s in timed],
            "k",
            lw=0.6,
            label="machine",
        )
        cpu_ax.set_ylabel("cores busy")
    axes[-1].set_xlabel("seconds since load start")
    for ax in axes:
        for f in result["faults"]:
            ax.axvspan(f["at"], f.get("done_at", f["at"]), color="orange", alpha=0.3)
        ax.axvline(result["warmup_s"], color="grey", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=4)
    for f in result["faults"]:
        lag_ax.text(
            f["at"],
            0.98,
            f["kind"],
            transform=lag_ax.get_xaxis_transform(),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
        )
    rss_ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def assemble(soak: dict[str, Any], args: argparse.Namespace, date: str, command: str) -> Any:
    """The result document: the run's settings, its verdicts and every sample (enough for
    ``--report-only`` to judge it again)."""
    return {
        "benchmark": "soak",
        "scenario": SCENARIO,
        "date": date,
        "machine": machine(),
        "command": command,
        "duration_s": args.duration,
        "rate": args.rate,
        "fault_every_s": args.fault_every,
        "workers": args.workers,
        "warmup_s": args.warmup,
        "rss_settle_faults": args.rss_settle,
        "sample_every_s": args.sample_every,
        "db_outage_s": args.db_outage,
        "load_generator": soak.get("load_generator") or describe(args.replay_cycle),
        "worker_allocator": soak.get("worker_allocator"),
        "capacity": capacity(),
        "summary": soak["summary"],
        "production_end_t": soak["production_end_t"],
        "drain_s": soak["drain_s"],
        "reconcile": soak["reconcile"],
        **judge(soak, args),
        "faults": soak["faults"],
        "samples": soak["samples"],
        "workers_raw": soak["workers"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="load, s")
    parser.add_argument("--rate", type=float, default=20_000.0, help="events/s asked")
    parser.add_argument("--fault-every", type=float, default=300.0, help="s between faults")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sim-workers", type=int, default=1, help="simulator processes")
    parser.add_argument(
        "--replay-cycle",
        type=float,
        default=10.0,
        help="s of simulated load generated once and replayed (0: simulate all the way, "
        "about 4x the load generator's CPU)",
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="s (default min(120, fault-every/2))"
    )
    parser.add_argument(
        "--rss-settle",
        type=int,
        default=len(FAULTS),
        help="faults before the RSS baseline (default: one of each kind)",
    )
    parser.add_argument("--db-outage", type=float, default=20.0, help="database fault, s")
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--malformed", type=float, default=0.0, help="fraction of bad messages")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json", help="result file")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="judge --out's samples again, print, rewrite it and its plot (no run)",
    )
    args = parser.parse_args()
    if args.malformed and args.replay_cycle and not args.report_only:
        parser.error(
            "--malformed needs the simulators: add --replay-cycle 0 (a replay repeats "
            "one healthy cycle)"
        )
    # the broker's readiness check (aiokafka) logs every refused connection while it restarts
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    png = args.out.with_suffix(".png")
    if args.report_only:
        saved = json.loads(args.out.read_text())
        for key in ("duration", "rate", "fault_every", "workers", "warmup", "sample_every"):
            setattr(args, key, saved[f"{key}_s"] if f"{key}_s" in saved else saved[key])
        args.db_outage = saved["db_outage_s"]
        soak = {k: saved.get(k) for k in ("summary", "production_end_t", "drain_s", "reconcile")}
        soak |= {"faults": saved["faults"], "samples": saved["samples"]}
        soak["workers"] = saved["workers_raw"]
        # results before the replay generator existed were produced by the simulators
        soak["load_generator"] = saved.get("load_generator", describe(None))
        soak["worker_allocator"] = saved.get("worker_allocator", "pymalloc")  # before jemalloc
        result = assemble(soak, args, saved["date"], saved["command"])
    else:
        if args.warmup is None:
            args.warmup = min(120.0, args.fault_every / 2)
        log_dir = Path("bench/out")
        log_dir.mkdir(parents=True, exist_ok=True)
        date = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        soak = run(args, log_dir)
        result = assemble(soak, args, date, " ".join(["bench/soak.py", *sys.argv[1:]]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    report(result)
    print(f"result: {args.out}")
    try:
        plot(result, png)
    except ImportError:
        print("(matplotlib not installed: no plot; pip install -e '.[bench]')")
    return 0 if result["verdicts"]["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
