"""From validated messages to database rows: raw rows, latest facts per device, dirty minutes.

Pure functions (no I/O), so the hot path is unit-tested without a database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ioc.contract import schemas as s

UTC = dt.UTC

RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "camera": (
        "ts",
        "device_id",
        "seq",
        "kind",
        "status",
        "uptime_s",
        "fps",
        "bitrate_kbps",
        "dropped_frames",
        "frozen",
        "black",
        "interval_s",
        "vehicles",
        "mean_speed_kmh",
        "occupancy_pct",
        "incident_id",
        "incident",
        "incident_state",
    ),
    "telehealth": (
        "ts",
        "device_id",
        "seq",
        "kind",
        "status",
        "waiting_patients",
        "active_sessions",
        "session_id",
        "event",
        "peer_site",
        "reason",
        "rtt_ms",
        "jitter_ms",
        "loss_pct",
        "video_height",
    ),
    "netnode": (
        "ts",
        "device_id",
        "seq",
        "kind",
        "reachable",
        "rtt_ms",
        "loss_pct",
        "interface",
        "interval_s",
        "in_bps",
        "out_bps",
        "in_errors",
        "out_errors",
        "capacity_bps",
        "link_state",
    ),
}

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def ts_of(ts_ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ts_ms)


def raw_row(m: s.Message) -> tuple[Any, ...]:
    """The row of ``m`` in its feed's raw table, in :data:`RAW_COLUMNS` order."""
    ts = ts_of(m.ts_ms)
    head = (ts, m.device_id, m.seq, m.kind)
    if isinstance(m, s.CameraHeartbeat):
        return (
            *head,
            m.status,
            m.uptime_s,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )
    if isinstance(m, s.CameraStream):
        return (
            *head,
            None,
            None,
            m.fps,
            m.bitrate_kbps,
            m.dropped_frames,
            m.frozen,
            m.black,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )
    if isinstance(m, s.CameraTraffic):
        return (
            *head,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            m.interval_s,
            m.vehicles,
            m.mean_speed_kmh,
            m.occupancy_pct,
            None,
            None,
            None,
        )
    if isinstance(m, s.CameraIncident):
        return (
            *head,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            m.incident_id,
            m.incident,
            m.state,
        )
    if isinstance(m, s.TelehealthHeartbeat):
        return (
            *head,
            m.status,
            m.waiting_patients,
            m.active_sessions,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )
    if isinstance(m, s.TelehealthSession):
        return (
            *head,
            None,
            None,
            None,
            m.session_id,
            m.event,
            m.peer_site,
            m.reason,
            None,
            None,
            None,
            None,
        )
    if isinstance(m, s.TelehealthQuality):
        return (
            *head,
            None,
            None,
            None,
            m.session_id,
            None,
            None,
            None,
            m.rtt_ms,
            m.jitter_ms,
            m.loss_pct,
            m.video_height,
        )
    if isinstance(m, s.NetnodeProbe):
        return (
            *head,
            m.reachable,
            m.rtt_ms,
            m.loss_pct,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )
    if isinstance(m, s.NetnodeCounters):
        return (
            *head,
            None,
            None,
            None,
            m.interface,
            m.interval_s,
            m.in_bps,
            m.out_bps,
            m.in_errors,
            m.out_errors,
            m.capacity_bps,
            None,
        )
    if isinstance(m, s.NetnodeLink):
        return (*head, None, None, None, m.interface, None, None, None, None, None, None, m.state)
    raise TypeError(f"no raw row for {type(m).__name__}")


@dataclass
class LastSeen:
    """The newest facts about one device in a batch (merged into device_last_seen)."""

    device_id: str
    device_class: str
    last_ts: int | None = None  # newest own report (probes excluded: the core sends them)
    last_seq: int = 0
    probe_ts: int | None = None
    probe_reachable: bool | None = None
    quality_ts: int | None = None
    fps: float | None = None
    frozen: bool | None = None
    rtt_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    sessions_active: int | None = None

    def add(self, m: s.Message) -> None:
        if isinstance(m, s.NetnodeProbe):
            if self.probe_ts is None or m.ts_ms >= self.probe_ts:
                self.probe_ts, self.probe_reachable = m.ts_ms, m.reachable
                self.quality_ts, self.rtt_ms, self.loss_pct = m.ts_ms, m.rtt_ms, m.loss_pct
            return
        if self.last_ts is None or m.ts_ms >= self.last_ts:
            self.last_ts = m.ts_ms
        self.last_seq = max(self.last_seq, m.seq)
        newer = self.quality_ts is None or m.ts_ms >= self.quality_ts
        if isinstance(m, s.CameraStream) and newer:
            self.quality_ts, self.fps, self.frozen = m.ts_ms, m.fps, m.frozen
        elif isinstance(m, s.TelehealthQuality) and newer:
            self.quality_ts, self.rtt_ms = m.ts_ms, m.rtt_ms
            self.jitter_ms, self.loss_pct = m.jitter_ms, m.loss_pct
        elif isinstance(m, s.TelehealthHeartbeat):
            self.sessions_active = m.active_sessions

    def row(self) -> tuple[Any, ...]:
        return (
            self.device_id,
            self.device_class,
            ts_of(self.last_ts) if self.last_ts is not None else None,
            self.last_seq,
            ts_of(self.probe_ts) if self.probe_ts is not None else None,
            self.probe_reachable,
            ts_of(self.quality_ts) if self.quality_ts is not None else None,
            self.fps,
            self.frozen,
            self.rtt_ms,
            self.jitter_ms,
            self.loss_pct,
            self.sessions_active,
        )


def minute_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % 60_000


@dataclass
class Batch:
    """One feed's validated messages of a batch, shaped for the writer."""

    feed: str
    rows: list[tuple[Any, ...]]
    last_seen: dict[str, LastSeen]
    minutes: set[int]
    newest_ts_ms: int = 0

    @classmethod
    def build(cls, feed: str, messages: list[s.Message], device_class: str) -> Batch:
        rows: list[tuple[Any, ...]] = []
        last: dict[str, LastSeen] = {}
        minutes: set[int] = set()
        newest = 0
        for m in messages:
            rows.append(raw_row(m))
            entry = last.get(m.device_id)
            if entry is None:
                entry = last[m.device_id] = LastSeen(m.device_id, device_class)
            entry.add(m)
            minutes.add(minute_of(m.ts_ms))
            newest = max(newest, m.ts_ms)
        return cls(feed, rows, last, minutes, newest)
