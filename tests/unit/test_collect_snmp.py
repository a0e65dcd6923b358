"""The SNMP part of ``ioc collect`` without a network: credentials, the interface table,
rates from successive samples, traps decoded from real BER bytes, the disk spool and the
spooling sink on a fake producer (the real peers: tests/integration/test_collect_snmp.py)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pyasn1.codec.ber import encoder
from pydantic import SecretStr, ValidationError
from pysnmp.proto import api

from ioc.cli import main
from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.contract.feeds import Collection
from ioc.services.collect import snmp, traps
from ioc.services.collect.collector import Sequences, SnmpCollector
from ioc.services.collect.spool import Spool, SpoolingSink, decode_frames, encode_frame
from tests.support.collect import RecordingSink

# --- credentials ----------------------------------------------------------------------------


def test_profiles_need_their_secrets_and_never_show_them(tmp_path: Path) -> None:
    v2 = snmp.Profile(version="2c", community=SecretStr("c0mmunity"))
    v3 = snmp.Profile(
        version="3", user="ioc", auth_key=SecretStr("a" * 8), priv_key=SecretStr("p" * 8)
    )
    assert "c0mmunity" not in repr(v2) and "aaaaaaaa" not in repr(v3) and v3.port == 161
    with pytest.raises(ValidationError, match="needs a community"):
        snmp.Profile(version="2c")
    with pytest.raises(ValidationError, match="auth_key of 8 characters"):
        snmp.Profile(
            version="3", user="u", auth_key=SecretStr("short"), priv_key=SecretStr("p" * 8)
        )
    with pytest.raises(ValidationError, match="needs a user"):
        snmp.Profile(version="3", auth_key=SecretStr("a" * 8), priv_key=SecretStr("p" * 8))


def test_credentials_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "snmp.toml"
    snmp.secure_write(
        path,
        '[profiles.default]\nversion = "2c"\ncommunity = "pub1ic"\nport = 1161\n'
        '[profiles.core]\nversion = "3"\nuser = "ioc"\nauth_key = "authkey1"\n'
        'priv_key = "privkey1"\nauth_protocol = "sha256"\npriv_protocol = "aes256"\n',
    )
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    profiles = snmp.load_profiles(path)
    assert profiles["default"].port == 1161 and profiles["core"].priv_protocol == "aes256"
    assert not caplog.records
    path.chmod(0o644)
    snmp.load_profiles(path)
    assert "can be read by others" in caplog.text
    path.write_text('[profiles.bad]\nversion = "3"\nuser = "x"\n')
    with pytest.raises(snmp.SnmpConfigError, match=r"profile bad: .*auth_key") as err:
        snmp.load_profiles(path)
    assert "x" not in str(err.value).split("profile bad")[0]
    path.write_text("nothing = 1\n")
    with pytest.raises(snmp.SnmpConfigError, match=r"no \[profiles\.NAME\]"):
        snmp.load_profiles(path)
    path.write_text("[[[")
    with pytest.raises(snmp.SnmpConfigError):
        snmp.load_profiles(path)


def test_targets_take_the_profile_their_node_names() -> None:
    profiles = {"default": snmp.Profile(version="2c", community=SecretStr("c"))}
    chosen, missing = snmp.select(
        [
            ("a", "10.0.0.1", {"capacity_mbps": 100}),
            ("b", "10.0.0.2", {"snmp_profile": "core"}),
            ("c", "10.0.0.3", {"capacity_mbps": "nan"}),
        ],
        profiles,
    )
    assert [(t.device_id, t.capacity_mbps) for t in chosen] == [("a", 100.0), ("c", None)]
    assert missing == ["b"]


# --- the interface table ------------------------------------------------------------------


def _columns(**rows: dict[str, Any]) -> dict[str, dict[int, Any]]:
    """Walk columns from rows given as ifIndex=str(index) -> {column: value}."""
    out: dict[str, dict[int, Any]] = {}
    for index, row in rows.items():
        for name, value in row.items():
            out.setdefault(name, {})[int(index.removeprefix("i"))] = value
    return out


def _row(
    oper: int = 1,
    hc_in: int | None = 1000,
    hc_out: int | None = 500,
    **extra: Any,
) -> dict[str, Any]:
    row: dict[str, Any] = {"oper": oper, "admin": 1, "type": 6, "name": b"ge-0/0/1"}
    row["high_speed"] = 1000
    if hc_in is not None:
        row["hc_in_octets"] = hc_in
    if hc_out is not None:
        row["hc_out_octets"] = hc_out
    row.update(in_errors=0, out_errors=0)
    row.update(extra)
    return row


def test_column_of_instance_oids() -> None:
    assert snmp.column_of((*snmp.COLUMNS["oper"], 7)) == ("oper", 7)
    assert snmp.column_of((*snmp.COLUMNS["hc_in_octets"], 3)) == ("hc_in_octets", 3)
    assert snmp.column_of(snmp.COLUMNS["oper"]) is None
    assert snmp.column_of((1, 3, 6, 1, 2, 1, 1, 3, 0)) is None


def test_interfaces_from_a_walk() -> None:
    rows = snmp.interfaces(
        _columns(
            i1=_row(),
            i2=_row(
                hc_in=None, hc_out=None, in_octets=70, out_octets=80, high_speed=0, speed=10**7
            ),
            i3=_row(name=b"", descr=b"eth\x00 3", high_speed=0, speed=2**32 - 1),
            i4=_row(name=b"   "),
            i5={"name": b"no status"},
        )
    )
    assert sorted(rows) == [1, 2, 3, 4]
    assert rows[1].wide and rows[1].in_octets == 1000 and rows[1].speed_bps == 1e9
    assert rows[1].name == "ge-0/0/1"
    assert not rows[2].wide and rows[2].in_octets == 70 and rows[2].speed_bps == 1e7
    assert rows[3].name == "eth 3" and rows[3].speed_bps is None  # NUL dropped; "see ifHighSpeed"
    assert rows[4].name == "if4"
    assert snmp.clean_name("x" * 300, 1) == "x" * 128
    assert snmp.clean_name("\ud800", 9) == "if9"


def test_merging_bulk_responses_ends_columns_and_refuses_loops() -> None:
    from pysnmp.proto import rfc1902, rfc1905

    oper, name = snmp.COLUMNS["oper"], snmp.COLUMNS["name"]
    columns: dict[str, dict[int, Any]] = {"oper": {}, "name": {}}
    cursors = {"oper": oper, "name": name}
    ended = snmp.merge_bulk(
        [
            ((*oper, 1), rfc1902.Integer(1)),
            ((*name, 1), rfc1902.OctetString(b"lo")),
            ((*oper, 2), rfc1902.Integer(2)),
            ((*snmp.COLUMNS["hc_in_octets"], 1), rfc1902.Counter64(5)),  # left its column
            ((*snmp.COLUMNS["in_octets"], 1), rfc1902.Counter32(7)),  # oper's next: ended
            ((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 2, 1), rfc1902.Counter32(0)),
        ],
        ["oper", "name"],
        columns,
        cursors,
    )
    assert ended == {"oper", "name"}
    assert columns == {"oper": {1: 1, 2: 2}, "name": {1: b"lo"}}
    assert cursors["oper"] == (*oper, 2)
    end = rfc1905.endOfMibView
    assert snmp.merge_bulk([((*oper, 3), end)], ["oper"], columns, {"oper": oper}) == {"oper"}
    assert snmp.merge_bulk([], ["oper"], columns, {"oper": oper}) == {"oper"}
    with pytest.raises(snmp.PollFailed) as err:  # an agent going backwards would loop for ever
        snmp.merge_bulk([((*oper, 1), rfc1902.Integer(1))], ["oper"], columns, {"oper": (*oper, 2)})
    assert err.value.reason == "malformed"
    assert snmp.reason_of(type("RequestTimedOut", (), {})()) == "timeout"
    assert snmp.reason_of(type("WrongDigest", (), {})()) == "auth"
    assert snmp.reason_of(object()) == "snmp_error"


# --- rates from successive samples --------------------------------------------------------


def _sample(uptime_s: float, **rows: dict[str, Any]) -> snmp.Sample:
    return snmp.Sample(round(uptime_s * 100), 1_795_000_000_000, snmp.interfaces(_columns(**rows)))


def test_the_first_poll_is_a_baseline_and_the_second_gives_rates() -> None:
    tracker = snmp.Tracker()
    first = tracker.update("nn-1", _sample(100, i1=_row(hc_in=1_000, hc_out=0)))
    assert first.counters == [] and first.links == [] and first.skipped == []
    second = tracker.update(
        "nn-1", _sample(115, i1=_row(hc_in=1_000 + 15 * 125_000, hc_out=30, in_errors=3))
    )
    assert second.counters == [("ge-0/0/1", 1_000_000.0, 16.0, 3, 0, 1e9, 15)]


def test_counter_wraps_resets_restarts_and_gaps() -> None:
    tracker = snmp.Tracker()
    narrow: dict[str, Any] = {"hc_in": None, "hc_out": None, "high_speed": 0, "speed": 10**8}
    tracker.update("n", _sample(10, i1=_row(in_octets=2**32 - 100, out_octets=5, **narrow)))
    out = tracker.update("n", _sample(20, i1=_row(in_octets=900, out_octets=5, **narrow)))
    assert out.counters[0][1] == 1000 * 8 / 10  # the 32-bit counter wrapped
    tracker.update("n", _sample(30, i1=_row(hc_in=5_000)))
    assert tracker.update("n", _sample(40, i1=_row(hc_in=4_000))).skipped == ["counter_reset"]
    assert tracker.update("n", _sample(5, i1=_row())).skipped == ["agent_restart"]
    assert tracker.update("n", _sample(5 + 3601, i1=_row())).skipped == ["stale_baseline"]


def test_capacity_from_the_agent_else_the_inventory_else_skipped() -> None:
    tracker = snmp.Tracker()
    nospeed = _row(high_speed=0, speed=0)
    tracker.update("n", _sample(0, i1=nospeed))
    assert tracker.update("n", _sample(15, i1=nospeed), 100.0).counters[0][5] == 1e8
    assert tracker.update("n", _sample(30, i1=nospeed)).skipped == ["unknown_speed"]


def test_loopback_and_admin_down_interfaces_give_no_counters() -> None:
    tracker = snmp.Tracker()
    rows = {"i1": _row(type=snmp.SOFTWARE_LOOPBACK), "i2": _row(admin=2, oper=2)}
    tracker.update("n", _sample(0, **rows))
    out = tracker.update("n", _sample(15, **rows))
    assert out.counters == [] and out.links == []


def test_a_link_change_is_reported_once_by_the_trap_or_the_poll() -> None:
    tracker = snmp.Tracker()
    tracker.update("n", _sample(0, i1=_row(oper=1)))
    assert tracker.update("n", _sample(15, i1=_row(oper=2))).links == [("ge-0/0/1", "down")]
    assert tracker.update("n", _sample(30, i1=_row(oper=2))).links == []
    assert tracker.trap_link("n", 1, "up")  # the trap sees it first...
    assert tracker.update("n", _sample(45, i1=_row(oper=1))).links == []  # ...the poll agrees
    assert not tracker.trap_link("n", 1, "up")  # a repeated trap
    assert tracker.trap_link("other", 4, "down")  # a trap before any poll is an event
    assert tracker.name("other", 4) == "if4" and tracker.name("n", 1) == "ge-0/0/1"
    dormant = tracker.update("n", _sample(60, i1=_row(oper=5)))
    assert dormant.links == []  # dormant(5) is no link state


def test_messages_are_the_contracts() -> None:
    tracker = snmp.Tracker()
    tracker.update("nn-1", _sample(0, i1=_row(oper=1)))
    outcome = tracker.update("nn-1", _sample(15, i1=_row(oper=2, hc_in=2_000_000)))
    sequences = Sequences(1_795_000_000_000)
    messages = snmp.messages("nn-1", 1_795_000_000_000, outcome, sequences.next)
    assert [msg.kind for msg in messages] == ["netnode.link", "netnode.counters"]
    for message in messages:
        data = s.encode(message)
        assert s.decode(data, feed="netnode", key=b"nn-1", now_ms=1_795_000_000_000) == message
    assert messages[1].seq == messages[0].seq + 1


# --- the poll round -------------------------------------------------------------------------


class FakePoller:
    """Answers from a script: device id -> samples or failures, in turn."""

    def __init__(self, script: dict[str, list[snmp.Sample | snmp.PollFailed]]) -> None:
        self.script = script
        self.requests = 0
        self.replies = 0

    async def poll(self, target: snmp.SnmpTarget, clock_ms: Callable[[], int]) -> snmp.Sample:
        self.requests += 1
        answer = self.script[target.device_id].pop(0)
        if isinstance(answer, snmp.PollFailed):
            raise answer
        self.replies += 1
        return answer


COLLECTION = Collection(
    interval_s={"netnode.probe": 5.0, "netnode.counters": 1.0}, timeout_s=0.1, echoes=1
)


async def test_a_round_counts_failures_and_sends_the_others_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    sink = RecordingSink()
    profile = snmp.Profile(version="2c", community=SecretStr("c"))
    targets = [
        snmp.SnmpTarget("ok", "10.0.0.1", profile),
        snmp.SnmpTarget("mute", "10.0.0.2", profile),
    ]
    poller = FakePoller(
        {
            "ok": [_sample(0, i1=_row()), _sample(1, i1=_row(hc_in=2000))],
            "mute": [snmp.PollFailed("timeout", "no answer")] * 2,
        }
    )
    rounds = SnmpCollector(
        targets,
        sink,
        poller,
        COLLECTION,
        Sequences(1),
        snmp.Tracker(),
        registry=registry,
    )
    with caplog.at_level(logging.WARNING):
        await rounds.run(asyncio.Event(), rounds=2)
    assert [s.decode(r.value, feed="netnode").kind for r in sink.records] == ["netnode.counters"]

    def value(spec: m.MetricSpec, **labels: str) -> float | None:
        return registry.get_sample_value(spec.series, labels)

    assert value(m.COLLECT_POLLS, protocol="snmp") == 4
    assert value(m.COLLECT_REQUESTS, protocol="snmp") == 4
    assert value(m.COLLECT_REPLIES, protocol="snmp") == 2
    assert value(m.COLLECT_TIMEOUTS, protocol="snmp") == 2
    assert value(m.COLLECT_ERRORS, protocol="snmp", reason="timeout") == 2
    assert value(m.COLLECT_MESSAGES, kind="netnode.counters") == 1
    assert caplog.text.count("SNMP poll failed") == 1  # logged when it starts, not every round


async def test_a_v3_nodes_engine_is_reported_once_per_change() -> None:
    v3 = snmp.Profile(
        version="3", user="u", auth_key=SecretStr("a" * 8), priv_key=SecretStr("p" * 8)
    )
    v2 = snmp.Profile(version="2c", community=SecretStr("c"))

    def sample(engine: str) -> snmp.Sample:
        return snmp.Sample(100, 1, {}, engine)

    poller = FakePoller(
        {"v3": [sample("aa" * 6), sample("aa" * 6), sample("bb" * 6)], "v2": [sample("cc" * 6)] * 3}
    )
    rounds = SnmpCollector(
        [snmp.SnmpTarget("v3", "10.0.0.1", v3), snmp.SnmpTarget("v2", "10.0.0.2", v2)],
        RecordingSink(),
        poller,
        COLLECTION,
        Sequences(1),
        snmp.Tracker(),
        registry=CollectorRegistry(),
    )
    seen: list[tuple[str, str]] = []
    rounds.on_engine_id = lambda device, engine: seen.append((device, engine))
    for _ in range(3):
        await rounds.poll_round()
    assert seen == [("v3", "aa" * 6), ("v3", "bb" * 6)]


async def test_a_stop_starts_no_further_poll_of_the_round() -> None:
    profile = snmp.Profile(version="2c", community=SecretStr("c"))
    names = ("a", "b", "c")
    poller = FakePoller({n: [_sample(0, i1=_row())] for n in names})
    slow = Collection(interval_s={"netnode.probe": 5.0, "netnode.counters": 6.0}, timeout_s=0.1)
    rounds = SnmpCollector(
        [snmp.SnmpTarget(n, "10.0.0.1", profile) for n in names],
        RecordingSink(),
        poller,
        slow,
        Sequences(1),
        snmp.Tracker(),
        registry=CollectorRegistry(),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    started = asyncio.get_running_loop().time()
    await rounds.run(stop)
    assert asyncio.get_running_loop().time() - started < 1.5  # not the 5.9 s spread
    assert poller.requests == 1 and rounds.rounds == 1


# --- traps ------------------------------------------------------------------------------------

V2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
V1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]


def _message(version: Any, pdu: Any, community: str = "pub1ic") -> bytes:
    """``pdu`` in a v1 or v2c message (``version``: V1 or V2) with ``community``, encoded."""
    message = version.Message()
    version.apiMessage.set_defaults(message)
    version.apiMessage.set_community(message, community)
    version.apiMessage.set_pdu(message, pdu)
    return bytes(encoder.encode(message))


def v2c_trap(
    trap_oid: tuple[int, ...] | None,
    if_index: int | None = 3,
    community: str = "pub1ic",
    inform: bool = False,
    **extra: Any,
) -> bytes:
    pdu = V2.InformRequestPDU() if inform else V2.SNMPv2TrapPDU()
    V2.apiTrapPDU.set_defaults(pdu)
    varbinds = [(V2.apiTrapPDU.sysUpTime, V2.TimeTicks(123))]
    if trap_oid is not None:
        varbinds.append((traps.SNMP_TRAP_OID, V2.ObjectIdentifier(trap_oid)))
    if if_index is not None:
        varbinds.append(((*traps.IF_INDEX, if_index), V2.Integer(if_index)))
    if "agent" in extra:
        varbinds.append((traps.SNMP_TRAP_ADDRESS, V2.IpAddress(extra["agent"])))
    V2.apiTrapPDU.set_varbinds(pdu, varbinds)
    return _message(V2, pdu, community)


def v1_trap(generic: int, if_index: int = 3) -> bytes:
    pdu = V1.TrapPDU()
    V1.apiTrapPDU.set_defaults(pdu)
    V1.apiTrapPDU.set_generic_trap(pdu, generic)
    V1.apiTrapPDU.set_varbinds(pdu, [((*traps.IF_INDEX, if_index), V1.Integer(if_index))])
    return _message(V1, pdu)


def v2c_get() -> bytes:
    pdu = V2.GetRequestPDU()
    V2.apiPDU.set_defaults(pdu)
    V2.apiPDU.set_varbinds(pdu, [((1, 3, 6, 1, 2, 1, 1, 3, 0), V2.Null(""))])
    return _message(V2, pdu)


def test_decoding_traps() -> None:
    down = traps.decode(v2c_trap(traps.LINK_DOWN))
    assert (down.version, down.community, down.trap, down.if_index) == (
        "2c",
        b"pub1ic",
        traps.LINK_DOWN,
        3,
    )
    assert traps.decode(v2c_trap(traps.LINK_UP, agent="10.0.0.9")).agent == "10.0.0.9"
    up = traps.decode(v1_trap(3, 7))
    assert (up.version, up.trap, up.if_index) == ("1", traps.LINK_UP, 7)
    assert traps.decode(v1_trap(6)).trap is None  # enterprise-specific
    data = v2c_trap(traps.LINK_DOWN)
    for bad, outcome in (
        (b"", "malformed"),
        (b"garbage!", "malformed"),
        (data[: len(data) // 2], "malformed"),
        (v2c_trap(None), "malformed"),
        (v2c_get(), "unsupported"),
    ):
        with pytest.raises(traps.TrapError) as err:
            traps.decode(bad)
        assert err.value.outcome == outcome


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def test_an_inform_is_acknowledged_with_its_request_id_and_varbinds() -> None:
    from pyasn1.codec.ber import decoder

    data = v2c_trap(traps.LINK_DOWN, inform=True)
    trap = traps.decode(data)
    assert trap.trap == traps.LINK_DOWN and trap.response is not None
    request, _ = decoder.decode(data, asn1Spec=V2.Message())
    reply, _ = decoder.decode(trap.response, asn1Spec=V2.Message())
    request_pdu, reply_pdu = V2.apiMessage.get_pdu(request), V2.apiMessage.get_pdu(reply)
    assert reply_pdu.isSameTypeWith(V2.ResponsePDU())
    assert V2.apiPDU.get_request_id(reply_pdu) == V2.apiPDU.get_request_id(request_pdu)
    assert V2.apiPDU.get_varbinds(reply_pdu) == V2.apiPDU.get_varbinds(request_pdu)

    profile = snmp.Profile(version="2c", community=SecretStr("pub1ic"))
    receiver = traps.TrapReceiver(
        {"10.0.0.1": "nn-1"},
        {"nn-1": profile},
        snmp.Tracker(),
        Sequences(1).next,
        lambda message: None,
        registry=CollectorRegistry(),
        clock_ms=lambda: 1_795_000_000_000,
    )
    transport = FakeTransport()
    receiver.connection_made(transport)  # type: ignore[arg-type]
    receiver.datagram_received(data, ("10.0.0.1", 40000))
    receiver.datagram_received(v2c_trap(traps.LINK_DOWN, inform=True), ("10.0.0.1", 40001))
    receiver.datagram_received(  # a stranger's inform is not answered: no reflection
        v2c_trap(traps.LINK_DOWN, inform=True), ("192.0.2.7", 40002)
    )
    receiver.datagram_received(  # nor one with a wrong community
        v2c_trap(traps.LINK_DOWN, inform=True, community="guess"), ("10.0.0.1", 40003)
    )
    assert [addr for _, addr in transport.sent] == [("10.0.0.1", 40000), ("10.0.0.1", 40001)]
    assert receiver.outcomes["link"] == 1 and receiver.outcomes["repeated"] == 1


def test_the_receiver_turns_a_nodes_link_traps_into_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    sent: list[s.NetnodeLink] = []
    tracker = snmp.Tracker()
    profile = snmp.Profile(version="2c", community=SecretStr("pub1ic"))
    v3 = snmp.Profile(
        version="3", user="u", auth_key=SecretStr("a" * 8), priv_key=SecretStr("p" * 8)
    )
    receiver = traps.TrapReceiver(
        {"10.0.0.1": "nn-1", "10.0.0.9": "nn-9", "10.0.0.3": "nn-3"},
        {"nn-1": profile, "nn-9": profile, "nn-3": v3},
        tracker,
        Sequences(1_795_000_000_000).next,
        sent.append,
        registry=registry,
        clock_ms=lambda: 1_795_000_000_123,
    )
    message = receiver.handle(v2c_trap(traps.LINK_DOWN), "10.0.0.1")
    assert message is not None and sent == [message]
    assert (message.device_id, message.interface, message.state, message.ts_ms) == (
        "nn-1",
        "if3",
        "down",
        1_795_000_000_123,
    )
    assert s.decode(s.encode(message), feed="netnode", now_ms=message.ts_ms) == message
    assert receiver.handle(v2c_trap(traps.LINK_DOWN), "10.0.0.1") is None  # repeated
    forwarded = receiver.handle(v2c_trap(traps.LINK_UP, agent="10.0.0.9"), "10.0.0.250")
    assert forwarded is not None and forwarded.device_id == "nn-9"
    receiver.handle(v2c_trap(traps.LINK_UP), "192.0.2.1")  # a stranger
    receiver.handle(v2c_trap(traps.LINK_UP, community="guess"), "10.0.0.1")
    receiver.handle(v2c_trap(traps.LINK_UP), "10.0.0.3")  # a v3 node's v2c trap
    receiver.handle(v2c_trap((1, 3, 6, 1, 6, 3, 1, 1, 5, 1)), "10.0.0.1")  # coldStart
    receiver.handle(v2c_trap(traps.LINK_UP, if_index=None), "10.0.0.1")
    receiver.datagram_received(b"\x30\x03\x02\x01", ("10.0.0.1", 162))
    receiver.datagram_received(v2c_get(), ("10.0.0.1", 162))
    assert receiver.outcomes == {
        "link": 2,
        "repeated": 1,
        "malformed": 1,
        "unsupported": 1,
        "unknown_source": 1,
        "bad_community": 2,
        "auth": 0,
        "unknown_trap": 1,
        "no_interface": 1,
    }
    for outcome, count in receiver.outcomes.items():
        assert registry.get_sample_value(m.COLLECT_TRAPS.series, {"outcome": outcome}) == count
    assert "guess" not in caplog.text and "pub1ic" not in caplog.text


V3_LINK_DOWN = bytes.fromhex(
    "3081b2020103301102044c0bfbc5020300ffe304010302010304363034040980001f8880aabbccdd0201010203"
    "1e23860407696f6374726170040c1f053acbcace88d95c3c03860408be7256b8614c3c2304622e457cf80f23c0"
    "a6343ae57efc5d1fbc1a8027752fba9c22257217f3aaa608b0f08fd4b39e5558ee9ba1f667233bba9b23d59628"
    "8261854791761707fdc7fa7126a88846f9b403862a84e74121e16adbd84af4348433e5a6dfb0ad014e0ddbe065e3"
)
"""A linkDown for ifIndex 3, SNMPv3 authPriv (user ``ioctrap``, SHA ``authkey-0001``, AES
``privkey-0001``, engine ``80001f8880aabbccdd``), as net-snmp's snmptrap sent it."""


def _v3_receiver(**profile: Any) -> traps.TrapReceiver:
    v3 = snmp.Profile.model_validate(
        {
            "version": "3",
            "user": "ioctrap",
            "auth_key": "authkey-0001",
            "priv_key": "privkey-0001",
            "engine_id": "0x80001f8880aabbccdd",
            **profile,
        }
    )
    return traps.TrapReceiver(
        {"10.0.0.3": "nn-3"},
        {"nn-3": v3},
        snmp.Tracker(),
        Sequences(1).next,
        lambda message: None,
        registry=CollectorRegistry(),
        clock_ms=lambda: 1_795_000_000_000,
    )


def test_a_v3_trap_is_authenticated_and_decrypted_by_usm() -> None:
    message = _v3_receiver().handle(V3_LINK_DOWN, "10.0.0.3")
    assert message is not None and (message.device_id, message.state) == ("nn-3", "down")
    assert message.interface == "if3"
    stranger = _v3_receiver()
    assert stranger.handle(V3_LINK_DOWN, "10.0.0.99") is None
    assert stranger.outcomes["unknown_source"] == 1
    for wrong in ({"priv_key": "privkey-0002"}, {"auth_key": "authkey-0002"}):
        refused = _v3_receiver(**wrong)
        assert refused.handle(V3_LINK_DOWN, "10.0.0.3") is None
        assert refused.outcomes["auth"] == 1, wrong
    other_engine = _v3_receiver(engine_id="80001f8880aabbccee")  # USM has no such user
    assert other_engine.handle(V3_LINK_DOWN, "10.0.0.3") is None
    assert other_engine.outcomes["auth"] == 1
    no_engine = _v3_receiver(engine_id=None)
    assert no_engine.handle(V3_LINK_DOWN, "10.0.0.3") is None
    assert no_engine.outcomes["unsupported"] == 1
    assert no_engine.handle(V3_LINK_DOWN[:40], "10.0.0.3") is None  # truncated: not v3 at all
    assert no_engine.outcomes["malformed"] == 1
    with pytest.raises(ValidationError, match="engine_id"):
        _v3_receiver(engine_id="zz")


def test_a_v3_nodes_engine_learnt_from_its_polls_admits_its_traps() -> None:
    receiver = _v3_receiver(engine_id=None)
    receiver.learn("nn-3", "80001f8880aabbccee")  # another engine: the trap is refused
    assert receiver.handle(V3_LINK_DOWN, "10.0.0.3") is None
    assert receiver.outcomes["auth"] == 1
    receiver.learn("nn-3", "80001F8880AABBCCDD")  # the engine changed (re-learnt, any case)
    message = receiver.handle(V3_LINK_DOWN, "10.0.0.3")
    assert message is not None and message.state == "down"
    receiver.learn("nn-unknown", "80001f8880aabbccdd")  # not a v3 node of ours: ignored
    configured = _v3_receiver(engine_id="80001f8880aabbccdd")
    configured.learn("nn-3", "80001f8880aabbccee")  # a configured engine id wins
    assert configured.handle(V3_LINK_DOWN, "10.0.0.3") is not None


def test_engine_ids_from_a_poll() -> None:
    from pysnmp.proto import rfc1902

    oid = (*snmp.ENGINE_ID, 0)
    assert snmp.engine_id_of((oid, rfc1902.OctetString(hexValue="80001f8880aabbccdd"))) == (
        "80001f8880aabbccdd"
    )
    assert snmp.engine_id_of((oid, rfc1902.OctetString(b"abc"))) is None  # too short
    assert snmp.engine_id_of(((1, 3, 6, 1, 6, 3, 10, 2, 1, 2, 0), rfc1902.Integer(1))) is None


# --- the spool --------------------------------------------------------------------------------


def test_frames_round_trip_and_a_torn_tail_stops_the_reading() -> None:
    frames = encode_frame("netnode", b"nn-1", b'{"a":1}') + encode_frame("camera", b"", b"")
    records, end = decode_frames(frames + b"\x00\x00")
    assert [(r.feed, r.key, r.value) for r in records] == [
        ("netnode", b"nn-1", b'{"a":1}'),
        ("camera", b"", b""),
    ]
    assert end == len(frames)
    corrupt = bytearray(frames)
    corrupt[-1] ^= 0xFF  # the second frame's CRC no longer matches
    assert len(decode_frames(bytes(corrupt))[0]) == 1


def _drain(spool: Spool) -> list[bytes]:
    out = []
    while (taken := spool.take()) is not None:
        record_id, record = taken
        out.append(record.value)
        spool.ack(record_id)
    return out


def test_the_spool_keeps_order_and_survives_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=200)
    for i in range(10):
        spool.append("netnode", b"k", b"%d" % i)
    first = spool.take()
    assert first is not None and first[1].value == b"0"
    spool.ack(first[0])
    assert spool.depth == 9 and len(list(tmp_path.glob("*.seg"))) > 1
    spool.close()
    # A restart: everything not acknowledged comes back, in order (the acknowledged record
    # may come back too when its segment still held others: at least once).
    again = Spool(tmp_path, 1 << 20, segment_bytes=200)
    assert again.recovered in (9, 10)
    again.append("netnode", b"k", b"10")
    values = _drain(again)
    assert values[-10:] == [b"%d" % i for i in range(1, 11)]
    assert again.depth == 0
    again.append("netnode", b"k", b"11")  # rolls: the acknowledged segments are deleted
    assert len(list(tmp_path.glob("*.seg"))) == 1


def test_a_torn_segment_is_cut_at_its_last_whole_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.append("netnode", b"k", b"whole")
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    with segment.open("ab") as fh:
        fh.write(encode_frame("netnode", b"k", b"torn")[:-2])
    again = Spool(tmp_path, 1 << 20)
    assert again.torn == 1 and [r.value for r in again.records()] == [b"whole"]


def test_a_full_spool_drops_its_oldest_records_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dropped: list[int] = []
    frame = len(encode_frame("netnode", b"k", b"%03d" % 0))
    spool = Spool(tmp_path, 4 * frame, segment_bytes=2 * frame, on_drop=dropped.append)
    for i in range(7):
        spool.append("netnode", b"k", b"%03d" % i)
    assert spool.size <= 4 * frame
    assert dropped == [2, 2] and spool.dropped == 4
    assert [r.value for r in spool.records()] == [b"004", b"005", b"006"]
    assert _drain(spool) == [b"004", b"005", b"006"]
    assert "spool full" in caplog.text
    with pytest.raises(ValueError):
        Spool(tmp_path / "x", 100, segment_bytes=100)


def test_a_late_ack_of_a_dropped_record_counts_for_nothing(tmp_path: Path) -> None:
    frame = len(encode_frame("netnode", b"k", b"000"))
    spool = Spool(tmp_path, 4 * frame, segment_bytes=2 * frame)
    spool.append("netnode", b"k", b"000")
    in_flight = spool.take()
    assert in_flight is not None
    for i in range(1, 6):  # the first segment is dropped while its record is in flight
        spool.append("netnode", b"k", b"%03d" % i)
    assert spool.dropped >= 1
    assert _drain(spool) == [b"%03d" % i for i in range(2, 6)]
    spool.append("netnode", b"k", b"006")  # a new segment, after every other one went
    spool.ack(in_flight[0])  # the broker finally acknowledges the dropped record
    assert spool.depth == 1 and [r.value for r in spool.records()][-1] == b"006"


class FakeProducer:
    """librdkafka's Producer as the spooling sink uses it: the broker is up or not."""

    def __init__(self, up: bool = True, capacity: int = 1_000_000) -> None:
        self.up = up
        self.capacity = capacity
        self.queue: list[tuple[str, bytes, bytes, Callable[[Any, Any], None]]] = []
        self.delivered: list[bytes] = []

    def produce(
        self, topic: str, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]
    ) -> None:
        if len(self.queue) >= self.capacity:
            raise BufferError("queue full")
        self.queue.append((topic, value, key, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        if not self.up:
            return 0
        served = 0
        while self.queue:
            _, value, _, callback = self.queue.pop(0)
            self.delivered.append(value)
            callback(None, None)
            served += 1
        return served

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return len(self.queue)


class Rec:
    def __init__(self, value: bytes) -> None:
        self.feed = "netnode"
        self.key = b"nn-1"
        self.value = value


def _sink(tmp_path: Path, producer: FakeProducer, window: int = 3) -> SpoolingSink:
    from ioc.config import Settings

    return SpoolingSink(
        Settings(),
        tmp_path,
        max_bytes=1 << 20,
        client_id="t",
        window=window,
        registry=CollectorRegistry(),
        producer=producer,
    )


def test_a_broker_outage_loses_nothing_and_replays_in_order(tmp_path: Path) -> None:
    down = FakeProducer(up=False)
    sink = _sink(tmp_path, down)
    for i in range(8):
        sink.send(Rec(b"%d" % i))
    assert len(down.queue) == 3  # the window: the rest waits on disk, not in memory
    assert sink.spool.depth == 8
    sink.flush(0.2)
    sink.close()
    # The collector restarts with the broker back: the spool goes first, then new records.
    up = FakeProducer()
    again = _sink(tmp_path, up)
    again.send(Rec(b"8"))
    for _ in range(5):
        again.poll()
    assert up.delivered == [b"%d" % i for i in range(9)]
    assert again.sent == 9 and again.spool.depth == 0 and again.errors == 0


def test_a_full_producer_queue_holds_the_record_for_the_next_pump(tmp_path: Path) -> None:
    producer = FakeProducer(up=False, capacity=2)
    sink = _sink(tmp_path, producer, window=10)
    for i in range(4):
        sink.send(Rec(b"%d" % i))
    producer.up = True
    for _ in range(4):
        sink.poll()
    assert producer.delivered == [b"0", b"1", b"2", b"3"]


class FailingWriter:
    """A segment file on a full disk: every write fails."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    def fileno(self) -> int:
        return int(self.real.fileno())

    def close(self) -> None:
        self.real.close()


def test_a_spool_that_cannot_be_written_is_bypassed_not_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    producer = FakeProducer(up=False)
    sink = _sink(tmp_path, producer)
    sink.send(Rec(b"0"))
    sink.spool._writer = FailingWriter(sink.spool._writer)  # type: ignore[assignment]
    sink.send(Rec(b"1"))  # the disk is full: straight to librdkafka, counted
    sink.send(Rec(b"2"))  # the next append opens a new segment: spooled again
    producer.up = True
    sink.poll()
    sink.poll()
    assert producer.delivered == [b"0", b"1", b"2"]
    assert sink.bypassed == 1 and sink.errors == 0 and sink.sent == 3
    assert [r.value for r in sink.spool.records()] == [b"2"] or sink.spool.depth == 0
    assert "records bypass it" in caplog.text


def test_a_refused_record_is_counted_not_kept(tmp_path: Path) -> None:
    producer = FakeProducer(up=False)
    sink = _sink(tmp_path, producer)
    sink.send(Rec(b"0"))
    _, _, _, callback = producer.queue.pop(0)
    callback("MSG_SIZE_TOO_LARGE", None)
    assert sink.errors == 1 and sink.first_error == "MSG_SIZE_TOO_LARGE"
    assert sink.spool.depth == 0


# --- the command line -----------------------------------------------------------------------


def test_snmp_options_need_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ioc.contract.topology import load_scenario

    topo = load_scenario("demo")
    node = sorted(topo.devices_of("netnode"), key=lambda d: d.id)[0]
    node.attributes["address"] = "127.0.0.1"
    import yaml

    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(topo.to_document(), allow_unicode=True))
    out = str(tmp_path / "o.jsonl")
    base = ["collect", "--scenario", str(scenario), "--out", out]
    assert main([*base, "--trap-port", "0"]) == 2
    assert "--trap-port needs --snmp-credentials" in capsys.readouterr().err
    assert main([*base, "--protocols", "snmp"]) == 2
    assert "--protocols snmp needs --snmp-credentials" in capsys.readouterr().err
    assert main([*base, "--protocols", "ftp"]) == 2
    assert "unknown ftp" in capsys.readouterr().err
    assert main([*base, "--spool-max-mb", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert os.path.exists(scenario)
