"""The collector's rounds: probe every target at the feed's interval, emit contract messages.

Each round of ``netnode.probe`` starts every target's probe at its own offset, spread over
the part of the interval that leaves room for its echo requests and the timeout, so a round's
requests do not leave in one burst and every probe ends before the next round. A probe's
message is sent as soon as that target is done: a silent target delays nothing but itself.
Interval, timeout and echo count are the netnode feed's declaration
(``FeedSpec.collection``, :mod:`ioc.contract.builtin_feeds`).

The messages are the contract's (:class:`ioc.contract.schemas.NetnodeProbe`), keyed by device
id, through the same sink as the simulators (:mod:`ioc.sinks`). SNMP polls
(:class:`SnmpCollector`: ``netnode.counters`` and ``netnode.link``) are another kind of round
beside this one, on the same cadence (:class:`Rounds`), sharing the sequence numbers
(:class:`Sequences`), the sink and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, NamedTuple

from prometheus_client import REGISTRY, CollectorRegistry

from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.contract.feeds import Collection, Feed
from ioc.observability import counter, gauge, histogram
from ioc.services.collect import rtsp, snmp
from ioc.services.collect.icmp import ECHO_SPACING_S, IcmpEngine, PingResult
from ioc.sinks import Sink

log = logging.getLogger(__name__)

PROBE: Final = "netnode.probe"
ICMP: Final = "icmp"
SEQ_PER_MS: Final = 1000
"""A collector numbers each device's messages from ``start_ms * SEQ_PER_MS``: a restarted
collector continues above the numbers of the one before (unless it sent more than this many
messages per device per millisecond of its life), without storing anything."""


class Produced(NamedTuple):
    """A record for :class:`ioc.sinks.Sink`."""

    feed: str
    key: bytes
    value: bytes


class Sequences:
    """Per-device sequence numbers (``seq`` of the envelope), from ``start_ms * SEQ_PER_MS``."""

    def __init__(self, start_ms: int) -> None:
        self.base = start_ms * SEQ_PER_MS
        self._last: dict[str, int] = {}

    def next(self, device_id: str) -> int:
        value = self._last.get(device_id, self.base) + 1
        self._last[device_id] = value
        return value


def probe_message(device_id: str, seq: int, ts_ms: int, result: PingResult) -> s.NetnodeProbe:
    """The contract's probe message for one target's ping result (rounded like the
    simulator's: RTT and loss to 0.01)."""
    rtt = result.rtt_ms
    return s.NetnodeProbe(
        v=s.SCHEMA_VERSION,
        device_id=device_id,
        seq=seq,
        ts_ms=ts_ms,
        reachable=result.reachable,
        rtt_ms=None if rtt is None else round(min(rtt, 600_000.0), 2),
        loss_pct=round(result.loss_pct, 2),
    )


def wall_clock_ms() -> int:
    """Now, in epoch milliseconds: the collectors' default clock (tests pass their own)."""
    return time.time_ns() // 1_000_000


def produced(message: s.Message) -> Produced:
    return Produced(message.feed, message.device_id.encode(), s.encode(message))


def spread_s(collection: Collection, kind: str = PROBE) -> float:
    """Seconds over which a round's requests start: the interval less one target's longest
    duration (a probe: its echo spacing and the timeout; a stream sample: its video and the
    timeout; an SNMP or HTTP poll, an RTSP heartbeat: the timeout), never negative."""
    longest = collection.timeout_s
    if kind == PROBE:
        longest += (collection.echoes - 1) * ECHO_SPACING_S
    elif kind == rtsp.STREAM:
        longest += collection.sample_s
    return max(0.0, collection.interval(kind) - longest)


async def spread_round(
    targets: Sequence[tuple[str, Callable[[], Awaitable[object]]]],
    spread: float,
    sink: Sink,
    stop: asyncio.Event | None = None,
) -> list[object]:
    """Start each target's coroutine at its offset over ``spread`` seconds (serving the
    sink's reports between starts) and wait for them all: a slow target delays only
    itself. Once ``stop`` is set no further target starts (a stop does not wait out the
    rest of a 15 s spread)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    count = len(targets)
    tasks: list[asyncio.Task[object]] = []
    for i, (_, start) in enumerate(targets):
        due = started + spread * i / count
        if due - loop.time() > 0.005:
            if stop is None:
                await asyncio.sleep(due - loop.time())
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=due - loop.time())
            sink.poll()
        if stop is not None and stop.is_set():
            break
        tasks.append(asyncio.ensure_future(start()))
    results = await asyncio.gather(*tasks)
    sink.poll()
    return list(results)


async def run_rounds(
    stop: asyncio.Event,
    interval: float,
    one_round: Callable[[], Awaitable[object]],
    done: Callable[[], int],
    rounds: int | None,
    kind: str,
) -> int:
    """Rounds every ``interval`` seconds on a fixed cadence (a late round does not shift the
    next ones; one that overruns its slot skips to the next free one, logged) until ``stop``
    is set or ``rounds`` were done; returns the overruns."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    slot = 0
    overruns = 0
    while not stop.is_set() and (rounds is None or done() < rounds):
        await one_round()
        slot += 1
        behind = int((loop.time() - start) // interval)
        if behind >= slot:
            overruns += behind - slot + 1
            log.warning("%s round %d overran its %.1f s interval", kind, done(), interval)
            slot = behind + 1
        if rounds is not None and done() >= rounds:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=start + slot * interval - loop.time())
    return overruns


class ProtocolCounters:
    """The request counters every collector keeps for its protocol (``ioc_collector_polls``,
    ``_requests``, ``_replies``, ``_timeouts``, each labelled ``protocol``)."""

    def __init__(self, protocol: str, registry: CollectorRegistry) -> None:
        self.polls = counter(m.COLLECT_POLLS, registry).labels(protocol)
        self.requests = counter(m.COLLECT_REQUESTS, registry).labels(protocol)
        self.replies = counter(m.COLLECT_REPLIES, registry).labels(protocol)
        self.timeouts = counter(m.COLLECT_TIMEOUTS, registry).labels(protocol)


class Rounds:
    """One kind of round (``netnode.probe``, ``netnode.counters``, ``camera.stream``...) of a
    collector: each round spread over the targets (:func:`spread_round`), timed into
    ``ioc_collector_round_seconds{kind}`` and counted, and the rounds run on their fixed
    cadence (:func:`run_rounds`). Every collector's rounds go through here, so they time,
    count and stop alike."""

    def __init__(self, kind: str, registry: CollectorRegistry) -> None:
        self.kind = kind
        self.done = 0
        self.overruns = 0
        self._stop: asyncio.Event | None = None
        self._seconds = histogram(m.COLLECT_ROUND_SECONDS, registry).labels(kind)

    async def round(
        self,
        jobs: Sequence[tuple[str, Callable[[], Awaitable[object]]]],
        spread: float,
        sink: Sink,
    ) -> list[object]:
        """One round of ``jobs`` (id, coroutine) over ``spread`` seconds; their results."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await spread_round(jobs, spread, sink, self._stop)
        self._seconds.observe(loop.time() - started)
        self.done += 1
        return results

    async def run(
        self,
        stop: asyncio.Event,
        interval: float,
        one_round: Callable[[], Awaitable[object]],
        rounds: int | None,
    ) -> None:
        """``one_round`` every ``interval`` seconds until ``stop`` or ``rounds`` were done;
        a stop also ends a round's spread early."""
        self._stop = stop
        self.overruns += await run_rounds(
            stop, interval, one_round, lambda: self.done, rounds, self.kind
        )


class Collector:
    """Probe rounds over ``addresses`` (device id -> IPv4 address) into ``sink``."""

    def __init__(
        self,
        addresses: dict[str, str],
        sink: Sink,
        engine: IcmpEngine,
        collection: Collection,
        *,
        registry: CollectorRegistry = REGISTRY,
        clock_ms: Callable[[], int] = wall_clock_ms,
        sequences: Sequences | None = None,
    ) -> None:
        self.addresses = dict(sorted(addresses.items()))
        self.sink = sink
        self.engine = engine
        self.collection = collection
        self.clock_ms = clock_ms
        self.sequences = sequences or Sequences(clock_ms())
        self.probes = Rounds(PROBE, registry)
        self.counts = ProtocolCounters(ICMP, registry)
        self._messages = counter(m.COLLECT_MESSAGES, registry).labels(PROBE)
        gauge(m.COLLECT_TARGETS, registry).labels(ICMP).set(len(self.addresses))

    @property
    def rounds(self) -> int:
        return self.probes.done

    @property
    def overruns(self) -> int:
        return self.probes.overruns

    async def _probe(self, device_id: str, address: str) -> s.NetnodeProbe:
        ts_ms = self.clock_ms()
        self.counts.polls.inc()
        result = await self.engine.ping(address, self.collection.echoes, self.collection.timeout_s)
        message = probe_message(device_id, self.sequences.next(device_id), ts_ms, result)
        self.sink.send(produced(message))
        self.counts.requests.inc(result.sent)
        self.counts.replies.inc(result.received)
        self.counts.timeouts.inc(result.sent - result.received)
        self._messages.inc()
        return message

    async def probe_round(self) -> list[s.NetnodeProbe]:
        """One round: every target probed once, its message sent when it is done."""
        jobs = [
            (device_id, lambda d=device_id, a=address: self._probe(d, a))
            for device_id, address in self.addresses.items()
        ]
        results = await self.probes.round(jobs, spread_s(self.collection), self.sink)
        return [r for r in results if isinstance(r, s.NetnodeProbe)]

    async def run(self, stop: asyncio.Event, rounds: int | None = None) -> None:
        """Rounds at the feed's interval (on a fixed cadence: a late round does not shift
        the next ones) until ``stop`` is set or ``rounds`` were done."""
        await self.probes.run(stop, self.collection.interval(PROBE), self.probe_round, rounds)


class SnmpCollector:
    """SNMP poll rounds over ``targets`` into ``sink``: ``netnode.counters`` every
    ``interval("netnode.counters")`` and ``netnode.link`` on a status change, with the
    sequence numbers of the ICMP collector (``sequences``) and the link states the trap
    receiver shares (``tracker``)."""

    def __init__(
        self,
        targets: Sequence[snmp.SnmpTarget],
        sink: Sink,
        poller: snmp.Poller,
        collection: Collection,
        sequences: Sequences,
        tracker: snmp.Tracker,
        *,
        registry: CollectorRegistry = REGISTRY,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.targets = sorted(targets, key=lambda t: t.device_id)
        self.sink = sink
        self.poller = poller
        self.collection = collection
        self.sequences = sequences
        self.tracker = tracker
        self.clock_ms = clock_ms
        self.polls = Rounds(snmp.COUNTERS, registry)
        self._failing: dict[str, str] = {}
        self.on_engine_id: Callable[[str, str], None] | None = None
        """Told (device id, snmpEngineID) when a v3 node's engine is first seen or changes:
        the trap receiver's USM needs it for the node's v3 traps."""
        self._engines: dict[str, str] = {}
        self._seen = (0, 0)
        self.counts = ProtocolCounters(snmp.SNMP, registry)
        self._errors = counter(m.COLLECT_ERRORS, registry)
        self._messages = counter(m.COLLECT_MESSAGES, registry)
        gauge(m.COLLECT_TARGETS, registry).labels(snmp.SNMP).set(len(self.targets))

    @property
    def rounds(self) -> int:
        return self.polls.done

    @property
    def overruns(self) -> int:
        return self.polls.overruns

    def _count_requests(self) -> None:
        requests, replies = self.poller.requests, self.poller.replies
        self.counts.requests.inc(requests - self._seen[0])
        self.counts.replies.inc(replies - self._seen[1])
        self._seen = (requests, replies)

    async def _poll(self, target: snmp.SnmpTarget) -> list[s.Message]:
        self.counts.polls.inc()
        try:
            try:
                sample = await self.poller.poll(target, self.clock_ms)
            except snmp.PollFailed:
                raise
            except Exception as exc:  # a bug or a library surprise: one node, one round
                log.exception("%s: SNMP poll raised", target.device_id)
                raise snmp.PollFailed("snmp_error", f"{type(exc).__name__}: {exc}") from None
        except snmp.PollFailed as exc:
            self._count_requests()
            self._errors.labels(snmp.SNMP, exc.reason).inc()
            if exc.reason == "timeout":
                self.counts.timeouts.inc()
            if self._failing.get(target.device_id) != exc.reason:
                log.warning(
                    "%s (%s:%d): SNMP poll failed: %s",
                    target.device_id,
                    target.address,
                    target.profile.port,
                    exc,
                )
            self._failing[target.device_id] = exc.reason
            return []
        self._count_requests()
        if self._failing.pop(target.device_id, None) is not None:
            log.info("%s: SNMP polls answer again", target.device_id)
        if (
            sample.engine_id
            and target.profile.version == "3"
            and self._engines.get(target.device_id) != sample.engine_id
        ):
            self._engines[target.device_id] = sample.engine_id
            if self.on_engine_id is not None:
                self.on_engine_id(target.device_id, sample.engine_id)
        outcome = self.tracker.update(target.device_id, sample, target.capacity_mbps)
        for reason in outcome.skipped:
            self._errors.labels(snmp.SNMP, reason).inc()
        messages = snmp.messages(target.device_id, sample.ts_ms, outcome, self.sequences.next)
        for message in messages:
            self.sink.send(produced(message))
            self._messages.labels(message.kind).inc()
        return list(messages)

    async def poll_round(self) -> list[s.Message]:
        """One round: every target polled once, its messages sent when it is done."""
        jobs = [(t.device_id, lambda t=t: self._poll(t)) for t in self.targets]
        spread = spread_s(self.collection, snmp.COUNTERS)
        results = await self.polls.round(jobs, spread, self.sink)
        return [msg for r in results if isinstance(r, list) for msg in r]

    async def run(self, stop: asyncio.Event, rounds: int | None = None) -> None:
        """Poll rounds at the feed's ``netnode.counters`` interval (see :class:`Rounds`)."""
        interval = self.collection.interval(snmp.COUNTERS)
        await self.polls.run(stop, interval, self.poll_round, rounds)


FEED: Final = Feed.NETNODE


class RtspCollector:
    """Cameras over RTSP into ``sink``: an ``OPTIONS`` heartbeat every
    ``interval("camera.heartbeat")`` (``camera.heartbeat`` when the camera answers, with the
    status of its last sample) and a stream sample every ``interval("camera.stream")``
    (``camera.stream`` when it decoded). A camera that does not answer gets no message and a
    counted reason, never an exception: the workers then judge it down after the camera
    feed's heartbeat timeout, as for a silent simulated camera."""

    def __init__(
        self,
        cameras: Sequence[rtsp.Camera],
        sink: Sink,
        sampler: rtsp.StreamSampler,
        collection: Collection,
        sequences: Sequences,
        *,
        options: Callable[[rtsp.Camera, float], Awaitable[int | None]] = rtsp.rtsp_options,
        registry: CollectorRegistry = REGISTRY,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.cameras = sorted(cameras, key=lambda c: c.device_id)
        self.sink = sink
        self.sampler = sampler
        self.collection = collection
        self.sequences = sequences
        self.options = options
        self.clock_ms = clock_ms
        self.heartbeats = Rounds(rtsp.HEARTBEAT, registry)
        self.streams = Rounds(rtsp.STREAM, registry)
        self.last: dict[str, rtsp.Sample] = {}
        """Each camera's latest sample: its heartbeat's status."""
        self._up_since: dict[str, int] = {}
        self._failing: dict[tuple[str, str], str] = {}
        self.counts = ProtocolCounters(rtsp.RTSP, registry)
        self._errors = counter(m.COLLECT_ERRORS, registry)
        self._messages = counter(m.COLLECT_MESSAGES, registry)
        gauge(m.COLLECT_TARGETS, registry).labels(rtsp.RTSP).set(len(self.cameras))

    @property
    def heartbeat_rounds(self) -> int:
        return self.heartbeats.done

    @property
    def stream_rounds(self) -> int:
        return self.streams.done

    @property
    def overruns(self) -> int:
        return self.heartbeats.overruns + self.streams.overruns

    def _send(self, message: s.Message) -> None:
        self.sink.send(produced(message))
        self._messages.labels(message.kind).inc()

    def _note(self, camera: rtsp.Camera, kind: str, reason: str | None, detail: str = "") -> None:
        """Log a camera's failure of one ``kind`` (heartbeat, stream) when it starts or
        changes, and its recovery: not every round."""
        key = (camera.device_id, kind)
        if reason is None:
            if self._failing.pop(key, None) is not None:
                log.info("%s: %s answers again", camera.device_id, kind)
            return
        if self._failing.get(key) != reason:
            log.warning("%s (%s): %s: %s %s", camera.device_id, camera.url, kind, reason, detail)
        self._failing[key] = reason

    async def _heartbeat(self, camera: rtsp.Camera) -> s.CameraHeartbeat | None:
        ts_ms = self.clock_ms()
        self.counts.requests.inc()
        status = await self.options(camera, self.collection.timeout_s)
        if status is None:
            self.counts.timeouts.inc()
            self._errors.labels(rtsp.RTSP, "unreachable").inc()
            self._up_since.pop(camera.device_id, None)
            self._note(camera, rtsp.HEARTBEAT, "unreachable", "(no RTSP answer to OPTIONS)")
            return None
        self.counts.replies.inc()
        self._note(camera, rtsp.HEARTBEAT, None)
        since = self._up_since.setdefault(camera.device_id, ts_ms)
        message = s.CameraHeartbeat(
            v=s.SCHEMA_VERSION,
            device_id=camera.device_id,
            seq=self.sequences.next(camera.device_id),
            ts_ms=ts_ms,
            status=rtsp.heartbeat_status(self.last.get(camera.device_id)),
            uptime_s=(ts_ms - since) // 1000,
        )
        self._send(message)
        return message

    async def _sample(self, camera: rtsp.Camera) -> s.CameraStream | None:
        self.counts.polls.inc()
        try:
            sample = await self.sampler.sample(camera)
        except Exception as exc:  # a bug or a system surprise: one camera, one round
            log.exception("%s: RTSP sample raised", camera.device_id)
            sample = rtsp.Sample(False, "stream_error", type(exc).__name__)
        self.last[camera.device_id] = sample
        if not sample.ok:
            self._errors.labels(rtsp.RTSP, sample.reason).inc()
            if sample.reason == "timeout":
                self.counts.timeouts.inc()
            self._note(camera, rtsp.STREAM, sample.reason, sample.detail)
            return None
        self._note(camera, rtsp.STREAM, None)
        # the event time is the sample's end, when its measures are known
        message = rtsp.stream_message(
            camera.device_id, self.sequences.next(camera.device_id), self.clock_ms(), sample
        )
        self._send(message)
        return message

    async def heartbeat_round(self) -> list[s.CameraHeartbeat]:
        """One round: every camera asked ``OPTIONS`` once, its heartbeat sent when it answers."""
        jobs = [(c.device_id, lambda c=c: self._heartbeat(c)) for c in self.cameras]
        spread = spread_s(self.collection, rtsp.HEARTBEAT)
        results = await self.heartbeats.round(jobs, spread, self.sink)
        return [r for r in results if isinstance(r, s.CameraHeartbeat)]

    async def stream_round(self) -> list[s.CameraStream]:
        """One round: every camera's stream sampled once (a few decoders at a time)."""
        jobs = [(c.device_id, lambda c=c: self._sample(c)) for c in self.cameras]
        spread = spread_s(self.collection, rtsp.STREAM)
        results = await self.streams.round(jobs, spread, self.sink)
        return [r for r in results if isinstance(r, s.CameraStream)]

    async def run(self, stop: asyncio.Event, rounds: int | None = None) -> None:
        """Heartbeat and stream rounds, each at the camera feed's interval (see
        :class:`Rounds`), until ``stop`` or ``rounds`` of each."""
        await asyncio.gather(
            self.heartbeats.run(
                stop, self.collection.interval(rtsp.HEARTBEAT), self.heartbeat_round, rounds
            ),
            self.streams.run(
                stop, self.collection.interval(rtsp.STREAM), self.stream_round, rounds
            ),
        )
