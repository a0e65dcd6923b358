"""Cameras over RTSP: stream health from decoded frames into ``camera.stream``, and the
camera's RTSP service answering into ``camera.heartbeat`` (docs/collectors.md, "RTSP").

A **sample** opens a camera's stream for the camera feed's ``Collection.sample_s`` seconds
with ``ffmpeg`` in a subprocess. Why a subprocess decoder and why ffmpeg: decoding H.264/H.265
needs a real codec library, and a child process keeps its memory and CPU out of the
collector (one bounded pipe per sample, killed at a deadline, nothing to leak into the event
loop); ffmpeg is one Debian package with every camera codec, RTSP over TCP with Basic and
Digest authentication, and can write, in one run, the decoded frames shrunk to 64x48 grey
(``rawvideo`` on stdout, 3 KiB a frame) and one line per compressed packet (``framecrc`` on
a second pipe: timestamp and size). From those, pure code here (tested without video) gives:

- ``fps`` and ``dropped_frames`` from the packets' timestamps (a gap of k frame intervals is
  k-1 frames lost), ``bitrate_kbps`` from their sizes: what the camera sent, not metadata;
- ``frozen``: no pair of consecutive decoded frames differs, neither on the whole (mean
  absolute luma difference under :data:`FROZEN_MAFD`, ffmpeg ``freezedetect``'s -60 dB) nor
  anywhere (no pixel changed by :data:`MOVED_PIXEL` or more): shrinking averages the sensor's
  noise away, so a still but live scene is told from a frozen one by its small local changes
  (the camera's on-screen clock, a distant car);
- ``black``: at least :data:`BLACK_FRAMES` of the frames are black (98 % of the pixels at
  most 10 % above video black, ``blackdetect``'s defaults). A black picture is reported as
  black, not frozen, as the simulator does.

Only the previous frame and running sums are kept, so a sample's memory is a few KiB
whatever its length. A **heartbeat** is an RTSP ``OPTIONS`` request (no decoding, no media
session: cheap for the camera and for us); any RTSP answer, a 401 included, means the
camera's RTSP service is up.

Credentials are secrets: :class:`Profile` keeps the password as ``SecretStr`` and
:class:`Camera` holds the stream URL without them; they are put into the URL only for
ffmpeg's command line and removed from whatever ffmpeg says before it is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import ssl
import statistics
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ioc.contract import schemas as s
from ioc.errors import IocError
from ioc.services.collect import profiles

log = logging.getLogger(__name__)

RTSP: Final = "rtsp"
STREAM: Final = "camera.stream"
HEARTBEAT: Final = "camera.heartbeat"
DEFAULT_PORTS: Final = {"rtsp": 554, "rtsps": 322}

WIDTH: Final = 64
HEIGHT: Final = 48
FRAME_BYTES: Final = WIDTH * HEIGHT
"""Frames are shrunk to 64x48 grey before they leave ffmpeg: enough to see a picture move or
go black, 3 KiB each through the pipe."""
FROZEN_MAFD: Final = 0.255
"""Mean absolute luma difference (0..255) under which two frames are the same picture:
ffmpeg ``freezedetect``'s default noise, -60 dB of the range."""
MOVED_PIXEL: Final = 8
"""A pixel of the 64x48 frame that changed by this much (of 255) is a change in the picture,
whatever the mean: coding noise left after shrinking stays within a few levels."""
BLACK_LUMA: Final = 16 + round(0.10 * 219)
"""A pixel at most 10 % above video black (limited range, 16..235) is black."""
BLACK_PIXELS: Final = 0.98
BLACK_FRAMES: Final = 0.9
OPENING_S: Final = 1.5
"""What a sample takes beyond its video, measured (bench/collect_rtsp.py): the RTSP exchange
and the wait for the first key frame. Only for the capacity warning at start."""
MIN_FRAMES: Final = 3
"""Fewer decoded frames than this in a sample judge nothing: ``no_frames``."""

REASONS: Final = (
    "unreachable",
    "refused",
    "timeout",
    "auth",
    "not_found",
    "no_frames",
    "stream_error",
)
"""Why a heartbeat gave no ``camera.heartbeat`` (``unreachable``: no RTSP answer to
``OPTIONS``) or a sample no ``camera.stream`` (the others), counted in
``ioc_collector_errors_total{protocol="rtsp",reason}``."""


class RtspConfigError(IocError):
    """A credentials file or an address the RTSP collector cannot use."""


# --- credentials and targets ---------------------------------------------------------------
class Profile(BaseModel):
    """The RTSP user of a set of cameras; the password never appears in a log or a repr."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    user: str = Field(min_length=1)
    password: SecretStr


def load_profiles(path: Path) -> dict[str, Profile]:
    """The ``[profiles.NAME]`` tables of a TOML credentials file (a file others may read is
    used, with a warning: it holds secrets)."""
    return profiles.load_profiles(path, Profile, "RTSP credentials", RtspConfigError)


@dataclass(frozen=True)
class Camera:
    """One camera to sample: its id, its stream URL without credentials, the profile whose
    user it opens the stream as (None: anonymous)."""

    device_id: str
    url: str
    profile: Profile | None = None

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urllib.parse.urlsplit(self.url)
        return parts.port or DEFAULT_PORTS.get(parts.scheme, DEFAULT_PORTS["rtsp"])

    @property
    def tls(self) -> bool:
        return urllib.parse.urlsplit(self.url).scheme == "rtsps"

    def secret_url(self) -> str:
        """The URL with the profile's user and password, for ffmpeg only: never log it."""
        if self.profile is None:
            return self.url
        parts = urllib.parse.urlsplit(self.url)
        user = urllib.parse.quote(self.profile.user, safe="")
        password = urllib.parse.quote(self.profile.password.get_secret_value(), safe="")
        return parts._replace(netloc=f"{user}:{password}@{parts.netloc}").geturl()


def stream_url(address: str) -> str | None:
    """The stream URL of an inventory address (``rtsp://host[:port]/path``), any user info
    removed (credentials belong in the credentials file); None if it is not an RTSP URL."""
    parts = urllib.parse.urlsplit(address.strip())
    if parts.scheme.lower() not in ("rtsp", "rtsps") or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return parts._replace(scheme=parts.scheme.lower(), netloc=netloc).geturl()


def select(
    cameras: Iterable[tuple[str, Mapping[str, object]]], credentials: Mapping[str, Profile]
) -> tuple[list[Camera], list[str], list[str]]:
    """(device id, attributes) of cameras -> the ones to sample, the ids without an RTSP
    address, and the ids whose ``rtsp_profile`` the credentials lack. A camera uses the
    profile its ``rtsp_profile`` attribute names, else ``default`` when the file has one,
    else none (anonymous)."""
    chosen: list[Camera] = []
    no_url: list[str] = []
    no_profile: list[str] = []
    for device_id, attributes in cameras:
        url = stream_url(str(attributes.get("address") or ""))
        if url is None:
            no_url.append(device_id)
            continue
        named = attributes.get("rtsp_profile")
        if named is not None and str(named) not in credentials:
            no_profile.append(device_id)
            continue
        profile = credentials.get(str(named) if named is not None else "default")
        chosen.append(Camera(device_id, url, profile))
    return chosen, no_url, no_profile


# --- the analysis of one sample ------------------------------------------------------------
_BLACK_TABLE: Final = bytes(1 if v <= BLACK_LUMA else 0 for v in range(256))


def mafd(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two grey frames of one size (0..255)."""
    return difference(a, b)[0]


def difference(a: bytes, b: bytes) -> tuple[float, int]:
    """Mean and largest absolute difference of two grey frames of one size (0..255)."""
    diffs = list(map(abs, map(int.__sub__, a, b)))
    return sum(diffs) / max(1, len(diffs)), max(diffs, default=0)


def is_black(frame: bytes) -> bool:
    """At least :data:`BLACK_PIXELS` of the pixels are video black."""
    return frame.translate(_BLACK_TABLE).count(1) >= BLACK_PIXELS * len(frame)


@dataclass
class FrameStats:
    """Running statistics of one sample's decoded frames: the last frame and counts only."""

    frames: int = 0
    black_frames: int = 0
    moving_pairs: int = 0
    max_mafd: float = 0.0
    _last: bytes | None = field(default=None, repr=False)

    def add(self, frame: bytes) -> None:
        self.frames += 1
        if is_black(frame):
            self.black_frames += 1
        if self._last is not None:
            mean, largest = difference(self._last, frame)
            self.max_mafd = max(self.max_mafd, mean)
            if mean >= FROZEN_MAFD or largest >= MOVED_PIXEL:
                self.moving_pairs += 1
        self._last = frame

    @property
    def black(self) -> bool:
        return self.frames > 0 and self.black_frames >= BLACK_FRAMES * self.frames

    @property
    def frozen(self) -> bool:
        """No two consecutive frames differ: the picture did not change during the sample."""
        return self.frames >= MIN_FRAMES and self.moving_pairs == 0 and not self.black


@dataclass
class PacketStats:
    """The compressed packets of one sample (``framecrc`` lines): decode timestamps in
    seconds and sizes in bytes."""

    times: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    _time_base: dict[int, float] = field(default_factory=dict)

    def add_line(self, line: str) -> None:
        """One ``framecrc`` line: ``#tb 0: 1/90000`` or ``0, dts, pts, duration, size, crc``."""
        text = line.strip()
        if text.startswith("#tb"):
            match = re.match(r"#tb (\d+): (\d+)/(\d+)", text)
            if match:
                index, num, den = (int(g) for g in match.groups())
                self._time_base[index] = num / den if den else 0.0
            return
        if not text or text.startswith("#"):
            return
        fields = [f.strip() for f in text.split(",")]
        if len(fields) < 5:
            return
        try:
            index, dts, size = int(fields[0]), int(fields[1]), int(fields[4])
        except ValueError:
            return
        self.times.append(dts * self._time_base.get(index, 0.0))
        self.sizes.append(size)

    @property
    def span_s(self) -> float:
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0

    def fps(self) -> float:
        """Distinct timestamps over the time they cover: a stream's first packets may share
        one timestamp (ffmpeg stamps them before the RTP clock is known)."""
        span = self.span_s
        return (len(set(self.times)) - 1) / span if span > 0 else 0.0

    def bitrate_kbps(self) -> float:
        """Bits of the packets before the last timestamp over the time they cover."""
        span = self.span_s
        if span <= 0:
            return 0.0
        last = self.times[-1]
        bits = 8 * sum(n for t, n in zip(self.times, self.sizes, strict=True) if t < last)
        return bits / span / 1000

    def dropped(self) -> int:
        """Frames missing from the timeline: a gap of k typical intervals lost k-1."""
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False) if b > a]
        if len(gaps) < 2:
            return 0
        typical = statistics.median(gaps)
        return sum(round(g / typical) - 1 for g in gaps if g > 1.5 * typical)


@dataclass(frozen=True)
class Sample:
    """What one sample of a camera's stream gave: its measures, or why there are none."""

    ok: bool
    reason: str = ""
    detail: str = ""
    fps: float = 0.0
    bitrate_kbps: float = 0.0
    dropped_frames: int = 0
    frozen: bool = False
    black: bool = False
    frames: int = 0


def judge(frames: FrameStats, packets: PacketStats) -> Sample:
    """A sample from its frame and packet statistics (``no_frames`` when too few decoded)."""
    if frames.frames < MIN_FRAMES or len(packets.times) < 2:
        return Sample(
            False,
            "no_frames",
            f"{frames.frames} frames decoded, {len(packets.times)} packets",
            frames=frames.frames,
        )
    return Sample(
        True,
        fps=round(min(packets.fps(), 240.0), 2),
        bitrate_kbps=round(min(packets.bitrate_kbps(), 200_000.0), 1),
        dropped_frames=min(packets.dropped(), 2**31 - 1),
        frozen=frames.frozen,
        black=frames.black,
        frames=frames.frames,
    )


_REASONS_OF_TEXT: Final = (
    ("401 unauthorized", "auth"),
    ("403 forbidden", "auth"),
    ("404 not found", "not_found"),
    ("connection refused", "refused"),
    ("no route to host", "refused"),
    ("network is unreachable", "refused"),
    ("timed out", "timeout"),
)
"""Texts of ffmpeg's errors, whole words: a bare ``401`` could be a port, and every
connection error names the socket's ``?timeout=`` option."""


def failure_reason(stderr: str) -> str:
    """The reason (:data:`REASONS`) of a sample that failed, from what ffmpeg said."""
    lowered = stderr.lower()
    for text, reason in _REASONS_OF_TEXT:
        if text in lowered:
            return reason
    return "stream_error"


def redact(text: str, camera: Camera) -> str:
    """``text`` with the camera's credentials removed (ffmpeg may echo the URL)."""
    if camera.profile is None:
        return text
    secret = camera.secret_url()
    out = text.replace(secret, camera.url)
    password = camera.profile.password.get_secret_value()
    for form in {password, urllib.parse.quote(password, safe="")}:
        if form:
            out = out.replace(form, "***")
    return out


def stream_message(device_id: str, seq: int, ts_ms: int, sample: Sample) -> s.CameraStream:
    """The contract's ``camera.stream`` for a sample that decoded."""
    return s.CameraStream(
        v=s.SCHEMA_VERSION,
        device_id=device_id,
        seq=seq,
        ts_ms=ts_ms,
        fps=sample.fps,
        bitrate_kbps=sample.bitrate_kbps,
        dropped_frames=sample.dropped_frames,
        frozen=sample.frozen,
        black=sample.black,
    )


def heartbeat_status(last: Sample | None) -> s.Status:
    """The heartbeat's status from the camera's last sample: ``ok`` (or none yet),
    ``degraded`` (frozen or black picture), ``fault`` (its stream gave no picture)."""
    if last is None:
        return "ok"
    if not last.ok:
        return "fault"
    return "degraded" if last.frozen or last.black else "ok"


# --- the sampler (ffmpeg) and the heartbeat (RTSP OPTIONS) ---------------------------------
def round_estimate_s(cameras: int, decoders: int, sample_s: float) -> float:
    """About how long a stream round of ``cameras`` takes with ``decoders`` at a time."""
    return -(-cameras // max(1, decoders)) * (sample_s + OPENING_S)


def ffmpeg_path() -> str:
    """Where ``ffmpeg`` is, or :class:`RtspConfigError` with the command that installs it."""
    path = shutil.which("ffmpeg")
    if path is None:
        raise RtspConfigError(
            "the RTSP collector decodes with ffmpeg: run `sudo apt-get install -y ffmpeg` "
            "(make install does it: python -m ioc.deploy.local.rtsp_peers)"
        )
    return path


def ffmpeg_command(
    ffmpeg: str, url: str, sample_s: float, timeout_s: float, packets_fd: int
) -> list[str]:
    """Decode ``sample_s`` seconds of the first video stream: 64x48 grey frames on stdout,
    one ``framecrc`` line per compressed packet on ``packets_fd`` (inherited as is).
    ``-fps_mode passthrough`` keeps ffmpeg from duplicating frames (a duplicate would look
    frozen); ``-threads 1`` bounds each decoder to one core."""
    seconds = f"{sample_s:.3f}"
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-rtsp_transport",
        "tcp",
        "-timeout",
        str(int(timeout_s * 1_000_000)),
        "-threads",
        "1",
        "-i",
        url,
        "-map",
        "0:v:0",
        "-t",
        seconds,
        "-vf",
        f"scale={WIDTH}:{HEIGHT}:flags=area,format=gray",
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "pipe:1",
        "-map",
        "0:v:0",
        "-t",
        seconds,
        "-c",
        "copy",
        "-f",
        "framecrc",
        f"pipe:{packets_fd}",
    ]


class StreamSampler(Protocol):
    """What the collector's rounds need of a sampler (tests script one)."""

    async def sample(self, camera: Camera) -> Sample: ...


class Sampler:
    """Samples cameras' streams with ffmpeg, at most ``decoders`` at a time (the cameras'
    sessions and our CPU are the limits; the rest wait their turn). A sample that has not
    ended ``slack_s`` after its timeout and window is killed."""

    def __init__(
        self,
        sample_s: float,
        timeout_s: float,
        decoders: int = 4,
        *,
        ffmpeg: str | None = None,
        slack_s: float = 2.0,
    ) -> None:
        self.sample_s = sample_s
        self.timeout_s = timeout_s
        self.ffmpeg = ffmpeg or ffmpeg_path()
        self.slack_s = slack_s
        self._slots = asyncio.Semaphore(max(1, decoders))

    async def sample(self, camera: Camera) -> Sample:
        async with self._slots:
            return await self._run(camera)

    async def _run(self, camera: Camera) -> Sample:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *ffmpeg_command(
                    self.ffmpeg, camera.secret_url(), self.sample_s, self.timeout_s, write_fd
                ),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_fd,),
            )
        except OSError as exc:
            os.close(read_fd)
            return Sample(False, "stream_error", f"cannot start ffmpeg: {exc}")
        finally:
            os.close(write_fd)
        packets_reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(packets_reader), os.fdopen(read_fd, "rb")
        )
        frames, packets = FrameStats(), PacketStats()
        errors = bytearray()

        async def read_frames() -> None:
            assert proc.stdout is not None
            with contextlib.suppress(asyncio.IncompleteReadError):
                while True:
                    frames.add(await proc.stdout.readexactly(FRAME_BYTES))

        async def read_packets() -> None:
            async for line in packets_reader:
                packets.add_line(line.decode(errors="replace"))

        async def read_errors() -> None:
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(4096):
                if len(errors) < 8192:
                    errors.extend(chunk[: 8192 - len(errors)])

        deadline = self.timeout_s + self.sample_s + self.slack_s
        timed_out = False
        try:
            await asyncio.wait_for(
                asyncio.gather(read_frames(), read_packets(), read_errors(), proc.wait()),
                deadline,
            )
        except TimeoutError:
            timed_out = True
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            transport.close()
        sample = judge(frames, packets)
        if sample.ok:
            return sample
        said = redact(errors.decode(errors="replace").strip(), camera)
        if timed_out:
            return Sample(False, "timeout", f"no result within {deadline:.0f} s; {said}"[:300])
        if proc.returncode != 0:
            return Sample(False, failure_reason(said), said[-300:] or f"exit {proc.returncode}")
        return sample


def _heartbeat_tls() -> ssl.SSLContext:
    """TLS for an ``rtsps://`` camera's heartbeat, without certificate checks: cameras carry
    self-signed certificates, and ``OPTIONS`` sends no credentials, so there is nothing to
    protect; it only asks whether the camera answers."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def rtsp_options(camera: Camera, timeout_s: float) -> int | None:
    """Send one RTSP ``OPTIONS`` to the camera; its status code, or None when it does not
    answer in RTSP within ``timeout_s`` (refused, unreachable, silent, not RTSP)."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                camera.host, camera.port, ssl=_heartbeat_tls() if camera.tls else None
            )
            writer.write(
                f"OPTIONS {camera.url} RTSP/1.0\r\nCSeq: 1\r\n"
                "User-Agent: ioc-collector\r\n\r\n".encode()
            )
            await writer.drain()
            line = await reader.readline()
    except (OSError, TimeoutError, UnicodeError):  # ssl.SSLError is an OSError
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
    match = re.match(rb"RTSP/\d\.\d (\d{3})", line)
    return int(match.group(1)) if match else None
