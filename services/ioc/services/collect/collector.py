"""The collector's rounds: probe every target at the feed's interval, emit contract messages.

Each round of ``netnode.probe`` starts every target's probe at its own offset, spread over
the part of the interval that leaves room for its echo requests and the timeout, so a round's
requests do not leave in one burst and every probe ends before the next round. A probe's
message is sent as soon as that target is done: a silent target delays nothing but itself.
Interval, timeout and echo count are the netnode feed's declaration
(``FeedSpec.collection``, :mod:`ioc.contract.builtin_feeds`).

The messages are the contract's (:class:`ioc.contract.schemas.NetnodeProbe`), keyed by device
id, through the same sink as the simulators (:mod:`ioc.sinks`). SNMP (``netnode.counters``,
``netnode.link``) will be another kind of round beside this one, sharing the sequence
numbers and the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final, NamedTuple

from prometheus_client import REGISTRY, CollectorRegistry

from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.contract.feeds import Collection, Feed
from ioc.observability import counter, gauge, histogram
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


def produced(message: s.Message) -> Produced:
    return Produced(message.feed, message.device_id.encode(), s.encode(message))


def spread_s(collection: Collection, kind: str = PROBE) -> float:
    """Seconds over which a round's probes start: the interval less one probe's longest
    duration (its echo spacing and the timeout), never negative."""
    longest = (collection.echoes - 1) * ECHO_SPACING_S + collection.timeout_s
    return max(0.0, collection.interval(kind) - longest)


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
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.addresses = dict(sorted(addresses.items()))
        self.sink = sink
        self.engine = engine
        self.collection = collection
        self.clock_ms = clock_ms
        self.sequences = Sequences(clock_ms())
        self.rounds = 0
        self.overruns = 0
        self._requests = counter(m.COLLECT_REQUESTS, registry).labels(ICMP)
        self._replies = counter(m.COLLECT_REPLIES, registry).labels(ICMP)
        self._timeouts = counter(m.COLLECT_TIMEOUTS, registry).labels(ICMP)
        self._round_seconds = histogram(m.COLLECT_ROUND_SECONDS, registry).labels(PROBE)
        self._messages = counter(m.COLLECT_MESSAGES, registry).labels(PROBE)
        gauge(m.COLLECT_TARGETS, registry).labels(ICMP).set(len(self.addresses))

    async def _probe(self, device_id: str, address: str) -> s.NetnodeProbe:
        ts_ms = self.clock_ms()
        result = await self.engine.ping(address, self.collection.echoes, self.collection.timeout_s)
        message = probe_message(device_id, self.sequences.next(device_id), ts_ms, result)
        self.sink.send(produced(message))
        self._requests.inc(result.sent)
        self._replies.inc(result.received)
        self._timeouts.inc(result.sent - result.received)
        self._messages.inc()
        return message

    async def probe_round(self) -> list[s.NetnodeProbe]:
        """One round: every target probed once, its message sent when it is done."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        spread = spread_s(self.collection)
        count = len(self.addresses)
        tasks: list[asyncio.Task[s.NetnodeProbe]] = []
        for i, (device_id, address) in enumerate(self.addresses.items()):
            due = started + spread * i / count
            if due - loop.time() > 0.005:
                await asyncio.sleep(due - loop.time())
                self.sink.poll()
            tasks.append(asyncio.create_task(self._probe(device_id, address)))
        results = await asyncio.gather(*tasks)
        self.sink.poll()
        self._round_seconds.observe(loop.time() - started)
        self.rounds += 1
        return results

    async def run(self, stop: asyncio.Event, rounds: int | None = None) -> None:
        """Rounds at the feed's interval (on a fixed cadence: a late round does not shift
        the next ones) until ``stop`` is set or ``rounds`` were done."""
        loop = asyncio.get_running_loop()
        interval = self.collection.interval(PROBE)
        start = loop.time()
        slot = 0
        while not stop.is_set() and (rounds is None or self.rounds < rounds):
            await self.probe_round()
            slot += 1
            behind = int((loop.time() - start) // interval)
            if behind >= slot:  # the round overran its slot: skip to the next free one
                self.overruns += behind - slot + 1
                log.warning("probe round %d overran its %.1f s interval", self.rounds, interval)
                slot = behind + 1
            if rounds is not None and self.rounds >= rounds:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=start + slot * interval - loop.time())


FEED: Final = Feed.NETNODE
