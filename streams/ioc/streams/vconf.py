"""Meeting readiness and bridge load for the video-conference feed (docs/vconf.md).

Run by the shard leader in each evaluation round (:mod:`ioc.streams.evaluator`), in the
round's transaction and at its event-time watermark. From ``raw_vconf`` it reads the latest
announcement of each meeting (the booking system re-announces them every 10 s), the latest
join event of each expected point and the latest colibri stats of each bridge; from the
round's verdict it takes every device's state. It exports:

- ``ioc_vconf_point_not_joined``: one series per expected bridge point that is not in a
  meeting inside the readiness window (``vconf_readiness_before_s`` before the start to
  ``vconf_readiness_after_s`` after), valued with the seconds since the scheduled start, and
  labelled with the cause, first match wins:

  ``site_isolated``  a network node on its path is down (``cause_device``: the node) or it is
                     unreachable behind one;
  ``bridge_down``    the meeting's bridge is down (``cause_device``: the bridge);
  ``point_down``     the point itself has stopped reporting;
  ``link_degraded``  its own node's link is degraded (``cause_device``: the node);
  ``licence_exhausted`` its last attempt was refused for want of a licensed port;
  ``join_failed``    its last attempt failed for another reason;
  ``not_joined``     it is up and reachable and simply has not joined.

  The readiness panel lists these series, and VconfPointNotJoined fires on them from the
  start on: the same series, so the panel and the alert always agree.
- ``ioc_vconf_meeting_points`` (expected / joined / not joined per meeting in its window) and
  each bridge's ports in use, licensed ports and stress level (bridges that are up only).

A point counts as joined when its latest join event is ``joined`` and it is reachable (a
point cut off after joining is not in the meeting, whatever it last said).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from ioc.contract import metrics as m
from ioc.contract import tables as t
from ioc.contract import vconf as vc
from ioc.contract.feeds import Feed
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.contract.topology import Topology
from ioc.observability import gauge
from ioc.streams.rows import ts_of
from ioc.streams.state import Verdict

RAW: Final = f"raw_{Feed.VCONF}"
CAUSE_SITE_ISOLATED: Final = "site_isolated"
CAUSE_BRIDGE_DOWN: Final = "bridge_down"
CAUSE_POINT_DOWN: Final = "point_down"
CAUSE_LINK_DEGRADED: Final = "link_degraded"
CAUSE_LICENCE: Final = "licence_exhausted"
CAUSE_JOIN_FAILED: Final = "join_failed"
CAUSE_NOT_JOINED: Final = "not_joined"
CAUSES: Final = (
    CAUSE_SITE_ISOLATED,
    CAUSE_BRIDGE_DOWN,
    CAUSE_POINT_DOWN,
    CAUSE_LINK_DEGRADED,
    CAUSE_LICENCE,
    CAUSE_JOIN_FAILED,
    CAUSE_NOT_JOINED,
)
_OUTAGE: Final = (t.STATE_DOWN, t.STATE_UNREACHABLE, t.STATE_FLAPPING)


@dataclass(frozen=True)
class Meeting:
    meeting_id: str
    title: str
    scope_unit: str
    start_ms: int
    duration_s: int
    bridge: str | None


@dataclass(frozen=True)
class Missing:
    """An expected point that is not in the meeting, and why."""

    meeting: Meeting
    device_id: str
    cause: str
    cause_device: str
    seconds_since_start: float


@dataclass
class Readiness:
    meetings: list[Meeting]
    expected: dict[str, int]
    joined: dict[str, int]
    missing: list[Missing]
    bridges: dict[str, tuple[int, int | None, float]]  # device -> (used, licensed, stress)


def cause_of(
    topology: Topology,
    verdict: Verdict,
    point: str,
    bridge: str | None,
    last_event: str | None,
    last_reason: str | None,
) -> tuple[str, str]:
    """Why ``point`` is not in the meeting: (cause, the device the cause is about)."""
    states = verdict.states

    def state(dev: str) -> str:
        cur = states.get(dev)
        return cur.state if cur is not None else t.STATE_UNKNOWN

    chain = topology.upstream_chain(point)
    for node in reversed(chain):  # the highest node that is down is the root cause
        if state(node) in _OUTAGE:
            return CAUSE_SITE_ISOLATED, node
    if state(point) == t.STATE_UNREACHABLE:
        return CAUSE_SITE_ISOLATED, chain[0] if chain else point
    if bridge and state(bridge) in _OUTAGE:
        return CAUSE_BRIDGE_DOWN, bridge
    if state(point) in _OUTAGE:
        return CAUSE_POINT_DOWN, point
    if chain and state(chain[0]) == t.STATE_DEGRADED:
        return CAUSE_LINK_DEGRADED, chain[0]
    if last_event == "failed" and last_reason == vc.REASON_LICENCE:
        return CAUSE_LICENCE, bridge or point
    if last_event == "failed":
        return CAUSE_JOIN_FAILED, point
    return CAUSE_NOT_JOINED, point


class ReadinessMonitor:
    """Meeting readiness and bridge figures, computed and exported by the shard leader."""

    def __init__(self, topology: Topology, thresholds: Thresholds = THRESHOLDS) -> None:
        self.topology = topology
        self.th = thresholds
        points = [
            d for d in topology.devices_of(Feed.VCONF) if d.attributes.get("role") == "endpoint"
        ]
        self.bridges = sorted(
            d.id for d in topology.devices_of(Feed.VCONF) if d.attributes.get("role") == "mcu"
        )
        self.under: dict[str, list[str]] = {}
        for d in sorted(points, key=lambda d: d.id):
            for unit in topology.ancestors(topology.unit_of_device[d.id]):
                self.under.setdefault(unit, []).append(d.id)
        self.enabled = bool(points or self.bridges)
        self.not_joined = gauge(m.VCONF_POINT_NOT_JOINED)
        self.points = gauge(m.VCONF_MEETING_POINTS)
        self.ports_used = gauge(m.VCONF_BRIDGE_PORTS_USED)
        self.ports_licensed = gauge(m.VCONF_BRIDGE_PORTS_LICENSED)
        self.stress = gauge(m.VCONF_BRIDGE_STRESS)

    async def collect(
        self, conn: asyncpg.Connection, now_ms: int, verdict: Verdict
    ) -> Readiness | None:
        if not self.enabled:
            return None
        th = self.th
        now = ts_of(now_ms)
        rows = await conn.fetch(
            f"""SELECT DISTINCT ON (meeting_id) meeting_id, title, scope_unit, starts_at_ms,
                       duration_s, status, bridge_id
                FROM {RAW} WHERE kind = 'vconf.meeting' AND ts > $1 AND ts <= $2
                ORDER BY meeting_id, ts DESC, seq DESC""",
            now - dt.timedelta(hours=1),
            now,
        )
        before, after = th.vconf_readiness_before_s * 1000, th.vconf_readiness_after_s * 1000
        meetings = [
            Meeting(
                r["meeting_id"],
                r["title"],
                r["scope_unit"],
                r["starts_at_ms"],
                r["duration_s"],
                r["bridge_id"],
            )
            for r in rows
            if r["status"] == "scheduled"
            and r["starts_at_ms"] - before <= now_ms <= r["starts_at_ms"] + after
            and now_ms < r["starts_at_ms"] + r["duration_s"] * 1000
        ]
        last: dict[tuple[str, str], tuple[str, str | None]] = {}
        if meetings:
            earliest = min(mt.start_ms for mt in meetings) - before - 3_600_000
            for r in await conn.fetch(
                f"""SELECT DISTINCT ON (meeting_id, device_id) meeting_id, device_id, event,
                           reason
                    FROM {RAW} WHERE kind = 'vconf.join' AND meeting_id = ANY($1::text[])
                      AND ts > $2 AND ts <= $3
                    ORDER BY meeting_id, device_id, ts DESC, seq DESC""",
                [mt.meeting_id for mt in meetings],
                ts_of(max(0, earliest)),
                now,
            ):
                last[(r["meeting_id"], r["device_id"])] = (r["event"], r["reason"])
        bridges: dict[str, tuple[int, int | None, float]] = {}
        if self.bridges:
            for r in await conn.fetch(
                f"""SELECT DISTINCT ON (device_id) device_id, ports_used, ports_licensed,
                           stress_level
                    FROM {RAW} WHERE kind = 'vconf.bridge' AND device_id = ANY($1::text[])
                      AND ts > $2 AND ts <= $3
                    ORDER BY device_id, ts DESC, seq DESC""",
                self.bridges,
                now - dt.timedelta(minutes=2),
                now,
            ):
                cur = verdict.states.get(r["device_id"])
                if cur is not None and cur.state in (t.STATE_UP, t.STATE_DEGRADED):
                    bridges[r["device_id"]] = (
                        r["ports_used"],
                        r["ports_licensed"],
                        r["stress_level"],
                    )
        return self.readiness(meetings, last, verdict, now_ms, bridges)

    def readiness(
        self,
        meetings: list[Meeting],
        last: dict[tuple[str, str], tuple[str, str | None]],
        verdict: Verdict,
        now_ms: int,
        bridges: dict[str, tuple[int, int | None, float]] | None = None,
    ) -> Readiness:
        """Who is missing from which meeting, and why (pure: the database part is done)."""
        expected: dict[str, int] = {}
        joined: dict[str, int] = {}
        missing: list[Missing] = []
        for mt in meetings:
            points = self.under.get(mt.scope_unit, [])
            expected[mt.meeting_id] = len(points)
            joined[mt.meeting_id] = 0
            for point in points:
                event, reason = last.get((mt.meeting_id, point), (None, None))
                cur = verdict.states.get(point)
                reachable = cur is None or cur.state not in _OUTAGE
                if event == "joined" and reachable:
                    joined[mt.meeting_id] += 1
                    continue
                cause, about = cause_of(self.topology, verdict, point, mt.bridge, event, reason)
                missing.append(Missing(mt, point, cause, about, (now_ms - mt.start_ms) / 1000))
        return Readiness(meetings, expected, joined, missing, bridges or {})

    def export(self, readiness: Readiness | None) -> None:
        self.clear()
        if readiness is None:
            return
        topo = self.topology
        titles = {mt.meeting_id: mt.title for mt in readiness.meetings}
        for mt in readiness.meetings:
            expected = readiness.expected[mt.meeting_id]
            joined = readiness.joined[mt.meeting_id]
            self.points.labels(mt.meeting_id, mt.title, "expected").set(expected)
            self.points.labels(mt.meeting_id, mt.title, "joined").set(joined)
            self.points.labels(mt.meeting_id, mt.title, "not_joined").set(expected - joined)
        for miss in readiness.missing:
            dev = topo.devices[miss.device_id]
            unit = topo.unit_of_device[miss.device_id]
            self.not_joined.labels(
                miss.meeting.meeting_id,
                titles[miss.meeting.meeting_id],
                miss.device_id,
                unit,
                topo.units[unit].name,
                dev.site,
                miss.cause,
                miss.cause_device,
                dev.upstream or "",
            ).set(miss.seconds_since_start)
        for bridge, (used, licensed, stress) in readiness.bridges.items():
            self.ports_used.labels(bridge).set(used or 0)
            if licensed is not None:
                self.ports_licensed.labels(bridge).set(licensed)
            self.stress.labels(bridge).set(stress or 0.0)

    def clear(self) -> None:
        for g in (self.not_joined, self.points, self.ports_used, self.ports_licensed, self.stress):
            g.clear()


def describe(readiness: Readiness) -> list[dict[str, Any]]:
    """The missing points as plain rows (logs, tests)."""
    return [
        {
            "meeting_id": miss.meeting.meeting_id,
            "device_id": miss.device_id,
            "cause": miss.cause,
            "cause_device": miss.cause_device,
            "since_start_s": round(miss.seconds_since_start, 1),
        }
        for miss in readiness.missing
    ]
