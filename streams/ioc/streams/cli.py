"""``ioc worker``: one stream-processing worker (run several to share the partitions)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from typing import Any

from ioc.config import Settings

log = logging.getLogger(__name__)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ioc import memory

    # may re-execute this command: first, before any thread or connection
    command = [sys.executable, "-m", "ioc.cli", *args.argv]
    allocator = memory.use_allocator(settings.worker_allocator, command)
    import faust

    from ioc.bootstrap import verify
    from ioc.contract.topology import load_scenario
    from ioc.observability import serve_metrics
    from ioc.streams.app import StreamOptions, build_app

    settings = settings.for_kafka_service("worker")  # its own Kafka user: its topics only
    for name in ("faust", "mode"):  # ioc.cli quiets them to WARNING (-v: DEBUG); --loglevel
        faust_log = logging.getLogger(name)  # may say more
        faust_log.setLevel(
            min(faust_log.getEffectiveLevel(), logging.getLevelNamesMapping()[args.loglevel])
        )
    topology = load_scenario(args.scenario or settings.scenario)
    asyncio.run(verify(settings, topology))  # workers run as the runtime role: no DDL here
    port = serve_metrics(
        settings,
        "worker",
        args.metrics_port if args.metrics_port is not None else settings.metrics_port,
    )
    from ioc.contract import metrics as m
    from ioc.observability import gauge

    gauge(m.STREAM_WORKERS_DESIRED).set(settings.workers_desired)  # StreamWorkerDown's target
    name = args.name  # default worker-HOST-PID (register())
    options = StreamOptions(
        batch_size=args.batch_size,
        worker_name=name,
        rollup_settle_s=args.rollup_settle_s,
        memory_trim_every_s=args.memory_trim_every_s,
        retention=settings.retention(),
        history_every_s=settings.history_every_s,
        history_settle_s=settings.history_settle_s,
        history_day_settle_s=settings.history_day_settle_s,
    )
    app, _pipeline = build_app(settings, topology, options)
    log.info(
        "worker %s: scenario %s (%d devices), metrics on :%d, group %s, allocator %s",
        name,
        topology.name,
        len(topology.devices),
        port,
        app.conf.id,
        allocator,
    )
    print(
        f"ioc worker {name}: scenario {topology.name}, metrics http://127.0.0.1:{port}/metrics",
        flush=True,
    )
    worker = faust.Worker(
        app, loglevel=args.loglevel, quiet=True, redirect_stdouts=False, override_logging=False
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def cmd_bootstrap(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.bootstrap import bootstrap

    topology = asyncio.run(bootstrap(settings, args.scenario or settings.scenario))
    print(
        f"bootstrapped schema {settings.db_schema} and the topics for scenario {topology.name} "
        f"({len(topology.devices)} devices)"
    )
    return 0


def cmd_portal_recompute(args: argparse.Namespace, settings: Settings) -> int:
    import asyncpg

    from ioc.streams.portal_recompute import period_days, recompute

    first, _ = period_days(args.period)
    _, last = period_days(args.to or args.period)

    async def run() -> int:
        conn = await asyncpg.connect(
            settings.database_dsn(),
            server_settings={"search_path": f"{settings.db_schema},public"},
        )
        try:
            return await recompute(conn, first, last)
        finally:
            await conn.close()

    rows = asyncio.run(run())
    print(f"portal KPIs recomputed from raw for {first}..{last}: {rows} (unit, day) rows")
    return 0


def register(sub: Any) -> None:
    b = sub.add_parser(
        "bootstrap",
        help="as the schema owner: migrations, Kafka topics and the scenario's topology "
        "(what workers check for; idempotent)",
    )
    b.add_argument("--scenario", help="topology to load (default IOC_SCENARIO)")
    b.set_defaults(handler=cmd_bootstrap)
    p = sub.add_parser("worker", help="run one stream-processing worker (Faust)")
    p.add_argument(
        "--scenario", help="topology the worker validates against (default IOC_SCENARIO)"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="Prometheus /metrics port (default IOC_METRICS_PORT; 0 = any free)",
    )
    p.add_argument(
        "--name",
        # in a container every worker is pid 1: the host name (the container's id) tells
        # the replicas apart in metrics and logs
        default=f"worker-{socket.gethostname()}-{os.getpid()}",
        help="worker name in metrics and logs (default worker-HOST-PID)",
    )
    p.add_argument(
        "--batch-size", type=int, default=10_000, help="max messages per consume() batch"
    )
    p.add_argument(
        "--rollup-settle-s",
        type=float,
        default=15.0,
        help="recompute a minute's rollups once it has been dirty this long (default 15)",
    )
    p.add_argument(
        "--memory-trim-every-s",
        type=float,
        default=30.0,
        help="hand freed heap back to the OS this often (0: never; default 30)",
    )
    p.add_argument(
        "--loglevel",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="Faust's log level (its rebalances and recoveries: INFO)",
    )
    p.set_defaults(handler=cmd_worker)
    portal = sub.add_parser("portal", help="the public-service portal feed's KPIs")
    portal_sub = portal.add_subparsers(dest="portal_command", required=True, metavar="ACTION")
    r = portal_sub.add_parser(
        "recompute",
        help="rebuild the daily KPIs (and so the monthly and quarterly ones) of a period from "
        "the raw events",
    )
    r.add_argument("period", help="2026Q3, 2026-11 or 2026-11-26 (Vietnam time)")
    r.add_argument("--to", help="last period of a range (same forms)")
    r.set_defaults(handler=cmd_portal_recompute)
