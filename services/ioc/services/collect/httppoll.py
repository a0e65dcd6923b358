"""HTTP polls of the devices that expose their state over HTTP: video bridges (Jitsi's
``/colibri/stats``) and telehealth stations (their ``/status`` document).

Each round GETs every target once, spread over the interval like the SNMP polls, and maps the
body with the feed's adapter (:mod:`ioc.adapters.jitsi`, :mod:`ioc.adapters.telehealth`), the
mapping the simulators use, so downstream nothing tells a polled bridge from a simulated one.
The schedule and the per-request timeout are the feed's declaration (``FeedSpec.collection``).

A poll that fails (no answer within the timeout, refused connection, an HTTP error, a body
that is not the source's document) produces nothing: the device's heartbeat stops, and the
workers judge it down after the feed's heartbeat timeout, as for a silent simulated device.
The failure is counted by reason (:data:`REASONS`) and logged when a device starts failing and
when it answers again, not every round. Concurrency is bounded (a semaphore; the timeout runs
once a request holds a slot), so a province of silent devices costs a bounded number of
sockets, and a slow device holds only its own slot for at most the timeout.

Credentials (``--http-credentials``, a TOML file like the SNMP one) are ``SecretStr``: sent,
never logged, never in the scenario.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from ioc.adapters.jitsi import JitsiAdapter
from ioc.adapters.native import AdapterError
from ioc.adapters.telehealth import StationAdapter
from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.contract import vconf as vc
from ioc.contract.feeds import Collection, Feed
from ioc.contract.topology import Topology
from ioc.errors import IocError
from ioc.observability import counter
from ioc.services.collect.collector import (
    ProtocolCounters,
    Rounds,
    produced,
    spread_s,
    wall_clock_ms,
)
from ioc.services.collect.profiles import load_profiles as load_toml_profiles
from ioc.services.collect.targets import TargetError, host_of, shard_of
from ioc.sinks import Sink

log = logging.getLogger(__name__)

HTTP: Final = "http"
KINDS: Final[Mapping[str, str]] = {
    Feed.TELEHEALTH: "telehealth.heartbeat",
    Feed.VCONF: "vconf.bridge",
}
"""Per polled feed, the message kind whose ``collection`` interval paces its rounds."""
PATHS: Final[Mapping[str, str]] = {Feed.TELEHEALTH: "/status", Feed.VCONF: "/colibri/stats"}
"""The path polled when the inventory address is a host, not a URL."""
PORTS: Final[Mapping[str, int]] = {Feed.VCONF: 8080}
"""The port polled when the address names none (Jitsi's private REST API: 8080)."""
REASONS: Final = ("timeout", "connect", "protocol", "http_status", "auth", "too_large", "malformed")
"""Values of the ``reason`` label of ``ioc_collector_errors{protocol="http"}``."""
MAX_BODY: Final = 1024 * 1024
"""A status document is a few KiB; a larger body is refused (``too_large``), not read."""
PROFILE_ATTRIBUTE: Final = "http_profile"
DEFAULT_PROFILE: Final = "default"


class HttpConfigError(IocError):
    """An HTTP credentials file that cannot be used."""


class Profile(BaseModel):
    """How to authenticate to a device: HTTP basic (``username`` + ``password``) or a bearer
    ``token``; ``verify_tls`` false accepts a self-signed certificate (https only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    verify_tls: bool = True

    @model_validator(mode="after")
    def _one_scheme(self) -> Profile:
        if self.token is not None and (self.username or self.password):
            raise ValueError("either username and password, or token, not both")
        if bool(self.username) != (self.password is not None):
            raise ValueError("basic authentication needs both username and password")
        return self

    def headers(self) -> dict[str, str]:
        """The request's Authorization header (the secret leaves only here)."""
        if self.token is not None:
            return {"Authorization": f"Bearer {self.token.get_secret_value()}"}
        if self.username and self.password is not None:
            pair = f"{self.username}:{self.password.get_secret_value()}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
        return {}


def load_profiles(path: Path) -> dict[str, Profile]:
    """The ``[profiles.NAME]`` tables of an HTTP credentials file."""
    return load_toml_profiles(path, Profile, "HTTP credentials", HttpConfigError)


@dataclass(frozen=True)
class HttpTarget:
    """One device to poll: its id, feed, the URL of its status, its credentials, and (a
    bridge) the licensed ports the inventory knows."""

    device_id: str
    feed: str
    url: str
    profile: Profile | None = None
    licensed_ports: int | None = None


def url_of(address: str, feed: str) -> str | None:
    """The URL polled for an inventory address: a URL as it is (without credentials: they
    belong in the credentials file), else ``http://host[:port]`` and the feed's path."""
    text = address.strip()
    if "://" in text:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        if parts.username or parts.password:
            return None
        path = parts.path if parts.path not in ("", "/") else PATHS[feed]
        return urllib.parse.urlunsplit(parts._replace(path=path))
    host = host_of(text)
    if host is None:
        return None
    port: int | None = PORTS.get(feed)
    tail = text.rpartition("]")[2] if text.startswith("[") else text
    if tail.count(":") == 1:
        try:
            port = int(tail.rpartition(":")[2])
        except ValueError:
            return None
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}{'' if port is None else f':{port}'}{PATHS[feed]}"


@dataclass
class Selection:
    """The HTTP targets of a shard, and the devices left out (with why), for the log."""

    targets: list[HttpTarget]
    no_address: list[str]
    bad_address: list[str]
    no_profile: list[str]


def polled(topology: Topology) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(device id, feed, attributes) of every device the HTTP poller is for: telehealth
    stations and video bridges (vconf devices with role ``mcu``), in id order."""
    out = [(d.id, str(Feed.TELEHEALTH), d.attributes) for d in topology.devices_of(Feed.TELEHEALTH)]
    out += [
        (d.id, str(Feed.VCONF), d.attributes)
        for d in topology.devices_of(Feed.VCONF)
        if d.attributes.get("role") == vc.ROLE_MCU
    ]
    return sorted(out)


def select(
    topology: Topology, shard: int, shards: int, profiles: Mapping[str, Profile]
) -> Selection:
    """This shard's HTTP targets (``shard_of``, as for the network nodes). A device uses the
    profile its ``http_profile`` attribute names, else ``default`` if the file has one, else
    none; one naming a profile the file lacks is left out."""
    if shards < 1 or not 0 <= shard < shards:
        raise TargetError(f"--shard {shard} --shards {shards}: need 0 <= shard < shards")
    chosen = Selection([], [], [], [])
    for device_id, feed, attributes in polled(topology):
        address = attributes.get("address")
        if not address:
            chosen.no_address.append(device_id)
            continue
        if shard_of(device_id, shards) != shard:
            continue
        url = url_of(str(address), feed)
        if url is None:
            chosen.bad_address.append(device_id)
            continue
        named = attributes.get(PROFILE_ATTRIBUTE)
        profile = profiles.get(str(named or DEFAULT_PROFILE))
        if named and profile is None:
            chosen.no_profile.append(device_id)
            continue
        ports = attributes.get("ports_licensed")
        chosen.targets.append(
            HttpTarget(device_id, feed, url, profile, int(ports) if ports else None)
        )
    return chosen


# --- fetching ----------------------------------------------------------------------------------
class PollFailed(Exception):
    """A poll that gave no document: ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str, *, replied: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.replied = replied
        """The device answered (an HTTP status, a body) but not with a usable document."""


class Fetcher:
    """GETs over one aiohttp session, at most ``concurrency`` at once; each request (connect,
    send, headers and body) bounded by its own timeout, which starts once it holds a slot."""

    def __init__(self, concurrency: int, max_body: int = MAX_BODY) -> None:
        if concurrency < 1:
            raise IocError(f"HTTP concurrency {concurrency}: at least 1")
        self.concurrency = concurrency
        self.max_body = max_body
        self._slots = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": "ioc-collector", "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=None),
            raise_for_status=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, target: HttpTarget, timeout_s: float) -> bytes:
        """The body of a 2xx answer; :class:`PollFailed` otherwise."""
        if self._session is None:
            raise RuntimeError("Fetcher used outside 'async with'")
        profile = target.profile
        headers = profile.headers() if profile is not None else {}
        verify = profile is None or profile.verify_tls
        async with self._slots:
            try:
                async with asyncio.timeout(timeout_s):
                    # No redirects: the credentials go to the inventory's URL and nowhere
                    # else; a 3xx is an http_status failure naming the status.
                    async with self._session.get(
                        target.url, headers=headers, ssl=verify, allow_redirects=False
                    ) as response:
                        status = response.status
                        if status in (401, 403):
                            raise PollFailed("auth", f"HTTP {status}", replied=True)
                        if not 200 <= status < 300:
                            raise PollFailed("http_status", f"HTTP {status}", replied=True)
                        size = response.content_length or 0
                        if size > self.max_body:
                            raise PollFailed("too_large", f"{size} bytes", replied=True)
                        return await self._body(response)
            except TimeoutError:
                raise PollFailed("timeout", f"no answer within {timeout_s:g} s") from None
            except aiohttp.ClientConnectionError as exc:
                # refused, reset, unreachable, a name that does not resolve, closed early
                raise PollFailed("connect", _describe(exc)) from None
            except aiohttp.ClientError as exc:  # not HTTP, a broken response
                raise PollFailed("protocol", _describe(exc)) from None

    async def _body(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, read up to ``max_body`` bytes (a chunked answer has no length)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_body:
                raise PollFailed("too_large", f"over {self.max_body} bytes", replied=True)
            chunks.append(chunk)
        return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    """An exception for the log: its type and message (aiohttp's messages name the URL,
    which holds no credential: :func:`url_of` refuses one)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- mapping -----------------------------------------------------------------------------------
class Mapper:
    """A body -> the contract's messages, by the feed's adapter, numbered by the collector."""

    def __init__(self, next_seq: Callable[[str], int]) -> None:
        self.jitsi = JitsiAdapter(next_seq=next_seq)
        self.stations = StationAdapter(next_seq=next_seq)

    def messages(self, target: HttpTarget, body: bytes) -> list[s.Message]:
        if target.feed == Feed.VCONF:
            return [self.jitsi.colibri_stats(target.device_id, body, target.licensed_ports)]
        return self.stations.status(target.device_id, body)


# --- rounds ------------------------------------------------------------------------------------
class HttpCollector:
    """Poll rounds over one feed's ``targets`` at its ``collection`` interval into ``sink``."""

    def __init__(
        self,
        feed: str,
        targets: Sequence[HttpTarget],
        sink: Sink,
        fetcher: Fetcher,
        mapper: Mapper,
        collection: Collection,
        *,
        registry: CollectorRegistry = REGISTRY,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.feed = feed
        self.kind = KINDS[feed]
        self.targets = sorted(targets, key=lambda t: t.device_id)
        self.sink = sink
        self.fetcher = fetcher
        self.mapper = mapper
        self.collection = collection
        self.clock_ms = clock_ms
        self.polls = Rounds(self.kind, registry)
        self.failing: dict[str, str] = {}
        """Device id -> the reason its last poll failed (logged on a change only)."""
        self.counts = ProtocolCounters(HTTP, registry)
        self._errors = counter(m.COLLECT_ERRORS, registry)
        self._messages = counter(m.COLLECT_MESSAGES, registry)

    @property
    def rounds(self) -> int:
        return self.polls.done

    @property
    def overruns(self) -> int:
        return self.polls.overruns

    async def _poll(self, target: HttpTarget) -> list[s.Message]:
        self.counts.polls.inc()
        self.counts.requests.inc()  # one GET per poll
        try:
            body = await self.fetcher.get(target, self.collection.timeout_s)
        except PollFailed as exc:
            if exc.replied:
                self.counts.replies.inc()
            self._failed(target, exc)
            return []
        self.counts.replies.inc()
        try:
            messages = self.mapper.messages(target, body)
        except AdapterError as exc:
            self._failed(target, PollFailed("malformed", str(exc), replied=True))
            return []
        if self.failing.pop(target.device_id, None) is not None:
            log.info("%s: HTTP polls answer again", target.device_id)
        for message in messages:
            self.sink.send(produced(message))
            self._messages.labels(message.kind).inc()
        return messages

    def _failed(self, target: HttpTarget, exc: PollFailed) -> None:
        self._errors.labels(HTTP, exc.reason).inc()
        if exc.reason == "timeout":
            self.counts.timeouts.inc()
        if self.failing.get(target.device_id) != exc.reason:
            log.warning("%s (%s): HTTP poll failed: %s", target.device_id, target.url, exc)
        self.failing[target.device_id] = exc.reason

    async def _guarded(self, target: HttpTarget) -> list[s.Message]:
        """One poll that never raises: a bug or a library surprise costs one device one
        round (logged, counted as ``protocol``), never the collector."""
        try:
            return await self._poll(target)
        except Exception as exc:
            log.exception("%s: HTTP poll raised", target.device_id)
            self._failed(target, PollFailed("protocol", _describe(exc)))
            return []

    async def poll_round(self) -> list[s.Message]:
        """One round: every target polled once, its messages sent as soon as it answered."""
        jobs = [(t.device_id, lambda t=t: self._guarded(t)) for t in self.targets]
        results = await self.polls.round(jobs, spread_s(self.collection, self.kind), self.sink)
        return [msg for r in results if isinstance(r, list) for msg in r]

    async def run(self, stop: asyncio.Event, rounds: int | None = None) -> None:
        """Rounds at the feed's interval on a fixed cadence (``collector.Rounds``)."""
        await self.polls.run(stop, self.collection.interval(self.kind), self.poll_round, rounds)


def by_feed(targets: Iterable[HttpTarget]) -> dict[str, list[HttpTarget]]:
    """Targets grouped by feed (each feed's rounds have their own interval)."""
    out: dict[str, list[HttpTarget]] = {}
    for target in targets:
        out.setdefault(target.feed, []).append(target)
    return out
