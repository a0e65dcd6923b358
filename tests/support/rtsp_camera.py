"""The test camera of the RTSP collector's integration tests: GStreamer's RTSP server
(:mod:`ioc.deploy.local.rtsp_server`) in a child process, driven through its stdin."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ioc.contract.feeds import Feed
from ioc.contract.topology import load_scenario
from ioc.services.collect.cli import Plan
from tests.support.collect import collect_plan


class Camera:
    """The test camera: GStreamer's RTSP server, driven through its stdin."""

    def __init__(self, command: list[str], user: str, password: str, log: Path) -> None:
        # GStreamer's warnings go to a file: an unread pipe would fill and stall the server
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [*command, "--width", "160", "--height", "120", "--fps", "10"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, "RTSP_TEST_USER": user, "RTSP_TEST_PASSWORD": password},
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if line[:1] != ["ready"]:
            self.stop()
            pytest.fail(f"the RTSP server did not start: {log.read_text()[-2000:]}")
        self.port = int(line[1])

    def set(self, mode: str) -> None:
        """``live``, ``freeze`` or ``black``, acknowledged by the server."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{mode}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == f"ok {mode}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[tuple[Camera, str, str]]:
    from ioc.deploy.local.process import StackError
    from ioc.deploy.local.rtsp_peers import ensure_rtsp_peers

    try:
        command = ensure_rtsp_peers()
    except StackError as exc:
        pytest.skip(str(exc))
    user, password = "viewer", f"pw-{secrets.token_hex(8)}"
    cam = Camera(command, user, password, tmp_path / "rtsp-server.log")
    try:
        yield cam, user, password
    finally:
        cam.stop()


def scenario_with_cameras(path: Path, cameras: list[tuple[str, str | None]]) -> list[str]:
    """The demo scenario, its first cameras given (address, ``rtsp_profile``) in turn, written
    to ``path``; their ids."""
    topo = load_scenario("demo")
    chosen = sorted(topo.devices_of(Feed.CAMERA), key=lambda d: d.id)[: len(cameras)]
    for device, (address, profile) in zip(chosen, cameras, strict=True):
        device.attributes["address"] = address
        if profile is not None:
            device.attributes["rtsp_profile"] = profile
    path.write_text(yaml.safe_dump(topo.to_document(), allow_unicode=True))
    return [d.id for d in chosen]


def rtsp_plan(scenario: Path, credentials: Path, decoders: int = 2) -> Plan:
    """What ``ioc collect --protocols rtsp --rtsp-credentials FILE`` would do here."""
    return collect_plan(scenario, "rtsp", rtsp_credentials=str(credentials), rtsp_decoders=decoders)
