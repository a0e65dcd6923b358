"""A real camera's frozen picture, end to end: GStreamer's RTSP server -> ``ioc collect``
(RTSP, on the camera feed's own schedule) -> Kafka -> ``ioc worker`` -> a *degraded* incident,
within the bound the simulated feeds' end-to-end test holds incidents to (30 s from the fault,
tests/integration/test_streams_e2e.py), and resolved once the picture moves again.

The demo scenario with one camera at the test camera's address is bootstrapped into a
private namespace; a worker judges it; the collector runs in-process on a thread with the
feed's declared collection (a heartbeat every 5 s, 2 s of video every 10 s). Its detection
bound is the next sample (at most 10 s), the sample and its start (2 + 3 s), the evaluator's
5 s tick and the pipeline: about 20 s, as the simulator's report every 10 s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import feeds
from ioc.contract import tables as t
from ioc.contract.feeds import Collection, Feed
from ioc.services.collect.cli import Summary, collect
from ioc.services.collect.snmp import secure_write
from ioc.services.collect.spool import SpoolingSink
from tests.support.db import query
from tests.support.processes import Worker
from tests.support.rtsp_camera import Camera, camera, rtsp_plan, scenario_with_cameras
from tests.support.wait import wait_for

__all__ = ["camera"]  # the fixture

BOUND_S = 30.0
"""From the fault to the incident: what test_streams_e2e allows the simulated feeds."""


class Collecting:
    """``collect`` on a thread of its own (its own event loop) until :meth:`stop`."""

    def __init__(self, settings: Settings, scenario: Path, credentials: Path, spool: Path):
        self.plan = rtsp_plan(scenario, credentials, decoders=1)
        self.sink = SpoolingSink(
            settings, spool, client_id="ioc-collector-test", registry=CollectorRegistry()
        )
        collection = feeds.spec(Feed.CAMERA).collection
        assert collection is not None
        self.collection: Collection = collection
        self.summary: Summary | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector")

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            netnode = feeds.spec(Feed.NETNODE).collection
            assert netnode is not None
            self.summary = await collect(
                self.plan,
                self.sink,
                netnode,
                self._stop,
                registry=CollectorRegistry(),
                collections={Feed.CAMERA: self.collection},
            )

        asyncio.run(main())

    def start(self) -> Collecting:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.sink.flush(10.0)
        self.sink.close()


def _incident(settings: Settings, device: str, after: dt.datetime) -> dict[str, object] | None:
    rows = query(
        settings,
        "SELECT id, kind, title, opened_at, resolved_at FROM incidents "
        "WHERE root_device = $1 AND kind = $2 AND opened_at >= $3 ORDER BY id",
        device,
        t.INCIDENT_DEGRADED,
        after,
    )
    return dict(rows[0]) if rows else None


def test_a_frozen_camera_opens_a_degraded_incident_within_the_simulated_bound(
    camera: tuple[Camera, str, str], namespace: Settings, tmp_path: Path
) -> None:
    cam, user, password = camera
    scenario = tmp_path / "province.yaml"
    (device,) = scenario_with_cameras(scenario, [(f"rtsp://127.0.0.1:{cam.port}/cam", None)])
    credentials = tmp_path / "rtsp.toml"
    secure_write(credentials, f'[profiles.default]\nuser = "{user}"\npassword = "{password}"\n')
    asyncio.run(bootstrap(namespace, str(scenario)))
    worker = Worker(namespace, str(scenario), tmp_path / "worker.log").start()
    collector = Collecting(namespace, scenario, credentials, tmp_path / "spool").start()
    try:
        state_sql = "SELECT state FROM device_state WHERE device_id = $1"
        wait_for(
            lambda: [r["state"] for r in query(namespace, state_sql, device)] == [t.STATE_UP],
            60,
            what=f"{device} up",
        )
        cam.set("freeze")
        frozen_at = dt.datetime.now(dt.UTC)
        incident = wait_for(
            lambda: _incident(namespace, device, frozen_at - dt.timedelta(seconds=1)),
            BOUND_S + 30,
            what=f"a degraded incident on {device}",
        )
        opened_at = incident["opened_at"]
        assert isinstance(opened_at, dt.datetime)
        delay = (opened_at - frozen_at).total_seconds()
        print(f"degraded incident {incident['title']!r} opened {delay:.1f} s after the freeze")
        assert 0 <= delay <= BOUND_S
        assert "frozen picture" in str(incident["title"])

        cam.set("live")
        resolved = wait_for(
            lambda: query(
                namespace,
                "SELECT resolved_at FROM incidents WHERE id = $1 AND resolved_at IS NOT NULL",
                incident["id"],
            ),
            BOUND_S + 30,
            what="the incident resolved",
        )
        print(f"resolved {(resolved[0]['resolved_at'] - opened_at).total_seconds():.1f} s later")
    finally:
        collector.stop()
        worker.stop()
    assert collector.summary is not None and collector.summary.stream_rounds >= 3
    assert collector.sink.errors == 0
