"""From validated messages to database rows: raw rows, latest facts per device, dirty minutes.

Pure functions (no I/O), so the hot path is unit-tested without a database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ioc.contract import schemas as s
from ioc.contract.raw import ENVELOPE, KEY_COLUMNS, RAW_COLUMNS, column_of

UTC = dt.UTC

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def ts_of(ts_ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ts_ms)


def _layout(kind: type[s.Message]) -> tuple[str | None, ...]:
    """For each column after (ts, device_id, seq, kind): the message field, or None."""
    columns = RAW_COLUMNS[s.FEED_OF_KIND[kind]]
    by_column = {column_of(kind, f): f for f in kind.__struct_fields__ if f not in ENVELOPE}
    missing = set(by_column) - set(columns)
    if missing:  # a schema field without a column would be silently dropped
        raise RuntimeError(f"{kind.__name__}: no raw column for {sorted(missing)}")
    return tuple(by_column.get(c) for c in columns[len(KEY_COLUMNS) :])


_LAYOUTS = {kind: _layout(kind) for kind in s.FEED_OF_KIND}
"""Per kind; a kind of a feed registered later is added at its first message."""


def raw_row(m: s.Message) -> tuple[Any, ...]:
    """The row of ``m`` in its feed's raw table, in :data:`RAW_COLUMNS` order."""
    try:
        layout = _LAYOUTS[type(m)]
    except KeyError:
        layout = _LAYOUTS[type(m)] = _layout(type(m))
    return (
        ts_of(m.ts_ms),
        m.device_id,
        m.seq,
        m.kind,
        *[None if f is None else getattr(m, f) for f in layout],
    )


@dataclass
class LastSeen:
    """The newest facts about one device in a batch (merged into device_last_seen)."""

    device_id: str
    device_class: str
    last_ts: int | None = None  # newest own report (probes excluded: the core sends them)
    last_seq: int = 0
    probe_ts: int | None = None
    probe_reachable: bool | None = None
    probe_ok_ts: int | None = None  # the newest reachable and unreachable probe: a cut that
    probe_fail_ts: int | None = None  # came and went between two rounds still shows
    quality_ts: int | None = None
    fps: float | None = None
    frozen: bool | None = None
    rtt_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    sessions_active: int | None = None

    def add(self, m: s.Message) -> None:
        if isinstance(m, s.NetnodeProbe):
            if m.reachable:
                self.probe_ok_ts = max(self.probe_ok_ts or m.ts_ms, m.ts_ms)
            else:
                self.probe_fail_ts = max(self.probe_fail_ts or m.ts_ms, m.ts_ms)
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
            ts_of(self.probe_ok_ts) if self.probe_ok_ts is not None else None,
            ts_of(self.probe_fail_ts) if self.probe_fail_ts is not None else None,
        )


def minute_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % 60_000


class Rows:
    """A batch's raw rows, made one at a time as the COPY reads them (and again on a retry).

    Why not a list: a catch-up holds several 10,000-message rounds in flight, and a tuple and a
    datetime per message were about a fifth of their Python heap. That heap is what a worker
    keeps after a backlog is drained: CPython cannot give back an arena in which a single
    object survives (docs/performance.md, "Where the rest goes")."""

    __slots__ = ("messages",)

    def __init__(self, messages: list[s.Message]) -> None:
        self.messages = messages

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return map(raw_row, self.messages)

    def __len__(self) -> int:
        return len(self.messages)


@dataclass
class Batch:
    """One feed's validated messages of a batch, shaped for the writer."""

    feed: str
    rows: Rows
    last_seen: dict[str, LastSeen]
    minutes: set[int]
    newest_ts_ms: int = 0

    @classmethod
    def build(cls, feed: str, messages: list[s.Message], device_class: str) -> Batch:
        unique: list[s.Message] = []
        seen: set[tuple[str, int, int]] = set()
        last: dict[str, LastSeen] = {}
        minutes: set[int] = set()
        newest = 0
        for m in messages:
            key = (m.device_id, m.seq, m.ts_ms)
            if key in seen:  # a duplicate within the batch: the primary key would reject it
                continue
            seen.add(key)
            unique.append(m)
            entry = last.get(m.device_id)
            if entry is None:
                entry = last[m.device_id] = LastSeen(m.device_id, device_class)
            entry.add(m)
            minutes.add(minute_of(m.ts_ms))
            newest = max(newest, m.ts_ms)
        return cls(feed, Rows(unique), last, minutes, newest)
