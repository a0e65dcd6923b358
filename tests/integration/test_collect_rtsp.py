"""The RTSP collector against a real camera: GStreamer's RTSP server on loopback, ffmpeg, and
the local stack's Kafka.

The test starts :mod:`ioc.deploy.local.rtsp_server` (Debian's python3 with gi) serving a
160x120, 10 fps H.264 test pattern behind Basic authentication with a generated password,
and three cameras of the demo scenario point at it: one with the right credentials, one with
a wrong password, one at a closed port. The collector runs in-process
(``ioc.services.collect.cli.collect``, what ``ioc collect --protocols rtsp`` runs, from the
plan ``plan_of`` makes of the scenario and the credentials file) into a private topic prefix
on a quick schedule, while the test drives the camera:

- live: ``camera.stream`` with about 10 fps, a plausible bitrate, neither frozen nor black,
  and ``camera.heartbeat`` ``ok``;
- frozen (the pattern stands still; the encoder keeps sending frames): ``frozen`` from the
  decoded frames, and the heartbeat says ``degraded``;
- black: ``black``, not frozen;
- stopped (the server ends): no heartbeat and no stream any more, counted as ``unreachable``
  and ``refused``;

and throughout, the wrong password gives heartbeats (the RTSP service answers) with status
``fault`` and samples counted as ``auth``, the closed port nothing at all, and no log line
holds a password. Then the camera topic is read back from Kafka: every message sent, once.

ffmpeg and the GStreamer packages are installed by ``make install``
(``python -m ioc.deploy.local.rtsp_peers``) or here on first use (root); otherwise the test
skips, saying why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ioc.config import Settings
from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.contract.feeds import Collection, Feed
from ioc.services.collect.cli import Plan, collect
from ioc.services.collect.snmp import secure_write
from ioc.services.collect.spool import SpoolingSink
from ioc.sinks import Record, Sink
from tests.support.collect import closed_port, read_back
from tests.support.rtsp_camera import Camera, camera, rtsp_plan, scenario_with_cameras

__all__ = ["camera"]  # the fixture

COLLECTION = Collection(
    interval_s={"camera.heartbeat": 2.0, "camera.stream": 4.0},
    timeout_s=1.0,
    sample_s=1.5,
)
"""Quicker than the feed's (5 s, 10 s, 2 s of video) so the test stays short; the same code."""
NETNODE = Collection(interval_s={"netnode.probe": 5.0}, timeout_s=1.0, echoes=1)
PHASE_S = 20.0


class Tee(Sink):
    """The spooling sink, keeping a copy of every message so the test can follow it."""

    def __init__(self, inner: SpoolingSink) -> None:
        self.inner = inner
        self.messages: list[s.Message] = []

    def send(self, record: Record) -> None:
        self.messages.append(s.decode(record.value, feed=Feed.CAMERA))
        self.inner.send(record)

    def poll(self) -> None:
        self.inner.poll()

    def flush(self, timeout: float = 60.0) -> None:
        self.inner.flush(timeout)


def _plan(tmp_path: Path, port: int, user: str, password: str) -> tuple[Plan, list[str]]:
    """Three demo cameras: the right credentials, a wrong password, a closed port."""
    scenario = tmp_path / "province.yaml"
    ids = scenario_with_cameras(
        scenario,
        [
            (f"rtsp://127.0.0.1:{port}/cam", None),
            (f"rtsp://127.0.0.1:{port}/cam", "wrong"),
            (f"rtsp://127.0.0.1:{closed_port()}/cam", None),
        ],
    )
    credentials = tmp_path / "rtsp.toml"
    secure_write(
        credentials,
        f'[profiles.default]\nuser = "{user}"\npassword = "{password}"\n'
        f'[profiles.wrong]\nuser = "{user}"\npassword = "not-{password}"\n',
    )
    return rtsp_plan(scenario, credentials), ids


async def _until(
    tee: Tee, device: str, after_ms: int, test: Callable[[s.CameraStream], bool]
) -> s.CameraStream:
    """The first ``camera.stream`` of ``device`` whose sample began after ``after_ms``."""
    start = COLLECTION.sample_s + COLLECTION.timeout_s
    deadline = time.monotonic() + PHASE_S
    while time.monotonic() < deadline:
        for x in tee.messages:
            if (
                isinstance(x, s.CameraStream)
                and x.device_id == device
                and x.ts_ms - start * 1000 > after_ms
            ):
                assert test(x), x
                return x
        await asyncio.sleep(0.2)
    pytest.fail(f"no camera.stream of {device} after {after_ms}")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_live_frozen_black_and_stopped_camera_into_kafka(
    camera: tuple[Camera, str, str],
    topics: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cam, user, password = camera
    plan, (good, wrong, closed) = await asyncio.to_thread(_plan, tmp_path, cam.port, user, password)
    assert [c.device_id for c in plan.rtsp] == sorted([good, wrong, closed])
    assert password not in repr(plan)
    registry = CollectorRegistry()
    sink = Tee(
        SpoolingSink(topics, tmp_path / "spool", client_id="ioc-collector-test", registry=registry)
    )
    stop = asyncio.Event()
    caplog.set_level(logging.INFO)
    task = asyncio.create_task(
        collect(plan, sink, NETNODE, stop, registry=registry, collections={Feed.CAMERA: COLLECTION})
    )
    try:
        live = await _until(sink, good, 0, lambda x: not x.frozen and not x.black)
        assert 8.0 <= live.fps <= 12.0 and live.dropped_frames <= 2
        assert 5.0 <= live.bitrate_kbps <= 1000.0

        cam.set("freeze")
        frozen_at = _now_ms()
        frozen = await _until(sink, good, frozen_at, lambda x: x.frozen and not x.black)
        assert 8.0 <= frozen.fps <= 12.0  # the camera still sends frames: the same picture
        beats = [
            x
            for x in sink.messages
            if isinstance(x, s.CameraHeartbeat) and x.device_id == good and x.ts_ms > frozen.ts_ms
        ]
        deadline = time.monotonic() + PHASE_S
        while not beats and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            beats = [
                x
                for x in sink.messages
                if isinstance(x, s.CameraHeartbeat)
                and x.device_id == good
                and x.ts_ms > frozen.ts_ms
            ]
        assert beats and beats[0].status == "degraded"

        cam.set("black")
        await _until(sink, good, _now_ms(), lambda x: x.black and not x.frozen)

        cam.stop()
        stopped_at = _now_ms()
        await asyncio.sleep(2 * COLLECTION.interval("camera.stream") + 1)
    finally:
        stop.set()
        summary = await asyncio.wait_for(task, 30)
    await asyncio.to_thread(sink.flush, 30.0)
    sink.inner.close()
    assert summary.stream_rounds >= 4

    after = [x for x in sink.messages if x.device_id == good and x.ts_ms > stopped_at + 1000]
    assert after == []  # stopped: no heartbeat, no stream
    before = [x for x in sink.messages if isinstance(x, s.CameraHeartbeat) and x.device_id == good]
    assert before and before[0].status == "ok"
    assert not [x for x in sink.messages if x.device_id == closed]
    wrongs = [x for x in sink.messages if x.device_id == wrong]
    assert wrongs and all(isinstance(x, s.CameraHeartbeat) for x in wrongs)
    assert {x.status for x in wrongs if isinstance(x, s.CameraHeartbeat)} >= {"fault"}

    def value(spec: m.MetricSpec, **labels: str) -> float:
        return registry.get_sample_value(spec.series, labels) or 0.0

    assert value(m.COLLECT_ERRORS, protocol="rtsp", reason="auth") >= 3
    assert value(m.COLLECT_ERRORS, protocol="rtsp", reason="refused") >= 5  # closed + stopped
    assert value(m.COLLECT_ERRORS, protocol="rtsp", reason="unreachable") >= 5
    # A round's starts are spread over its interval less one sample, so it ends near the
    # interval: with the type-checker and unit tests beside (make test), one cold round of
    # ffmpeg starts may run over (logged; the next round takes the next slot). More is a bug.
    assert caplog.text.count("overran") <= 1, caplog.text
    assert value(m.COLLECT_MESSAGES, kind="camera.stream") == len(
        [x for x in sink.messages if isinstance(x, s.CameraStream)]
    )
    assert password not in caplog.text and "401 Unauthorized" in caplog.text

    assert sink.inner.errors == 0 and sink.inner.spool.depth == 0
    read = await read_back(topics, [Feed.CAMERA], len(sink.messages), "rtsp", 30.0)
    assert sorted(read, key=lambda x: (x.device_id, x.seq)) == sorted(
        sink.messages, key=lambda x: (x.device_id, x.seq)
    )
