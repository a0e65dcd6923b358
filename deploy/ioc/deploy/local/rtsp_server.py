"""A camera for the RTSP collector's tests: GStreamer's RTSP server (Debian's
``gir1.2-gst-rtsp-server-1.0``) serving a test pattern as H.264 that the test can freeze,
blacken and make live again.

It runs under Debian's ``/usr/bin/python3`` (``python3-gi``; the project's venv cannot
import ``gi``) and imports nothing from ``ioc``. Started with the port (0: any free one),
the mount path, the size and frame rate, and optionally ``RTSP_TEST_USER`` /
``RTSP_TEST_PASSWORD`` in its environment (then the stream needs Basic authentication), it
prints ``ready PORT`` once it listens, then reads commands on stdin, one a line:

- ``live``: SMPTE 100 % bars scrolling sideways (every frame differs);
- ``freeze``: the same bars standing still (the encoder keeps sending frames, identical);
- ``black``: a black picture.

Every client shares one pipeline, so a command changes what every viewer sees. The test
stops the camera by ending the process.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

SOURCE = "src"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--kbps", type=int, default=256)
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc name={SOURCE} is-live=true pattern=smpte100 horizontal-speed=4 "
        f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast bitrate={args.kbps} "
        f"key-int-max={args.fps} threads=1 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    sources: list[Gst.Element] = []
    state = {"mode": "live"}

    def apply(src: Gst.Element, mode: str) -> None:
        if mode == "black":
            src.set_property("pattern", "black")
        else:
            src.set_property("pattern", "smpte100")
            src.set_property("horizontal-speed", 4 if mode == "live" else 0)

    def configured(_factory: object, media: GstRtspServer.RTSPMedia) -> None:
        src = media.get_element().get_by_name(SOURCE)
        sources[:] = [src]
        apply(src, state["mode"])

    factory.connect("media-configure", configured)
    user, password = os.environ.get("RTSP_TEST_USER"), os.environ.get("RTSP_TEST_PASSWORD")
    if user and password:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "camera")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("camera", "media.factory.access", True)
        permissions.add_permission_for_role("camera", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print("error: cannot listen", file=sys.stderr, flush=True)
        return 1
    print(f"ready {server.get_bound_port()}", flush=True)
    loop = GLib.MainLoop()

    def command(mode: str) -> bool:
        state["mode"] = mode
        for src in sources:
            apply(src, mode)
        print(f"ok {mode}", flush=True)
        return False

    def read_commands() -> None:
        for line in sys.stdin:
            mode = line.strip()
            if mode in ("live", "freeze", "black"):
                GLib.idle_add(command, mode)
        GLib.idle_add(loop.quit)

    threading.Thread(target=read_commands, daemon=True).start()
    loop.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
