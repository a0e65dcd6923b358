"""The HTTP collector against real HTTP peers on loopback and the local stack's Kafka.

Two aiohttp servers stand in for the devices: a Jitsi videobridge serving ``/colibri/stats``,
and a host of telehealth stations serving their ``/status`` documents, one behind HTTP basic
authentication (the collector's credentials file), one slow (answers after the timeout), one
broken (HTTP 500), one answering garbage (an HTML page), and one station whose port is
closed. The collector runs in-process (``ioc.services.collect.cli.collect``, what
``ioc collect --protocols http`` runs) with two requests in flight at most, into a private
topic prefix through the disk spool, and the test reads the telehealth and vconf topics:

- the bridge's stats land as ``vconf.bridge`` and the station's as ``telehealth.heartbeat``
  and ``telehealth.quality``, a session that appears between two polls as a ``start``;
- the slow, broken, garbage and closed stations send nothing (their heartbeat stops: the
  workers will judge them down), each failure counted under its reason;
- the answering station's message is sent as soon as it answered, whatever the slow one does,
  and the servers never see more than two requests at once;
- the password is sent (the server checks it) and never logged.

The fetcher alone (no Kafka) against the same server: a chunked body over the limit is
refused as ``too_large``, a redirect is not followed (``http_status``: credentials go to the
inventory's URL only), a bearer token is sent, and five slow requests with two slots run two
at a time, each with its own full timeout.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from ioc.adapters.jitsi import format_colibri_time
from ioc.config import Settings
from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.contract import vconf as vc
from ioc.contract.feeds import Collection
from ioc.contract.topology import load_scenario
from ioc.services.collect import httppoll, snmp
from ioc.services.collect.cli import Plan, collect
from ioc.services.collect.spool import SpoolingSink
from ioc.sinks import Record, Sink
from tests.support.collect import closed_port, collect_plan, read_back

TIMEOUT_S = 0.6
INTERVAL_S = 2.0
COLLECTIONS = {
    "telehealth": Collection(
        interval_s={"telehealth.heartbeat": INTERVAL_S}, timeout_s=TIMEOUT_S, echoes=1
    ),
    "vconf": Collection(interval_s={"vconf.bridge": INTERVAL_S}, timeout_s=TIMEOUT_S, echoes=1),
}
NETNODE = Collection(interval_s={"netnode.probe": 5.0}, timeout_s=1.0, echoes=1)
ROUNDS = 3
SLOTS = 2


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000+00:00"


@dataclass
class Peers:
    """The stub devices: what they saw (request times per path, the most requests at once)."""

    user: str = "ioc-monitor"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    seen: dict[str, list[float]] = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0
    polls_of_ok: int = 0
    refused: int = 0
    bridge_port: int = 0
    station_port: int = 0

    def urls(self, closed_port: int) -> dict[str, str]:
        base = f"http://127.0.0.1:{self.station_port}"
        return {
            "ok": f"{base}/ok/status",
            "slow": f"{base}/slow/status",
            "broken": f"{base}/broken/status",
            "garbage": f"{base}/garbage/status",
            "closed": f"http://127.0.0.1:{closed_port}/status",
            "bridge": f"127.0.0.1:{self.bridge_port}",  # a host: the collector adds the path
        }


def _counted(peers: Peers) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        peers.seen.setdefault(request.path, []).append(time.time())
        peers.in_flight += 1
        peers.most_in_flight = max(peers.most_in_flight, peers.in_flight)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            peers.in_flight -= 1

    return middleware


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    # a request the collector gave up on ends here too (its slot is free again)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    state = Peers()

    async def colibri(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "current_timestamp": format_colibri_time(int(time.time() * 1000)),
                "conferences": 1,
                "participants": 14,
                "largest_conference": 14,
                "endpoints_sending_video": 13,
                "stress_level": 0.12,
                "bit_rate_download": 20512.5,
                "bit_rate_upload": 33100.0,
                "total_failed_conferences": 0,
                "total_partially_failed_conferences": 1,
                "threads": 190,
            }
        )

    async def ok(request: web.Request) -> web.Response:
        pair = f"{state.user}:{state.password}".encode()
        expected = f"Basic {base64.b64encode(pair).decode()}"
        if request.headers.get("Authorization") != expected:
            state.refused += 1
            return web.Response(status=401)
        state.polls_of_ok += 1
        sessions: list[dict[str, Any]] = [
            {
                "id": "s-1",
                "peer": "provincial-hospital",
                "started": _now_iso(),
                "media": {"rtt_ms": 41.5, "jitter_ms": 5.2, "loss_pct": 0.4, "video_height": 720},
            }
        ]
        if state.polls_of_ok > 1:  # a second consultation from the second poll on
            sessions.append({"id": "s-2", "peer": "central-hospital", "started": _now_iso()})
        return web.json_response(
            {
                "time": _now_iso(),
                "state": "ok",
                "queue": {"waiting": 3},
                "sessions": sessions,
                "ended": [],
            }
        )

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(10 * TIMEOUT_S)
        return web.json_response({"time": _now_iso(), "state": "ok"})

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="Internal Server Error")

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>It works!</body></html>", content_type="text/html")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse it by
        await response.prepare(request)
        for _ in range(40):
            await response.write(b" " * 64 * 1024)
        await response.write_eof()
        return response

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok/status")

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {state.password}":
            return web.Response(status=403)
        return web.json_response({"time": _now_iso(), "state": "ok"})

    bridge = web.Application(middlewares=[_counted(state)])
    bridge.router.add_get("/colibri/stats", colibri)
    stations = web.Application(middlewares=[_counted(state)])
    stations.router.add_get("/ok/status", ok)
    stations.router.add_get("/slow/status", slow)
    stations.router.add_get("/broken/status", broken)
    stations.router.add_get("/garbage/status", garbage)
    stations.router.add_get("/big/status", big)
    stations.router.add_get("/moved/status", moved)
    stations.router.add_get("/token/status", token)
    bridge_runner, state.bridge_port = await _serve(bridge)
    station_runner, state.station_port = await _serve(stations)
    try:
        yield state
    finally:
        await bridge_runner.cleanup()
        await station_runner.cleanup()


def _scenario(tmp_path: Path, urls: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """The Yen Bai scenario with five stations and one bridge at the stubs' addresses; returns
    the file and (stub name -> device id)."""
    topo = load_scenario("yen-bai-2022")
    stations = sorted(d.id for d in topo.devices_of("telehealth"))
    bridge = next(d.id for d in topo.devices_of("vconf") if d.attributes.get("role") == "mcu")
    names = ["ok", "slow", "broken", "garbage", "closed"]
    assert len(stations) >= len(names)
    ids = dict(zip(names, stations, strict=False)) | {"bridge": bridge}
    for name, device_id in ids.items():
        topo.devices[device_id].attributes["address"] = urls[name]
    path = tmp_path / "province.yaml"
    path.write_text(yaml.safe_dump(topo.to_document(), allow_unicode=True))
    return path, ids


def _plan(scenario: Path, credentials: Path) -> Plan:
    return collect_plan(scenario, "http", http_credentials=str(credentials), http_concurrency=SLOTS)


class TimedSink(Sink):
    """The spooling sink, noting when each device's records were handed to it."""

    def __init__(self, inner: SpoolingSink) -> None:
        self.inner = inner
        self.sent_at: dict[str, list[float]] = {}

    def send(self, record: Record) -> None:
        self.sent_at.setdefault(record.key.decode(), []).append(time.time())
        self.inner.send(record)

    def poll(self) -> None:
        self.inner.poll()


async def test_stations_and_a_bridge_polled_over_http_into_kafka(
    peers: Peers, topics: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scenario, ids = _scenario(tmp_path, peers.urls(closed_port()))
    credentials = tmp_path / "http.toml"
    snmp.secure_write(
        credentials,
        f'[profiles.default]\nusername = "{peers.user}"\npassword = "{peers.password}"\n',
    )
    plan = await asyncio.to_thread(_plan, scenario, credentials)
    assert {t.device_id for t in plan.http} == set(ids.values())
    assert plan.http_concurrency == SLOTS and not plan.icmp and not plan.snmp
    registry = CollectorRegistry()
    spooling = SpoolingSink(
        topics, tmp_path / "spool", client_id="ioc-collector-test", registry=registry
    )
    sink = TimedSink(spooling)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        summary = await asyncio.wait_for(
            collect(
                plan,
                sink,
                NETNODE,
                asyncio.Event(),
                rounds=ROUNDS,
                registry=registry,
                collections=COLLECTIONS,
            ),
            60,
        )
    elapsed = time.monotonic() - started
    await asyncio.to_thread(spooling.flush, 30.0)
    spooling.close()
    assert summary.http_rounds == {"telehealth": ROUNDS, "vconf": ROUNDS}
    # fixed cadence: the slow station's timeouts did not stretch the rounds
    assert elapsed < ROUNDS * INTERVAL_S + 1.0
    assert spooling.errors == 0 and spooling.spool.depth == 0
    assert peers.refused == 0 and peers.most_in_flight <= SLOTS
    assert peers.password not in caplog.text

    messages = await read_back(topics, ["telehealth", "vconf"], spooling.sent, "http")
    assert len(messages) == spooling.sent
    by_device: dict[str, list[s.Message]] = {}
    for message in messages:
        by_device.setdefault(message.device_id, []).append(message)
    assert set(by_device) == {ids["ok"], ids["bridge"]}  # the others are silent: stale
    bridge = by_device[ids["bridge"]]
    assert [x.kind for x in bridge] == ["vconf.bridge"] * ROUNDS
    assert all(isinstance(x, vc.VconfBridge) and x.participants == 14 for x in bridge)
    assert all(isinstance(x, vc.VconfBridge) and x.download_bps == 20512.5e3 for x in bridge)
    station = by_device[ids["ok"]]
    kinds = [x.kind for x in station]
    assert kinds.count("telehealth.heartbeat") == ROUNDS
    assert kinds.count("telehealth.quality") == ROUNDS  # s-1 reports media, s-2 none
    starts = [x for x in station if isinstance(x, s.TelehealthSession)]
    assert [(x.session_id, x.event, x.peer_site) for x in starts] == [
        ("s-2", "start", "central-hospital")  # s-1 was in progress at the first poll
    ]
    beats = [x for x in station if isinstance(x, s.TelehealthHeartbeat)]
    assert [x.active_sessions for x in beats] == [1, 2, 2] and beats[0].waiting_patients == 3
    for device in (ids["ok"], ids["bridge"]):  # one partition per device: in order
        seqs = [x.seq for x in by_device[device]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    # the answering station was sent as soon as it answered, never after the slow one's
    # timeout: its record left within a moment of its request reaching the server
    sent_at = sink.sent_at[ids["ok"]]
    for asked in peers.seen["/ok/status"]:
        sent = min(t for t in sent_at if t >= asked)
        assert sent - asked < TIMEOUT_S / 2
    assert len(peers.seen["/slow/status"]) == ROUNDS

    def value(spec: m.MetricSpec, **labels: str) -> float:
        return registry.get_sample_value(spec.series, labels) or 0.0

    assert value(m.COLLECT_TARGETS, protocol="http") == 6
    assert value(m.COLLECT_POLLS, protocol="http") == 6 * ROUNDS
    for reason in ("timeout", "http_status", "malformed", "connect"):
        assert value(m.COLLECT_ERRORS, protocol="http", reason=reason) == ROUNDS, reason
    assert value(m.COLLECT_TIMEOUTS, protocol="http") == ROUNDS
    assert value(m.COLLECT_REPLIES, protocol="http") == 4 * ROUNDS  # ok, bridge, 500, garbage
    assert value(m.COLLECT_MESSAGES, kind="vconf.bridge") == ROUNDS
    assert caplog.text.count("HTTP poll failed") == 4  # once per failing station


async def test_the_fetcher_bounds_bodies_and_requests_and_follows_no_redirect(
    peers: Peers,
) -> None:
    base = f"http://127.0.0.1:{peers.station_port}"
    token = httppoll.Profile(token=SecretStr(peers.password))

    def target(path: str, profile: httppoll.Profile | None = None) -> httppoll.HttpTarget:
        return httppoll.HttpTarget("th-x", "telehealth", f"{base}{path}", profile)

    async def outcome(fetcher: httppoll.Fetcher, t: httppoll.HttpTarget) -> str:
        try:
            await fetcher.get(t, TIMEOUT_S)
        except httppoll.PollFailed as exc:
            return exc.reason
        return "ok"

    async with httppoll.Fetcher(concurrency=SLOTS) as fetcher:
        assert await outcome(fetcher, target("/big/status")) == "too_large"
        assert await outcome(fetcher, target("/moved/status")) == "http_status"  # not followed
        assert await outcome(fetcher, target("/token/status")) == "auth"
        assert await outcome(fetcher, target("/token/status", token)) == "ok"
        # five slow requests at once: two in flight at a time, each with its own timeout
        peers.most_in_flight = 0
        started = time.monotonic()
        results = await asyncio.gather(
            *(outcome(fetcher, target("/slow/status")) for _ in range(5))
        )
        elapsed = time.monotonic() - started
    assert results == ["timeout"] * 5
    assert peers.most_in_flight == SLOTS
    assert 3 * TIMEOUT_S <= elapsed < 3 * TIMEOUT_S + 1.0  # three waves of two
