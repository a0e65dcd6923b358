"""SNMP polling of the network nodes' interfaces (IF-MIB) into ``netnode.counters`` and
``netnode.link`` (docs/collectors.md, "SNMP").

One poll of a node is a walk of the interface table with GETBULK requests: ``sysUpTime``
(the agent's clock) and, per interface, its name, type, speed, admin and operational status,
octet counters (64-bit ``ifHC*Octets`` where the agent has them, else the 32-bit ones) and
error counters. Rates need two polls: a node's first poll only sets the baseline, and from the
second on every interface that is administratively up yields one ``netnode.counters`` over
the time between the two polls by the agent's clock. An operational status that differs from
the previous poll's (or from the last trap's) yields one ``netnode.link``.

The parts are pure and tested without a network (tests/unit/test_collect_snmp.py):
:func:`interfaces` turns a walk into rows, :class:`Tracker` turns successive samples into
messages. :class:`SnmpPoller` sends the requests with pysnmp's asyncio API, from one SNMP
engine for every target, so a silent node holds only its own request.

Credentials are secrets: :class:`Profile` keeps community and keys as ``SecretStr`` (never
logged, never in the scenario); the scenario's node names a profile
(``attributes["snmp_profile"]``, default ``default``) of the credentials file.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ioc.contract import schemas as s
from ioc.errors import IocError
from ioc.services.collect import profiles

log = logging.getLogger(__name__)

SNMP: Final = "snmp"
COUNTERS: Final = "netnode.counters"
LINK: Final = "netnode.link"

Oid = tuple[int, ...]
SYS_UPTIME: Final[Oid] = (1, 3, 6, 1, 2, 1, 1, 3)
"""``sysUpTime`` without its ``.0``: a GETBULK non-repeater returns the successor."""
ENGINE_ID: Final[Oid] = (1, 3, 6, 1, 6, 3, 10, 2, 1, 1)
"""``snmpEngineID`` (SNMP-FRAMEWORK-MIB) without its ``.0``, the other non-repeater."""
_IF: Final[Oid] = (1, 3, 6, 1, 2, 1, 2, 2, 1)
_IFX: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
COLUMNS: Final[dict[str, Oid]] = {
    "descr": (*_IF, 2),
    "type": (*_IF, 3),
    "speed": (*_IF, 5),
    "admin": (*_IF, 7),
    "oper": (*_IF, 8),
    "in_octets": (*_IF, 10),
    "in_errors": (*_IF, 14),
    "out_octets": (*_IF, 16),
    "out_errors": (*_IF, 20),
    "name": (*_IFX, 1),
    "hc_in_octets": (*_IFX, 6),
    "hc_out_octets": (*_IFX, 10),
    "high_speed": (*_IFX, 15),
}
"""IF-MIB columns walked per interface (ifTable, ifXTable)."""

SOFTWARE_LOOPBACK: Final = 24
"""``ifType`` of a loopback interface: not a link, never reported."""
STATUS_UP: Final = 1
STATUS_DOWN: Final = 2
OPER_STATES: Final[dict[int, s.LinkState]] = {STATUS_UP: "up", STATUS_DOWN: "down"}
"""ifOperStatus values that are a link state; testing(3), dormant(5)... are not reported."""
MAX32: Final = 2**32
MAX64: Final = 2**64
MAX_INTERVAL_S: Final = 3600
"""A rate over a longer gap than this (the contract's ``interval_s`` bound) is not sent."""
MAX_WALK_REQUESTS: Final = 64
"""GETBULK requests per poll at most: an agent whose table never ends is cut off here."""
MAX_REPETITIONS: Final = 16

REASONS: Final = (
    "timeout",
    "auth",
    "snmp_error",
    "malformed",
    "walk_too_long",
    "agent_restart",
    "counter_reset",
    "stale_baseline",
    "unknown_speed",
)
"""Values of the ``reason`` label of ``ioc_collector_errors{protocol="snmp"}``: a poll that
failed (first five) or an interface sample that gave no counters (the others)."""


class SnmpConfigError(IocError):
    """A credentials file that cannot be used."""


# --- credentials --------------------------------------------------------------------------
class Profile(BaseModel):
    """How to talk SNMP to a node: v2c with a community, or v3 authPriv (USM)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal["2c", "3"]
    port: int = Field(161, ge=1, le=65535)
    community: SecretStr | None = None
    user: str | None = None
    auth_protocol: Literal["md5", "sha", "sha224", "sha256", "sha384", "sha512"] = "sha"
    auth_key: SecretStr | None = None
    priv_protocol: Literal["des", "aes", "aes192", "aes256"] = "aes"
    priv_key: SecretStr | None = None
    engine_id: str | None = Field(None, pattern=r"^(0x)?([0-9A-Fa-f]{2}){5,32}$")
    """v3: the node's snmpEngineID (hex), needed to receive its v3 traps (a trap's sender is
    the authoritative engine, so the user's keys are localised to it)."""

    @model_validator(mode="after")
    def _complete(self) -> Profile:
        if self.version == "2c" and not self.community:
            raise ValueError("version 2c needs a community")
        if self.version == "3":
            if not self.user:
                raise ValueError("version 3 needs a user")
            for name in ("auth_key", "priv_key"):
                key: SecretStr | None = getattr(self, name)
                if key is None or len(key.get_secret_value()) < 8:
                    raise ValueError(f"version 3 (authPriv) needs {name} of 8 characters or more")
        return self


PROFILE_ATTRIBUTE: Final = "snmp_profile"
DEFAULT_PROFILE: Final = "default"


def load_profiles(path: Path) -> dict[str, Profile]:
    """The ``[profiles.NAME]`` tables of a TOML credentials file. A file others may read is
    used, with a warning: it holds secrets."""
    return profiles.load_profiles(path, Profile, "SNMP credentials", SnmpConfigError)


@dataclass(frozen=True)
class SnmpTarget:
    """One node to poll: its id, IPv4 address, profile, and the inventory's capacity (Mbit/s)
    for interfaces whose agent reports no speed."""

    device_id: str
    address: str
    profile: Profile
    capacity_mbps: float | None = None


# --- walking the interface table ----------------------------------------------------------
@dataclass(frozen=True)
class IfRow:
    """One interface of one poll."""

    index: int
    name: str
    type: int
    admin: int
    oper: int
    in_octets: int | None
    out_octets: int | None
    wide: bool
    """The octet counters are the 64-bit ifHC ones (else they wrap at 2**32)."""
    in_errors: int | None
    out_errors: int | None
    speed_bps: float | None


@dataclass(frozen=True)
class Sample:
    """One poll of one node: the agent's uptime (centiseconds), when it was answered, and
    its interfaces by ifIndex."""

    uptime_cs: int
    ts_ms: int
    rows: Mapping[int, IfRow]
    engine_id: str | None = None
    """The agent's ``snmpEngineID`` (hex), if it has one: the engine of its v3 traps."""


def clean_name(raw: str, index: int) -> str:
    """An interface name the contract stores (1..128 characters, no NUL, no surrogates)."""
    text = "".join(ch for ch in raw if ch != "\x00" and not 0xD800 <= ord(ch) <= 0xDFFF).strip()
    return text[:128] or f"if{index}"


def _int(value: Any) -> int | None:
    """An SNMP value as an int; None for anything else (noSuchInstance, a string...)."""
    try:
        return int(value)
    except Exception:  # pyasn1 raises its own errors for values without a number
        return None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    as_octets = getattr(value, "asOctets", None)
    if callable(as_octets):
        raw = as_octets()
        if isinstance(raw, bytes):
            return raw.decode("utf-8", "replace")
    return str(value)


def interfaces(columns: Mapping[str, Mapping[int, Any]]) -> dict[int, IfRow]:
    """Rows by ifIndex from a walk (column name -> ifIndex -> value). An interface without
    a status is left out; a counter the agent lacks is None."""
    rows: dict[int, IfRow] = {}
    for index, oper in columns.get("oper", {}).items():
        oper_i = _int(oper)
        if oper_i is None:
            continue

        def col(name: str, i: int = index) -> Any:
            return columns.get(name, {}).get(i)

        hc_in, hc_out = _int(col("hc_in_octets")), _int(col("hc_out_octets"))
        wide = hc_in is not None and hc_out is not None
        high = _int(col("high_speed"))
        speed = _int(col("speed"))
        if high:
            speed_bps: float | None = high * 1e6
        elif speed and speed < MAX32 - 1:  # 4294967295: "see ifHighSpeed"
            speed_bps = float(speed)
        else:
            speed_bps = None
        name = _text(col("name")) if col("name") is not None else ""
        if not name.strip() and col("descr") is not None:
            name = _text(col("descr"))
        rows[index] = IfRow(
            index=index,
            name=clean_name(name, index),
            type=_int(col("type")) or 0,
            admin=_int(col("admin")) or 0,
            oper=oper_i,
            in_octets=hc_in if wide else _int(col("in_octets")),
            out_octets=hc_out if wide else _int(col("out_octets")),
            wide=wide,
            in_errors=_int(col("in_errors")),
            out_errors=_int(col("out_errors")),
            speed_bps=speed_bps,
        )
    return rows


def column_of(oid: Oid) -> tuple[str, int] | None:
    """(column name, ifIndex) of an IF-MIB instance OID, or None for any other OID."""
    for name, prefix in COLUMNS.items():
        if len(oid) == len(prefix) + 1 and oid[: len(prefix)] == prefix:
            return name, oid[-1]
    return None


# --- successive samples -> messages -------------------------------------------------------
def delta(current: int, previous: int, modulus: int) -> int | None:
    """Increase of a counter; a 32-bit counter wraps, a 64-bit one that goes back was reset
    (None)."""
    if current >= previous:
        return current - previous
    if modulus == MAX32:
        return current + MAX32 - previous
    return None


@dataclass
class _Node:
    sample: Sample | None = None
    links: dict[int, s.LinkState] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one sample of one node gives: messages to send and reasons of what it did not."""

    counters: list[tuple[str, float, float, int, int, float, int]] = field(default_factory=list)
    """(interface, in_bps, out_bps, in_errors, out_errors, capacity_bps, interval_s)."""
    links: list[tuple[str, s.LinkState]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Tracker:
    """Each node's previous sample and the link state last reported per interface, shared by
    the polls and the trap receiver so a change is reported once, by whichever sees it first."""

    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}

    def _node(self, device_id: str) -> _Node:
        return self._nodes.setdefault(device_id, _Node())

    def name(self, device_id: str, index: int) -> str:
        """The interface's name from the last poll (``if<index>`` before the first)."""
        return self._node(device_id).names.get(index, f"if{index}")

    def link(self, device_id: str, index: int, state: s.LinkState) -> bool:
        """Record a link state; True when it is a change worth a message (a first sighting
        is a baseline, except a trap's, which reports an event: see :meth:`trap_link`)."""
        node = self._node(device_id)
        before = node.links.get(index)
        node.links[index] = state
        return before is not None and before != state

    def trap_link(self, device_id: str, index: int, state: s.LinkState) -> bool:
        """A trap's link state: a message unless it repeats the state already reported."""
        node = self._node(device_id)
        before = node.links.get(index)
        node.links[index] = state
        return before != state

    def update(self, device_id: str, sample: Sample, capacity_mbps: float | None = None) -> Outcome:
        """The messages that ``sample`` gives after the node's previous one."""
        node = self._node(device_id)
        previous, node.sample = node.sample, sample
        out = Outcome()
        for row in sample.rows.values():
            if row.type == SOFTWARE_LOOPBACK:
                continue
            node.names[row.index] = row.name
            state = OPER_STATES.get(row.oper)
            if state is not None and self.link(device_id, row.index, state):
                out.links.append((row.name, state))
        if previous is None:
            return out
        if sample.uptime_cs < previous.uptime_cs:
            out.skipped.append("agent_restart")
            return out
        seconds = (sample.uptime_cs - previous.uptime_cs) / 100.0
        if seconds <= 0:
            return out
        if seconds > MAX_INTERVAL_S:
            out.skipped.append("stale_baseline")
            return out
        interval = max(1, min(MAX_INTERVAL_S, round(seconds)))
        for row in sample.rows.values():
            if row.type == SOFTWARE_LOOPBACK or row.admin != STATUS_UP:
                continue
            before = previous.rows.get(row.index)
            if before is None or None in (
                row.in_octets,
                row.out_octets,
                before.in_octets,
                before.out_octets,
            ):
                continue
            modulus = MAX64 if row.wide and before.wide else MAX32
            assert row.in_octets is not None and before.in_octets is not None
            assert row.out_octets is not None and before.out_octets is not None
            d_in = delta(row.in_octets, before.in_octets, modulus)
            d_out = delta(row.out_octets, before.out_octets, modulus)
            if d_in is None or d_out is None or row.wide != before.wide:
                out.skipped.append("counter_reset")
                continue
            capacity = row.speed_bps or (capacity_mbps * 1e6 if capacity_mbps else None)
            if not capacity:
                out.skipped.append("unknown_speed")
                continue
            e_in = _errors(row.in_errors, before.in_errors)
            e_out = _errors(row.out_errors, before.out_errors)
            out.counters.append(
                (
                    row.name,
                    _bps(d_in, seconds),
                    _bps(d_out, seconds),
                    e_in,
                    e_out,
                    min(max(capacity, 1.0), 1e12),
                    interval,
                )
            )
        return out


def _bps(octets: int, seconds: float) -> float:
    return float(min(1e12, round(octets * 8 / seconds, 0)))


def _errors(current: int | None, previous: int | None) -> int:
    if current is None or previous is None:
        return 0
    return min(s.MAX_COUNTER, delta(current, previous, MAX32) or 0)


def messages(
    device_id: str, ts_ms: int, outcome: Outcome, seq: Any
) -> list[s.NetnodeCounters | s.NetnodeLink]:
    """The contract's messages of one outcome (``seq``: device id -> next sequence number);
    links first, as they happened before the counters were read."""
    out: list[s.NetnodeCounters | s.NetnodeLink] = [
        link_message(device_id, seq(device_id), ts_ms, name, state) for name, state in outcome.links
    ]
    for name, in_bps, out_bps, in_err, out_err, capacity, interval in outcome.counters:
        out.append(
            s.NetnodeCounters(
                v=s.SCHEMA_VERSION,
                device_id=device_id,
                seq=seq(device_id),
                ts_ms=ts_ms,
                interface=name,
                interval_s=interval,
                in_bps=in_bps,
                out_bps=out_bps,
                in_errors=in_err,
                out_errors=out_err,
                capacity_bps=capacity,
            )
        )
    return out


def link_message(
    device_id: str, seq: int, ts_ms: int, interface: str, state: s.LinkState
) -> s.NetnodeLink:
    return s.NetnodeLink(
        v=s.SCHEMA_VERSION,
        device_id=device_id,
        seq=seq,
        ts_ms=ts_ms,
        interface=interface,
        state=state,
    )


# --- the poller (pysnmp) ------------------------------------------------------------------
def usm_protocols(profile: Profile) -> tuple[Any, Any]:
    """pysnmp's USM authentication and privacy protocol ids of a v3 profile."""
    from pysnmp.hlapi.v3arch import asyncio as hl

    auth = {
        "md5": hl.usmHMACMD5AuthProtocol,
        "sha": hl.usmHMACSHAAuthProtocol,
        "sha224": hl.usmHMAC128SHA224AuthProtocol,
        "sha256": hl.usmHMAC192SHA256AuthProtocol,
        "sha384": hl.usmHMAC256SHA384AuthProtocol,
        "sha512": hl.usmHMAC384SHA512AuthProtocol,
    }[profile.auth_protocol]
    priv = {
        "des": hl.usmDESPrivProtocol,
        "aes": hl.usmAesCfb128Protocol,
        "aes192": hl.usmAesCfb192Protocol,
        "aes256": hl.usmAesCfb256Protocol,
    }[profile.priv_protocol]
    return auth, priv


class PollFailed(Exception):
    """A poll that gave no sample; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_AUTH_ERRORS: Final = frozenset(
    {
        "UnknownUserName",
        "WrongDigest",
        "DecryptionError",
        "EncryptionError",
        "UnsupportedSecLevel",
        "UnknownSecurityName",
        "AuthenticationError",
        "UnknownEngineID",
        "NotInTimeWindow",
    }
)


def reason_of(indication: object) -> str:
    """The reason label of a pysnmp error indication."""
    name = type(indication).__name__
    if name == "RequestTimedOut":
        return "timeout"
    if name in _AUTH_ERRORS:
        return "auth"
    return "snmp_error"


class Poller(Protocol):
    """What a poll round needs of a poller (:class:`SnmpPoller`, or a fake in tests)."""

    requests: int
    replies: int

    async def poll(self, target: SnmpTarget, clock_ms: Any) -> Sample: ...


class SnmpPoller:
    """GETBULK walks of the interface table over one pysnmp engine (see the module doc).

    ``requests``/``replies`` count PDUs for the metrics; one poll is as many requests as
    the table needs (one for a node with up to :data:`MAX_REPETITIONS` interfaces)."""

    def __init__(self, timeout_s: float) -> None:
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

        self.timeout_s = timeout_s
        self.engine = SnmpEngine()
        self._transports: dict[tuple[str, int], Any] = {}
        self.requests = 0
        self.replies = 0

    def close(self) -> None:
        """Close the engine's sockets (its transport dispatcher)."""
        self.engine.close_dispatcher()

    def _auth(self, target: SnmpTarget) -> Any:
        from pysnmp.hlapi.v3arch import asyncio as hl

        p = target.profile
        if p.version == "2c":
            assert p.community is not None
            return hl.CommunityData(p.community.get_secret_value(), mpModel=1)
        auth, priv = usm_protocols(p)
        assert p.user and p.auth_key and p.priv_key
        return hl.UsmUserData(
            p.user,
            p.auth_key.get_secret_value(),
            p.priv_key.get_secret_value(),
            authProtocol=auth,
            privProtocol=priv,
        )

    async def _transport(self, target: SnmpTarget) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import UdpTransportTarget

        key = (target.address, target.profile.port)
        found = self._transports.get(key)
        if found is None:
            found = await UdpTransportTarget.create(key, timeout=self.timeout_s, retries=0)
            self._transports[key] = found
        return found

    async def poll(self, target: SnmpTarget, clock_ms: Any) -> Sample:
        """Walk the node's interface table; raises :class:`PollFailed`."""
        from pysnmp.hlapi.v3arch.asyncio import ContextData, ObjectIdentity, ObjectType, bulk_cmd

        auth = self._auth(target)
        transport = await self._transport(target)
        columns: dict[str, dict[int, Any]] = {name: {} for name in COLUMNS}
        cursors: dict[str, Oid] = dict(COLUMNS)
        uptime: int | None = None
        engine_id: str | None = None
        for _ in range(MAX_WALK_REQUESTS):
            names = list(cursors)
            first = uptime is None
            oids = ([SYS_UPTIME, ENGINE_ID] if first else []) + [cursors[n] for n in names]
            self.requests += 1
            try:
                indication, status, index, varbinds = await bulk_cmd(
                    self.engine,
                    auth,
                    transport,
                    ContextData(),
                    2 if first else 0,
                    MAX_REPETITIONS,
                    *(ObjectType(ObjectIdentity(o)) for o in oids),
                    lookupMib=False,
                )
            except Exception as exc:  # pysnmp raises for local failures (ciphers, encoding)
                raise PollFailed("snmp_error", f"{type(exc).__name__}: {exc}") from None
            if indication:
                raise PollFailed(reason_of(indication), str(indication))
            self.replies += 1
            if status and int(status):
                raise PollFailed("snmp_error", f"error-status {status} at index {index}")
            values = list(varbinds)
            if first:
                if len(values) < 2:
                    raise PollFailed("malformed", "no answer to sysUpTime and snmpEngineID")
                oid, value = tuple(values[0][0]), values[0][1]
                if oid != (*SYS_UPTIME, 0) or _int(value) is None:
                    raise PollFailed("malformed", f"no sysUpTime.0 (got {oid})")
                uptime = int(value)
                engine_id = engine_id_of(values[1])
                values = values[2:]
            try:
                ended = merge_bulk(values, names, columns, cursors)
            except PollFailed:
                raise
            except Exception as exc:  # a response pysnmp decoded but we cannot read
                raise PollFailed("malformed", f"{type(exc).__name__}: {exc}") from None
            for name in ended:
                cursors.pop(name, None)
            if not cursors:
                break
        else:
            raise PollFailed("walk_too_long", f"{MAX_WALK_REQUESTS} requests, table not ended")
        assert uptime is not None
        try:
            rows = interfaces(columns)
        except Exception as exc:  # a value of an unexpected type: the agent's fault
            raise PollFailed("malformed", f"{type(exc).__name__}: {exc}") from None
        return Sample(uptime, int(clock_ms()), rows, engine_id)


def engine_id_of(varbind: tuple[Any, Any]) -> str | None:
    """The hex ``snmpEngineID.0`` of a non-repeater's answer; None when the agent has none
    (the answer is then some other OID) or it is not 5..32 octets (RFC 3411)."""
    oid, value = varbind
    try:
        if tuple(int(x) for x in oid) != (*ENGINE_ID, 0):
            return None
        raw = value.asOctets() if hasattr(value, "asOctets") else bytes(value)
    except Exception:
        return None
    return raw.hex() if isinstance(raw, bytes) and 5 <= len(raw) <= 32 else None


def merge_bulk(
    values: Sequence[tuple[Any, Any]],
    names: Sequence[str],
    columns: dict[str, dict[int, Any]],
    cursors: dict[str, Oid],
) -> set[str]:
    """Fold one GETBULK response (repetitions of ``names``' next OIDs, in request order)
    into ``columns`` and move ``cursors``; returns the columns that ended: their next OID
    left their subtree or the MIB view, or the response had nothing. An OID that does not
    increase is a broken agent (:class:`PollFailed` ``malformed``), never a loop."""
    from pysnmp.proto import rfc1905

    if not values:
        return set(names)
    ended: set[str] = set()
    for i, (raw_oid, value) in enumerate(values):
        name = names[i % len(names)]
        if name in ended:
            continue
        oid = tuple(int(x) for x in raw_oid)
        prefix = COLUMNS[name]
        if (
            isinstance(value, rfc1905.EndOfMibView | rfc1905.NoSuchObject | rfc1905.NoSuchInstance)
            or oid[: len(prefix)] != prefix
        ):
            ended.add(name)
            continue
        if oid <= cursors[name]:
            raise PollFailed("malformed", f"OID not increasing at {'.'.join(map(str, oid))}")
        if len(oid) == len(prefix) + 1:
            columns[name][oid[-1]] = value
        cursors[name] = oid
    return ended


def select(
    targets: Iterable[tuple[str, str, Mapping[str, Any]]], profiles: Mapping[str, Profile]
) -> tuple[list[SnmpTarget], list[str]]:
    """SNMP targets from (device id, IPv4 address, attributes): each with the profile its
    ``snmp_profile`` names (default ``default``); returns the targets and the ids whose
    profile is not in the file."""
    chosen: list[SnmpTarget] = []
    missing: list[str] = []
    for device_id, address, attributes in targets:
        name = str(attributes.get(PROFILE_ATTRIBUTE) or DEFAULT_PROFILE)
        profile = profiles.get(name)
        if profile is None:
            missing.append(device_id)
            continue
        capacity = attributes.get("capacity_mbps")
        try:
            mbps = float(capacity) if capacity is not None else None
        except (TypeError, ValueError):
            mbps = None
        if mbps is not None and not (math.isfinite(mbps) and mbps > 0):
            mbps = None
        chosen.append(SnmpTarget(device_id, address, profile, mbps))
    return chosen, missing


def secure_write(path: Path, text: str) -> None:
    """Write a credentials file readable by its owner only (tests and tooling)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
