"""``ioc collect``: poll the real network nodes of a scenario over ICMP and SNMP, receive
their traps, poll its telehealth stations and video bridges over HTTP, sample its cameras'
streams over RTSP, and produce the feeds' messages (docs/collectors.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import REGISTRY, CollectorRegistry

from ioc.config import Settings
from ioc.contract.feeds import Collection
from ioc.errors import IocError

if TYPE_CHECKING:
    from ioc.services.collect.spool import SpoolingSink

log = logging.getLogger(__name__)

CLIENT_ID = "ioc-collector"
PROTOCOLS: Final = ("icmp", "snmp", "http", "rtsp")
HTTP_CONCURRENCY: Final = 256
"""HTTP requests in flight at most, by default (``--http-concurrency``)."""
RTSP_DECODERS: Final = 4
"""Camera streams decoded at once, by default (``--rtsp-decoders``): one ffmpeg each."""
SINK_POLL_S: Final = 0.05
"""How often delivery reports are served and the spool is pumped between rounds (traps
arrive between them)."""


@dataclass
class Plan:
    """What one collector does: its ICMP targets (device id -> IPv4), SNMP targets, the trap
    receiver's nodes (IPv4 -> device id, with each one's profile), if it listens, its HTTP
    targets (telehealth stations, video bridges) with the bound on requests in flight, and its
    cameras (RTSP) with how many streams it decodes at once."""

    icmp: dict[str, str] = field(default_factory=dict)
    snmp: list[Any] = field(default_factory=list)
    http: list[Any] = field(default_factory=list)
    http_concurrency: int = HTTP_CONCURRENCY
    rtsp: list[Any] = field(default_factory=list)
    rtsp_decoders: int = RTSP_DECODERS
    trap_devices: dict[str, str] = field(default_factory=dict)
    trap_profiles: dict[str, Any] = field(default_factory=dict)
    trap_host: str = "0.0.0.0"
    trap_port: int | None = None


@dataclass
class Summary:
    probe_rounds: int = 0
    snmp_rounds: int = 0
    http_rounds: dict[str, int] = field(default_factory=dict)
    """Per HTTP-polled feed (telehealth, vconf)."""
    stream_rounds: int = 0
    """RTSP stream samples of every camera (the heartbeat rounds run beside them)."""
    traps: dict[str, int] = field(default_factory=dict)


async def collect(
    plan: Plan,
    sink: Any,
    collection: Collection,
    stop: asyncio.Event,
    *,
    rounds: int | None = None,
    registry: CollectorRegistry = REGISTRY,
    on_trap_port: Callable[[int], None] | None = None,
    clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    collections: Mapping[str, Collection] | None = None,
) -> Summary:
    """Run the plan until ``stop`` (or ``rounds`` rounds of each polling protocol), every part
    sharing the sequence numbers, the sink and the link states. ``collection`` is the netnode
    feed's schedule; the HTTP-polled feeds' and the cameras' come from ``collections`` or their
    declarations."""
    from ioc.contract import feeds
    from ioc.contract import metrics as m
    from ioc.observability import gauge
    from ioc.services.collect import httppoll, rtsp, snmp, traps
    from ioc.services.collect.collector import (
        Collector,
        RtspCollector,
        Sequences,
        SnmpCollector,
        produced,
    )
    from ioc.services.collect.icmp import IcmpEngine

    sequences = Sequences(clock_ms())
    tracker = snmp.Tracker()
    summary = Summary()
    async with contextlib.AsyncExitStack() as stack:
        jobs: list[asyncio.Future[Any]] = []
        if plan.icmp:
            engine = await stack.enter_async_context(IcmpEngine())
            icmp = Collector(
                plan.icmp,
                sink,
                engine,
                collection,
                registry=registry,
                clock_ms=clock_ms,
                sequences=sequences,
            )
            log.info(
                "probing %d targets every %.1f s (timeout %.1f s, %d echoes, %s ICMP socket)",
                len(plan.icmp),
                collection.interval("netnode.probe"),
                collection.timeout_s,
                collection.echoes,
                "raw" if engine.raw else "datagram",
            )
            jobs.append(asyncio.ensure_future(icmp.run(stop, rounds)))
        poller: snmp.SnmpPoller | None = None
        if plan.snmp:
            poller = snmp.SnmpPoller(collection.timeout_s)
            stack.callback(poller.close)
            polls = SnmpCollector(
                plan.snmp,
                sink,
                poller,
                collection,
                sequences,
                tracker,
                registry=registry,
                clock_ms=clock_ms,
            )
            log.info(
                "polling %d targets over SNMP every %.1f s (timeout %.1f s)",
                len(plan.snmp),
                collection.interval(snmp.COUNTERS),
                collection.timeout_s,
            )
            jobs.append(asyncio.ensure_future(polls.run(stop, rounds)))
        http: list[httppoll.HttpCollector] = []
        if plan.http:
            fetcher = await stack.enter_async_context(httppoll.Fetcher(plan.http_concurrency))
            mapper = httppoll.Mapper(sequences.next)
            gauge(m.COLLECT_TARGETS, registry).labels(httppoll.HTTP).set(len(plan.http))
            for feed, group in httppoll.by_feed(plan.http).items():
                schedule = (collections or {}).get(feed) or feeds.spec(feed).collection
                if schedule is None:  # pragma: no cover - the built-in declarations have one
                    raise IocError(f"the {feed} feed declares no collection")
                http_poller = httppoll.HttpCollector(
                    feed,
                    group,
                    sink,
                    fetcher,
                    mapper,
                    schedule,
                    registry=registry,
                    clock_ms=clock_ms,
                )
                http.append(http_poller)
                log.info(
                    "polling %d %s targets over HTTP every %.1f s (timeout %.1f s, at most %d "
                    "requests in flight)",
                    len(group),
                    feed,
                    schedule.interval(http_poller.kind),
                    schedule.timeout_s,
                    plan.http_concurrency,
                )
                jobs.append(asyncio.ensure_future(http_poller.run(stop, rounds)))
        if plan.rtsp:
            schedule = (collections or {}).get(feeds.Feed.CAMERA) or feeds.spec(
                feeds.Feed.CAMERA
            ).collection
            if schedule is None:  # pragma: no cover - the built-in declaration has one
                raise IocError("the camera feed declares no collection")
            cameras = RtspCollector(
                plan.rtsp,
                sink,
                rtsp.Sampler(schedule.sample_s, schedule.timeout_s, plan.rtsp_decoders),
                schedule,
                sequences,
                registry=registry,
                clock_ms=clock_ms,
            )
            log.info(
                "sampling %d camera streams every %.1f s (%.1f s of video, %d at a time), "
                "RTSP heartbeat every %.1f s (timeout %.1f s)",
                len(plan.rtsp),
                schedule.interval(rtsp.STREAM),
                schedule.sample_s,
                plan.rtsp_decoders,
                schedule.interval(rtsp.HEARTBEAT),
                schedule.timeout_s,
            )
            estimate = rtsp.round_estimate_s(len(plan.rtsp), plan.rtsp_decoders, schedule.sample_s)
            if estimate > schedule.interval(rtsp.STREAM):
                log.warning(
                    "%d cameras with %d decoders take about %.0f s per stream round, more "
                    "than its %.0f s interval: rounds will overrun; add --rtsp-decoders where "
                    "the cores allow, or shards (docs/performance.md)",
                    len(plan.rtsp),
                    plan.rtsp_decoders,
                    estimate,
                    schedule.interval(rtsp.STREAM),
                )
            jobs.append(asyncio.ensure_future(cameras.run(stop, rounds)))
        receiver: traps.TrapReceiver | None = None
        if plan.trap_port is not None:
            receiver = traps.TrapReceiver(
                plan.trap_devices,
                plan.trap_profiles,
                tracker,
                sequences.next,
                lambda message: sink.send(produced(message)),
                registry=registry,
                clock_ms=clock_ms,
            )
            if plan.snmp:
                polls.on_engine_id = receiver.learn  # v3 traps come from the polled engine
            transport, port = await traps.listen(receiver, plan.trap_host, plan.trap_port)
            stack.callback(transport.close)
            log.info(
                "receiving traps of %d nodes on %s:%d (udp)",
                len(plan.trap_devices),
                plan.trap_host,
                port,
            )
            if on_trap_port is not None:
                on_trap_port(port)

        async def serve_sink() -> None:
            while not stop.is_set():
                sink.poll()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SINK_POLL_S)

        server = asyncio.ensure_future(serve_sink())
        try:
            if jobs:
                await asyncio.gather(*jobs)
                if rounds is not None:
                    stop.set()
            else:
                await stop.wait()
        finally:
            stop.set()
            await server
        if plan.icmp:
            summary.probe_rounds = icmp.rounds
        if plan.snmp:
            summary.snmp_rounds = polls.rounds
        summary.http_rounds = {p.feed: p.rounds for p in http}
        if plan.rtsp:
            summary.stream_rounds = cameras.stream_rounds
        if receiver is not None:
            summary.traps = dict(receiver.outcomes)
    return summary


def plan_of(
    args: argparse.Namespace, settings: Settings, protocols: Sequence[str]
) -> tuple[Plan, list[str]]:
    """Targets of this collector's shard from the scenario (network nodes with their
    addresses resolved, telehealth stations and video bridges with their URLs, cameras with
    their stream URLs), the SNMP, HTTP and RTSP profiles; returns the plan and lines for the
    log."""
    from ioc.contract.topology import load_scenario
    from ioc.services.collect import httppoll, snmp, targets

    scenario = args.scenario or settings.scenario
    topology = load_scenario(scenario)
    province = getattr(args, "province", None)
    if province is not None:  # before anything is polled: one line, and nothing sent
        from ioc.services.collect import province as one_province

        polled = one_province.polled_devices(topology, protocols, args.trap_port is not None)
        one_province.check(settings, topology, province, polled)
    chosen = targets.select(topology, args.shard, args.shards)
    notes: list[str] = []
    plan = Plan(trap_host=args.trap_host, trap_port=args.trap_port)
    http_credentials = getattr(args, "http_credentials", None)
    if "http" in protocols:
        plan.http_concurrency = getattr(args, "http_concurrency", HTTP_CONCURRENCY)
        http_profiles = httppoll.load_profiles(Path(http_credentials)) if http_credentials else {}
        selection = httppoll.select(topology, args.shard, args.shards, http_profiles)
        plan.http = selection.targets
        if selection.bad_address:
            notes.append(
                f"{len(selection.bad_address)} stations or bridges have an address that is no "
                "http(s) URL or host (or carries credentials: use --http-credentials) and are "
                "not polled: " + _some(selection.bad_address)
            )
        if selection.no_profile:
            notes.append(
                f"{len(selection.no_profile)} stations or bridges name an HTTP profile the "
                "credentials file lacks and are not polled: " + _some(selection.no_profile)
            )
        if selection.no_address and (selection.targets or args.protocols):
            notes.append(
                f"{len(selection.no_address)} stations or bridges have no address and are not "
                "polled"
            )
    elif http_credentials:
        raise IocError("--http-credentials without http in --protocols")
    if "rtsp" in protocols:
        plan.rtsp = _cameras(args, topology, notes)
        if plan.rtsp:
            plan.rtsp_decoders = getattr(args, "rtsp_decoders", RTSP_DECODERS)
    elif getattr(args, "rtsp_credentials", None):
        raise IocError("--rtsp-credentials without rtsp in --protocols")
    polls_nodes = bool({"icmp", "snmp"} & set(protocols)) or args.trap_port is not None
    if not (chosen and polls_nodes) and not plan.http and not plan.rtsp:
        wanted = [
            *(["network node"] if polls_nodes else []),
            *(["telehealth station or video bridge"] if "http" in protocols else []),
            *(["camera"] if "rtsp" in protocols else []),
        ]
        raise targets.TargetError(
            f"no {' nor '.join(wanted)} with an address in {scenario} (shard {args.shard} of "
            f"{args.shards}); addresses come from the inventory (ioc inventory import, "
            "docs/inventory.md)"
        )
    skipped = targets.without_address(topology)
    if skipped and chosen:
        notes.append(f"{len(skipped)} network nodes have no address and are not polled")
    everyone = targets.select(topology) if args.trap_port is not None else chosen
    addresses, unresolved = asyncio.run(targets.resolve(everyone))
    mine = {t.device_id for t in chosen}
    unresolved = [d for d in unresolved if d in mine]
    if unresolved:
        notes.append(
            f"{len(unresolved)} targets have no IPv4 address and are not polled: "
            + _some(unresolved)
        )
    if "icmp" in protocols:
        plan.icmp = {d: a for d, a in addresses.items() if d in mine}
    profiles: Mapping[str, snmp.Profile] = {}
    if args.snmp_credentials:
        profiles = snmp.load_profiles(Path(args.snmp_credentials))
    attributes = {d.id: d.attributes for d in topology.devices_of("netnode")}
    if profiles:
        every, missing = snmp.select(
            ((d, a, attributes.get(d, {})) for d, a in sorted(addresses.items())), profiles
        )
        if "snmp" in protocols:
            plan.snmp = [t for t in every if t.device_id in mine]
            lacking = [d for d in missing if d in mine]
            if lacking:
                notes.append(
                    f"{len(lacking)} targets name an SNMP profile the credentials file lacks "
                    "and are not polled over SNMP: " + _some(lacking)
                )
        if args.trap_port is not None:
            plan.trap_profiles = {t.device_id: t.profile for t in every}
    elif "snmp" in protocols and args.protocols:
        raise IocError("--protocols snmp needs --snmp-credentials FILE")
    if args.trap_port is not None:
        if not profiles:
            raise IocError("--trap-port needs --snmp-credentials FILE (the traps' communities)")
        plan.trap_devices = {a: d for d, a in addresses.items() if d in plan.trap_profiles}
    if not plan.icmp and not plan.snmp and plan.trap_port is None and not (plan.http or plan.rtsp):
        raise targets.TargetError("nothing to poll: no target resolved to an IPv4 address")
    return plan, notes


def _some(ids: Sequence[str]) -> str:
    """The first ids of a list, for a log line."""
    return ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")


def _cameras(args: argparse.Namespace, topology: Any, notes: list[str]) -> list[Any]:
    """This shard's cameras with an RTSP address, each with its credentials profile."""
    from ioc.contract.feeds import Feed
    from ioc.services.collect import rtsp, targets

    credentials = getattr(args, "rtsp_credentials", None)
    profiles = rtsp.load_profiles(Path(credentials)) if credentials else {}
    mine = [
        (d.id, d.attributes)
        for d in sorted(topology.devices_of(Feed.CAMERA), key=lambda d: d.id)
        if targets.shard_of(d.id, args.shards) == args.shard
    ]
    cameras, no_url, no_profile = rtsp.select(mine, profiles)
    if no_url and (cameras or args.protocols):
        notes.append(f"{len(no_url)} cameras have no rtsp:// address and are not sampled")
    if no_profile:
        notes.append(
            f"{len(no_profile)} cameras name an RTSP profile the credentials file lacks and "
            "are not sampled: " + _some(no_profile)
        )
    if cameras:
        rtsp.ffmpeg_path()  # stop now, saying how to install it, rather than at each sample
    return cameras


async def _main(plan: Plan, sink: Any, duration: float | None, rounds: int | None) -> Summary:
    from ioc.contract import feeds
    from ioc.services.collect.collector import FEED

    collection = feeds.spec(FEED).collection
    if collection is None:  # pragma: no cover - the built-in declaration has one
        raise IocError(f"the {FEED} feed declares no collection")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    return await collect(plan, sink, collection, stop, rounds=rounds)


def spooling_sink(
    settings: Settings,
    spool: Path | None,
    *,
    shard: int,
    shards: int,
    province: str | None = None,
    max_bytes: int | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> SpoolingSink:
    """The collector's sink to Kafka, through its disk spool (default: per shard, and per
    province), logged in as the collector's own user (it may write the shared feed topics,
    nothing else) or, with ``province``, as that province's user, every record routed to the
    province's topics (the only ones that user may write)."""
    from ioc.services.collect.spool import DEFAULT_MAX_MB, SpoolingSink, default_directory

    if province is None:
        kafka = settings.for_kafka_service("collector")
        client_id = f"{CLIENT_ID}-{shard}-of-{shards}"
    else:
        from ioc.services.collect.province import kafka_settings

        kafka = kafka_settings(settings, province)
        client_id = f"{CLIENT_ID}-p{province}-{shard}-of-{shards}"
    return SpoolingSink(
        kafka,
        spool or default_directory(settings.stack_dir, shard, shards, province),
        max_bytes=max_bytes or DEFAULT_MAX_MB * 1024 * 1024,
        client_id=client_id,
        registry=registry,
        province=province,
    )


def cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.observability import serve_metrics
    from ioc.services.collect.spool import SpoolingSink
    from ioc.sinks import FileSink, Sink

    protocols = [p.strip() for p in (args.protocols or ",".join(PROTOCOLS)).split(",")]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise IocError(f"--protocols: unknown {', '.join(unknown)} (known: {', '.join(PROTOCOLS)})")
    if args.spool_max_mb < 1:
        raise IocError(f"--spool-max-mb {args.spool_max_mb}: at least 1")
    if args.http_concurrency < 1:
        raise IocError(f"--http-concurrency {args.http_concurrency}: at least 1")
    if args.rtsp_decoders < 1:
        raise IocError(f"--rtsp-decoders {args.rtsp_decoders}: at least 1")
    province: str | None = args.province
    plan, notes = plan_of(args, settings, protocols)
    for note in notes:
        log.warning("%s", note)
    sink: Sink
    if args.out:
        sink = FileSink(settings, Path(args.out), province=province)
    else:
        sink = spooling_sink(
            settings,
            Path(args.spool) if args.spool else None,
            shard=args.shard,
            shards=args.shards,
            province=province,
            max_bytes=args.spool_max_mb * 1024 * 1024,
        )
    if args.metrics_port is not None:
        serve_metrics(settings, "collector", args.metrics_port)
    try:
        summary = asyncio.run(_main(plan, sink, args.duration, args.rounds))
    finally:
        sink.flush(args.flush_timeout)
        if isinstance(sink, FileSink | SpoolingSink):
            sink.close()
    spooled = f", {sink.spool.depth} still spooled" if isinstance(sink, SpoolingSink) else ""
    dropped = f", {sink.dropped} dropped by a full spool" if isinstance(sink, SpoolingSink) else ""
    of_province = "" if province is None else f" of province {province}"
    print(
        f"collector shard {args.shard}/{args.shards}{of_province}: {len(plan.icmp)} ICMP, "
        f"{len(plan.snmp)} SNMP, {len(plan.rtsp)} RTSP and {len(plan.http)} HTTP targets, "
        f"{summary.probe_rounds} probe, {summary.snmp_rounds} SNMP, {summary.stream_rounds} "
        f"stream and {max(summary.http_rounds.values(), default=0)} HTTP rounds, "
        f"{sum(summary.traps.values())} traps, "
        f"{sink.sent} messages sent{spooled}{dropped}, {sink.errors} delivery errors"
    )
    return 0 if sink.errors == 0 else 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "collect",
        help="poll the scenario's real network nodes (ICMP, SNMP, traps), telehealth stations "
        "and video bridges (HTTP) and cameras (RTSP) into their feeds",
        description="Ping every network node with an inventory address, poll its interfaces "
        "over SNMP and receive its traps, poll every telehealth station's HTTP status and every "
        "video bridge's /colibri/stats, sample every camera's RTSP stream, at the feeds' "
        "collection intervals, and produce the netnode, telehealth, vconf and camera messages "
        "to Kafka (through a disk spool) or a file.",
    )
    p.add_argument("--scenario", help="built-in scenario name or YAML file (default IOC_SCENARIO)")
    p.add_argument(
        "--province",
        metavar="CODE",
        help="a collector of this province only (needs IOC_KAFKA_PROVINCE_TOPICS=true): logs "
        "in to Kafka as its user ioc-p-CODE and writes its topics ioc.p.CODE.*; every device "
        "to poll must be under it",
    )
    p.add_argument("--shard", type=int, default=0, help="this collector's shard, 0..N-1")
    p.add_argument("--shards", type=int, default=1, help="how many collectors split the targets")
    p.add_argument(
        "--protocols",
        metavar="LIST",
        help="a list of icmp, snmp, http, rtsp (default: icmp, http and rtsp, and snmp with "
        "--snmp-credentials)",
    )
    p.add_argument(
        "--snmp-credentials",
        metavar="FILE.toml",
        help="SNMP profiles ([profiles.NAME]: v2c community or v3 authPriv user and keys); "
        "a node uses the one its snmp_profile attribute names, else 'default'",
    )
    p.add_argument(
        "--trap-port",
        type=int,
        metavar="P",
        help="receive SNMP traps (linkDown/linkUp) on this UDP port (162 is the standard one)",
    )
    p.add_argument("--trap-host", default="0.0.0.0", help="address the trap port binds")
    p.add_argument(
        "--http-credentials",
        metavar="FILE.toml",
        help="HTTP profiles ([profiles.NAME]: username and password, or token); a station or "
        "bridge uses the one its http_profile attribute names, else 'default', else none",
    )
    p.add_argument(
        "--http-concurrency",
        type=int,
        default=HTTP_CONCURRENCY,
        metavar="N",
        help=f"HTTP requests in flight at most (default {HTTP_CONCURRENCY}); each has the "
        "feed's timeout",
    )
    p.add_argument(
        "--rtsp-credentials",
        metavar="FILE.toml",
        help="RTSP profiles ([profiles.NAME]: user, password); a camera uses the one its "
        "rtsp_profile attribute names, else 'default', else none",
    )
    p.add_argument(
        "--rtsp-decoders",
        type=int,
        default=RTSP_DECODERS,
        metavar="N",
        help=f"camera streams decoded at once (default {RTSP_DECODERS}; each is one ffmpeg on "
        "one core)",
    )
    p.add_argument("--out", metavar="FILE.jsonl", help="write to a file instead of Kafka")
    p.add_argument(
        "--spool",
        metavar="DIR",
        help="the disk spool in front of Kafka (default: <stack dir>/collector/spool-K-of-N)",
    )
    p.add_argument(
        "--spool-max-mb",
        type=int,
        default=256,
        metavar="MB",
        help="the spool's bound; when full its oldest records are dropped, counted (default 256)",
    )
    p.add_argument(
        "--flush-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="at exit, wait this long for Kafka; the rest stays spooled for the next start",
    )
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--rounds", type=int, help="stop after this many rounds of each protocol")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="P",
        help="serve /metrics here (default 0: any free port, announced to the local stack)",
    )
    p.set_defaults(handler=cmd_collect)
