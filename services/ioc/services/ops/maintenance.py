"""Maintenance windows: one-off or recurring (cron in Vietnam time), scoped to a device, a
site, a unit subtree or a domain.

A window is a row of ``maintenance_windows``; each occurrence is a row of
``maintenance_occurrences``, materialised ahead of time (:data:`HORIZON`), because what the
SLA excludes (the view ``maintenance_device_windows``) and what Alertmanager silences cover
(:mod:`ioc.services.ops.silencer`) are occurrences, not cron expressions. Monitoring goes on
during a window: only alerting is suppressed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
from typing import Any, Literal

import asyncpg
from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ioc.contract import feeds
from ioc.contract.topology import Topology
from ioc.services.ops.alertmanager import Matcher
from ioc.services.ops.audit import Recorder
from ioc.services.ops.common import VN_TZ, Conflict, Invalid, NotFound, OpsContext, Unavailable

log = logging.getLogger(__name__)

ScopeKind = Literal["device", "site", "unit", "domain"]

HORIZON = dt.timedelta(days=35)
"""How far ahead recurring occurrences are materialised (the silencer keeps extending it)."""
MAX_ONE_OFF = dt.timedelta(days=31)
"""The longest one-off window: longer "maintenance" is a decommission, not a window."""
MAX_DURATION_MINUTES = 7 * 24 * 60
"""The longest occurrence of a recurring window."""
MAX_AHEAD = dt.timedelta(days=366)
"""How far ahead a window may start."""
MAX_PAST = dt.timedelta(days=1)
"""How far back a window may start (a window opened a little late); older ones would only
rewrite the SLA after the fact."""
MAX_RECURRENCE = dt.timedelta(days=3 * 366)
"""How long a recurrence may run (its ``ends_at`` after its ``starts_at``)."""
MIN_GAP = dt.timedelta(hours=1)
"""Firings of a recurring window at least this far apart: at most 24 occurrences a day."""
NEXT_SHOWN = 5
"""Occurrences listed in :attr:`WindowOut.next_occurrences`."""
_GAP_CHECKED = 500
"""Firings examined when checking spacing and overlap (weeks to years of a schedule)."""
_FOREVER = dt.datetime.max.replace(tzinfo=dt.UTC)  # asyncpg: PostgreSQL's 'infinity'


class WindowIn(BaseModel):
    """A window an operator asks for. Naive times are Vietnam time. One-off: ``starts_at``,
    ``ends_at``. Recurring: ``cron`` (5 fields, Vietnam time) starting an occurrence of
    ``duration_minutes``, from ``starts_at`` until ``ends_at`` (open-ended without)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    scope_kind: ScopeKind
    scope: str = Field(min_length=1, max_length=200)
    starts_at: dt.datetime
    ends_at: dt.datetime | None = None
    cron: str | None = Field(None, min_length=1, max_length=100)
    duration_minutes: int | None = Field(None, ge=1, le=MAX_DURATION_MINUTES)
    note: str = Field("", max_length=2000)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _vietnam_time(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=VN_TZ)
        return value

    @property
    def recurring(self) -> bool:
        return self.cron is not None

    def check(self, topology: Topology, now: dt.datetime) -> None:
        """Refuse (:class:`Invalid`, one line) a window that names nothing, ends before it
        starts, is over, too long or too far off, or whose cron never fires in it."""
        check_scope(self.scope_kind, self.scope, topology)
        if self.starts_at < now - MAX_PAST:
            raise Invalid(f"starts_at {_vn(self.starts_at)} is more than a day in the past")
        if self.starts_at > now + MAX_AHEAD:
            raise Invalid(f"starts_at {_vn(self.starts_at)} is more than a year ahead")
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise Invalid(
                f"the window ends ({_vn(self.ends_at)}) before it starts ({_vn(self.starts_at)})"
            )
        if self.ends_at is not None and self.ends_at <= now:
            raise Invalid(f"the window is over already (ends_at {_vn(self.ends_at)})")
        if self.cron is None:
            if self.duration_minutes is not None:
                raise Invalid("duration_minutes is for a recurring window: give cron too")
            if self.ends_at is None:
                raise Invalid(
                    "a one-off window needs ends_at (a recurring one: cron and duration_minutes)"
                )
            if self.ends_at - self.starts_at > MAX_ONE_OFF:
                raise Invalid(f"a one-off window lasts at most {MAX_ONE_OFF.days} days")
            return
        if self.duration_minutes is None:
            raise Invalid("a recurring window needs duration_minutes")
        check_cron(self.cron)
        if self.ends_at is not None and self.ends_at - self.starts_at > MAX_RECURRENCE:
            raise Invalid(f"a recurrence runs at most {MAX_RECURRENCE.days} days (ends_at)")
        end = self.ends_at or self.starts_at + MAX_RECURRENCE
        fires = firings(self.cron, self.starts_at, end, _GAP_CHECKED)
        if not fires:
            raise Invalid(
                f"cron {self.cron!r} never fires between {_vn(self.starts_at)} and {_vn(end)}"
            )
        duration = dt.timedelta(minutes=self.duration_minutes)
        for a, b in itertools.pairwise(fires):
            if b - a < MIN_GAP:
                raise Invalid(f"cron {self.cron!r} fires more often than once an hour")
            if b - a < duration:
                raise Invalid(
                    f"occurrences would overlap: cron {self.cron!r} fires {_vn(a)} and "
                    f"{_vn(b)}, closer than duration_minutes={self.duration_minutes}"
                )


class WindowOut(BaseModel):
    """A window as stored, with its next occurrences (start, end)."""

    id: int
    scope_kind: ScopeKind
    scope: str
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    cron: str | None
    duration_minutes: int | None
    timezone: str
    note: str
    created_by: str
    created_at: dt.datetime
    cancelled_at: dt.datetime | None
    cancelled_by: str | None
    next_occurrences: list[tuple[dt.datetime, dt.datetime]]


def _vn(when: dt.datetime) -> str:
    try:
        return when.astimezone(VN_TZ).strftime("%Y-%m-%d %H:%M %Z")
    except (OverflowError, ValueError):  # year 1 or 9999 in another offset
        return when.isoformat()


# --- pure parts: scope, cron, matchers ---


def domains() -> list[str]:
    """The alert domains a window may name: the rules' ``domain`` label of every class."""
    return sorted({str(feeds.domain_of(cls)) for cls in feeds.device_classes()})


def check_scope(scope_kind: str, scope: str, topology: Topology) -> None:
    """:class:`Invalid` unless the scope names a device, site, unit or domain that exists."""
    known: dict[str, Any] = {
        "device": topology.devices,
        "site": topology.sites,
        "unit": topology.units,
        "domain": domains(),
    }
    if scope_kind not in known:
        raise Invalid(f"unknown scope kind {scope_kind!r} (device, site, unit or domain)")
    if scope not in known[scope_kind]:
        extra = f" (one of {', '.join(domains())})" if scope_kind == "domain" else ""
        raise Invalid(f"no {scope_kind} {scope!r} in scenario {topology.name}{extra}")


def check_cron(cron: str) -> None:
    """:class:`Invalid` unless ``cron`` is a valid 5-field expression."""
    if len(cron.split()) != 5:
        raise Invalid(f"cron {cron!r} must have 5 fields (minute hour day month weekday)")
    if not croniter.is_valid(cron):
        raise Invalid(f"cron {cron!r} is not a valid cron expression")


def firings(cron: str, start: dt.datetime, until: dt.datetime, limit: int) -> list[dt.datetime]:
    """When ``cron`` (Vietnam time) fires in [start, until), at most ``limit`` times, UTC."""
    out: list[dt.datetime] = []
    try:
        it = croniter(cron, start.astimezone(VN_TZ) - dt.timedelta(microseconds=1))
        while len(out) < limit:
            nxt: dt.datetime = it.get_next(dt.datetime)
            if nxt >= until:
                break
            out.append(nxt.astimezone(dt.UTC))
    except CroniterBadDateError:  # never fires again (31 February)
        pass
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise Invalid(f"cron {cron!r} is not a valid cron expression ({exc})") from None
    return out


def expand(
    cron: str | None,
    duration: dt.timedelta | None,
    starts_at: dt.datetime,
    ends_at: dt.datetime | None,
    after: dt.datetime,
    until: dt.datetime,
    limit: int = 10_000,
) -> list[tuple[dt.datetime, dt.datetime]]:
    """A window's occurrences (start, end) that start in [after, until): one for a one-off
    window, one per firing for a recurring one (cut at ``ends_at``, the recurrence's end)."""
    if cron is None or duration is None:
        assert ends_at is not None
        return [(starts_at, ends_at)] if after <= starts_at < until else []
    stop = min(until, ends_at) if ends_at is not None else until
    return [
        (s, min(s + duration, ends_at) if ends_at is not None else s + duration)
        for s in firings(cron, max(after, starts_at), stop, limit)
    ]


def unit_subtree(topology: Topology, code: str) -> list[str]:
    """The unit and every unit below it."""
    out: list[str] = []
    stack = [code]
    while stack:
        unit = stack.pop()
        out.append(unit)
        stack.extend(topology.children.get(unit, ()))
    return sorted(out)


def window_matchers(scope_kind: str, scope: str, topology: Topology) -> list[list[Matcher]]:
    """The silences (one per matcher set) that cover a window's alerts: device D ->
    ``{device_id="D"}`` (+ for a network node ``{node_id="D"}`` and
    ``{upstream_node=~"D|nodes behind D"}``: planned work on a node cuts off every device
    behind it, as the view ``maintenance_device_windows`` counts it); site S ->
    ``{site="S"}``; unit U -> ``{unit=~"U|child|..."}`` (the subtree, regex-escaped); domain
    D -> ``{domain="D"}``."""
    if scope_kind == "device":
        sets = [[Matcher("device_id", scope)]]
        dev = topology.devices.get(scope)
        if dev is not None and dev.device_class == "netnode":
            sets.append([Matcher("node_id", scope)])
            nodes = [scope] + [
                d
                for d in topology.devices_behind(scope)
                if topology.devices[d].device_class == "netnode"
            ]
            sets.append(
                [Matcher("upstream_node", "|".join(re.escape(n) for n in nodes), isRegex=True)]
            )
        return sets
    if scope_kind == "site":
        return [[Matcher("site", scope)]]
    if scope_kind == "unit":
        codes = "|".join(re.escape(c) for c in unit_subtree(topology, scope))
        return [[Matcher("unit", codes, isRegex=True)]]
    if scope_kind == "domain":
        return [[Matcher("domain", scope)]]
    raise Invalid(f"unknown scope kind {scope_kind!r}")


# --- the database ---

_COLUMNS = """id, scope_kind, scope, start_ts, end_ts, cron, duration_s, timezone,
              coalesce(note, '') AS note, created_by, created_at, cancelled_at, cancelled_by"""


def _utc(when: dt.datetime) -> dt.datetime:
    """A time from asyncpg: aware, UTC (PostgreSQL's 'infinity' comes back naive)."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _ends(row: asyncpg.Record) -> dt.datetime | None:
    end = _utc(row["end_ts"])
    return None if end >= _FOREVER - dt.timedelta(days=1) else end


def _duration(row: asyncpg.Record) -> dt.timedelta | None:
    return dt.timedelta(seconds=row["duration_s"]) if row["duration_s"] else None


def _out(row: asyncpg.Record, now: dt.datetime) -> WindowOut:
    ends_at = _ends(row)
    starts_at = _utc(row["start_ts"])
    upcoming: list[tuple[dt.datetime, dt.datetime]] = []
    duration = _duration(row)
    if row["cancelled_at"] is not None:
        pass
    elif row["cron"] is None or duration is None:
        if ends_at is not None and ends_at > now:
            upcoming = [(starts_at, ends_at)]
    else:
        occ = expand(
            row["cron"],
            duration,
            starts_at,
            ends_at,
            now - duration,
            now + MAX_RECURRENCE,
            limit=NEXT_SHOWN + 1,
        )
        upcoming = [(s, e) for s, e in occ if e > now][:NEXT_SHOWN]
    return WindowOut(
        id=row["id"],
        scope_kind=row["scope_kind"],
        scope=row["scope"],
        starts_at=starts_at,
        ends_at=ends_at,
        cron=row["cron"],
        duration_minutes=row["duration_s"] // 60 if row["duration_s"] else None,
        timezone=row["timezone"],
        note=row["note"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        cancelled_at=row["cancelled_at"],
        cancelled_by=row["cancelled_by"],
        next_occurrences=upcoming,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def materialise(
    conn: asyncpg.Connection, row: asyncpg.Record, until: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Insert a window's occurrences that start before ``until`` and are not stored yet
    (after the last stored one): idempotent, so the silencer can call it every round."""
    last = await conn.fetchval(
        "SELECT max(start_ts) FROM maintenance_occurrences WHERE window_id = $1", row["id"]
    )
    after = _utc(last) + dt.timedelta(seconds=1) if last is not None else _utc(row["start_ts"])
    occ = expand(row["cron"], _duration(row), _utc(row["start_ts"]), _ends(row), after, until)
    if occ:
        await conn.executemany(
            """INSERT INTO maintenance_occurrences (window_id, start_ts, end_ts)
               VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
            [(row["id"], s, e) for s, e in occ],
        )
    return occ


async def create_window(
    ctx: OpsContext,
    w: WindowIn,
    actor: str,
    audit: Recorder | None = None,
) -> WindowOut:
    """Store a window and its occurrences up to :data:`HORIZON`, in one transaction (with
    its audit row: ``audit(conn, None, window)``, when given)."""
    now = _now()
    w.check(ctx.topology, now)
    duration_s = w.duration_minutes * 60 if w.duration_minutes is not None else None
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"""INSERT INTO maintenance_windows (scope_kind, scope, start_ts, end_ts, cron,
                       duration_s, timezone, note, created_by)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_COLUMNS}""",
            w.scope_kind,
            w.scope,
            w.starts_at,
            w.ends_at if w.ends_at is not None else _FOREVER,
            w.cron,
            duration_s,
            str(VN_TZ),
            w.note,
            actor,
        )
        assert row is not None
        await materialise(conn, row, now + HORIZON)
        out = _out(row, now)
        if audit is not None:
            await audit(conn, None, out)
    return out


async def get_window(ctx: OpsContext, window_id: int) -> WindowOut:
    row = await ctx.pool.fetchrow(
        f"SELECT {_COLUMNS} FROM maintenance_windows WHERE id = $1", window_id
    )
    if row is None:
        raise NotFound(f"no maintenance window {window_id}")
    return _out(row, _now())


async def list_windows(
    ctx: OpsContext, *, include_cancelled: bool = False, active_at: dt.datetime | None = None
) -> list[WindowOut]:
    """Windows, newest first; ``active_at``: only those with an occurrence at that time."""
    if active_at is not None and active_at.tzinfo is None:
        active_at = active_at.replace(tzinfo=VN_TZ)
    rows = await ctx.pool.fetch(
        f"""SELECT {_COLUMNS} FROM maintenance_windows w
            WHERE ($1 OR cancelled_at IS NULL)
              AND ($2::timestamptz IS NULL OR EXISTS (
                    SELECT 1 FROM maintenance_occurrences o
                    WHERE o.window_id = w.id AND o.start_ts <= $2 AND o.end_ts > $2))
            ORDER BY start_ts DESC, id DESC""",
        include_cancelled,
        active_at,
    )
    now = _now()
    return [_out(r, now) for r in rows]


async def cancel_window(
    ctx: OpsContext,
    window_id: int,
    actor: str,
    audit: Recorder | None = None,
) -> tuple[WindowOut, WindowOut]:
    """Cancel a window: its future occurrences go, a running one ends now (what happened
    stays excluded from the SLA), and their silences are expired. Returns (before, after);
    ``audit(conn, before, after)``, when given, writes the audit row in the same
    transaction."""
    now = _now()
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM maintenance_windows WHERE id = $1 FOR UPDATE", window_id
        )
        if row is None:
            raise NotFound(f"no maintenance window {window_id}")
        if row["cancelled_at"] is not None:
            raise Conflict(
                f"maintenance window {window_id} was cancelled already "
                f"({_vn(row['cancelled_at'])} by {row['cancelled_by']})"
            )
        before = _out(row, now)
        held = await conn.fetch(
            """SELECT silence_ids FROM maintenance_occurrences
               WHERE window_id = $1 AND end_ts > $2 FOR UPDATE""",
            window_id,
            now,
        )
        silences = [s for r in held for s in r["silence_ids"]]
        await conn.execute(
            "DELETE FROM maintenance_occurrences WHERE window_id = $1 AND start_ts >= $2",
            window_id,
            now,
        )
        await conn.execute(
            """UPDATE maintenance_occurrences SET end_ts = $2, silence_ids = '{}'
               WHERE window_id = $1 AND start_ts < $2 AND end_ts > $2""",
            window_id,
            now,
        )
        after_row = await conn.fetchrow(
            f"""UPDATE maintenance_windows SET cancelled_at = $2, cancelled_by = $3
                WHERE id = $1 RETURNING {_COLUMNS}""",
            window_id,
            now,
            actor,
        )
        assert after_row is not None
        after = _out(after_row, now)
        if audit is not None:
            await audit(conn, before, after)
    # Best effort now; the silencer expires whatever is left (it knows its own silences).
    for silence_id in silences:
        try:
            await ctx.alertmanager.expire_silence(silence_id)
        except Unavailable as exc:
            log.warning(
                "window %s cancelled, silence %s left to the silencer: %s",
                window_id,
                silence_id,
                exc,
            )
    return before, after


async def in_maintenance(
    conn: asyncpg.Connection | asyncpg.Pool, device_id: str, at: dt.datetime
) -> bool:
    """Whether ``device_id`` is inside a maintenance occurrence at ``at``."""
    found = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM maintenance_device_windows
                          WHERE device_id = $1 AND start_ts <= $2 AND end_ts > $2)""",
        device_id,
        at if at.tzinfo is not None else at.replace(tzinfo=VN_TZ),
    )
    return bool(found)
