"""How many cameras one collector samples per interval over RTSP (issue 19, item 5).

A camera costs the collector one ffmpeg sample per stream interval: the camera feed's
declared 2 s of video every 10 s, plus the time to open the stream (RTSP, the first key
frame). Two limits follow: **wall time** (``--decoders`` samples at once, each about
``sample + opening`` seconds: ``decoders x interval / wall`` cameras per interval) and
**CPU** (every sample's decoding: ``cores x interval / cpu`` cameras per interval). This runs
the collector's own stream rounds (``RtspCollector.stream_round`` with the real ``Sampler``,
schedule from the feed) over ``--cameras`` cameras served by test cameras (GStreamer's RTSP server,
:mod:`ioc.deploy.local.rtsp_server`, one shared encoder each; at most ``--per-server``
cameras on one, since one server's shared media refuses some of many sessions that come and
go at once, as a real camera limits its sessions), and
measures per sample the wall time and the CPU of ffmpeg (reaped children) and of the
collector itself; then it prints both limits and the smaller one.

    .venv/bin/python bench/collect_rtsp.py [--cameras 8] [--decoders 4] \
        [--width 1920 --height 1080 --fps 25] [--out bench/results/collect_rtsp.json]

The default picture is tiny (160x120, 10 fps) so that it can run beside other work; decoding
cost grows with the picture, so the figure for real cameras needs ``--width 1920 --height
1080 --fps 25`` on an idle machine (the test cameras' encoders then take CPU too: they are
in the server processes, not counted). No Kafka: the messages go to a counting sink.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench_machine import machine

from ioc.contract import feeds
from ioc.contract.feeds import Feed
from ioc.deploy.local.rtsp_peers import ensure_rtsp_peers
from ioc.services.collect import rtsp
from ioc.services.collect.collector import RtspCollector, Sequences
from ioc.sinks import Record, Sink


class CountingSink(Sink):
    def send(self, record: Record) -> None:
        self.sent += 1


class TimedSampler:
    """The real sampler behind a bound of ``decoders`` samples at once, as the collector's,
    timing each sample from its turn to its end."""

    def __init__(self, inner: rtsp.Sampler, decoders: int) -> None:
        self.inner = inner
        self.walls: list[float] = []
        self.outcomes: dict[str, int] = {}
        self.delivered: list[rtsp.Sample] = []
        self._slots = asyncio.Semaphore(decoders)

    async def sample(self, camera: rtsp.Camera) -> rtsp.Sample:
        async with self._slots:
            started = time.monotonic()
            result = await self.inner.sample(camera)
            self.walls.append(time.monotonic() - started)
        key = "ok" if result.ok else result.reason
        if result.ok:
            self.delivered.append(result)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        return result


def median_of(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace, urls: list[str]) -> dict[str, Any]:
    collection = feeds.spec(Feed.CAMERA).collection
    assert collection is not None
    unbounded = rtsp.Sampler(collection.sample_s, collection.timeout_s, args.cameras)
    sampler = TimedSampler(unbounded, args.decoders)
    cameras = [rtsp.Camera(f"cam-{i:04d}", urls[i % len(urls)]) for i in range(args.cameras)]

    async def answered(camera: rtsp.Camera, timeout_s: float) -> int | None:
        return 200

    rounds = RtspCollector(
        cameras, CountingSink(), sampler, collection, Sequences(1), options=answered
    )
    interval = collection.interval(rtsp.STREAM)
    round_s: list[float] = []
    children0, self0 = cpu_s(resource.RUSAGE_CHILDREN), cpu_s(resource.RUSAGE_SELF)
    for _ in range(args.rounds):
        started = time.monotonic()
        await rounds.stream_round()
        round_s.append(time.monotonic() - started)
    samples = len(sampler.walls)
    ffmpeg_cpu = (cpu_s(resource.RUSAGE_CHILDREN) - children0) / samples
    own_cpu = (cpu_s(resource.RUSAGE_SELF) - self0) / samples
    wall = statistics.mean(sampler.walls)
    cores = os.cpu_count() or 1
    by_wall = args.decoders * interval / wall
    by_cpu = cores * interval / (ffmpeg_cpu + own_cpu)
    return {
        "machine": machine(),
        "picture": f"{args.width}x{args.height}@{args.fps}",
        "schedule": {
            "interval_s": interval,
            "sample_s": collection.sample_s,
            "timeout_s": collection.timeout_s,
        },
        "cameras": args.cameras,
        "servers": len(urls),
        "decoders": args.decoders,
        "rounds": args.rounds,
        "round_s": [round(x, 2) for x in round_s],
        "rounds_within_interval": sum(1 for x in round_s if x <= interval),
        "outcomes": sampler.outcomes,
        # What the samples decoded: proof that the test cameras delivered the picture asked
        # for (an encoder starved of CPU would send fewer frames, and decoding would look cheap).
        "sample_fps_median": median_of([s.fps for s in sampler.delivered]),
        "sample_frames_median": median_of([float(s.frames) for s in sampler.delivered]),
        "sample_kbps_median": median_of([s.bitrate_kbps for s in sampler.delivered]),
        "sample_wall_s": round(wall, 2),
        "sample_wall_p95_s": round(sorted(sampler.walls)[int(0.95 * (samples - 1))], 2),
        "ffmpeg_cpu_s_per_sample": round(ffmpeg_cpu, 3),
        "collector_cpu_s_per_sample": round(own_cpu, 3),
        "collector_max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "cameras_per_interval_by_wall": int(by_wall),
        "cameras_per_interval_by_cpu": int(by_cpu),
        "cameras_per_interval": int(min(by_wall, by_cpu)),
        "sample_walls_s": [round(x, 2) for x in sampler.walls],
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """Each sample's wall time against the interval, and the two limits side by side."""
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib not installed: no plot; pip install -e '.[bench]')")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    interval = result["schedule"]["interval_s"]
    fig, (walls, limits) = plt.subplots(1, 2, figsize=(11, 4.5))
    walls.hist(result["sample_walls_s"], bins=20, color="tab:blue")
    walls.axvline(interval, color="red", linewidth=0.8, label=f"stream interval {interval:.0f} s")
    walls.set_xlabel("seconds from a decoder slot to the sample's end")
    walls.set_ylabel("samples")
    walls.set_title(f"{result['picture']}: {len(result['sample_walls_s'])} samples")
    walls.legend()
    names = [f"wall ({result['decoders']} decoders)", f"CPU ({result['machine']['cores']} cores)"]
    values = [result["cameras_per_interval_by_wall"], result["cameras_per_interval_by_cpu"]]
    limits.barh(names, values, color=["tab:orange", "tab:green"])
    for y, value in enumerate(values):
        limits.text(value, y, f" {value}", va="center")
    limits.set_xlabel(f"cameras sampled per {interval:.0f} s interval")
    limits.set_title("one collector's limits (the smaller holds)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--decoders", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-server", type=int, default=4, help="cameras per test camera")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/collect_rtsp.json"))
    args = parser.parse_args()
    command = ensure_rtsp_peers()
    kbps = max(256, args.width * args.height * args.fps // 10_000)
    picture = ["--width", str(args.width), "--height", str(args.height), "--fps", str(args.fps)]
    servers = [
        subprocess.Popen(
            [*command, *picture, "--kbps", str(kbps)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(-(-args.cameras // max(1, args.per_server)))
    ]
    try:
        urls = []
        for server in servers:
            assert server.stdout is not None
            urls.append(f"rtsp://127.0.0.1:{server.stdout.readline().split()[1]}/cam")
        result = asyncio.run(run(args, urls))
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(10)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("machine", "sample_walls_s")}, indent=2
        )
    )
    plot(result, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
