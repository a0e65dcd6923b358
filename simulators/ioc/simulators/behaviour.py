"""How each class of device behaves: what it reports, how often, and how values move.

Values follow the province's day (Vietnam time, UTC+7): traffic peaks at 7-8h and 17-18h,
telehealth sessions follow clinic hours on weekdays, network load follows office hours.
Weather-like bad spells (:class:`Weather`) raise loss and latency in a district for tens of
minutes. Every random draw comes from the device's own ``random.Random`` seeded from
``(seed, device id)``, so a device's stream does not depend on which process simulates it.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ioc.adapters.telehealth import StationAdapter
from ioc.contract import feeds
from ioc.contract import schemas as s
from ioc.contract.feeds import Feed
from ioc.contract.topology import Device, Topology
from ioc.errors import IocError

if TYPE_CHECKING:
    from ioc.simulators.faults import FaultPlan

VN_OFFSET_S = 7 * 3600


def local_hour(ts_ms: int) -> float:
    return ((ts_ms // 1000 + VN_OFFSET_S) % 86_400) / 3600.0


def is_weekday(ts_ms: int) -> bool:
    days = (ts_ms // 1000 + VN_OFFSET_S) // 86_400
    return (days + 3) % 7 < 5  # 1970-01-01 was a Thursday


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-((hour - centre) ** 2) / (2 * width * width))


def traffic_curve(hour: float) -> float:
    """Relative traffic volume, 0.05 at night to 1.0 at the evening peak."""
    day = 0.45 * (1 / (1 + math.exp(-(hour - 6.0) * 2)) - 1 / (1 + math.exp(-(hour - 21.5) * 2)))
    return 0.05 + day + 0.45 * _bump(hour, 7.5, 0.8) + 0.5 * _bump(hour, 17.5, 1.0)


def clinic_curve(hour: float, weekday: bool) -> float:
    """Relative demand for remote consultations: clinic hours on weekdays."""
    if not weekday:
        return 0.1 * _bump(hour, 9.5, 1.5)
    return 0.02 + _bump(hour, 9.0, 1.4) + 0.8 * _bump(hour, 15.0, 1.3)


def office_curve(hour: float) -> float:
    return 0.08 + 0.7 * _bump(hour, 10.0, 2.0) + 0.6 * _bump(hour, 15.0, 2.0)


class Weather:
    """Bad spells per region: a pure function of (seed, region, hour), no shared state."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._cache: dict[tuple[str, int], tuple[float, float, float]] = {}
        self._second: dict[str, tuple[int, float]] = {}

    def _spell(self, region: str, hour_index: int) -> tuple[float, float, float]:
        key = (region, hour_index)
        spell = self._cache.get(key)
        if spell is None:
            rng = random.Random(f"{self.seed}/weather/{region}/{hour_index}")
            if rng.random() < 0.12:
                start = rng.uniform(0, 3600)
                spell = (start, start + rng.uniform(600, 2400), rng.uniform(0.3, 1.0))
            else:
                spell = (0.0, 0.0, 0.0)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = spell
        return spell

    def intensity(self, region: str, ts_ms: int) -> float:
        """0 (clear) .. 1 (storm) for the region at that time (resolution: one second)."""
        second = ts_ms // 1000
        cached = self._second.get(region)
        if cached is not None and cached[0] == second:
            return cached[1]
        value = self._intensity(region, second)
        self._second[region] = (second, value)
        return value

    def _intensity(self, region: str, second: int) -> float:
        t = float(second)
        hour_index = int(t // 3600)
        best = 0.0
        for h in (hour_index - 1, hour_index):  # a spell may spill over from the last hour
            start, end, level = self._spell(region, h)
            offset = t - h * 3600
            if start <= offset < end:
                best = max(best, level)
        return best


@dataclass
class Conditions:
    """What the network and faults do to a device at one instant."""

    weather: float = 0.0
    extra_loss_pct: float = 0.0
    extra_latency_ms: float = 0.0
    frozen: bool = False
    session_drops: bool = False
    active: frozenset[str] = frozenset()
    """Feed-specific faults on the device now, by type (``faults.CONDITION_FAULTS``)."""


class DeviceSim:
    """Base: a device with its own RNG, sequence counter and report schedule.

    A feed's simulator behaviour is a subclass (named by ``FeedSpec.behaviour``): its
    ``periods`` (kind -> report period in milliseconds of real time; load mode divides them
    by its speed-up) and :meth:`emit`, which returns the messages of one due report.
    """

    device_class = ""
    periods: ClassVar[Mapping[str, int]] = {}

    def __init__(self, device: Device, region: str, seed: int, start_ms: int) -> None:
        self.device = device
        self.id = device.id
        self.region = region
        self.rng = random.Random(f"{seed}/{device.id}")
        self.fault_rng = random.Random(f"{seed}/{device.id}/faults")
        self.seq = 0
        self.boot_ms = start_ms - self.rng.randint(3600, 30 * 86400) * 1000

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def delivery_delay_ms(self, message: s.Message) -> int:
        """How long after its event time the source delivers ``message`` (0: at once). A
        feed carried by a batching platform (the portal via LGSP) delays its records."""
        return 0

    def attach(self, plan: FaultPlan, topology: Topology) -> None:
        """Called once the run's (resolved) fault plan is known: a behaviour whose devices
        depend on one another (the video-conference feed's meetings) reads it here."""

    def emit(self, kind: str, ts_ms: int, period_ms: int, cond: Conditions) -> list[s.Message]:
        raise NotImplementedError


def collection_periods(feed: str) -> dict[str, int]:
    """A feed's report periods in ms, from its declaration's ``collection``: the simulated
    devices report as often as ``ioc collect`` polls the real ones."""
    collection = feeds.spec(feed).collection
    if collection is None:
        raise IocError(f"feed {feed} declares no collection")
    return {kind: round(seconds * 1000) for kind, seconds in collection.interval_s.items()}


class CameraSim(DeviceSim):
    device_class = Feed.CAMERA
    periods: ClassVar[Mapping[str, int]] = {
        **collection_periods(Feed.CAMERA),  # heartbeat and stream, as the RTSP collector's
        "camera.traffic": 60_000,
    }

    def __init__(self, device: Device, region: str, seed: int, start_ms: int) -> None:
        super().__init__(device, region, seed, start_ms)
        lanes = int(device.attributes.get("lanes", 2))
        kind = device.attributes.get("site_kind", "junction")
        per_lane = {"junction": 9.0, "town_centre": 6.0, "highway": 14.0}.get(kind, 8.0)
        self.capacity_per_min = lanes * per_lane * 2.2
        self.free_speed = {"junction": 38.0, "town_centre": 28.0, "highway": 85.0}.get(kind, 40)
        self.nominal_fps = self.rng.choice((25.0, 25.0, 30.0, 15.0))
        self.nominal_kbps = self.rng.choice((2048.0, 4096.0, 4096.0, 6144.0))
        self.open_incidents: dict[str, tuple[s.IncidentType, int]] = {}  # id -> (type, clear_at_ms)
        self.incident_counter = 0

    def emit(self, kind: str, ts_ms: int, period_ms: int, cond: Conditions) -> list[s.Message]:
        rng, dev = self.rng, self.id
        if kind == "camera.heartbeat":
            status: s.Status = "ok" if cond.weather < 0.8 or rng.random() < 0.9 else "degraded"
            return [
                s.CameraHeartbeat(
                    v=1,
                    device_id=dev,
                    seq=self.next_seq(),
                    ts_ms=ts_ms,
                    status=status,
                    uptime_s=max(0, (ts_ms - self.boot_ms) // 1000),
                )
            ]
        if kind == "camera.stream":
            loss = cond.extra_loss_pct + cond.weather * 3.0
            fps = self.nominal_fps * max(0.0, 1.0 - loss / 25.0) * rng.uniform(0.96, 1.0)
            dropped = int(
                self.nominal_fps * period_ms / 1000 * min(1.0, loss / 100.0 * 3) + rng.random() * 2
            )
            frozen = cond.frozen
            kbps = self.nominal_kbps * rng.uniform(0.85, 1.1) * (0.05 if frozen else 1.0)
            black = (not frozen) and local_hour(ts_ms) < 4.5 and rng.random() < 0.01
            return [
                s.CameraStream(
                    v=1,
                    device_id=dev,
                    seq=self.next_seq(),
                    ts_ms=ts_ms,
                    fps=round(fps, 2),
                    bitrate_kbps=round(kbps, 1),
                    dropped_frames=dropped,
                    frozen=frozen,
                    black=black,
                )
            ]
        # camera.traffic (+ incidents it explains)
        interval_s = max(1, period_ms // 1000)
        hour = local_hour(ts_ms)
        demand = traffic_curve(hour) * (1.0 - 0.35 * cond.weather)
        volume = self.capacity_per_min * interval_s / 60.0 * demand * rng.lognormvariate(0, 0.15)
        vehicles = max(0, int(volume))
        occupancy = min(
            100.0, 100.0 * demand * rng.uniform(0.6, 0.85) + 25.0 * max(0.0, demand - 0.8)
        )
        speed = (
            self.free_speed
            * max(0.1, 1.0 - (occupancy / 100.0) ** 2)
            * (1.0 - 0.25 * cond.weather)
            * rng.uniform(0.9, 1.08)
        )
        out: list[s.Message] = [
            s.CameraTraffic(
                v=1,
                device_id=dev,
                seq=self.next_seq(),
                ts_ms=ts_ms,
                interval_s=interval_s,
                vehicles=vehicles,
                mean_speed_kmh=round(max(0.0, speed), 1),
                occupancy_pct=round(occupancy, 1),
            )
        ]
        # incidents: congestion follows occupancy; stopped vehicles and wrong-way are rare.
        for inc_id, (inc_type, clear_at) in list(self.open_incidents.items()):
            clear = (occupancy < 45.0) if inc_type == "congestion" else ts_ms >= clear_at
            if clear:
                del self.open_incidents[inc_id]
                out.append(
                    s.CameraIncident(
                        v=1,
                        device_id=dev,
                        seq=self.next_seq(),
                        ts_ms=ts_ms,
                        incident_id=inc_id,
                        incident=inc_type,
                        state="clear",
                    )
                )
        open_types = {t for t, _ in self.open_incidents.values()}
        new: s.IncidentType | None = None
        if occupancy > 70.0 and "congestion" not in open_types:
            new = "congestion"
        elif rng.random() < 0.004 * interval_s / 60 and "stopped_vehicle" not in open_types:
            new = "stopped_vehicle"
        elif rng.random() < 0.0005 * interval_s / 60 and "wrong_way" not in open_types:
            new = "wrong_way"
        if new:
            self.incident_counter += 1
            inc_id = f"{dev}-i{self.incident_counter}"
            self.open_incidents[inc_id] = (new, ts_ms + rng.randint(2, 12) * 60_000)
            out.append(
                s.CameraIncident(
                    v=1,
                    device_id=dev,
                    seq=self.next_seq(),
                    ts_ms=ts_ms,
                    incident_id=inc_id,
                    incident=new,
                    state="open",
                )
            )
        return out


@dataclass
class _Session:
    session_id: str
    end_ms: int
    video_height: int
    started_ms: int
    peer: str


def _iso(ts_ms: int) -> str:
    """A station's clock as its status document writes it (Vietnam time, with its offset)."""
    when = dt.datetime.fromtimestamp(ts_ms / 1000, dt.timezone(dt.timedelta(seconds=VN_OFFSET_S)))
    return when.isoformat(timespec="milliseconds")


class TelehealthSim(DeviceSim):
    """A telehealth station. It builds the status document a real station serves
    (``GET /status``, :mod:`ioc.adapters.telehealth`) and maps it with the adapter
    ``ioc collect`` uses: session events and the heartbeat from one, the media quality from
    another (the two kinds have their own schedules, the feed's ``collection``)."""

    device_class = Feed.TELEHEALTH
    periods: ClassVar[Mapping[str, int]] = collection_periods(Feed.TELEHEALTH)

    def __init__(self, device: Device, region: str, seed: int, start_ms: int) -> None:
        super().__init__(device, region, seed, start_ms)
        role = device.attributes.get("role", "district_hospital")
        self.sessions_per_hour = {
            "provincial_hospital": 3.0,
            "district_hospital": 2.0,
            "commune_pilot": 0.7,
        }.get(role, 1.0)
        self.max_sessions = 2 if role != "commune_pilot" else 1
        self.base_rtt = {
            "provincial_hospital": 18.0,
            "district_hospital": 35.0,
            "commune_pilot": 60.0,
        }.get(role, 40.0)
        self.sessions: list[_Session] = []
        self.waiting = 0
        self.counter = 0
        self.last_tick_ms = start_ms
        # The simulator sees every session from its start: no baseline poll to skip.
        self.adapter = StationAdapter(baseline=False, next_seq=lambda _: self.next_seq())

    def _tick_sessions(self, ts_ms: int, cond: Conditions) -> list[dict[str, Any]]:
        """Advance session lifecycles to ``ts_ms``; returns the sessions that ended, as the
        status document's ``ended`` entries."""
        rng = self.rng
        ended: list[dict[str, Any]] = []
        dt_ms = max(0, ts_ms - self.last_tick_ms)
        self.last_tick_ms = ts_ms
        hour, weekday = local_hour(ts_ms), is_weekday(ts_ms)
        demand = clinic_curve(hour, weekday)
        for sess in list(self.sessions):
            drop_p = 0.0002 * dt_ms / 5000
            if cond.session_drops:
                drop_p = 0.25 * dt_ms / 5000
            elif cond.extra_loss_pct + cond.weather * 4 > 8:
                drop_p = 0.03 * dt_ms / 5000
            if rng.random() < drop_p:
                self.sessions.remove(sess)
                reason = "network" if not cond.session_drops else "media_timeout"
                ended.append(
                    {"id": sess.session_id, "ended": _iso(ts_ms), "outcome": "dropped"}
                    | {"reason": reason}
                )
            elif ts_ms >= sess.end_ms:
                self.sessions.remove(sess)
                ended.append({"id": sess.session_id, "ended": _iso(ts_ms), "outcome": "completed"})
        start_p = self.sessions_per_hour * demand * dt_ms / 3_600_000
        if len(self.sessions) < self.max_sessions and rng.random() < start_p:
            self.counter += 1
            peer = "provincial-hospital" if "hosp" not in self.id else "central-hospital"
            self.sessions.append(
                _Session(
                    f"{self.id}-s{self.counter}",
                    ts_ms + rng.randint(8, 25) * 60_000,
                    rng.choice((480, 720, 720, 1080)),
                    ts_ms,
                    peer,
                )
            )
        target = int(6 * demand * self.sessions_per_hour)
        self.waiting = max(
            0, self.waiting + (1 if self.waiting < target else -1) * (rng.random() < 0.3)
        )
        return ended

    def _document(
        self, ts_ms: int, state: str, media: list[dict[str, Any]] | None, ended: list[Any]
    ) -> dict[str, Any]:
        sessions = [
            {"id": x.session_id, "peer": x.peer, "started": _iso(x.started_ms)}
            | ({"media": media[i]} if media is not None else {})
            for i, x in enumerate(self.sessions)
        ]
        return {
            "time": _iso(ts_ms),
            "state": state,
            "queue": {"waiting": self.waiting},
            "sessions": sessions,
            "ended": ended,
        }

    def emit(self, kind: str, ts_ms: int, period_ms: int, cond: Conditions) -> list[s.Message]:
        rng = self.rng
        if kind == "telehealth.heartbeat":
            ended = self._tick_sessions(ts_ms, cond)
            state = "ok" if cond.extra_loss_pct < 5 else "degraded"
            doc = self._document(ts_ms, state, None, ended)
            return self.adapter.events_and_heartbeat(self.id, doc)
        media = []
        for sess in self.sessions:
            loss = min(
                100.0,
                abs(rng.gauss(0.2, 0.3))
                + cond.extra_loss_pct
                + cond.weather * rng.uniform(1.0, 5.0),
            )
            rtt = (
                self.base_rtt * rng.uniform(0.85, 1.3) + cond.extra_latency_ms + (cond.weather * 80)
            )
            jitter = abs(rng.gauss(3.0, 1.5)) + rtt * 0.08 + loss * 2
            height = sess.video_height if loss < 3 else (480 if loss < 8 else 240)
            media.append(
                {
                    "rtt_ms": round(min(rtt, 600_000.0), 1),
                    "jitter_ms": round(min(jitter, 600_000.0), 1),
                    "loss_pct": round(loss, 2),
                    "video_height": height,
                }
            )
        return self.adapter.quality(self.id, self._document(ts_ms, "ok", media, []))


class NetnodeSim(DeviceSim):
    device_class = Feed.NETNODE
    periods: ClassVar[Mapping[str, int]] = collection_periods(Feed.NETNODE)

    def __init__(self, device: Device, region: str, seed: int, start_ms: int) -> None:
        super().__init__(device, region, seed, start_ms)
        tier = device.attributes.get("tier", "commune")
        self.base_rtt = {
            "core": 0.5,
            "provincial_office": 2.0,
            "district": 8.0,
            "district_agency": 12.0,
            "commune": 22.0,
        }.get(tier, 15.0)
        self.capacity_bps = float(device.attributes.get("capacity_mbps", 100)) * 1e6
        self.base_util = self.rng.uniform(0.08, 0.35)

    def probe(self, ts_ms: int, reachable: bool, cond: Conditions) -> s.NetnodeProbe:
        rng = self.rng
        if not reachable:
            return s.NetnodeProbe(
                v=1,
                device_id=self.id,
                seq=self.next_seq(),
                ts_ms=ts_ms,
                reachable=False,
                rtt_ms=None,
                loss_pct=100.0,
            )
        loss = min(
            100.0,
            abs(rng.gauss(0.05, 0.1)) + cond.extra_loss_pct + cond.weather * rng.uniform(0.5, 4.0),
        )
        rtt = self.base_rtt * rng.uniform(0.9, 1.4) + cond.extra_latency_ms + cond.weather * 40
        return s.NetnodeProbe(
            v=1,
            device_id=self.id,
            seq=self.next_seq(),
            ts_ms=ts_ms,
            reachable=True,
            rtt_ms=round(rtt, 2),
            loss_pct=round(loss, 2),
        )

    def emit(self, kind: str, ts_ms: int, period_ms: int, cond: Conditions) -> list[s.Message]:
        rng = self.rng
        util = min(
            0.98, self.base_util * (0.3 + office_curve(local_hour(ts_ms))) * rng.uniform(0.8, 1.2)
        )
        errors = int(rng.random() < 0.02) + int(
            cond.weather * rng.uniform(0, 20) + cond.extra_loss_pct * 3
        )
        return [
            s.NetnodeCounters(
                v=1,
                device_id=self.id,
                seq=self.next_seq(),
                ts_ms=ts_ms,
                interface="uplink0",
                interval_s=max(1, period_ms // 1000),
                in_bps=round(self.capacity_bps * util, 0),
                out_bps=round(self.capacity_bps * util * rng.uniform(0.2, 0.5), 0),
                in_errors=errors,
                out_errors=int(errors * 0.3),
                capacity_bps=self.capacity_bps,
            )
        ]

    def link(self, ts_ms: int, interface: str, state: s.LinkState) -> s.NetnodeLink:
        return s.NetnodeLink(
            v=1,
            device_id=self.id,
            seq=self.next_seq(),
            ts_ms=ts_ms,
            interface=interface,
            state=state,
        )


SIM_CLASSES: dict[str, type[DeviceSim]] = {}
"""Device class -> its behaviour, resolved from the feed declarations at first use."""


def sim_class(device_class: str) -> type[DeviceSim]:
    """The simulator behaviour of a device class (``FeedSpec.behaviour``, ``module:Class``)."""
    found = SIM_CLASSES.get(device_class)
    if found is not None:
        return found
    spec = next((f for f in feeds.specs() if f.cls == device_class), None)
    if spec is None or not spec.behaviour:
        raise IocError(f"no simulator behaviour for device class {device_class!r}")
    module_name, _, attr = spec.behaviour.partition(":")
    loaded = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(loaded, type) and issubclass(loaded, DeviceSim)):
        raise IocError(f"{spec.behaviour} is not a DeviceSim")
    SIM_CLASSES[device_class] = loaded
    return loaded


def natural_rate(topology: Topology) -> float:
    """Messages per second the scenario produces in real time (sessions excluded)."""
    total = 0.0
    for dev in topology.devices.values():
        for kind, period in sim_class(dev.device_class).periods.items():
            if kind != "telehealth.quality":
                total += 1000.0 / period
    return total


def describe(message: s.Message) -> dict[str, Any]:
    """A message as a plain dict (for corrupting copies and file output)."""
    import msgspec

    doc: dict[str, Any] = msgspec.to_builtins(message)
    return doc
