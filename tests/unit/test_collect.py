"""``ioc collect`` without a network: target selection and sharding, ICMP packets, the
engine's matching of replies to requests (on a fake socket), the probe messages against the
contract's decoder, and the feed declaration's collection schedule."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ioc.cli import main
from ioc.contract import schemas as s
from ioc.contract.feeds import Collection, Feed, FeedError, FeedSpec, registered, spec
from ioc.contract.topology import Topology, load_scenario
from ioc.services.collect import icmp
from ioc.services.collect.collector import (
    SEQ_PER_MS,
    Collector,
    Sequences,
    probe_message,
    produced,
    spread_s,
)
from ioc.services.collect.icmp import IcmpEngine, PingResult
from ioc.services.collect.targets import (
    Target,
    TargetError,
    host_of,
    resolve,
    select,
    shard_of,
    without_address,
)
from tests.support.collect import RecordingSink

# --- targets and shards -------------------------------------------------------------------


def _addressed(name: str = "yen-bai-2022") -> Topology:
    """A built-in scenario whose network nodes got inventory addresses (one left without)."""
    topo = load_scenario(name)
    nodes = sorted(topo.devices_of(Feed.NETNODE), key=lambda d: d.id)
    for i, node in enumerate(nodes[1:]):
        node.attributes["address"] = f"10.{i // 250}.{i % 250}.1"
    return topo


def test_targets_are_the_network_nodes_with_an_address() -> None:
    topo = _addressed()
    nodes = sorted(d.id for d in topo.devices_of(Feed.NETNODE))
    chosen = select(topo)
    assert [t.device_id for t in chosen] == nodes[1:]
    assert without_address(topo) == nodes[:1]
    assert chosen[0] == Target(nodes[1], "10.0.0.1")


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_shards_cover_every_target_once_and_evenly(shards: int) -> None:
    topo = _addressed()
    every = {t.device_id for t in select(topo)}
    parts = [{t.device_id for t in select(topo, k, shards)} for k in range(shards)]
    assert set().union(*parts) == every
    assert sum(len(p) for p in parts) == len(every)  # disjoint
    assert max(len(p) for p in parts) - min(len(p) for p in parts) < 0.5 * len(every) / shards


def test_the_shard_of_a_device_depends_only_on_its_id_and_the_count() -> None:
    # Pinned: every collector, in any process and release, computes the same split.
    assert [shard_of(f"nn-{i}", 4) for i in range(8)] == [2, 2, 1, 1, 3, 2, 0, 1]
    assert shard_of("nn-core", 1) == 0
    assert [shard_of(d, 5) for d in ("nn-core", "nn-991", "nn-991-001")] == [2, 1, 0]
    counts = Counter(shard_of(f"nn-{i:05d}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 900


def test_a_bad_shard_is_refused() -> None:
    topo = _addressed("demo")
    for shard, shards in ((1, 1), (-1, 2), (0, 0)):
        with pytest.raises(TargetError):
            select(topo, shard, shards)


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("10.99.0.1", "10.99.0.1"),
        ("router-7.hagiang.gov.vn", "router-7.hagiang.gov.vn"),
        ("10.99.0.1:161", "10.99.0.1"),
        ("sw1:161", "sw1"),
        ("snmp://10.1.2.3:1161/", "10.1.2.3"),
        ("[2001:db8::1]:161", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("  ", None),
    ],
)
def test_the_host_of_an_inventory_address(address: str, host: str | None) -> None:
    assert host_of(address) == host


async def test_resolution_keeps_ipv4_and_names_the_rest() -> None:
    addresses, missing = await resolve(
        [Target("a", "10.1.1.1"), Target("b", "2001:db8::1"), Target("c", "localhost")]
    )
    assert addresses["a"] == "10.1.1.1" and addresses["c"].startswith("127.")
    assert missing == ["b"]


def test_collect_without_addresses_says_where_they_come_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["collect", "--scenario", "demo", "--out", str(tmp_path / "o.jsonl")])
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "no network node nor telehealth station or video bridge nor camera with an address "
        "in demo" in err
    )
    assert "ioc inventory import" in err


# --- ICMP packets ---------------------------------------------------------------------------


def test_internet_checksum() -> None:
    # RFC 1071's example words sum to 0xddf2; the checksum is its complement.
    assert icmp.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert icmp.checksum(b"\x01") == ~0x0100 & 0xFFFF  # odd length: padded with a zero byte


def _ipv4(payload: bytes, src: str, dst: str, proto: int = socket.IPPROTO_ICMP) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0,
        0,
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return header + payload


def _reply_to(request: bytes) -> bytes:
    body = bytes([icmp.ECHO_REPLY, 0, 0, 0]) + request[4:]
    csum = icmp.checksum(body)
    return body[:2] + struct.pack("!H", csum) + body[4:]


def _error_for(
    request: bytes, dst: str, kind: int = icmp.DEST_UNREACHABLE, proto: int = socket.IPPROTO_ICMP
) -> bytes:
    quoted = _ipv4(request, "192.0.2.1", dst, proto)[: 20 + 8]
    body = bytes([kind, 1, 0, 0, 0, 0, 0, 0]) + quoted
    return body[:2] + struct.pack("!H", icmp.checksum(body)) + body[4:]


def test_echo_request_is_well_formed() -> None:
    packet = icmp.echo_request(0x1234, 7, b"payload!")
    assert packet[0] == icmp.ECHO_REQUEST and packet[1] == 0
    assert struct.unpack("!HH", packet[4:8]) == (0x1234, 7)
    assert icmp.checksum(packet) == 0  # a checksummed message sums to zero


def test_a_reply_is_parsed_with_or_without_its_ip_header() -> None:
    reply = _reply_to(icmp.echo_request(0xBEEF, 65535, b"token123"))
    for packet, ip_header in ((reply, False), (_ipv4(reply, "10.0.0.2", "10.0.0.1"), True)):
        got = icmp.parse(packet, ip_header=ip_header)
        assert got is not None and got.is_reply
        assert (got.ident, got.seq, got.payload, got.target) == (0xBEEF, 65535, b"token123", None)


def test_a_corrupt_or_foreign_packet_is_not_a_reply() -> None:
    reply = bytearray(_reply_to(icmp.echo_request(1, 1, b"abcd")))
    reply[-1] ^= 0xFF
    assert icmp.parse(bytes(reply), ip_header=False) is None  # bad checksum
    assert icmp.parse(icmp.echo_request(1, 1, b"x"), ip_header=False) is None  # a request
    assert icmp.parse(b"\x00\x00", ip_header=False) is None  # truncated
    assert icmp.parse(_ipv4(b"", "10.0.0.1", "10.0.0.2")[:10], ip_header=True) is None


def test_an_icmp_error_names_the_request_it_quotes() -> None:
    request = icmp.echo_request(0x4242, 99, b"tok")
    for kind in (icmp.DEST_UNREACHABLE, icmp.TIME_EXCEEDED):
        error = _ipv4(_error_for(request, "10.9.9.9", kind), "192.0.2.1", "10.0.0.1")
        got = icmp.parse(error, ip_header=True)
        assert got is not None and not got.is_reply
        assert (got.type, got.ident, got.seq, got.target) == (kind, 0x4242, 99, "10.9.9.9")
    udp = _error_for(request, "10.9.9.9", proto=socket.IPPROTO_UDP)
    assert icmp.parse(_ipv4(udp, "192.0.2.1", "10.0.0.1"), ip_header=True) is None  # not ICMP


def test_ping_result() -> None:
    lost = PingResult(3, ())
    assert (lost.reachable, lost.loss_pct, lost.rtt_ms) == (False, 100.0, None)
    some = PingResult(3, (0.002, 0.004))
    assert some.reachable and some.loss_pct == pytest.approx(100 / 3)
    assert some.rtt_ms == pytest.approx(3.0)


# --- the engine's matching, on a fake socket --------------------------------------------------


class FakeSocket:
    """Records what is sent; hands out the packets queued for reading."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str]] = []
        self.inbox: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, packet: bytes, address: tuple[str, int]) -> int:
        if address[0] == "10.0.0.66":
            raise OSError(113, "No route to host")
        self.sent.append((packet, address[0]))
        return len(packet)

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        if not self.inbox:
            raise BlockingIOError
        return self.inbox.pop(0)


def _fake_engine() -> tuple[IcmpEngine, FakeSocket]:
    engine = IcmpEngine()
    fake = FakeSocket()
    engine._sock = fake  # type: ignore[assignment]
    engine._loop = asyncio.get_running_loop()
    engine.raw = True
    return engine, fake


async def test_replies_are_matched_by_address_identifier_sequence_and_token() -> None:
    engine, fake = _fake_engine()
    a = await engine.echo("10.0.0.1", 5.0)
    b = await engine.echo("10.0.0.2", 5.0)
    c = await engine.echo("10.0.0.3", 0.05)
    unroutable = await engine.echo("10.0.0.66", 5.0)
    assert unroutable.done() and unroutable.result() is None  # the send failed: lost at once
    (req_a, _), (req_b, _), _ = fake.sent
    assert engine.in_flight == 3

    foreign = bytearray(_reply_to(req_a))
    foreign[8:16] = b"notours!"  # same identifier and sequence, another pinger's payload
    foreign[2:4] = b"\0\0"
    foreign[2:4] = struct.pack("!H", icmp.checksum(bytes(foreign)))
    fake.inbox += [
        (_ipv4(_reply_to(req_a), "10.0.0.9", "10.0.0.254"), ("10.0.0.9", 0)),  # wrong source
        (_ipv4(bytes(foreign), "10.0.0.1", "10.0.0.254"), ("10.0.0.1", 0)),
    ]
    engine._readable()
    assert not a.done() and not b.done()

    fake.inbox += [
        (_ipv4(_reply_to(req_a), "10.0.0.1", "10.0.0.254"), ("10.0.0.1", 0)),
        (_ipv4(_error_for(req_b, "10.0.0.2"), "10.0.0.254", "10.0.0.254"), ("10.0.0.254", 0)),
    ]
    engine._readable()
    rtt = a.result()
    assert rtt is not None and 0 <= rtt < 1.0
    assert b.result() is None  # destination unreachable: lost without waiting
    assert await c is None  # nothing came: the timer resolved it
    assert engine.in_flight == 0
    engine._sock = None
    engine.close()


async def test_sequence_numbers_wrap_and_skip_those_in_flight() -> None:
    engine, fake = _fake_engine()
    engine._seq = 0xFFFE
    first = await engine.echo("10.0.0.1", 5.0)
    engine._seq = 0xFFFE  # the next number to 10.0.0.1 is in flight: it is skipped
    await engine.echo("10.0.0.1", 5.0)
    seqs = [struct.unpack("!H", p[6:8])[0] for p, _ in fake.sent]
    assert seqs == [0xFFFF, 0]
    engine._sock = None
    engine.close()
    assert first.result() is None


# --- messages and rounds ----------------------------------------------------------------------


def test_probe_messages_are_the_contracts() -> None:
    now_ms = time.time_ns() // 1_000_000
    up = probe_message("nn-1", 7, now_ms, PingResult(3, (0.0123456, 0.01, 0.011)))
    down = probe_message("nn-2", 8, now_ms, PingResult(3, ()))
    for message in (up, down):
        record = produced(message)
        assert record.feed == "netnode" and record.key == message.device_id.encode()
        assert s.decode(record.value, feed="netnode", key=record.key, now_ms=now_ms) == message
    assert (up.reachable, up.rtt_ms, up.loss_pct) == (True, 11.12, 0.0)
    assert (down.reachable, down.rtt_ms, down.loss_pct) == (False, None, 100.0)
    partial = probe_message("nn-3", 9, now_ms, PingResult(3, (0.01,)))
    assert partial.loss_pct == 66.67


def test_sequences_continue_above_a_previous_run() -> None:
    before = Sequences(1_700_000_000_000)
    assert [before.next("a"), before.next("a"), before.next("b")] == [
        1_700_000_000_000 * SEQ_PER_MS + 1,
        1_700_000_000_000 * SEQ_PER_MS + 2,
        1_700_000_000_000 * SEQ_PER_MS + 1,
    ]
    after = Sequences(1_700_000_000_001)  # restarted a millisecond later
    assert after.next("a") > before.next("a")
    assert after.next("a") <= s.MAX_COUNTER * 512  # far inside Seq's 2**62


def test_the_schedule_is_the_feed_declaration() -> None:
    collection = spec(Feed.NETNODE).collection
    assert collection is not None
    assert collection.interval("netnode.probe") == 5.0
    assert collection.timeout_s < collection.interval("netnode.probe")
    assert spread_s(collection) == pytest.approx(5.0 - 2 * icmp.ECHO_SPACING_S - 2.0)
    from ioc.simulators.behaviour import NetnodeSim

    assert NetnodeSim.periods == {
        k: round(v * 1000) for k, v in collection.interval_s.items()
    }  # the simulated nodes report as often as the real ones are polled


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"interval_s": {}, "timeout_s": 1.0}, "names no message kind"),
        ({"interval_s": {"x.y": 0.5}, "timeout_s": 0.1}, "1..3600"),
        ({"interval_s": {"x.y": 5.0}, "timeout_s": 5.0}, "shorter than the interval"),
        ({"interval_s": {"x.y": 5.0}, "timeout_s": 1.0, "echoes": 0}, "echoes"),
    ],
)
def test_a_bad_collection_is_refused(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(FeedError, match=problem):
        Collection(**kwargs)


def test_a_collection_names_only_the_feeds_own_kinds() -> None:
    from tests.support.airquality import FEED as AIR

    bad = FeedSpec(
        **{
            **{f: getattr(AIR, f) for f in AIR.__dataclass_fields__},
            "collection": Collection(interval_s={"netnode.probe": 5.0}, timeout_s=1.0),
        }
    )
    with pytest.raises(FeedError, match="not its kind"), registered(bad):
        pass


class ScriptedEngine(IcmpEngine):
    """Answers from a table instead of the network: address -> (delay s, rtt s or None)."""

    def __init__(self, script: dict[str, tuple[float, float | None]]) -> None:
        super().__init__()
        self.script = script

    async def ping(self, address: str, count: int, timeout: float) -> PingResult:
        delay, rtt = self.script[address]
        await asyncio.sleep(delay)
        return PingResult(count, () if rtt is None else (rtt,) * count)


async def test_a_round_sends_each_result_when_it_is_ready() -> None:
    collection = Collection(interval_s={"netnode.probe": 1.0}, timeout_s=0.3, echoes=2)
    sink = RecordingSink()
    engine = ScriptedEngine({"10.0.0.1": (0.25, None), "10.0.0.2": (0.0, 0.004)})
    collector = Collector(
        {"nn-slow": "10.0.0.1", "nn-fast": "10.0.0.2"},
        sink,
        engine,
        collection,
        registry=CollectorRegistry(),
    )
    results = await collector.probe_round()
    assert [r.device_id for r in results] == ["nn-fast", "nn-slow"]  # in id order
    sent = [s.decode(r.value, feed="netnode").device_id for r in sink.records]
    assert sent == ["nn-fast", "nn-slow"]  # the slow one did not hold the fast one back


async def test_rounds_keep_their_cadence_and_stop() -> None:
    collection = Collection(interval_s={"netnode.probe": 1.0}, timeout_s=0.1, echoes=1)
    sink = RecordingSink()
    collector = Collector(
        {"nn-1": "10.0.0.1"},
        sink,
        ScriptedEngine({"10.0.0.1": (0.0, 0.001)}),
        collection,
        registry=CollectorRegistry(),
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    await collector.run(asyncio.Event(), rounds=2)
    assert collector.rounds == 2 and len(sink.records) == 2
    assert 1.0 <= loop.time() - started < 1.5  # the second round waited for its slot
    stop = asyncio.Event()
    loop.call_later(0.2, stop.set)
    await collector.run(stop)
    assert collector.rounds == 3  # one more round, then the stop ended the wait
