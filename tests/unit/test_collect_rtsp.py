"""The RTSP part of ``ioc collect`` without a camera: credentials and targets, the frame and
packet analysis, outcomes and messages, the rounds on a scripted sampler, and the sampler's
plumbing on a fake ffmpeg (the real peer: tests/integration/test_collect_rtsp.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from ioc.config import Settings
from ioc.contract import feeds
from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.contract.feeds import Collection, Feed, FeedError
from ioc.errors import IocError
from ioc.services.collect import rtsp
from ioc.services.collect.cli import plan_of
from ioc.services.collect.collector import RtspCollector, Sequences
from ioc.services.collect.snmp import secure_write
from tests.support.collect import RecordingSink
from tests.support.rtsp_camera import scenario_with_cameras

PROFILE = rtsp.Profile(user="viewer", password=SecretStr("s3cr:t/p@ss"))

# --- credentials and targets ----------------------------------------------------------------


def test_profiles_never_show_the_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert "s3cr" not in repr(PROFILE) and "s3cr" not in str(PROFILE)
    path = tmp_path / "rtsp.toml"
    secure_write(path, '[profiles.default]\nuser = "viewer"\npassword = "pw1"\n')
    assert rtsp.load_profiles(path)["default"].password.get_secret_value() == "pw1"
    assert not caplog.records
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        rtsp.load_profiles(path)
    assert "chmod 600" in caplog.text
    secure_write(path, '[profiles.default]\nuser = "viewer"\n')
    with pytest.raises(rtsp.RtspConfigError, match="profile default: password: Field required"):
        rtsp.load_profiles(path)
    secure_write(path, "[other]\n")
    with pytest.raises(rtsp.RtspConfigError, match=r"no \[profiles.NAME\] table"):
        rtsp.load_profiles(path)


def test_stream_urls_from_inventory_addresses() -> None:
    assert rtsp.stream_url("rtsp://10.9.0.7:8554/Streaming/101") == (
        "rtsp://10.9.0.7:8554/Streaming/101"
    )
    # credentials in the inventory are dropped: they belong in the credentials file
    assert rtsp.stream_url("RTSP://admin:12345@cam.example:554/s1") == "rtsp://cam.example:554/s1"
    assert rtsp.stream_url(" rtsp://cam.example/s1 ") == "rtsp://cam.example/s1"
    for address in ("10.9.0.7", "http://cam/s1", "rtsp:///nohost", ""):
        assert rtsp.stream_url(address) is None
    cam = rtsp.Camera("c", "rtsp://cam.example/s1")
    assert (cam.host, cam.port, cam.tls) == ("cam.example", 554, False)
    tls = rtsp.Camera("c", "rtsps://cam.example/s1")
    assert (tls.port, tls.tls) == (322, True)


def test_select_cameras_with_their_profiles() -> None:
    other = rtsp.Profile(user="u2", password=SecretStr("x"))
    cameras, no_url, no_profile = rtsp.select(
        [
            ("cam-a", {"address": "rtsp://10.0.0.1/s"}),
            ("cam-b", {"address": "rtsp://10.0.0.2/s", "rtsp_profile": "dahua"}),
            ("cam-c", {"address": "rtsp://10.0.0.3/s", "rtsp_profile": "hik"}),
            ("cam-d", {"address": "10.0.0.4"}),
            ("cam-e", {}),
        ],
        {"default": PROFILE, "dahua": other},
    )
    assert [(c.device_id, c.profile) for c in cameras] == [("cam-a", PROFILE), ("cam-b", other)]
    assert (no_url, no_profile) == (["cam-d", "cam-e"], ["cam-c"])
    anonymous, _, _ = rtsp.select([("cam-a", {"address": "rtsp://10.0.0.1/s"})], {})
    assert anonymous[0].profile is None and anonymous[0].secret_url() == "rtsp://10.0.0.1/s"


def test_credentials_go_into_ffmpegs_url_only_and_are_redacted_from_what_it_says() -> None:
    cam = rtsp.Camera("cam-a", "rtsp://10.0.0.1:554/s1", PROFILE)
    secret = cam.secret_url()
    assert secret == "rtsp://viewer:s3cr%3At%2Fp%40ss@10.0.0.1:554/s1"
    assert "s3cr" not in cam.url and "s3cr" not in repr(cam)
    said = f"{secret}: 401 Unauthorized (password s3cr:t/p@ss)"
    cleaned = rtsp.redact(said, cam)
    assert "s3cr" not in cleaned and cleaned.startswith("rtsp://10.0.0.1:554/s1: 401")
    command = rtsp.ffmpeg_command("ffmpeg", secret, 2.0, 3.0, 7)
    assert command[command.index("-i") + 1] == secret
    assert command[-1] == "pipe:7" and "passthrough" in command
    assert command[command.index("-timeout") + 1] == "3000000"


# --- frames ---------------------------------------------------------------------------------


def frame(level: int, spot: int = -1) -> bytes:
    """A flat grey frame, with one bright 8x8 block at column ``spot`` (a moving object)."""
    pixels = bytearray([level]) * rtsp.FRAME_BYTES
    if spot >= 0:
        for row in range(8):
            start = row * rtsp.WIDTH + spot
            pixels[start : start + 8] = b"\xff" * 8
    return bytes(pixels)


def stats(frames: list[bytes]) -> rtsp.FrameStats:
    out = rtsp.FrameStats()
    for f in frames:
        out.add(f)
    return out


def test_a_moving_picture_is_neither_frozen_nor_black() -> None:
    moving = stats([frame(120, spot=i * 4) for i in range(10)])
    assert moving.frames == 10 and moving.moving_pairs == 9
    assert not moving.frozen and not moving.black


def test_a_still_picture_is_frozen_even_with_coding_noise() -> None:
    assert stats([frame(120, spot=8)] * 10).frozen
    # one pixel off by 255/3072 < the -60 dB threshold: still the same picture
    noisy = bytearray(frame(120, spot=8))
    noisy[100] = 121
    assert rtsp.mafd(frame(120, spot=8), bytes(noisy)) < rtsp.FROZEN_MAFD
    assert stats([frame(120, spot=8), bytes(noisy)] * 5).frozen
    # noise of a level or two over the whole frame: still frozen
    grain = bytes(v + (i % 7 == 0) - (i % 11 == 0) for i, v in enumerate(frame(120)))
    mean, largest = rtsp.difference(frame(120), grain)
    assert mean < rtsp.FROZEN_MAFD and largest < rtsp.MOVED_PIXEL
    assert stats([frame(120), grain] * 5).frozen
    # a still scene whose clock ticks (a few pixels change a lot): live, whatever the mean
    tick = bytearray(frame(120, spot=8))
    tick[3000:3004] = b"\xff" * 4
    assert rtsp.mafd(frame(120, spot=8), bytes(tick)) < rtsp.FROZEN_MAFD
    assert not stats([frame(120, spot=8)] * 5 + [bytes(tick)] * 5).frozen
    # one change in the window is a live picture
    assert not stats([frame(120, spot=8)] * 5 + [frame(120, spot=30)] * 5).frozen
    assert not stats([frame(120)] * (rtsp.MIN_FRAMES - 1)).frozen


def test_black_is_luma_near_video_black_and_not_frozen() -> None:
    black = stats([frame(16)] * 10)
    assert black.black and not black.frozen  # reported as black, as the simulator does
    assert stats([frame(rtsp.BLACK_LUMA)] * 3).black
    assert not stats([frame(rtsp.BLACK_LUMA + 1)] * 3).black
    assert not stats([frame(16, spot=10)] * 3).black  # a lit object: 2 % of the pixels
    assert rtsp.is_black(frame(16)) and not rtsp.is_black(frame(90))
    # mostly black frames (a flash now and then) still black
    assert stats([frame(16)] * 9 + [frame(200)]).black
    assert not stats([frame(16)] * 8 + [frame(200)] * 2).black


# --- packets --------------------------------------------------------------------------------

FRAMECRC = """#extradata 0:       40, 0xf2060be5
#software: Lavf59.27.100
#tb 0: 1/90000
#media_type 0: video
#codec_id 0: h264
#dimensions 0: 160x120
#sar 0: 1/1
#stream#, dts,        pts, duration,     size, hash
0,       9000,       9000,        0,     1521, 0x1
0,       9000,       9000,        0,      178, 0x2
0,       9000,       9000,        0,      114, 0x3
"""


def packets(dts: list[int], size: int = 1000) -> rtsp.PacketStats:
    out = rtsp.PacketStats()
    for line in FRAMECRC.splitlines():
        out.add_line(line)
    for t in dts:
        out.add_line(f"0, {t:10d}, {t:10d},     9000, {size:8d}, 0x1234")
    return out


def test_fps_and_bitrate_from_packet_timestamps_and_sizes() -> None:
    p = packets([18_000 + 9_000 * i for i in range(19)])  # 10 fps after a start burst
    assert len(p.times) == 22 and p.span_s == pytest.approx(1.9)
    assert p.fps() == pytest.approx(10.0)
    # every byte before the last timestamp, over the 1.9 s they cover
    bits = 8 * (1521 + 178 + 114 + 18 * 1000)
    assert p.bitrate_kbps() == pytest.approx(bits / 1.9 / 1000)
    assert p.dropped() == 0


def test_gaps_in_the_timeline_are_dropped_frames() -> None:
    times = [9_000 * i for i in range(1, 30)]
    del times[10:13]  # three frames lost
    del times[20]  # and one more
    p = packets(times)
    assert p.dropped() == 4
    assert rtsp.PacketStats().fps() == 0.0 and rtsp.PacketStats().bitrate_kbps() == 0.0


def test_garbage_lines_are_ignored() -> None:
    p = rtsp.PacketStats()
    for line in ("", "#tb 0: 1/0", "0, x, y", "nonsense", "0, 10, 10, 1"):
        p.add_line(line)
    assert p.times == []


# --- outcomes and messages ------------------------------------------------------------------


def test_judge_and_the_stream_message_round_trip_through_the_contract() -> None:
    sample = rtsp.judge(stats([frame(120)] * 20), packets([9_000 * i for i in range(2, 20)]))
    assert sample.ok and sample.frozen and not sample.black and sample.fps == 10.0
    message = rtsp.stream_message("cam-001", 7, 1_700_000_000_000, sample)
    decoded = s.decode(s.encode(message), feed=Feed.CAMERA)
    assert decoded == message and isinstance(decoded, s.CameraStream)
    assert decoded.frozen and decoded.fps == 10.0
    failed = rtsp.judge(stats([frame(120)]), packets([9_000, 18_000]))
    assert not failed.ok and failed.reason == "no_frames" and "1 frames decoded" in failed.detail


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        ("Connection to tcp://10.0.0.1:554?timeout=3000000 failed: Connection refused", "refused"),
        ("rtsp://10.0.0.1/s: Server returned 401 Unauthorized (authorization failed)", "auth"),
        ("method DESCRIBE failed: 404 Not Found", "not_found"),
        ("Connection to tcp://10.0.0.1:554 failed: Connection timed out", "timeout"),
        ("No route to host", "refused"),
        (
            "Connection to tcp://10.0.0.1:14010?timeout=3000000 failed: Connection refused",
            "refused",
        ),
        ("tcp://10.0.0.1:4040?timeout=3000000: Invalid data found", "stream_error"),
        ("Invalid data found when processing input", "stream_error"),
        ("", "stream_error"),
    ],
)
def test_failure_reasons_from_what_ffmpeg_says(said: str, reason: str) -> None:
    assert rtsp.failure_reason(said) == reason
    assert reason in rtsp.REASONS


def test_heartbeat_status_follows_the_last_sample() -> None:
    assert rtsp.heartbeat_status(None) == "ok"
    assert rtsp.heartbeat_status(rtsp.Sample(True, fps=25.0)) == "ok"
    assert rtsp.heartbeat_status(rtsp.Sample(True, frozen=True)) == "degraded"
    assert rtsp.heartbeat_status(rtsp.Sample(True, black=True)) == "degraded"
    assert rtsp.heartbeat_status(rtsp.Sample(False, "not_found")) == "fault"


def test_the_round_estimate_behind_the_capacity_warning() -> None:
    assert rtsp.round_estimate_s(4, 4, 2.0) == pytest.approx(3.5)
    assert rtsp.round_estimate_s(12, 4, 2.0) == pytest.approx(10.5)  # the benchmark's overrun
    assert rtsp.round_estimate_s(0, 4, 2.0) == 0


def test_the_camera_feed_declares_the_schedule_the_collector_and_simulator_share() -> None:
    from ioc.simulators.behaviour import CameraSim

    collection = feeds.spec(Feed.CAMERA).collection
    assert collection is not None and collection.sample_s > 0
    assert CameraSim.periods[rtsp.STREAM] == collection.interval(rtsp.STREAM) * 1000
    assert CameraSim.periods[rtsp.HEARTBEAT] == collection.interval(rtsp.HEARTBEAT) * 1000
    with pytest.raises(FeedError, match="must fit in the longest interval"):
        Collection(interval_s={"camera.stream": 5.0}, timeout_s=3.0, sample_s=2.0)
    with pytest.raises(FeedError, match=r"sample_s must be 0\.\.60"):
        Collection(interval_s={"camera.stream": 100.0}, timeout_s=3.0, sample_s=61.0)


# --- the rounds -----------------------------------------------------------------------------


class ScriptedSampler:
    def __init__(self, script: dict[str, list[rtsp.Sample]]) -> None:
        self.script = script

    async def sample(self, camera: rtsp.Camera) -> rtsp.Sample:
        return self.script[camera.device_id].pop(0)


COLLECTION = Collection(
    interval_s={"camera.heartbeat": 1.0, "camera.stream": 1.0}, timeout_s=0.1, sample_s=0.1
)
LIVE = rtsp.Sample(True, fps=25.0, bitrate_kbps=4000.0)
FROZEN = rtsp.Sample(True, fps=25.0, bitrate_kbps=200.0, frozen=True)


async def test_rounds_send_heartbeats_and_streams_and_count_what_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    sink = RecordingSink()
    cameras = [
        rtsp.Camera("cam-live", "rtsp://10.0.0.1/s"),
        rtsp.Camera("cam-dark", "rtsp://10.0.0.2/s"),
        rtsp.Camera("cam-gone", "rtsp://10.0.0.3/s"),
    ]
    sampler = ScriptedSampler(
        {
            "cam-live": [LIVE, FROZEN],
            "cam-dark": [rtsp.Sample(False, "not_found", "404 Not Found")] * 2,
            "cam-gone": [rtsp.Sample(False, "refused", "Connection refused")] * 2,
        }
    )
    clock = iter(range(1_700_000_000_000, 1_800_000_000_000, 1000))

    async def options(camera: rtsp.Camera, timeout_s: float) -> int | None:
        return None if camera.device_id == "cam-gone" else 200

    rounds = RtspCollector(
        cameras,
        sink,
        sampler,
        COLLECTION,
        Sequences(1),
        options=options,
        registry=registry,
        clock_ms=lambda: next(clock),
    )
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            await rounds.stream_round()
            await rounds.heartbeat_round()
    got = sink.messages(Feed.CAMERA)
    streams = [x for x in got if isinstance(x, s.CameraStream)]
    beats = [x for x in got if isinstance(x, s.CameraHeartbeat)]
    assert [(x.device_id, x.frozen) for x in streams] == [("cam-live", False), ("cam-live", True)]
    # no heartbeat from the camera that does not answer; a fault from the one with no picture
    assert [(x.device_id, x.status) for x in beats] == [
        ("cam-dark", "fault"),
        ("cam-live", "ok"),
        ("cam-dark", "fault"),
        ("cam-live", "degraded"),
    ]
    assert beats[2].uptime_s > beats[0].uptime_s == 0
    live = [x.seq for x in got if x.device_id == "cam-live"]
    assert live == sorted(live) and len(set(live)) == 4

    def value(spec: m.MetricSpec, **labels: str) -> float | None:
        return registry.get_sample_value(spec.series, labels)

    assert value(m.COLLECT_POLLS, protocol="rtsp") == 6
    assert value(m.COLLECT_REQUESTS, protocol="rtsp") == 6
    assert value(m.COLLECT_REPLIES, protocol="rtsp") == 4
    assert value(m.COLLECT_ERRORS, protocol="rtsp", reason="unreachable") == 2
    assert value(m.COLLECT_ERRORS, protocol="rtsp", reason="refused") == 2
    assert value(m.COLLECT_ERRORS, protocol="rtsp", reason="not_found") == 2
    assert value(m.COLLECT_MESSAGES, kind="camera.stream") == 2
    assert value(m.COLLECT_MESSAGES, kind="camera.heartbeat") == 4
    assert value(m.COLLECT_TARGETS, protocol="rtsp") == 3
    # each failure is logged when it starts, not every round
    assert caplog.text.count("cam-dark") == 1
    assert caplog.text.count("Connection refused") == 1
    assert caplog.text.count("unreachable") == 1


async def test_run_keeps_both_cadences_and_a_sampler_bug_is_one_cameras_failure() -> None:
    class Broken:
        async def sample(self, camera: rtsp.Camera) -> rtsp.Sample:
            raise RuntimeError("boom")

    async def options(camera: rtsp.Camera, timeout_s: float) -> int | None:
        return 401  # the RTSP service answers: a heartbeat, even without credentials

    sink = RecordingSink()
    rounds = RtspCollector(
        [rtsp.Camera("cam", "rtsp://10.0.0.1/s")],
        sink,
        Broken(),
        COLLECTION,
        Sequences(1),
        options=options,
        registry=CollectorRegistry(),
    )
    await rounds.run(asyncio.Event(), rounds=2)
    assert (rounds.stream_rounds, rounds.heartbeat_rounds) == (2, 2)
    assert rounds.last["cam"].reason == "stream_error"
    assert [type(x).__name__ for x in sink.messages(Feed.CAMERA)] == ["CameraHeartbeat"] * 2


# --- the sampler on a fake ffmpeg -----------------------------------------------------------

FAKE_FFMPEG = f"""#!{sys.executable}
import os, sys, time
mode = os.environ["FAKE_MODE"]
fd = int(sys.argv[-1].split(":")[1])
if mode == "refused":
    url = sys.argv[sys.argv.index("-i") + 1]
    sys.stderr.write(url + ": Connection refused\\n")
    sys.exit(1)
if mode == "hang":
    time.sleep(30)
crc = os.fdopen(fd, "w")
crc.write("#tb 0: 1/90000\\n")
for i in range(10):
    level = 120 if mode == "frozen" else 40 + 10 * i
    sys.stdout.buffer.write(bytes([level]) * {rtsp.FRAME_BYTES})
    crc.write(f"0, {{9000 * i}}, {{9000 * i}}, 9000, 500, 0x0\\n")
sys.stdout.flush()
"""


@pytest.fixture
def fake_ffmpeg(tmp_path: Path) -> str:
    path = tmp_path / "ffmpeg"
    path.write_text(FAKE_FFMPEG)
    path.chmod(0o755)
    return str(path)


async def test_the_sampler_reads_frames_and_packets_from_its_decoder(
    fake_ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampler = rtsp.Sampler(0.5, 0.2, 2, ffmpeg=fake_ffmpeg, slack_s=0.5)
    cam = rtsp.Camera("cam", "rtsp://127.0.0.1:9/s", PROFILE)
    monkeypatch.setenv("FAKE_MODE", "live")
    live = await sampler.sample(cam)
    assert live.ok and live.frames == 10 and live.fps == 10.0 and not live.frozen
    assert live.bitrate_kbps == pytest.approx(9 * 500 * 8 / 0.9 / 1000, abs=0.1)
    monkeypatch.setenv("FAKE_MODE", "frozen")
    assert (await sampler.sample(cam)).frozen
    monkeypatch.setenv("FAKE_MODE", "refused")
    refused = await sampler.sample(cam)
    assert refused.reason == "refused" and "s3cr" not in refused.detail
    assert "rtsp://127.0.0.1:9/s" in refused.detail
    monkeypatch.setenv("FAKE_MODE", "hang")
    started = asyncio.get_running_loop().time()
    hung = await sampler.sample(cam)
    assert hung.reason == "timeout" and asyncio.get_running_loop().time() - started < 3.0


async def test_options_to_a_closed_port_is_no_answer() -> None:
    assert await rtsp.rtsp_options(rtsp.Camera("c", "rtsp://127.0.0.1:9/s"), 0.5) is None


async def test_options_reads_the_status_of_an_rtsp_answer() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        assert request.startswith(b"OPTIONS rtsp://127.0.0.1:")
        writer.write(b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert await rtsp.rtsp_options(rtsp.Camera("c", f"rtsp://127.0.0.1:{port}/s"), 1.0) == 401


# --- the plan from the inventory ------------------------------------------------------------


def _args(scenario: Path, credentials: Path | None, shards: int = 1) -> argparse.Namespace:
    return argparse.Namespace(
        scenario=str(scenario),
        shard=0,
        shards=shards,
        trap_port=None,
        trap_host="127.0.0.1",
        snmp_credentials=None,
        rtsp_credentials=None if credentials is None else str(credentials),
        rtsp_decoders=3,
        protocols="rtsp",
    )


def test_the_plan_takes_the_cameras_with_an_rtsp_address_and_a_known_profile(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "province.yaml"
    ids = scenario_with_cameras(
        scenario,
        [
            ("rtsp://10.0.0.1/a", None),
            ("rtsp://admin:leaked@10.0.0.2/b", "hik"),
            ("10.0.0.3", None),
            ("rtsp://10.0.0.4/d", "default"),
        ],
    )
    credentials = tmp_path / "rtsp.toml"
    secure_write(credentials, '[profiles.default]\nuser = "viewer"\npassword = "pw1"\n')
    plan, notes = plan_of(_args(scenario, credentials), Settings(), ["rtsp"])
    assert [(c.device_id, c.url) for c in plan.rtsp] == [
        (ids[0], "rtsp://10.0.0.1/a"),
        (ids[3], "rtsp://10.0.0.4/d"),
    ]
    assert all(c.profile is not None and c.profile.user == "viewer" for c in plan.rtsp)
    assert plan.rtsp_decoders == 3 and not plan.icmp and not plan.snmp
    assert any("1 cameras name an RTSP profile" in n and ids[1] in n for n in notes)
    assert any("have no rtsp:// address" in n for n in notes)
    assert "leaked" not in repr(plan) and "pw1" not in repr(plan)
    # the shards split the cameras as they split the nodes: each in exactly one
    halves = [
        {c.device_id for c in plan_of(args, Settings(), ["rtsp"])[0].rtsp}
        for args in (_args(scenario, credentials, 2), _shard1(scenario, credentials))
    ]
    assert halves[0] | halves[1] == {ids[0], ids[3]} and not halves[0] & halves[1]


def _shard1(scenario: Path, credentials: Path) -> argparse.Namespace:
    args = _args(scenario, credentials, 2)
    args.shard = 1
    return args


def test_without_ffmpeg_the_collector_stops_saying_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = tmp_path / "province.yaml"
    scenario_with_cameras(scenario, [("rtsp://10.0.0.1/a", None)])
    monkeypatch.setattr("ioc.services.collect.rtsp.shutil.which", lambda name: None)
    with pytest.raises(rtsp.RtspConfigError, match="apt-get install -y ffmpeg"):
        plan_of(_args(scenario, None), Settings(), ["rtsp"])


def test_a_scenario_without_addresses_has_nothing_to_sample(tmp_path: Path) -> None:
    with pytest.raises(IocError, match="no camera with an address in demo"):
        plan_of(_args(Path("demo"), None), Settings(), ["rtsp"])
