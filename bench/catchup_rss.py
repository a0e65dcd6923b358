"""Catch-up RSS: where does a worker's memory go when it drains a backlog, and does it come back?

The hour's soak (bench/soak.py) showed the surviving worker's RSS stepping up at every broker
catch-up. This reproduces one catch-up in minutes instead of an hour: one ``ioc worker`` on
yen-bai-2022 in a private namespace, the simulators at ``--rate`` events/s, and ``--rounds``
times the worker is frozen (SIGSTOP) for ``--stop-s`` seconds and thawed (SIGCONT), so it
drains the backlog that built up. Every 2 s it samples the worker's RSS and the feed group's
lag; at the end it prints the peak, the RSS after each drain and where the anonymous memory
sits (glibc's 64 MiB per-thread arena heaps against the rest, from /proc/PID/smaps).

    PYTHONPATH=bench .venv/bin/python bench/catchup_rss.py [--trim-every-s 30] \
        [--env IOC_WORKER_ALLOCATOR=jemalloc] [--env MALLOC_ARENA_MAX=2]

The worker runs on its default allocator, CPython's pymalloc; ``--env
IOC_WORKER_ALLOCATOR=jemalloc`` runs it on jemalloc (ioc.memory.use_allocator).

``--trim-every-s 0`` runs the worker without its periodic malloc_trim (ioc.memory), to compare.
Needs the stack (`ioc stack up`); writes ``--out`` (default /tmp/catchup_rss.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench_machine import status_mib
from soak import SCENARIO, KafkaLag

from ioc.bootstrap import bootstrap, drop_namespace
from ioc.config import load_settings
from ioc.processes import WorkerProcess
from ioc.simulators.run import SimConfig, run_simulation

ARENA_HEAP_KIB = 65536
"""glibc's per-thread arena heaps are mapped 64 MiB at a time (HEAP_MAX_SIZE on 64-bit)."""


def rss_mib(pid: int) -> float:
    return status_mib("VmRSS", pid)


def anonymous_mib(pid: int) -> dict[str, float]:
    """Resident anonymous memory: in glibc's 64 MiB arena heaps, elsewhere (CPython's own 1 MiB
    arenas among it: the kernel merges adjacent ones into one mapping), in [heap]."""
    where = {"arena_heaps": 0.0, "other_anonymous": 0.0, "main_heap": 0.0}
    size_kib, name = 0, ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            start, end = (int(x, 16) for x in head[0].split("-"))
            size_kib, name = (end - start) >> 10, head[5] if len(head) > 5 else ""
        elif head[0] == "Rss:":
            rss = int(head[1]) / 1024
            if name == "[heap]":
                where["main_heap"] += rss
            elif not name:
                key = "arena_heaps" if size_kib == ARENA_HEAP_KIB else "other_anonymous"
                where[key] += rss
    return {k: round(v, 1) for k, v in where.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=13_000.0, help="events/s")
    parser.add_argument("--rounds", type=int, default=3, help="freeze/thaw rounds")
    parser.add_argument("--stop-s", type=float, default=60.0, help="frozen for, s")
    parser.add_argument("--every-s", type=float, default=130.0, help="a freeze this often, s")
    parser.add_argument("--trim-every-s", type=float, default=30.0, help="the worker's option")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the worker")
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        help="an `ioc worker` option, e.g. =--batch-size=2000",
    )
    parser.add_argument(
        "--replay-cycle",
        type=float,
        default=10.0,
        help="s of simulated load replayed (ioc.simulators.replay; 0: simulate all the way)",
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/catchup_rss.json"))
    args = parser.parse_args()
    tag = f"rss{uuid.uuid4().hex[:6]}"
    settings = load_settings().model_copy(
        update={"kafka_topic_prefix": f"{tag}.", "db_schema": tag}
    )
    asyncio.run(bootstrap(settings, SCENARIO))
    proc = WorkerProcess(settings, SCENARIO, Path(f"/tmp/{tag}-worker.log"), "w0")
    proc.argv += ["--memory-trim-every-s", str(args.trim_every_s), *args.worker_arg]
    assert proc.env is not None
    proc.env.update(kv.split("=", 1) for kv in args.env)
    duration = 40 + args.rounds * args.every_s
    samples: list[tuple[float, float, int | None]] = []
    after_drain: list[float] = []
    try:
        proc.start()
        proc.wait_serving()
        time.sleep(10)  # in the group before the load starts
        lag = KafkaLag(settings)
        load = SimConfig(
            scenario=SCENARIO,
            mode="rate",
            rate=args.rate,
            duration_s=duration,
            progress=False,
            replay_cycle_s=args.replay_cycle or None,
        )
        producer = threading.Thread(target=run_simulation, args=(settings, load), daemon=True)
        t0 = time.monotonic()
        producer.start()
        freezes = [40 + i * args.every_s for i in range(args.rounds)]
        frozen_at: float | None = None
        draining = False
        while True:
            now = time.monotonic() - t0
            if freezes and frozen_at is None and now >= freezes[0]:
                os.kill(proc.pid, signal.SIGSTOP)
                frozen_at = now
            if frozen_at is not None and now - frozen_at >= args.stop_s:
                os.kill(proc.pid, signal.SIGCONT)
                frozen_at, draining = None, True
                freezes.pop(0)
            sample = lag.sample()
            backlog = sample[0] if sample else None
            samples.append((round(now, 1), round(rss_mib(proc.pid), 1), backlog))
            if draining and backlog is not None and backlog < 2 * args.rate:
                draining = False
                time.sleep(args.trim_every_s + 5 if args.trim_every_s else 35)
                after_drain.append(rss_mib(proc.pid))
                print(f"{now:6.0f} s: drained, RSS {after_drain[-1]:.0f} MiB", flush=True)
            elif len(samples) % 5 == 0:
                print(f"{now:6.0f} s: lag {backlog}, RSS {samples[-1][1]:.0f} MiB", flush=True)
            if now > duration and not producer.is_alive() and not freezes:
                break
            time.sleep(2)
        result: dict[str, Any] = {
            "rate": args.rate,
            "rounds": args.rounds,
            "stop_s": args.stop_s,
            "trim_every_s": args.trim_every_s,
            "env": args.env,
            "worker_args": args.worker_arg,
            "rss_before_mib": samples[0][1],
            "rss_peak_mib": max(s[1] for s in samples),
            "rss_after_each_drain_mib": [round(r, 1) for r in after_drain],
            "anonymous_at_end_mib": anonymous_mib(proc.pid),
            "samples": samples,
        }
    finally:
        proc.stop()
        asyncio.run(drop_namespace(settings))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"trim every {args.trim_every_s:g} s {' '.join(args.env + args.worker_arg)}: RSS "
        f"{result['rss_before_mib']}"
        f" MiB before, peak {result['rss_peak_mib']}, after each drain "
        f"{result['rss_after_each_drain_mib']}; anonymous at the end "
        f"{result['anonymous_at_end_mib']} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
