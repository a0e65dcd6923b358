"""The collector's ICMP engine against a real peer: a network namespace behind a veth pair.

Needs root (network namespaces, a raw ICMP socket) and ``ip`` (iproute2), no stack: no
Kafka, no database; the messages go to an in-memory sink and are checked with the contract's
decoder. The test pings the namespace's address (a reply: reachable), checks that a silent
address in the same subnet does not delay the live one's message, then takes the veth down
inside the namespace and sees the probes fail (unreachable, 100 % loss). The namespace and
the veth are removed in a ``finally``.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.contract.feeds import Collection
from ioc.services.collect.collector import Collector
from ioc.services.collect.icmp import IcmpEngine
from ioc.sinks import Record, Sink
from tests.support.netns import NEEDS_ROOT_AND_IP, Peer, peer

__all__ = ["peer"]  # the fixture

pytestmark = NEEDS_ROOT_AND_IP

COLLECTION = Collection(
    interval_s={"netnode.probe": 2.0, "netnode.counters": 15.0}, timeout_s=1.0, echoes=2
)


class ListSink(Sink):
    """Keeps what was sent, with the monotonic time it was sent."""

    def __init__(self) -> None:
        self.records: list[tuple[float, Record]] = []

    def send(self, record: Record) -> None:
        self.records.append((time.monotonic(), record))
        self.sent += 1


def _decoded(sink: ListSink) -> dict[str, tuple[float, s.NetnodeProbe]]:
    out: dict[str, tuple[float, s.NetnodeProbe]] = {}
    now_ms = time.time_ns() // 1_000_000
    for at, record in sink.records:
        message = s.decode(record.value, feed="netnode", key=record.key, now_ms=now_ms)
        assert isinstance(message, s.NetnodeProbe)
        out[message.device_id] = (at, message)
    return out


async def test_reachable_then_cut(peer: Peer) -> None:
    registry = CollectorRegistry()
    async with IcmpEngine() as engine:
        assert engine.raw  # root: the raw socket, replies matched by identifier too
        ping = await engine.ping(peer.peer_ip, 3, 1.0)
        assert ping.reachable and ping.received == 3 and ping.rtt_ms is not None

        sink = ListSink()
        collector = Collector(
            {"nn-live": peer.peer_ip, "nn-silent": peer.silent_ip},
            sink,
            engine,
            COLLECTION,
            registry=registry,
        )
        started = time.monotonic()
        await collector.probe_round()
        got = _decoded(sink)
        live_at, live = got["nn-live"]
        _, silent = got["nn-silent"]
        assert live.reachable and live.loss_pct == 0.0 and live.rtt_ms is not None
        assert live.rtt_ms < 100.0
        assert not silent.reachable and silent.loss_pct == 100.0 and silent.rtt_ms is None
        # The silent target's timeout did not hold the live one's message back.
        assert live_at - started < COLLECTION.timeout_s
        assert engine.in_flight == 0

        peer.cut()
        sink.records.clear()
        await collector.probe_round()
        _, cut = _decoded(sink)["nn-live"]
        assert not cut.reachable and cut.loss_pct == 100.0 and cut.rtt_ms is None
        assert cut.seq > live.seq

    sample = registry.get_sample_value
    assert sample(m.COLLECT_REQUESTS.series, {"protocol": "icmp"}) == 8
    assert sample(m.COLLECT_REPLIES.series, {"protocol": "icmp"}) == 2
    assert sample(m.COLLECT_TIMEOUTS.series, {"protocol": "icmp"}) == 6
    assert sample(f"{m.COLLECT_ROUND_SECONDS.name}_count", {"kind": "netnode.probe"}) == 2
