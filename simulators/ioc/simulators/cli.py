"""``ioc simulate``: produce a scenario's feeds to Kafka or a file."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from ioc.config import Settings
from ioc.errors import IocError


def _parse_start(text: str) -> int:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise IocError(
            f"--start {text!r}: expected ISO 8601, e.g. 2022-06-01T08:00:00+07:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.simulators.run import SimConfig, run_simulation

    if args.rate is not None and args.realtime:
        raise IocError("choose one of --rate (load mode) and --realtime")
    if args.rate is not None:
        mode = "rate"
    elif args.realtime or not args.out:
        mode = "realtime"
    else:
        mode = "virtual"
    cfg = SimConfig(
        scenario=args.scenario or settings.scenario,
        mode=mode,
        rate=args.rate,
        duration_s=args.duration
        if args.duration is not None
        else (600.0 if mode == "virtual" else None),
        seed=args.seed,
        start_ms=_parse_start(args.start) if args.start else None,
        faults_path=args.faults,
        fault_flags=args.fault or [],
        out=args.out,
        workers=args.workers,
        progress=not args.quiet,
        replay_cycle_s=args.replay_cycle,
    )
    summary = run_simulation(settings.for_kafka_service("simulator"), cfg)
    print(summary.render())
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as fh:
            json.dump(summary.as_dict(), fh, indent=2)
    return 0 if summary.errors == 0 else 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="produce camera/telehealth/network-node feeds (Kafka or file)",
        description="Simulate a scenario's devices. Default: real time to Kafka until Ctrl-C.",
    )
    p.add_argument("--scenario", help="built-in scenario name or YAML file (default IOC_SCENARIO)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--rate",
        type=float,
        metavar="EV_PER_S",
        help="load mode: offer this many events/s (periods compressed)",
    )
    mode.add_argument(
        "--realtime", action="store_true", help="natural report periods, paced to the wall clock"
    )
    p.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="how long (event time); default: until Ctrl-C, or 600 s with --out",
    )
    p.add_argument("--faults", metavar="FILE", help="fault plan YAML")
    p.add_argument(
        "--fault",
        action="append",
        metavar="SPEC",
        help="TYPE:TARGET@START+DURATION or TYPE:RATE (repeatable)",
    )
    p.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    p.add_argument(
        "--start",
        metavar="ISO",
        help="event time of the first report "
        "(default now; with --out and no --realtime/--rate, fixes the output)",
    )
    p.add_argument("--out", metavar="FILE.jsonl", help="write to a file instead of Kafka")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the devices")
    p.add_argument(
        "--replay-cycle",
        type=float,
        metavar="SECONDS",
        help="with --rate: simulate SECONDS once, then replay them shifted in time "
        "(under a third of the CPU per event; no faults)",
    )
    p.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=cmd_simulate)
