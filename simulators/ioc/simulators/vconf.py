"""The video-conference system: bridges (MCUs), bridge points and the booking calendar.

Each device builds the payload its real counterpart emits (Jitsi's ``/colibri/stats``, a
point's WebRTC ``getStats()`` report and conference events, the calendar's event JSON) and
passes it through :class:`ioc.adapters.jitsi.JitsiAdapter`, the mapping a real collector uses.

Meetings (:class:`Meeting`) come from three places, all pure functions of the seed, the
topology, the fault plan and time, so every simulator shard agrees on them without talking:
the province's weekly meeting (Monday 08:00 Vietnam time, every point expected), ad hoc
district meetings (some weekday afternoons, the district's points expected), and meetings a
plan schedules (``{type: vconf_meeting, target: <host point>, at: S, duration: D}``: the
host point's unit and everything below it are expected, starting ``S`` seconds into the run).

Whether a point is in a meeting at an instant is a pure function too (:meth:`Schedule.status`):
it joins at a time drawn for (point, meeting), mostly in the last minutes before the start
(the 08:00 burst); it cannot while its site is cut off (``node_down``), when its link loses
too much (``link_degraded`` with ``loss_pct`` >= :data:`JOIN_MAX_LOSS_PCT`), when the
meeting's bridge is down (``vconf_mcu_down``), or when the bridge's licensed ports are taken
(``vconf_licence``: ports go in order of arrival); a ``vconf_no_join`` point never tries.
Bridges count their participants with the same function, so the colibri figures and the
points' joins agree.

The province generator places the devices (:func:`place_devices`, the ``vconf:`` section of a
generator spec): one point per administrative unit at the unit's office site, behind that
site's network node, and the MCUs and the booking system at the provincial data centre.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ioc.adapters.jitsi import JitsiAdapter, format_colibri_time
from ioc.contract import schemas as s
from ioc.contract import vconf as vc
from ioc.contract.feeds import Feed
from ioc.contract.topology import Device, Topology
from ioc.simulators.behaviour import VN_OFFSET_S, Conditions, DeviceSim, collection_periods
from ioc.simulators.faults import Fault, FaultPlan

VN: Final = dt.timezone(dt.timedelta(seconds=VN_OFFSET_S))
DAY_MS: Final = 86_400_000
JOIN_MAX_LOSS_PCT: Final = 15.0
"""A point whose link loses this much cannot set up its media (ICE/DTLS times out)."""
ANNOUNCE_AHEAD_MS: Final = DAY_MS
"""The booking system announces the meetings starting within this horizon."""
POINT_PERIOD_MS: Final = 10_000
RETRY_MS: Final = 60_000
"""A point whose join failed tries again after this long."""
MAX_LEAD_MS: Final = 620_000
"""Points join up to this long before the start (most in the last two minutes)."""
WEEKLY_DURATION_S: Final = 2 * 3600
DISTRICT_DURATION_S: Final = 90 * 60


@dataclass(frozen=True)
class Meeting:
    meeting_id: str
    title: str
    scope_unit: str
    start_ms: int
    duration_s: int
    bridge: str

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_s * 1000


@dataclass(frozen=True)
class Status:
    state: str  # absent | joined | failed
    reason: str | None = None


ABSENT: Final = Status("absent")
JOINED: Final = Status("joined")


def _local_midnight_ms(ts_ms: int) -> int:
    local = ts_ms + VN_OFFSET_S * 1000
    return ts_ms - local % DAY_MS


def _day_tag(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, VN).strftime("%Y%m%d")


def _fault_window(fault: Fault, start_ms: int) -> tuple[int, int]:
    return start_ms + fault.start_ms, start_ms + min(fault.end_ms, 2**61)


class Schedule:
    """The meetings of a run and who is in them: one per (topology, plan, seed, start) and
    process, shared by every vconf device the process simulates."""

    _cache: ClassVar[dict[tuple[int, int, int, int], Schedule]] = {}

    @classmethod
    def of(cls, topology: Topology, plan: FaultPlan, seed: int, start_ms: int) -> Schedule:
        key = (id(topology), id(plan), seed, start_ms)
        found = cls._cache.get(key)
        if found is None or found.plan is not plan or found.topology is not topology:
            if len(cls._cache) > 16:
                cls._cache.clear()
            found = cls._cache[key] = Schedule(topology, plan, seed, start_ms)
        return found

    def __init__(self, topology: Topology, plan: FaultPlan, seed: int, start_ms: int) -> None:
        from ioc.simulators.engine import FaultIndex

        self.topology = topology
        self.plan = plan  # held: the cache's ids stay unique while it is cached
        self.seed = seed
        self.start_ms = start_ms
        self.faults = FaultIndex(plan, topology)
        devices = sorted(topology.devices_of(Feed.VCONF), key=lambda d: d.id)
        self.mcus = [d.id for d in devices if d.attributes.get("role") == vc.ROLE_MCU]
        self.endpoints = [d.id for d in devices if d.attributes.get("role") == vc.ROLE_ENDPOINT]
        # every province holds its own meetings on its own bridges (national: 34 of them)
        self.tops = topology.top_units()
        self.mcus_of: dict[str, list[str]] = {}
        for mcu in self.mcus:
            province = topology.ancestors(topology.unit_of_device[mcu])[-1]
            self.mcus_of.setdefault(province, []).append(mcu)
        self.districts = (
            [
                (top, district)
                for top in self.tops
                for district in sorted(topology.children.get(top, []))
            ]
            if len(topology.levels) == 3
            else []
        )
        self._points_under: dict[str, list[str]] = {}
        for ep in self.endpoints:
            for unit in topology.ancestors(topology.unit_of_device[ep]):
                self._points_under.setdefault(unit, []).append(ep)
        self.no_join: dict[str, list[tuple[int, int]]] = {}
        self.licence: dict[str, list[tuple[int, int, int]]] = {}
        self.planned: list[Meeting] = []
        for fault in plan.faults:
            if fault.target is None:
                continue
            if fault.type == "vconf_no_join":
                self.no_join.setdefault(fault.target, []).append(_fault_window(fault, start_ms))
            elif fault.type == "vconf_licence":
                begin, end = _fault_window(fault, start_ms)
                ports = int(fault.params.get("ports", 0))
                self.licence.setdefault(fault.target, []).append((begin, end, ports))
            elif fault.type == "vconf_meeting" and fault.target in topology.devices:
                unit = topology.unit_of_device[fault.target]
                duration = max(60, (min(fault.end_ms, fault.start_ms + DAY_MS) - fault.start_ms))
                self.planned.append(
                    Meeting(
                        f"plan-{fault.id}-{start_ms // 1000}",
                        str(fault.params.get("title", f"Meeting of {topology.units[unit].name}")),
                        unit,
                        start_ms + fault.start_ms,
                        duration // 1000,
                        str(fault.params.get("bridge", self.mcus[0] if self.mcus else "")),
                    )
                )
        self._days: dict[int, list[Meeting]] = {}
        self._lead: dict[tuple[str, str], int] = {}
        self._rank: dict[tuple[str, int], dict[str, int]] = {}
        self._expected_sets: dict[str, frozenset[str]] = {}

    # --- meetings --------------------------------------------------------------------------

    def _of_day(self, midnight_ms: int) -> list[Meeting]:
        found = self._days.get(midnight_ms)
        if found is not None:
            return found
        out: list[Meeting] = []
        tag = _day_tag(midnight_ms + 3600_000)
        weekday = dt.datetime.fromtimestamp((midnight_ms + 3600_000) / 1000, VN).weekday()
        for top in self.tops if weekday == 0 else []:
            bridges = self.mcus_of.get(top) or self.mcus
            out.append(
                Meeting(
                    f"weekly-{top}-{tag}",
                    f"{self.topology.units[top].name} weekly meeting",
                    top,
                    midnight_ms + 8 * 3600_000,
                    WEEKLY_DURATION_S,
                    bridges[0] if bridges else "",
                )
            )
        if weekday < 5:
            for i, (top, district) in enumerate(self.districts):
                rng = random.Random(f"{self.seed}/vconf/{district}/{tag}")
                if rng.random() < 0.3:
                    bridges = self.mcus_of.get(top) or self.mcus
                    host = bridges[i % len(bridges)] if bridges else ""
                    out.append(
                        Meeting(
                            f"district-{district}-{tag}",
                            f"{self.topology.units[district].name} meeting",
                            district,
                            midnight_ms + (14 * 60 + rng.choice((0, 30, 60))) * 60_000,
                            DISTRICT_DURATION_S,
                            host,
                        )
                    )
        if len(self._days) > 64:
            self._days.clear()
        self._days[midnight_ms] = out
        return out

    def meetings(self, t0_ms: int, t1_ms: int) -> list[Meeting]:
        """Meetings that overlap ``[t0, t1)`` (by their scheduled start and end)."""
        out = [m for m in self.planned if m.start_ms < t1_ms and m.end_ms > t0_ms]
        day = _local_midnight_ms(t0_ms) - DAY_MS
        while day < t1_ms:
            out += [m for m in self._of_day(day) if m.start_ms < t1_ms and m.end_ms > t0_ms]
            day += DAY_MS
        return sorted(out, key=lambda m: (m.start_ms, m.meeting_id))

    def expected(self, meeting: Meeting) -> list[str]:
        return self._points_under.get(meeting.scope_unit, [])

    def expects(self, meeting: Meeting, point: str) -> bool:
        found = self._expected_sets.get(meeting.scope_unit)
        if found is None:
            found = self._expected_sets[meeting.scope_unit] = frozenset(self.expected(meeting))
        return point in found

    # --- who is in ---------------------------------------------------------------------------

    def join_at(self, point: str, meeting: Meeting) -> int:
        """When ``point`` joins: mostly in the last minutes before the start (the 08:00 burst),
        never before the run started (a meeting a test schedules soon after the start)."""
        key = (point, meeting.meeting_id)
        found = self._lead.get(key)
        if found is None:
            rng = random.Random(f"{self.seed}/vconf/{point}/{meeting.meeting_id}")
            lead = int((MAX_LEAD_MS - 20_000) * rng.random() ** 3) + 20_000
            earliest = self.start_ms + 2_000 + rng.randint(0, 6_000)
            found = self._lead[key] = max(meeting.start_ms - lead, earliest)
        return found

    def arrival_rank(self, point: str, meeting: Meeting, ts_ms: int) -> int:
        """How many points able to join at ``ts_ms`` arrived before ``point``: the licensed
        ports go in order of arrival."""
        key = (meeting.meeting_id, ts_ms // 1000)
        ranks = self._rank.get(key)
        if ranks is None:
            order = sorted(
                (p for p in self.expected(meeting) if self._able(p, meeting, ts_ms) is JOINED),
                key=lambda p: (self.join_at(p, meeting), p),
            )
            if len(self._rank) > 256:
                self._rank.clear()
            ranks = self._rank[key] = {p: i for i, p in enumerate(order)}
        return ranks.get(point, 0)

    def licensed_ports(self, bridge: str, ts_ms: int) -> int | None:
        """The ports a ``vconf_licence`` fault leaves the bridge, or None (its own licence)."""
        for begin, end, ports in self.licence.get(bridge, ()):
            if begin <= ts_ms < end:
                return ports
        return None

    def bridge_down(self, bridge: str, ts_ms: int) -> bool:
        return bool(bridge) and self.faults.silent(bridge, ts_ms - self.start_ms)

    def status(self, point: str, meeting: Meeting, ts_ms: int) -> Status:
        """Where ``point`` stands in ``meeting`` at ``ts_ms`` (pure)."""
        able = self._able(point, meeting, ts_ms)
        if able is not JOINED:
            return able
        ports = self.licensed_ports(meeting.bridge, ts_ms)
        if ports is not None and self.arrival_rank(point, meeting, ts_ms) >= ports:
            return Status("failed", vc.REASON_LICENCE)
        return JOINED

    def _able(self, point: str, meeting: Meeting, ts_ms: int) -> Status:
        """:meth:`status` before the licence: everything but the other points."""
        if ts_ms < self.join_at(point, meeting) or ts_ms >= meeting.end_ms:
            return ABSENT
        rel = ts_ms - self.start_ms
        if self.faults.silent(point, rel):
            return ABSENT  # its site is cut off (or the room system is off)
        if any(b <= ts_ms < e for b, e in self.no_join.get(point, ())):
            return ABSENT
        if self.bridge_down(meeting.bridge, ts_ms):
            return Status("failed", vc.REASON_BRIDGE)
        cond = self.faults.conditions(point, rel, 0.0)
        if cond.extra_loss_pct >= JOIN_MAX_LOSS_PCT:
            return Status("failed", vc.REASON_MEDIA)
        return JOINED


class VconfSim(DeviceSim):
    """A vconf device: a bridge, a bridge point or the booking calendar, by its ``role``."""

    device_class = Feed.VCONF
    periods: ClassVar[Mapping[str, int]] = {"vconf.endpoint": POINT_PERIOD_MS}
    """A point's schedule (and the class-wide figure of the natural rate: most vconf devices
    are points); bridges and the calendar are subclasses with their own."""

    def __new__(cls, device: Device, region: str, seed: int, start_ms: int) -> VconfSim:
        """The role's subclass (the engine asks the feed's behaviour for every device)."""
        role = device.attributes.get("role", vc.ROLE_ENDPOINT)
        target = {vc.ROLE_MCU: BridgeSim, vc.ROLE_BOOKING: BookingSim}.get(role, cls)
        if not issubclass(target, cls):
            target = cls
        return super().__new__(target)

    def __init__(self, device: Device, region: str, seed: int, start_ms: int) -> None:
        super().__init__(device, region, seed, start_ms)
        self.role = str(device.attributes.get("role", vc.ROLE_ENDPOINT))
        self.seed = seed
        self.start_ms = start_ms
        self.adapter = JitsiAdapter()
        self.schedule: Schedule | None = None
        self.ports = int(device.attributes.get("ports_licensed", 0)) or None
        self.base_rtt = self.rng.uniform(15.0, 60.0)
        self.freeze_count = 0
        self.packets = (0, 0)  # (received, lost), cumulative within the current connection
        self.in_meeting: dict[str, Status] = {}
        self.retry_at: dict[str, int] = {}
        self.partially_failed: set[str] = set()
        self.failed: set[str] = set()
        self.last_report_ms = start_ms

    def attach(self, plan: FaultPlan, topology: Topology) -> None:
        self.schedule = Schedule.of(topology, plan, self.seed, self.start_ms)

    def _schedule(self) -> Schedule:
        if self.schedule is None:  # simulated alone (a unit test): no plan
            raise RuntimeError("VconfSim needs attach(plan, topology) before emit")
        return self.schedule

    def emit(self, kind: str, ts_ms: int, period_ms: int, cond: Conditions) -> list[s.Message]:
        if kind == "vconf.bridge":
            return [self._bridge(ts_ms)]
        if kind == "vconf.meeting":
            return self._booking(ts_ms)
        return self._point(ts_ms, cond)

    # --- the bridge: /colibri/stats ------------------------------------------------------------

    def _bridge(self, ts_ms: int) -> s.Message:
        sched, rng = self._schedule(), self.rng
        sizes: list[int] = []
        for meeting in sched.meetings(ts_ms, ts_ms + MAX_LEAD_MS):
            if meeting.bridge != self.id:
                continue
            statuses = [sched.status(p, meeting, ts_ms) for p in sched.expected(meeting)]
            joined = sum(1 for st in statuses if st.state == "joined")
            if any(st.state == "failed" for st in statuses):
                if joined:
                    self.partially_failed.add(meeting.meeting_id)
                else:
                    self.failed.add(meeting.meeting_id)
            if joined:
                sizes.append(joined)
        participants = sum(sizes)
        licensed = sched.licensed_ports(self.id, ts_ms) or self.ports
        payload = {
            "current_timestamp": format_colibri_time(ts_ms),
            "conferences": len(sizes),
            "participants": participants,
            "largest_conference": max(sizes, default=0),
            "endpoints_sending_video": int(participants * rng.uniform(0.85, 1.0)),
            "stress_level": round(0.02 + participants * 0.004 * rng.uniform(0.9, 1.1), 4),
            "bit_rate_download": round(participants * rng.uniform(1200, 1800), 1),
            "bit_rate_upload": round(participants * rng.uniform(2000, 3200), 1),
            "total_failed_conferences": len(self.failed),
            "total_partially_failed_conferences": len(self.partially_failed),
            "videochannels": participants,
            "threads": 180 + rng.randint(0, 40),
        }
        return self.adapter.colibri_stats(self.id, payload, licensed)

    # --- the booking calendar -------------------------------------------------------------------

    def _booking(self, ts_ms: int) -> list[s.Message]:
        sched = self._schedule()
        out: list[s.Message] = []
        stamp = dt.datetime.fromtimestamp(ts_ms / 1000, VN).isoformat(timespec="milliseconds")
        meetings = sched.meetings(ts_ms, ts_ms + ANNOUNCE_AHEAD_MS)
        out.append(self.adapter.calendar_sync(self.id, {"dtstamp": stamp, "events": len(meetings)}))
        for meeting in meetings:
            start = dt.datetime.fromtimestamp(meeting.start_ms / 1000, VN)
            event = {
                "uid": meeting.meeting_id,
                "summary": meeting.title,
                "dtstamp": stamp,
                "dtstart": start.isoformat(timespec="milliseconds"),
                "duration_minutes": meeting.duration_s / 60,
                "status": "CONFIRMED",
                "location": meeting.bridge,
                "attendees": {"unit": meeting.scope_unit, "points": len(sched.expected(meeting))},
            }
            out.append(self.adapter.booking_event(self.id, event))
        return out

    # --- a bridge point: conference events and getStats() -----------------------------------

    def _event(self, ts_ms: int, name: str, meeting: Meeting, error: str | None) -> s.Message:
        doc: dict[str, Any] = {
            "event": name,
            "timestamp": ts_ms,
            "conference": meeting.meeting_id,
            "bridge": meeting.bridge,
        }
        if error:
            doc["error"] = error
        return self.adapter.conference_event(self.id, doc)

    def _point(self, ts_ms: int, cond: Conditions) -> list[s.Message]:
        sched = self._schedule()
        out: list[s.Message] = []
        current: Meeting | None = None
        horizon = sched.meetings(ts_ms - 60_000, ts_ms + MAX_LEAD_MS)
        mine = [m for m in horizon if sched.expects(m, self.id)]
        cut_off = ts_ms - self.last_report_ms > 2 * POINT_PERIOD_MS + 5_000
        self.last_report_ms = ts_ms
        for meeting in mine:
            now = sched.status(self.id, meeting, ts_ms)
            before = self.in_meeting.get(meeting.meeting_id, ABSENT)
            if before.state == "joined" and cut_off:
                # it was cut off (its site, or the room system): the bridge dropped it
                out.append(self._event(ts_ms, "conference.left", meeting, "conference.iceFailed"))
                before = ABSENT
            if now.state == "joined":
                current = meeting
                if before.state != "joined":
                    out.append(self._event(ts_ms, "conference.joined", meeting, None))
                    self.packets = (0, 0)
                    self.freeze_count = 0
            elif before.state == "joined":
                error = {
                    vc.REASON_BRIDGE: "conference.focusLeft",
                    vc.REASON_MEDIA: "conference.iceFailed",
                    vc.REASON_LICENCE: "conference.max_users",
                }.get(now.reason or "", "conference.destroyed")
                out.append(self._event(ts_ms, "conference.left", meeting, error))
            elif now.state == "failed" and (
                before.state != "failed" or ts_ms >= self.retry_at.get(meeting.meeting_id, 0)
            ):
                error = {
                    vc.REASON_BRIDGE: "conference.videobridgeNotAvailable",
                    vc.REASON_MEDIA: "conference.iceFailed",
                    vc.REASON_LICENCE: "conference.max_users",
                }[now.reason or vc.REASON_MEDIA]
                out.append(self._event(ts_ms, "conference.failed", meeting, error))
                self.retry_at[meeting.meeting_id] = ts_ms + RETRY_MS
            if now.state == "absent" and ts_ms >= meeting.end_ms:
                self.in_meeting.pop(meeting.meeting_id, None)
                self.retry_at.pop(meeting.meeting_id, None)
            else:
                self.in_meeting[meeting.meeting_id] = now
        out.append(self.adapter.webrtc_stats(self.id, self._stats(ts_ms, current, cond)))
        return out

    def _stats(self, ts_ms: int, meeting: Meeting | None, cond: Conditions) -> dict[str, Any]:
        if meeting is None:
            return {"timestamp": ts_ms, "conference": None, "stats": []}
        rng = self.rng
        loss_pct = min(99.0, abs(rng.gauss(0.3, 0.3)) + cond.extra_loss_pct + cond.weather * 3)
        sent = int(rng.uniform(900, 1100))
        lost = int(sent * loss_pct / 100.0)
        received, lost_total = self.packets
        self.packets = (received + sent - lost, lost_total + lost)
        audio_only = loss_pct > 8.0
        if loss_pct > 3.0 and rng.random() < 0.5:
            self.freeze_count += rng.randint(1, 3)
        rtt = self.base_rtt * rng.uniform(0.9, 1.3) + cond.extra_latency_ms + cond.weather * 60
        stats: list[dict[str, Any]] = [
            {
                "type": "candidate-pair",
                "nominated": True,
                "state": "succeeded",
                "currentRoundTripTime": round(rtt / 1000.0, 4),
            },
            {
                "type": "inbound-rtp",
                "kind": "audio",
                "packetsReceived": self.packets[0] // 4,
                "packetsLost": self.packets[1] // 4,
                "jitter": round((abs(rng.gauss(4.0, 2.0)) + loss_pct) / 1000.0, 4),
            },
        ]
        if not audio_only:
            height = 720 if loss_pct < 2 else 360
            stats.append(
                {
                    "type": "inbound-rtp",
                    "kind": "video",
                    "packetsReceived": self.packets[0] - self.packets[0] // 4,
                    "packetsLost": self.packets[1] - self.packets[1] // 4,
                    "jitter": round((abs(rng.gauss(6.0, 3.0)) + 2 * loss_pct) / 1000.0, 4),
                    "framesPerSecond": round(
                        max(1.0, 30.0 - loss_pct * 2) * rng.uniform(0.9, 1.0), 1
                    ),
                    "frameHeight": height,
                    "freezeCount": self.freeze_count,
                }
            )
        return {
            "timestamp": ts_ms,
            "conference": meeting.meeting_id,
            "bridge": meeting.bridge,
            "stats": stats,
        }


class BridgeSim(VconfSim):
    """An MCU: its ``/colibri/stats`` every 5 s."""

    periods: ClassVar[Mapping[str, int]] = collection_periods(Feed.VCONF)
    """As often as ``ioc collect`` polls a real bridge (the feed's ``collection``)."""


class BookingSim(VconfSim):
    """The booking calendar: the coming day's meetings, re-announced every 10 s."""

    periods: ClassVar[Mapping[str, int]] = {"vconf.meeting": 10_000}


# --- the province generator's ``vconf:`` section --------------------------------------------------

OFFICE_KINDS: Final = ("district_office", "commune_office")


def place_devices(
    section: Any,
    seed: int,
    units: list[dict[str, Any]],
    sites: list[dict[str, Any]],
    devices: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The vconf devices of a generated province (``vconf: {mcus: 2, ports: 250}``): one
    bridge point per unit at its office (the province's at the data centre), behind the
    site's network node; ``mcus`` bridges and the booking calendar at the data centre.
    Draws only from its own ``random.Random((seed, "vconf"))``: the other devices of a
    scenario stay as they were."""
    if not section:
        return []
    if not isinstance(section, dict):
        raise ValueError("generate: 'vconf' must be a mapping (mcus, ports)")
    rng = random.Random(f"{seed}/vconf")
    node_of = {d["site"]: d["id"] for d in devices if d["class"] == "netnode"}
    top = next(u for u in units if not u.get("parent"))
    core = next(site for site in sites if site["kind"] == "provincial_core")
    office = {site["unit"]: site for site in sites if site["kind"] in OFFICE_KINDS}
    out: list[dict[str, Any]] = []

    def device(dev_id: str, site: dict[str, Any], **attributes: Any) -> None:
        out.append(
            {
                "id": dev_id,
                "class": "vconf",
                "site": site["id"],
                "lat": site["lat"],
                "lon": site["lon"],
                "upstream": node_of[site["id"]],
                "attributes": attributes,
            }
        )

    ports = int(section.get("ports", 250))
    for i in range(int(section.get("mcus", 1))):
        device(f"vc-{top['code']}-mcu-{i + 1}", core, role=vc.ROLE_MCU, ports_licensed=ports)
    device(f"vc-{top['code']}-booking", core, role=vc.ROLE_BOOKING)
    for unit in units:
        site = core if unit is top else office.get(unit["code"])
        if site is None or site["id"] not in node_of:
            continue
        device(f"vc-{unit['code']}", site, role=vc.ROLE_ENDPOINT, codec=rng.choice(CODECS))
    return out


CODECS: Final = ("room-system", "room-system", "pc-client")
