"""SNMP traps (linkDown / linkUp) received on a UDP port, turned into ``netnode.link`` at once
(docs/collectors.md, "Traps").

A node that loses a link says so in a trap seconds before the next poll would notice. The
receiver decodes SNMPv1 and SNMPv2c notifications itself (pyasn1's BER decoder through
pysnmp's protocol modules) and hands SNMPv3 ones to a pysnmp engine that knows the USM users
of the v3 profiles (authenticated and decrypted there): every datagram gets an outcome,
counted in ``ioc_collector_traps_total{outcome}`` and, once per (outcome, source), logged, so
a malformed packet, a stranger or an unknown trap is visible and never a crash.

The node is the trap's source address (or the ``snmpTrapAddress.0`` a forwarder adds); a v2c
trap must carry the community of the node's SNMP profile, a v3 one come from its user and
engine (``engine_id``). The interface is the trap's ``ifIndex`` varbind, named as the polls
name it (:class:`ioc.services.collect.snmp.Tracker`), which also keeps a change that a trap
reported from being reported again by the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import REGISTRY, CollectorRegistry

from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.observability import counter
from ioc.services.collect.snmp import Profile, Tracker, link_message, usm_protocols

log = logging.getLogger(__name__)

SNMP_TRAP_OID: Final = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
SNMP_TRAP_ADDRESS: Final = (1, 3, 6, 1, 6, 3, 18, 1, 3, 0)
LINK_DOWN: Final = (1, 3, 6, 1, 6, 3, 1, 1, 5, 3)
LINK_UP: Final = (1, 3, 6, 1, 6, 3, 1, 1, 5, 4)
IF_INDEX: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1, 1)
TRAPS: Final[dict[tuple[int, ...], s.LinkState]] = {LINK_DOWN: "down", LINK_UP: "up"}
V1_GENERIC: Final[dict[int, s.LinkState]] = {2: "down", 3: "up"}
"""SNMPv1 generic-trap numbers of linkDown and linkUp."""

OUTCOMES: Final = (
    "link",
    "repeated",
    "malformed",
    "unsupported",
    "unknown_source",
    "bad_community",
    "auth",
    "unknown_trap",
    "no_interface",
)
"""Values of ``ioc_collector_traps_total{outcome}``: ``link`` became a message, ``repeated``
restated the link state already reported; the others are why a trap was not used
(``unsupported``: a PDU that is no notification, or SNMPv3 while no v3 node's engine is
known; ``auth``: an SNMPv3 trap USM refused, or whose engine is not its node's)."""


@dataclass(frozen=True)
class Trap:
    """A decoded notification: what the receiver needs of it."""

    version: str
    community: bytes
    trap: tuple[int, ...] | None
    """The notification's OID (v2c ``snmpTrapOID.0``; v1 mapped from linkDown/linkUp)."""
    if_index: int | None
    agent: str | None
    """The address a forwarder says the trap came from (``snmpTrapAddress.0``), if any."""
    response: bytes | None = None
    """For an SNMPv2c inform: the acknowledgement to send back (once the trap is accepted)."""


class TrapError(Exception):
    """A datagram that is not a usable trap; ``outcome`` is one of :data:`OUTCOMES`."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(f"{outcome}: {detail}")
        self.outcome = outcome
        self.detail = detail


def _ip(value: Any) -> str | None:
    raw = value.asOctets() if hasattr(value, "asOctets") else None
    if isinstance(raw, bytes) and len(raw) == 4:
        return ".".join(str(b) for b in raw)
    return None


def decode(data: bytes) -> Trap:
    """The trap in one UDP datagram; raises :class:`TrapError` for anything else."""
    from pyasn1.codec.ber import decoder, encoder
    from pyasn1.error import PyAsn1Error
    from pysnmp.proto import api

    try:
        version = int(api.decodeMessageVersion(data))
    except Exception as exc:  # pyasn1 raises its own errors and, on garbage, others
        raise TrapError("malformed", f"not an SNMP message ({type(exc).__name__})") from None
    module = api.PROTOCOL_MODULES.get(version)
    if module is None:
        raise TrapError("unsupported", f"SNMP version number {version}")
    try:
        message, _ = decoder.decode(data, asn1Spec=module.Message())
        community = bytes(module.apiMessage.get_community(message))
        pdu = module.apiMessage.get_pdu(message)
    except (PyAsn1Error, ValueError, TypeError, KeyError) as exc:
        raise TrapError("malformed", f"undecodable ({type(exc).__name__})") from None
    if version == api.SNMP_VERSION_1:
        if not pdu.isSameTypeWith(module.TrapPDU()):
            raise TrapError("unsupported", f"SNMPv1 {pdu.__class__.__name__}")
        generic = int(module.apiTrapPDU.get_generic_trap(pdu))
        state = V1_GENERIC.get(generic)
        trap = None if state is None else (LINK_DOWN if state == "down" else LINK_UP)
        varbinds = module.apiTrapPDU.get_varbinds(pdu)
        agent = _ip(module.apiTrapPDU.get_agent_address(pdu))
        return Trap("1", community, trap, _if_index(varbinds), agent)
    inform = pdu.isSameTypeWith(module.InformRequestPDU())
    if not inform and not pdu.isSameTypeWith(module.SNMPv2TrapPDU()):
        raise TrapError("unsupported", f"SNMPv2c {pdu.__class__.__name__}")
    varbinds = module.apiPDU.get_varbinds(pdu)
    trap_oid, if_index, agent = _notification(varbinds)
    response = None
    if inform:  # RFC 3416 4.2.7: a Response with the inform's request-id and varbinds
        reply = module.apiMessage.get_response(message)
        module.apiPDU.set_varbinds(module.apiMessage.get_pdu(reply), varbinds)
        response = bytes(encoder.encode(reply))
    return Trap("2c", community, trap_oid, if_index, agent, response)


def _version(data: bytes) -> int | None:
    """The SNMP version number of a message (0: v1, 1: v2c, 3: v3), None if it is none."""
    from pysnmp.proto import api

    try:
        return int(api.decodeMessageVersion(data))
    except Exception:
        return None


def _notification(varbinds: Any) -> tuple[tuple[int, ...], int | None, str | None]:
    """(snmpTrapOID.0, ifIndex, snmpTrapAddress.0) of an SNMPv2 notification's varbinds."""
    trap_oid: tuple[int, ...] | None = None
    agent = None
    for oid, value in varbinds:
        key = tuple(oid)
        if key == SNMP_TRAP_OID:
            try:
                trap_oid = tuple(int(x) for x in value)
            except (TypeError, ValueError):
                raise TrapError("malformed", "snmpTrapOID.0 is not an OID") from None
        elif key == SNMP_TRAP_ADDRESS:
            agent = _ip(value)
    if trap_oid is None:
        raise TrapError("malformed", "no snmpTrapOID.0")
    return trap_oid, _if_index(varbinds), agent


def _if_index(varbinds: Any) -> int | None:
    for oid, value in varbinds:
        key = tuple(oid)
        if len(key) == len(IF_INDEX) + 1 and key[: len(IF_INDEX)] == IF_INDEX:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


Emit = Callable[[s.NetnodeLink], None]


class TrapReceiver(asyncio.DatagramProtocol):
    """The UDP endpoint: each datagram decoded, checked and, for a node's linkDown/linkUp,
    sent as ``netnode.link`` through ``emit`` before the next datagram is read."""

    def __init__(
        self,
        devices: Mapping[str, str],
        profiles: Mapping[str, Profile],
        tracker: Tracker,
        seq: Callable[[str], int],
        emit: Emit,
        *,
        registry: CollectorRegistry = REGISTRY,
        clock_ms: Callable[[], int],
    ) -> None:
        self.devices = dict(devices)
        """IPv4 address -> device id."""
        self.profiles = dict(profiles)
        """Device id -> its SNMP profile (the community a v2c trap must carry)."""
        self.tracker = tracker
        self.seq = seq
        self.emit = emit
        self.clock_ms = clock_ms
        self._counter = counter(m.COLLECT_TRAPS, registry)
        for outcome in OUTCOMES:  # every outcome exported from the start, at 0
            self._counter.labels(outcome)
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._logged: set[tuple[str, str]] = set()
        self.transport: Any = None
        """The socket's transport (``sendto`` answers informs), set when bound."""
        self._engine: Any = False  # the v3 engine: False until built, None when not needed
        self._v3_last: tuple[str, str, list[Any]] | None = None
        self._v3_usm: tuple[str, str] | None = None
        self._learnt: dict[str, str] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def _count(self, outcome: str, source: str, detail: str = "") -> None:
        self.outcomes[outcome] += 1
        self._counter.labels(outcome).inc()
        if outcome not in ("link", "repeated") and (outcome, source) not in self._logged:
            self._logged.add((outcome, source))
            log.warning(
                "trap from %s not used: %s%s (counted; not logged again for this source)",
                source,
                outcome,
                f" ({detail})" if detail else "",
            )

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source = str(addr[0])
        try:
            self.handle(data, source, (source, int(addr[1])))
        except Exception as exc:  # never let one datagram stop the receiver
            self._count("malformed", source, f"{type(exc).__name__}: {exc}")

    def handle(
        self, data: bytes, source: str, reply_to: tuple[str, int] | None = None
    ) -> s.NetnodeLink | None:
        """One datagram from ``source``: the message sent, or None (and its outcome counted).
        An inform from a node with the right community is acknowledged to ``reply_to`` (never
        a stranger's: no reflection), whatever it reports, so the node stops resending."""
        ts_ms = self.clock_ms()
        if _version(data) == 3:
            return self._handle_v3(data, source, ts_ms)
        try:
            trap = decode(data)
        except TrapError as exc:
            self._count(exc.outcome, source, exc.detail)
            return None
        device_id = self._device_of(trap, source)
        if device_id is None:
            return None
        profile = self.profiles.get(device_id)
        if profile is None or profile.community is None:
            self._count("bad_community", source, "the node has no SNMPv2c profile")
            return None
        if trap.community != profile.community.get_secret_value().encode():
            self._count("bad_community", source)  # the community itself is never logged
            return None
        if trap.response is not None and reply_to is not None and self.transport is not None:
            self.transport.sendto(trap.response, reply_to)
        return self._link(device_id, trap, source, ts_ms)

    def _v3_engine(self) -> Any:
        """A pysnmp engine that knows the USM user of every v3 profile with an ``engine_id``
        (keys localised to that node's engine), built once; None when there is none."""
        if self._engine is not False:
            return self._engine
        from pysnmp.entity import engine
        from pysnmp.entity.rfc3413 import ntfrcv

        v3 = {
            (p.user, engine_id): p
            for device_id, p in self.profiles.items()
            if p.version == "3" and p.user and (engine_id := self._engine_of(device_id))
        }
        if not v3:
            self._engine = None
            return None
        snmp_engine = engine.SnmpEngine()
        for (user, engine_id), profile in v3.items():
            _add_user(snmp_engine, user, engine_id, profile)
        ntfrcv.NotificationReceiver(snmp_engine, self._v3_received)
        # The engine that authenticated the trap (USM's msgAuthoritativeEngineID): the
        # notification callback sees only the context engine id, which senders set freely.
        snmp_engine.observer.register_observer(self._usm_seen, "rfc3414.processIncomingMsg")
        self._engine = snmp_engine
        return snmp_engine

    def _engine_of(self, device_id: str) -> str | None:
        """The node's v3 engine id: its profile's, else the one its polls reported."""
        profile = self.profiles.get(device_id)
        if profile is not None and profile.engine_id:
            return profile.engine_id.lower().removeprefix("0x")
        return self._learnt.get(device_id)

    def learn(self, device_id: str, engine_id: str) -> None:
        """A v3 node's ``snmpEngineID`` as its polls read it: its traps come from that
        engine, so USM gets the node's user for it (a configured ``engine_id`` wins)."""
        profile = self.profiles.get(device_id)
        if profile is None or profile.version != "3" or profile.engine_id or not profile.user:
            return
        engine_id = engine_id.lower()
        if self._learnt.get(device_id) == engine_id:
            return
        self._learnt[device_id] = engine_id
        log.info("%s: SNMPv3 engine %s learnt from its polls, for its traps", device_id, engine_id)
        if self._engine is not None and self._engine is not False:  # built: add the user
            _add_user(self._engine, profile.user, engine_id, profile)
        else:  # built with it at the next v3 trap
            self._engine = False

    def _usm_seen(
        self, snmp_engine: Any, execpoint: str, variables: dict[str, Any], cb_ctx: Any
    ) -> None:
        self._v3_usm = (bytes(variables["securityEngineId"]).hex(), str(variables["userName"]))

    def _v3_received(
        self,
        snmp_engine: Any,
        state_reference: Any,
        context_engine_id: Any,
        context_name: Any,
        varbinds: Any,
        cb_ctx: Any,
    ) -> None:
        if self._v3_usm is not None:
            self._v3_last = (self._v3_usm[0], self._v3_usm[1], list(varbinds))

    def _device_of(self, trap: Trap, source: str) -> str | None:
        """The inventory device that sent ``trap``: by the agent address a v1 trap names, else
        by the datagram's source; None (counted as ``unknown_source``) for a stranger."""
        address = trap.agent if trap.agent in self.devices else source
        device_id = self.devices.get(address)
        if device_id is None:
            self._count("unknown_source", source)
        return device_id

    def _handle_v3(self, data: bytes, source: str, ts_ms: int) -> s.NetnodeLink | None:
        """An SNMPv3 notification: USM (pysnmp's engine) authenticates and decrypts it; the
        engine it came from must be the node's (its profile's ``engine_id``)."""
        from pyasn1.codec.ber import decoder
        from pysnmp.carrier.asyncio.dgram import udp
        from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message

        try:  # a message USM never sees whole is malformed, not an authentication failure
            decoder.decode(data, asn1Spec=SNMPv3Message())
        except Exception as exc:
            self._count("malformed", source, f"undecodable SNMPv3 ({type(exc).__name__})")
            return None
        snmp_engine = self._v3_engine()
        if snmp_engine is None:
            self._count("unsupported", source, "SNMPv3, and no v3 node's engine is known yet")
            return None
        self._v3_last = self._v3_usm = None
        try:
            snmp_engine.message_dispatcher.receive_message(
                snmp_engine, udp.DOMAIN_NAME, (source, 0), data
            )
        except Exception as exc:  # an inform's acknowledgement has no transport: not sent
            if self._v3_last is None:
                self._count("malformed", source, f"{type(exc).__name__}: {exc}")
                return None
        if self._v3_last is None:
            self._count("auth", source, "refused by USM (user, engine id, keys or time)")
            return None
        engine_id, user, varbinds = self._v3_last
        try:
            trap = Trap("3", b"", *_notification(varbinds))
        except TrapError as exc:
            self._count(exc.outcome, source, exc.detail)
            return None
        device_id = self._device_of(trap, source)
        if device_id is None:
            return None
        profile = self.profiles.get(device_id)
        wanted = self._engine_of(device_id)
        if profile is None or profile.version != "3" or (wanted, profile.user) != (engine_id, user):
            self._count("auth", source, "not the node's v3 user and engine")
            return None
        return self._link(device_id, trap, source, ts_ms)

    def _link(self, device_id: str, trap: Trap, source: str, ts_ms: int) -> s.NetnodeLink | None:
        """The accepted trap of a node as ``netnode.link``, unless it is no link trap or
        repeats the state already reported."""
        state = TRAPS.get(trap.trap) if trap.trap is not None else None
        if state is None:
            self._count("unknown_trap", source, ".".join(map(str, trap.trap or ())))
            return None
        if trap.if_index is None:
            self._count("no_interface", source, "no ifIndex varbind")
            return None
        if not self.tracker.trap_link(device_id, trap.if_index, state):
            self._count("repeated", source)
            return None
        name = self.tracker.name(device_id, trap.if_index)
        message = link_message(device_id, self.seq(device_id), ts_ms, name, state)
        self.emit(message)
        self._count("link", source)
        return message

    def error_received(self, exc: Exception) -> None:
        log.warning("trap socket error: %s", exc)


def _add_user(snmp_engine: Any, user: str, engine_id: str, profile: Profile) -> None:
    """A v3 profile's USM user, its keys localised to ``engine_id`` (hex)."""
    from pysnmp.entity import config
    from pysnmp.proto import rfc1902

    auth, priv = usm_protocols(profile)
    assert profile.auth_key is not None and profile.priv_key is not None
    config.add_v3_user(
        snmp_engine,
        user,
        auth,
        profile.auth_key.get_secret_value(),
        priv,
        profile.priv_key.get_secret_value(),
        securityEngineId=rfc1902.OctetString(hexValue=engine_id),
    )


async def listen(
    receiver: TrapReceiver, host: str, port: int
) -> tuple[asyncio.DatagramTransport, int]:
    """Bind the receiver on ``host:port`` (0: any free port); returns the transport and the
    port bound."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: receiver, local_addr=(host, port))
    bound = transport.get_extra_info("sockname")[1]
    return transport, int(bound)
