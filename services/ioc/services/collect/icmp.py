"""ICMP echo for many targets at once from one socket, driven by asyncio.

One socket serves every target: a raw ICMP socket (root or ``CAP_NET_RAW``), else an
unprivileged ICMP datagram socket where ``net.ipv4.ping_group_range`` allows it. No process
and no thread per ping: a request is a ``sendto`` and an entry in a table of requests in
flight keyed by (address, identifier, sequence); the socket's reader callback matches each
reply (or ICMP error quoting one of our requests) to its entry and resolves its future; a
timer per request resolves it as lost at the timeout. A silent target therefore holds only its
own entries and timers, never the others' replies. IPv4 only, for now.

The packet functions (:func:`checksum`, :func:`echo_request`, :func:`parse`) are pure and
tested without a socket (tests/unit/test_collect.py); the engine is tested against a network
namespace (tests/integration/test_collect_icmp.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import struct
import time
from dataclasses import dataclass
from typing import Final

from ioc.errors import IocError

ECHO_REPLY: Final = 0
DEST_UNREACHABLE: Final = 3
ECHO_REQUEST: Final = 8
TIME_EXCEEDED: Final = 11
_HEADER: Final = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_SOL_RAW: Final = 255
_ICMP_FILTER: Final = 1  # linux/icmp.h: a bit set drops that ICMP type on a raw socket
RECEIVE_BUFFER: Final = 4 * 1024 * 1024
"""Bytes of socket receive buffer: a round's replies arrive in bursts."""
ECHO_SPACING_S: Final = 0.2
"""Pause between the echo requests of one probe, so a burst of loss does not take them all."""


class IcmpUnavailable(IocError):
    """Neither a raw nor a datagram ICMP socket may be opened by this process."""


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum of the
    16-bit words. Over a message whose checksum field is set, it is 0."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP echo request (type 8) with its checksum."""
    body = _HEADER.pack(ECHO_REQUEST, 0, 0, ident, seq) + payload
    return _HEADER.pack(ECHO_REQUEST, 0, checksum(body), ident, seq) + payload


@dataclass(frozen=True)
class Icmp:
    """A received ICMP message that may answer one of our echo requests.

    For an echo reply, ``ident``/``seq``/``payload`` are the reply's and ``target`` is None
    (the sender's address is the target). For a destination-unreachable or time-exceeded
    error, they are those of the echo request it quotes and ``target`` is that request's
    destination."""

    type: int
    code: int
    ident: int
    seq: int
    payload: bytes = b""
    target: str | None = None

    @property
    def is_reply(self) -> bool:
        return self.type == ECHO_REPLY


def _strip_ipv4(packet: bytes) -> bytes | None:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    return packet[ihl:] if ihl >= 20 and len(packet) >= ihl else None


def parse(packet: bytes, *, ip_header: bool) -> Icmp | None:
    """The echo reply or quoting error in ``packet`` (with its IPv4 header on a raw socket,
    without on a datagram socket); None for anything else or a bad checksum."""
    data = _strip_ipv4(packet) if ip_header else packet
    if data is None or len(data) < _HEADER.size or checksum(data) != 0:
        return None
    kind, code, _, ident, seq = _HEADER.unpack_from(data)
    if kind == ECHO_REPLY:
        return Icmp(kind, code, ident, seq, data[_HEADER.size :])
    if kind not in (DEST_UNREACHABLE, TIME_EXCEEDED):
        return None
    quoted = data[_HEADER.size :]  # the original IPv4 header and at least 8 bytes after it
    inner = _strip_ipv4(quoted)
    if inner is None or quoted[9] != socket.IPPROTO_ICMP or len(inner) < _HEADER.size:
        return None
    inner_kind, _, _, inner_ident, inner_seq = _HEADER.unpack_from(inner)
    if inner_kind != ECHO_REQUEST:
        return None
    return Icmp(kind, code, inner_ident, inner_seq, b"", socket.inet_ntoa(quoted[16:20]))


@dataclass(frozen=True)
class PingResult:
    """One probe of one target: how many echo requests went out and the round trip time in
    seconds of each one answered."""

    sent: int
    rtts: tuple[float, ...]

    @property
    def received(self) -> int:
        return len(self.rtts)

    @property
    def reachable(self) -> bool:
        return bool(self.rtts)

    @property
    def loss_pct(self) -> float:
        return 100.0 * (self.sent - self.received) / self.sent if self.sent else 100.0

    @property
    def rtt_ms(self) -> float | None:
        return 1000.0 * sum(self.rtts) / len(self.rtts) if self.rtts else None


_Key = tuple[str, int, int]


def open_socket() -> tuple[socket.socket, bool]:
    """A non-blocking ICMP socket and whether it is raw (replies carry the IP header)."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        raw = True
    except PermissionError:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
            raw = False
        except OSError as exc:
            raise IcmpUnavailable(
                f"cannot open an ICMP socket ({exc}): run as root, give the interpreter "
                "CAP_NET_RAW, or let this group send pings "
                "(sysctl net.ipv4.ping_group_range)"
            ) from None
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    if raw:
        wanted = (1 << ECHO_REPLY) | (1 << DEST_UNREACHABLE) | (1 << TIME_EXCEEDED)
        with contextlib.suppress(OSError):  # the kernel drops every other ICMP type for us
            sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("I", ~wanted & 0xFFFFFFFF))
    return sock, raw


class IcmpEngine:
    """Echo requests to any number of IPv4 targets over one socket (see the module doc).

    Use it inside a running event loop: ``open()``, then :meth:`ping` from as many tasks as
    there are targets, then ``close()`` (or ``async with``)."""

    def __init__(self) -> None:
        self.ident = (os.getpid() ^ secrets.randbits(16)) & 0xFFFF
        self._token = secrets.token_bytes(8)
        self._payload = self._token + bytes(16)
        self._seq = 0
        self._pending: dict[_Key, tuple[asyncio.Future[float | None], float, asyncio.Handle]] = {}
        self._sock: socket.socket | None = None
        self.raw = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> IcmpEngine:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock, self.raw = open_socket()
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for fut, _, handle in self._pending.values():
            handle.cancel()
            if not fut.done():
                fut.set_result(None)
        self._pending.clear()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _key(self, address: str, ident: int, seq: int) -> _Key:
        # A datagram socket's identifier is chosen by the kernel, which also hands the socket
        # only its own replies: there the identifier is not part of the match.
        return (address, ident if self.raw else 0, seq)

    async def echo(self, address: str, timeout: float) -> asyncio.Future[float | None]:
        """Send one echo request; the future resolves to the round trip in seconds, or None
        when no reply came within ``timeout`` (or an ICMP error, or the send failed)."""
        sock, loop = self._sock, self._loop
        if sock is None or loop is None:
            raise RuntimeError("IcmpEngine is not open")
        fut: asyncio.Future[float | None] = loop.create_future()
        for _ in range(0x10000):  # a sequence number not in flight to this address
            self._seq = (self._seq + 1) & 0xFFFF
            key = self._key(address, self.ident, self._seq)
            if key not in self._pending:
                break
        else:  # 65536 requests in flight to one address
            fut.set_result(None)
            return fut
        packet = echo_request(self.ident, self._seq, self._payload)
        handle = loop.call_later(timeout, self._expire, key)
        self._pending[key] = (fut, time.perf_counter(), handle)
        try:
            try:
                sock.sendto(packet, (address, 0))
            except BlockingIOError:
                await loop.sock_sendto(sock, packet, (address, 0))
        except OSError:  # no route, refused by a local firewall...: lost, at once
            self._resolve(key, None)
        return fut

    async def ping(self, address: str, count: int, timeout: float) -> PingResult:
        """``count`` echo requests to ``address``, ``ECHO_SPACING_S`` apart, each waited for
        up to ``timeout``."""
        futures = []
        for i in range(count):
            if i:
                await asyncio.sleep(ECHO_SPACING_S)
            futures.append(await self.echo(address, timeout))
        results = await asyncio.gather(*futures)
        return PingResult(count, tuple(r for r in results if r is not None))

    def _expire(self, key: _Key) -> None:
        entry = self._pending.pop(key, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(None)

    def _resolve(self, key: _Key, rtt: float | None) -> None:
        entry = self._pending.pop(key, None)
        if entry is None:
            return
        fut, _, handle = entry
        handle.cancel()
        if not fut.done():
            fut.set_result(rtt)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(4096):  # a burst is served over several callbacks, not at once
            try:
                data, source = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an error queued on the socket (datagram sockets): not a reply
            now = time.perf_counter()
            message = parse(data, ip_header=self.raw)
            if message is None:
                continue
            if message.is_reply:
                if self.raw and not message.payload.startswith(self._token):
                    continue  # another pinger's reply with the same identifier
                key = self._key(str(source[0]), message.ident, message.seq)
                entry = self._pending.get(key)
                if entry is not None:
                    self._resolve(key, now - entry[1])
            elif message.target is not None:
                self._resolve(self._key(message.target, message.ident, message.seq), None)
