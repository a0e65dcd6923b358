"""The RTSP collector's decoder and the camera its tests run against, from Debian packages.

``ioc collect`` decodes camera streams with ``ffmpeg`` (:mod:`ioc.services.collect.rtsp`).
No real camera is reachable from the project's machines, so the tests serve a test pattern
with GStreamer's RTSP server (:mod:`ioc.deploy.local.rtsp_server`, run by Debian's
``/usr/bin/python3`` with ``python3-gi``; tests/integration/test_collect_rtsp.py).
``make install`` runs this module once (``python -m ioc.deploy.local.rtsp_peers``), as it
does for the SNMP peers: it installs the packages that are missing (as root, with the
stack's ``install_peers``), or says in one line what to run; the tests call
:func:`ensure_rtsp_peers` too. A package counts as present when dpkg says it is installed,
so a second run costs one ``dpkg-query``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

from ioc.deploy.local.install import install_peers
from ioc.deploy.local.process import StackError

DECODER: Final = ("ffmpeg",)
"""What the collector itself needs on a machine that samples cameras."""
TEST_CAMERA: Final = (
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base",  # videotestsrc, videoconvert
    "gstreamer1.0-plugins-good",  # rtph264pay
    "gstreamer1.0-plugins-ugly",  # x264enc
)
"""GStreamer's RTSP server and the elements of the test camera's pipeline."""
SYSTEM_PYTHON: Final = Path("/usr/bin/python3")
"""Debian's interpreter, the one ``python3-gi`` is built for (the venv cannot import gi)."""
SERVER: Final = Path(__file__).with_name("rtsp_server.py")


def missing_packages(packages: tuple[str, ...]) -> list[str]:
    """The ``packages`` dpkg does not list as installed (all of them without dpkg)."""
    if shutil.which("dpkg-query") is None:
        return list(packages)
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    installed = {
        line.split()[0].partition(":")[0]
        for line in out.splitlines()
        if line.endswith(" installed")
    }
    return [p for p in packages if p not in installed]


def ensure_rtsp_peers(packages: tuple[str, ...] = DECODER + TEST_CAMERA) -> list[str]:
    """Install the missing ``packages`` with apt-get when we are root; returns the test
    camera's command (Debian's python3 and :data:`SERVER`). Not root and missing:
    :class:`StackError` with the one command to run."""
    missing = missing_packages(packages)
    if missing:
        install_peers(missing, "the RTSP collector and its tests need", "rtsp-install.log")
        still = missing_packages(packages)
        if still:
            raise StackError(f"{', '.join(still)} still missing after apt-get install")
    return [str(SYSTEM_PYTHON), str(SERVER)]


def main() -> int:
    """``python -m ioc.deploy.local.rtsp_peers``: install if needed, say what is there."""
    try:
        command = ensure_rtsp_peers()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"rtsp peers: {shutil.which('ffmpeg')}, test camera {' '.join(command)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
