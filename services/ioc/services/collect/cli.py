"""``ioc collect``: probe the real network nodes of a scenario (docs/collectors.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from ioc.config import Settings
from ioc.errors import IocError

log = logging.getLogger(__name__)

CLIENT_ID = "ioc-collector"


async def _collect(
    addresses: dict[str, str], sink: Any, duration: float | None, rounds: int | None
) -> int:
    from ioc.contract import feeds
    from ioc.services.collect.collector import FEED, Collector
    from ioc.services.collect.icmp import IcmpEngine

    collection = feeds.spec(FEED).collection
    if collection is None:  # pragma: no cover - the built-in declaration has one
        raise IocError(f"the {FEED} feed declares no collection")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    async with IcmpEngine() as engine:
        collector = Collector(addresses, sink, engine, collection)
        log.info(
            "probing %d targets every %.1f s (timeout %.1f s, %d echoes, %s ICMP socket)",
            len(addresses),
            collection.interval("netnode.probe"),
            collection.timeout_s,
            collection.echoes,
            "raw" if engine.raw else "datagram",
        )
        await collector.run(stop, rounds)
    return collector.rounds


def cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.contract.topology import load_scenario
    from ioc.observability import serve_metrics
    from ioc.services.collect import targets
    from ioc.sinks import FileSink, KafkaSink, Sink

    scenario = args.scenario or settings.scenario
    topology = load_scenario(scenario)
    chosen = targets.select(topology, args.shard, args.shards)
    if not chosen:
        raise targets.TargetError(
            f"no network node with an address in {scenario} (shard {args.shard} of "
            f"{args.shards}); addresses come from the inventory (ioc inventory import, "
            "docs/inventory.md)"
        )
    skipped = targets.without_address(topology)
    if skipped:
        log.info("%d network nodes have no address and are not probed", len(skipped))
    addresses, unresolved = asyncio.run(targets.resolve(chosen))
    if unresolved:
        log.warning(
            "%d targets have no IPv4 address and are not probed: %s",
            len(unresolved),
            ", ".join(unresolved[:10]) + (" ..." if len(unresolved) > 10 else ""),
        )
    if not addresses:
        raise targets.TargetError("no target resolved to an IPv4 address")
    sink: Sink
    if args.out:
        sink = FileSink(settings, Path(args.out))
    else:
        # The simulators' Kafka user: it may write the feed topics (a collector's own user
        # is not created by the stack yet, docs/collectors.md).
        sink = KafkaSink(
            settings.for_kafka_service("simulator"),
            client_id=f"{CLIENT_ID}-{args.shard}-of-{args.shards}",
        )
    if args.metrics_port is not None:
        serve_metrics(settings, "collector", args.metrics_port)
    try:
        rounds = asyncio.run(_collect(addresses, sink, args.duration, args.rounds))
    finally:
        sink.flush()
        if isinstance(sink, FileSink):
            sink.close()
    print(
        f"collector shard {args.shard}/{args.shards}: {len(addresses)} targets, "
        f"{rounds} rounds, {sink.sent} messages sent, {sink.errors} delivery errors"
    )
    return 0 if sink.errors == 0 else 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "collect",
        help="probe the scenario's real network nodes (ICMP) into the netnode feed",
        description="Ping every network node with an inventory address at the netnode feed's "
        "collection interval and produce netnode.probe messages to Kafka (or a file).",
    )
    p.add_argument("--scenario", help="built-in scenario name or YAML file (default IOC_SCENARIO)")
    p.add_argument("--shard", type=int, default=0, help="this collector's shard, 0..N-1")
    p.add_argument("--shards", type=int, default=1, help="how many collectors split the targets")
    p.add_argument("--out", metavar="FILE.jsonl", help="write to a file instead of Kafka")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--rounds", type=int, help="stop after this many probe rounds")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="P",
        help="serve /metrics here (default 0: any free port, announced to the local stack)",
    )
    p.set_defaults(handler=cmd_collect)
