"""The HTTP part of ``ioc collect`` without a network: the station status adapter, URLs and
targets from the inventory, credentials, and poll rounds on a scripted fetcher (the real
HTTP peers: tests/integration/test_collect_http.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from ioc.adapters.native import AdapterError
from ioc.adapters.telehealth import VANISHED, StationAdapter
from ioc.cli import main
from ioc.config import Settings
from ioc.contract import feeds
from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.contract import vconf as vc
from ioc.contract.feeds import Collection, Feed
from ioc.contract.topology import Topology, load_scenario
from ioc.services.collect import httppoll, snmp
from ioc.services.collect.cli import plan_of
from ioc.services.collect.collector import Sequences
from ioc.services.collect.targets import shard_of
from tests.support.collect import RecordingSink

T0 = "2026-11-30T08:00:00.000+07:00"
T0_MS = 1_796_000_400_000


def status(
    time: str = T0,
    sessions: list[dict[str, Any]] | None = None,
    ended: list[dict[str, Any]] | None = None,
    state: str = "ok",
    waiting: int = 2,
) -> dict[str, Any]:
    """A station's GET /status document."""
    return {
        "time": time,
        "state": state,
        "queue": {"waiting": waiting},
        "sessions": sessions or [],
        "ended": ended or [],
    }


MEDIA = {"rtt_ms": 35.2, "jitter_ms": 4.1, "loss_pct": 0.3, "video_height": 720}


def session(sid: str, started: str = T0, media: bool = True) -> dict[str, Any]:
    return {"id": sid, "peer": "provincial-hospital", "started": started} | (
        {"media": MEDIA} if media else {}
    )


# --- the station status adapter --------------------------------------------------------------


def test_a_status_document_is_a_heartbeat_and_one_quality_sample_per_session() -> None:
    adapter = StationAdapter()
    out = adapter.status("th-1", status(sessions=[session("a"), session("b", media=False)]))
    beat, quality = out
    assert isinstance(beat, s.TelehealthHeartbeat) and isinstance(quality, s.TelehealthQuality)
    assert (beat.ts_ms, beat.status, beat.waiting_patients, beat.active_sessions) == (
        T0_MS,
        "ok",
        2,
        2,
    )
    assert (quality.session_id, quality.rtt_ms, quality.video_height) == ("a", 35.2, 720)
    assert [x.seq for x in out] == [1, 2]  # the first poll is the baseline: no start events
    for message in out:  # what the workers will accept
        assert s.decode(s.encode(message), feed="telehealth") == message


def test_sessions_become_start_end_dropped_and_vanished_events() -> None:
    adapter = StationAdapter()
    adapter.status("th-1", status(sessions=[session("old"), session("keep")]))
    t1 = "2026-11-30T08:00:05.000+07:00"
    out = adapter.status(
        "th-1",
        status(
            t1,
            sessions=[session("keep"), session("new", started="2026-11-30T08:00:03.000+07:00")],
            ended=[
                {"id": "old", "ended": "2026-11-30T08:00:02.000+07:00", "outcome": "completed"},
                {
                    "id": "flash",
                    "started": "2026-11-30T08:00:01.000+07:00",
                    "ended": "2026-11-30T08:00:04.000+07:00",
                    "outcome": "dropped",
                    "reason": "network",
                },
            ],
        ),
    )
    events = [(x.session_id, x.event, x.reason) for x in out if isinstance(x, s.TelehealthSession)]
    assert events == [
        ("old", "end", None),
        ("flash", "start", None),  # started and ended between two polls
        ("flash", "dropped", "network"),
        ("new", "start", None),
    ]
    starts = [x for x in out if isinstance(x, s.TelehealthSession) and x.event == "start"]
    assert [x.ts_ms for x in starts] == [T0_MS + 1000, T0_MS + 3000]  # the station's times
    assert starts[1].peer_site == "provincial-hospital"
    # the same ended entries listed again are not reported twice; "keep" vanishes unended
    again = adapter.status("th-1", status("2026-11-30T08:00:10.000+07:00", ended=[]))
    lost = [(x.session_id, x.event, x.reason) for x in again if isinstance(x, s.TelehealthSession)]
    assert sorted(lost) == [("keep", "dropped", VANISHED), ("new", "dropped", VANISHED)]
    seqs = [x.seq for x in [*out, *again]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_ended_entries_are_reported_once_while_the_station_keeps_listing_them() -> None:
    adapter = StationAdapter()
    adapter.status("th-1", status(sessions=[session("a")]))
    gone = [{"id": "a", "ended": T0, "outcome": "completed"}]
    first = adapter.status("th-1", status(ended=gone))
    second = adapter.status("th-1", status(ended=gone))
    assert [x.kind for x in first] == ["telehealth.session", "telehealth.heartbeat"]
    assert [x.kind for x in second] == ["telehealth.heartbeat"]


def test_a_session_listed_both_active_and_ended_is_reported_when_it_leaves() -> None:
    adapter = StationAdapter()
    adapter.status("th-1", status(sessions=[session("a")]))
    gone = [{"id": "a", "ended": T0, "outcome": "dropped", "reason": "network"}]
    both = adapter.status("th-1", status(sessions=[session("a")], ended=gone))
    assert not [x for x in both if isinstance(x, s.TelehealthSession)]  # still listed
    after = adapter.status("th-1", status(ended=gone))
    events = [(x.event, x.reason) for x in after if isinstance(x, s.TelehealthSession)]
    assert events == [("dropped", "network")]


def test_a_stations_memory_is_its_last_document() -> None:
    adapter = StationAdapter()
    for i in range(200):  # a busy day: sessions come and go, the station lists the last few
        sessions = [session(f"s{i}"), session(f"s{i + 1}")]
        ended = [{"id": f"s{j}", "ended": T0, "outcome": "completed"} for j in range(i - 3, i)]
        adapter.status("th-1", status(sessions=sessions, ended=ended))
    station = adapter._stations["th-1"]
    assert len(station.active) == 2 and len(station.reported) <= 3


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"<html>It works!</html>", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (orjson.dumps({**status(), "time": "yesterday"}), "not an ISO 8601 time"),
        (orjson.dumps({**status(), "time": "2026-11-30T08:00:00"}), "no UTC offset"),
        (orjson.dumps({**status(), "state": "sleepy"}), "'state'"),
        (orjson.dumps({**status(), "sessions": {"a": 1}}), "list of objects"),
        (orjson.dumps(status(sessions=[{"peer": "x"}])), "without an 'id'"),
        (orjson.dumps(status(sessions=[session("a"), session("a")])), "listed twice"),
        (orjson.dumps(status(sessions=[session("a")] * 0 + [{"id": "a", "media": 3}])), "media"),
        (orjson.dumps(status(ended=[{"id": "a", "outcome": "lost"}])), "'outcome'"),
        (orjson.dumps({**status(), "queue": {"waiting": -1}}), "waiting_patients"),
        (
            orjson.dumps(status(sessions=[{"id": "a", "media": {**MEDIA, "loss_pct": 130}}])),
            "<= 100",
        ),
        (orjson.dumps(status(sessions=[{"id": str(i)} for i in range(101)])), "at most 100"),
    ],
)
def test_garbage_is_refused_clearly_and_changes_nothing(payload: bytes, problem: str) -> None:
    adapter = StationAdapter()
    adapter.status("th-1", status(sessions=[session("a")]))
    with pytest.raises(AdapterError, match=problem):
        adapter.status("th-1", payload)
    after = adapter.status("th-1", status(sessions=[session("a")]))
    assert [x.seq for x in after] == [3, 4]  # no gap, and "a" is still known (no event)


def test_a_collectors_numbering_is_used() -> None:
    sequences = Sequences(1_000)
    adapter = StationAdapter(next_seq=sequences.next)
    out = adapter.status("th-1", status())
    assert out[0].seq == 1_000_000 + 1


def test_the_simulator_sees_sessions_from_their_start() -> None:
    adapter = StationAdapter(baseline=False)
    out = adapter.events_and_heartbeat("th-1", status(sessions=[session("a")]))
    assert [x.kind for x in out] == ["telehealth.session", "telehealth.heartbeat"]
    assert [x.kind for x in adapter.quality("th-1", status(sessions=[session("a")]))] == [
        "telehealth.quality"
    ]


# --- URLs and targets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "feed", "url"),
    [
        ("10.1.2.3", Feed.TELEHEALTH, "http://10.1.2.3/status"),
        ("10.1.2.3:8081", Feed.TELEHEALTH, "http://10.1.2.3:8081/status"),
        ("tram-y-te.example", Feed.TELEHEALTH, "http://tram-y-te.example/status"),
        ("10.1.2.3", Feed.VCONF, "http://10.1.2.3:8080/colibri/stats"),
        ("https://jvb1.example/colibri/stats", Feed.VCONF, "https://jvb1.example/colibri/stats"),
        ("https://jvb1.example", Feed.VCONF, "https://jvb1.example/colibri/stats"),
        ("https://jvb1.example/", Feed.VCONF, "https://jvb1.example/colibri/stats"),
        (
            "http://10.0.0.9:9000/api/v1/health",
            Feed.TELEHEALTH,
            "http://10.0.0.9:9000/api/v1/health",
        ),
        ("[2001:db8::1]:8080", Feed.TELEHEALTH, "http://[2001:db8::1]:8080/status"),
        ("https://ioc:s3cret@jvb1.example/", Feed.VCONF, None),  # credentials: not here
        ("ftp://10.1.2.3/", Feed.VCONF, None),
        ("10.1.2.3:http", Feed.VCONF, None),
        ("  ", Feed.VCONF, None),
    ],
)
def test_url_of_an_inventory_address(address: str, feed: str, url: str | None) -> None:
    assert httppoll.url_of(address, feed) == url


def _topology(
    addresses: dict[str, str], attributes: dict[str, dict[str, Any]] | None = None
) -> Topology:
    topo = load_scenario("demo")
    for device in topo.devices.values():
        if device.id in addresses:
            device.attributes["address"] = addresses[device.id]
        device.attributes.update((attributes or {}).get(device.id, {}))
    return topo


def _stations_and_bridges() -> tuple[list[str], list[str], list[str]]:
    topo = load_scenario("demo")
    stations = sorted(d.id for d in topo.devices_of("telehealth"))
    vconf = topo.devices_of("vconf")
    bridges = sorted(d.id for d in vconf if d.attributes.get("role") == "mcu")
    others = sorted(d.id for d in vconf if d.attributes.get("role") != "mcu")
    return stations, bridges, others


def test_targets_are_stations_and_bridges_of_the_shard_with_their_profiles() -> None:
    stations, bridges, others = _stations_and_bridges()
    assert stations and bridges and others
    addresses = {d: f"10.9.0.{i + 1}" for i, d in enumerate([*stations, *bridges, *others])}
    addresses[stations[0]] = "ftp://nope/"
    extra: dict[str, dict[str, Any]] = {
        stations[1]: {"http_profile": "clinic"},
        bridges[0]: {"ports_licensed": 250},
    }
    topo = _topology(addresses, extra)
    default = httppoll.Profile(token=SecretStr("t0ken"))
    chosen = httppoll.select(topo, 0, 1, {"default": default})
    ids = [t.device_id for t in chosen.targets]
    assert set(ids) == set(stations[2:]) | set(bridges)  # no points, no calendar
    assert chosen.bad_address == [stations[0]] and chosen.no_profile == [stations[1]]
    by_id = {t.device_id: t for t in chosen.targets}
    assert by_id[bridges[0]].licensed_ports == 250 and by_id[bridges[0]].feed == "vconf"
    assert by_id[bridges[0]].url.endswith(":8080/colibri/stats")
    assert all(t.profile is default for t in chosen.targets)
    shards = [httppoll.select(topo, k, 3, {"default": default}).targets for k in range(3)]
    split = [t.device_id for shard in shards for t in shard]
    assert sorted(split) == sorted(ids)  # complete and disjoint
    assert all(shard_of(t.device_id, 3) == k for k, shard in enumerate(shards) for t in shard)
    assert httppoll.select(_topology({}), 0, 1, {}).no_address


# --- credentials ------------------------------------------------------------------------------


def test_http_profiles_send_their_secret_and_never_show_it(tmp_path: Path) -> None:
    basic = httppoll.Profile(username="ioc", password=SecretStr("pa55word"))
    token = httppoll.Profile(token=SecretStr("t0ken"))
    assert basic.headers() == {"Authorization": "Basic aW9jOnBhNTV3b3Jk"}
    assert token.headers() == {"Authorization": "Bearer t0ken"}
    assert httppoll.Profile().headers() == {}
    assert "pa55word" not in repr(basic) and "t0ken" not in str(token)
    with pytest.raises(ValidationError, match="not both"):
        httppoll.Profile(username="u", password=SecretStr("p"), token=SecretStr("t"))
    with pytest.raises(ValidationError, match="both username and password"):
        httppoll.Profile(username="u")
    path = tmp_path / "http.toml"
    snmp.secure_write(
        path,
        '[profiles.default]\ntoken = "t0ken"\n'
        '[profiles.clinic]\nusername = "ioc"\npassword = "pa55word"\nverify_tls = false\n',
    )
    loaded = httppoll.load_profiles(path)
    assert loaded["clinic"].verify_tls is False and loaded["default"].token is not None
    snmp.secure_write(path, '[profiles.bad]\nusername = "ioc"\npasword = "pa55word"\n')
    with pytest.raises(httppoll.HttpConfigError) as refused:
        httppoll.load_profiles(path)
    assert "profile bad" in str(refused.value) and "pa55word" not in str(refused.value)


# --- poll rounds ------------------------------------------------------------------------------


class ScriptedFetcher(httppoll.Fetcher):
    """Answers from a script: device id -> bodies or failures, in turn."""

    def __init__(self, script: dict[str, list[bytes | httppoll.PollFailed]]) -> None:
        super().__init__(concurrency=4)
        self.script = script
        self.timeouts: list[float] = []

    async def get(self, target: httppoll.HttpTarget, timeout_s: float) -> bytes:
        self.timeouts.append(timeout_s)
        answer = self.script[target.device_id].pop(0)
        if isinstance(answer, httppoll.PollFailed):
            raise answer
        return answer


COLIBRI = {
    "current_timestamp": "2026-11-30 01:00:00.120",
    "conferences": 1,
    "participants": 12,
    "largest_conference": 12,
    "endpoints_sending_video": 11,
    "stress_level": 0.1,
    "bit_rate_download": 1500.0,
    "bit_rate_upload": 2500.0,
}
FAST = Collection(interval_s={"telehealth.heartbeat": 1.0}, timeout_s=0.3, echoes=1)


def _station_rounds(
    targets: list[httppoll.HttpTarget],
    sink: RecordingSink,
    fetcher: ScriptedFetcher,
    registry: CollectorRegistry | None = None,
) -> httppoll.HttpCollector:
    """Telehealth poll rounds on the quick schedule (a fresh registry unless given one)."""
    return httppoll.HttpCollector(
        "telehealth",
        targets,
        sink,
        fetcher,
        httppoll.Mapper(Sequences(1).next),
        FAST,
        registry=CollectorRegistry() if registry is None else registry,
    )


async def test_a_round_maps_what_answers_and_counts_each_failure_once_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    sink = RecordingSink()
    targets = [
        httppoll.HttpTarget(name, "telehealth", f"http://{name}/status")
        for name in ("ok", "mute", "broken", "garbage")
    ]
    fetcher = ScriptedFetcher(
        {
            "ok": [orjson.dumps(status())] * 2,
            "mute": [httppoll.PollFailed("timeout", "no answer within 0.3 s")] * 2,
            "broken": [httppoll.PollFailed("http_status", "HTTP 500", replied=True)] * 2,
            "garbage": [b"\x00\xffnot json"] * 2,
        }
    )
    rounds = _station_rounds(targets, sink, fetcher, registry)
    with caplog.at_level(logging.WARNING):
        await rounds.run(asyncio.Event(), rounds=2)
    sent = [s.decode(r.value, feed="telehealth") for r in sink.records]
    assert [(x.device_id, x.kind) for x in sent] == [("ok", "telehealth.heartbeat")] * 2
    assert all(t == 0.3 for t in fetcher.timeouts)  # the feed's timeout, per request
    assert rounds.failing == {"mute": "timeout", "broken": "http_status", "garbage": "malformed"}

    def value(spec: m.MetricSpec, **labels: str) -> float | None:
        return registry.get_sample_value(spec.series, labels)

    assert value(m.COLLECT_POLLS, protocol="http") == 8
    assert value(m.COLLECT_REQUESTS, protocol="http") == 8
    assert value(m.COLLECT_REPLIES, protocol="http") == 6  # all but the silent one
    assert value(m.COLLECT_TIMEOUTS, protocol="http") == 2
    for reason in ("timeout", "http_status", "malformed"):
        assert value(m.COLLECT_ERRORS, protocol="http", reason=reason) == 2
    assert value(m.COLLECT_MESSAGES, kind="telehealth.heartbeat") == 2
    assert caplog.text.count("HTTP poll failed") == 3  # when each starts failing, not again
    assert "not JSON" in caplog.text


async def test_a_bridge_is_mapped_by_the_jitsi_adapter_with_the_collectors_numbers() -> None:
    sink = RecordingSink()
    target = httppoll.HttpTarget("vc-mcu-1", "vconf", "http://jvb/colibri/stats", None, 250)
    fetcher = ScriptedFetcher({"vc-mcu-1": [orjson.dumps(COLIBRI)]})
    schedule = feeds.spec(Feed.VCONF).collection
    assert schedule is not None
    rounds = httppoll.HttpCollector(
        "vconf",
        [target],
        sink,
        fetcher,
        httppoll.Mapper(Sequences(5).next),
        schedule,
        registry=CollectorRegistry(),
    )
    rounds.collection = Collection(interval_s={"vconf.bridge": 1.0}, timeout_s=0.1, echoes=1)
    (bridge,) = await rounds.poll_round()
    assert isinstance(bridge, vc.VconfBridge)
    assert (bridge.participants, bridge.ports_licensed, bridge.download_bps) == (12, 250, 1.5e6)
    assert bridge.seq == 5_000 + 1


async def test_a_poll_that_raises_costs_one_device_one_round() -> None:
    class Exploding(ScriptedFetcher):
        async def get(self, target: httppoll.HttpTarget, timeout_s: float) -> bytes:
            if target.device_id == "bug":
                raise RuntimeError("library surprise")
            return await super().get(target, timeout_s)

    sink = RecordingSink()
    fetcher = Exploding({"ok": [orjson.dumps(status())]})
    targets = [httppoll.HttpTarget(d, "telehealth", f"http://{d}/") for d in ("bug", "ok")]
    rounds = _station_rounds(targets, sink, fetcher)
    assert [x.device_id for x in await rounds.poll_round()] == ["ok"]
    assert rounds.failing == {"bug": "protocol"}


# --- the feeds' declarations and the command -----------------------------------------------------


def test_the_schedule_is_the_feeds_declaration_and_the_simulators_follow_it() -> None:
    from ioc.simulators.behaviour import TelehealthSim
    from ioc.simulators.vconf import BridgeSim

    telehealth = feeds.spec(Feed.TELEHEALTH).collection
    vconf = feeds.spec(Feed.VCONF).collection
    assert telehealth is not None and vconf is not None
    assert telehealth.interval(httppoll.KINDS[Feed.TELEHEALTH]) == 5.0
    assert telehealth.timeout_s == 3.0 and vconf.timeout_s == 2.0
    assert dict(TelehealthSim.periods) == {"telehealth.heartbeat": 5000, "telehealth.quality": 5000}
    assert dict(BridgeSim.periods) == {"vconf.bridge": 5000}
    # the heartbeat timeout holds three polls
    assert feeds.spec(Feed.TELEHEALTH).heartbeat_timeout_ms >= 3 * 5000


def test_collect_http_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stations, _, _ = _stations_and_bridges()
    topo = _topology({stations[0]: "127.0.0.1:9"})
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(topo.to_document(), allow_unicode=True))
    out = str(tmp_path / "o.jsonl")
    base = ["collect", "--scenario", str(scenario), "--out", out]
    assert main([*base, "--http-concurrency", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main([*base, "--protocols", "icmp", "--http-credentials", "x.toml"]) == 2
    assert "--http-credentials without http" in capsys.readouterr().err
    assert main([*base, "--protocols", "icmp"]) == 2
    assert "no network node with an address" in capsys.readouterr().err
    # the station on a closed port: polled, refused, nothing sent, not a failure of the command
    assert main([*base, "--protocols", "http", "--rounds", "1"]) == 0
    assert "1 HTTP targets" in capsys.readouterr().out
    assert Path(out).read_text() == ""


def test_one_plan_holds_the_nodes_and_the_stations_and_bridges() -> None:
    stations, bridges, _ = _stations_and_bridges()
    topo = load_scenario("demo")
    node = sorted(d.id for d in topo.devices_of("netnode"))[0]
    addresses = {node: "127.0.0.1", stations[0]: "127.0.0.2", bridges[0]: "127.0.0.3:8443"}
    args = argparse.Namespace(
        scenario="demo",
        shard=0,
        shards=1,
        trap_port=None,
        trap_host="0.0.0.0",
        snmp_credentials=None,
        http_credentials=None,
        http_concurrency=7,
        protocols=None,
    )
    with mock.patch("ioc.contract.topology.load_scenario", return_value=_topology(addresses)):
        plan, notes = plan_of(args, Settings(), ["icmp", "http"])
    assert plan.icmp == {node: "127.0.0.1"} and plan.http_concurrency == 7
    assert {(t.device_id, t.url) for t in plan.http} == {
        (stations[0], "http://127.0.0.2/status"),
        (bridges[0], "http://127.0.0.3:8443/colibri/stats"),
    }
    assert any("stations or bridges have no address" in n for n in notes)
