"""SLA objects and SLA reports.

Availability is defined once, in SQL (migration 0008: ``device_availability``,
``device_maintenance``, ``sla_counted_time``); this module and the Grafana SLA dashboard both
call it, so a report and the dashboard over the same range give the same figure. Here:
periods in Vietnam time, SLA objects (Zabbix's model: SLO %, scope, period, weekly schedule,
excluded downtime, how unreachable-upstream time counts), the report and its CSV, HTML and PDF
renderings with charts.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import asyncpg
from matplotlib import rc_context
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ioc.contract.feeds import device_classes, domain_of
from ioc.services.ops.audit import Recorder
from ioc.services.ops.common import VN_TZ, Conflict, Invalid, Lang, NotFound, OpsContext, tr

UpstreamAs = Literal["upstream", "device"]
PeriodKind = Literal["day", "week", "month", "quarter", "year"]
ScopeKind = Literal["unit", "domain", "device_class"]

WORST_DEVICES = 20
MAX_OUTAGES = 500
UNAVAILABLE_STATES = ("down", "flapping")
UPSTREAM_STATE = "unreachable-upstream"

# --- periods ------------------------------------------------------------------------------

_YEAR = re.compile(r"^(\d{4})$")
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_DAY = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{1,2})$", re.IGNORECASE)
_QUARTER = re.compile(r"^(\d{4})-Q(\d)$", re.IGNORECASE)
_FORMATS = "YYYY, YYYY-MM, YYYY-MM-DD, YYYY-Www or YYYY-Qn"


def _vn(day: dt.date) -> dt.datetime:
    """Midnight of a Vietnam calendar day, in UTC."""
    return dt.datetime.combine(day, dt.time(), VN_TZ).astimezone(dt.UTC)


def _year(text: str, raw: str) -> int:
    year = int(raw)
    if not 1970 <= year <= 9998:
        raise Invalid(f"bad period {text!r}: year {year} is out of range 1970-9998")
    return year


def parse_period(text: str) -> tuple[dt.datetime, dt.datetime]:
    """A calendar period in Vietnam time (2026, 2026-11, 2026-11-25, 2026-W47, 2026-Q4) as UTC
    bounds [start, end)."""
    s = text.strip()
    if m := _YEAR.match(s):
        y = _year(text, m[1])
        return _vn(dt.date(y, 1, 1)), _vn(dt.date(y + 1, 1, 1))
    if m := _MONTH.match(s):
        y, mo = _year(text, m[1]), int(m[2])
        if not 1 <= mo <= 12:
            raise Invalid(f"bad period {text!r}: month {mo} is not 1-12")
        nxt = dt.date(y + 1, 1, 1) if mo == 12 else dt.date(y, mo + 1, 1)
        return _vn(dt.date(y, mo, 1)), _vn(nxt)
    if m := _DAY.match(s):
        y = _year(text, m[1])
        try:
            day = dt.date(y, int(m[2]), int(m[3]))
        except ValueError as exc:
            raise Invalid(f"bad period {text!r}: {exc}") from None
        return _vn(day), _vn(day + dt.timedelta(days=1))
    if m := _WEEK.match(s):
        y, w = _year(text, m[1]), int(m[2])
        try:
            monday = dt.date.fromisocalendar(y, w, 1)
        except ValueError:
            weeks = dt.date(y, 12, 28).isocalendar().week
            raise Invalid(f"bad period {text!r}: ISO week {w} is not 1-{weeks} in {y}") from None
        return _vn(monday), _vn(monday + dt.timedelta(days=7))
    if m := _QUARTER.match(s):
        y, q = _year(text, m[1]), int(m[2])
        if not 1 <= q <= 4:
            raise Invalid(f"bad period {text!r}: quarter {q} is not 1-4")
        nxt = dt.date(y + 1, 1, 1) if q == 4 else dt.date(y, 3 * q + 1, 1)
        return _vn(dt.date(y, 3 * q - 2, 1)), _vn(nxt)
    raise Invalid(f"bad period {text!r}: expected {_FORMATS} (Vietnam time)")


def current_period(kind: PeriodKind, at: dt.datetime | None = None) -> str:
    """The period of this kind containing ``at`` (default now), as :func:`parse_period` reads
    it: what an SLA object's report covers by default."""
    day = (at or dt.datetime.now(dt.UTC)).astimezone(VN_TZ).date()
    if kind == "day":
        return day.isoformat()
    if kind == "week":
        iso = day.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    if kind == "month":
        return f"{day.year}-{day.month:02d}"
    if kind == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    return str(day.year)


# --- SLA objects ----------------------------------------------------------------------------

_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


class ScheduleRange(BaseModel):
    """A weekly time range in Vietnam time: ISO weekdays (1 = Monday ... 7 = Sunday) and
    [start, end) as HH:MM; end may be 24:00."""

    model_config = ConfigDict(extra="forbid")
    days: list[int] = Field(min_length=1, max_length=7)
    start: str
    end: str

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if any(not 1 <= d <= 7 for d in v):
            raise ValueError("days are ISO weekdays 1 (Monday) to 7 (Sunday)")
        return sorted(set(v))

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        m = _HHMM.match(v)
        if not m or (m[1] == "24" and m[2] != "00"):
            raise ValueError(f"{v!r} is not a time HH:MM (00:00-24:00)")
        return v

    @model_validator(mode="after")
    def _order(self) -> ScheduleRange:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} is not after start {self.start}")
        if self.start == "24:00":
            raise ValueError("start 24:00 is the next day's 00:00")
        return self


class ExcludedDowntime(BaseModel):
    """Time the SLA does not count (Zabbix's excluded downtime); a naive time is Vietnam time."""

    model_config = ConfigDict(extra="forbid")
    start: dt.datetime
    end: dt.datetime
    reason: str = Field(default="", max_length=500)

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: dt.datetime) -> dt.datetime:
        return v.replace(tzinfo=VN_TZ) if v.tzinfo is None else v

    @model_validator(mode="after")
    def _order(self) -> ExcludedDowntime:
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start")
        return self


class SlaObjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    slo_pct: float = Field(gt=0, le=100)
    scope_kind: ScopeKind
    scope: str = Field(min_length=1, max_length=200)
    period: PeriodKind = "month"
    schedule: list[ScheduleRange] = Field(default_factory=list, max_length=100)
    excluded: list[ExcludedDowntime] = Field(default_factory=list, max_length=1000)
    upstream_as: UpstreamAs = "upstream"


class SlaObjectOut(SlaObjectIn):
    id: int
    created_by: str
    created_at: dt.datetime


_SLA_COLUMNS = (
    "id, name, slo_pct, scope_kind, scope, period, schedule, excluded, upstream_as, "
    "created_by, created_at"
)


def _sla_out(row: asyncpg.Record) -> SlaObjectOut:
    return SlaObjectOut(
        id=row["id"],
        name=row["name"],
        slo_pct=float(row["slo_pct"]),
        scope_kind=row["scope_kind"],
        scope=row["scope"],
        period=row["period"],
        schedule=json.loads(row["schedule"]),
        excluded=json.loads(row["excluded"]),
        upstream_as=row["upstream_as"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


def _domains() -> list[str]:
    return sorted({domain_of(c) for c in device_classes()})


async def _check_scope(conn: asyncpg.Connection, kind: str, scope: str) -> None:
    if kind == "unit":
        if not await conn.fetchval("SELECT 1 FROM admin_units WHERE code = $1", scope):
            raise NotFound(f"no unit {scope!r}")
    elif kind == "domain" and scope not in _domains():
        raise Invalid(f"domain {scope!r} is not one of {', '.join(_domains())}")
    elif kind == "device_class" and scope not in device_classes():
        raise Invalid(f"device class {scope!r} is not one of {', '.join(device_classes())}")


async def create_sla(
    ctx: OpsContext,
    obj: SlaObjectIn,
    actor: str,
    audit: Recorder | None = None,
) -> SlaObjectOut:
    """Store an SLA object; its scope must name a unit, domain or device class that exists.
    ``audit(conn, None, created)``, when given, writes the audit row in the same transaction."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        await _check_scope(conn, obj.scope_kind, obj.scope)
        try:
            row = await conn.fetchrow(
                "INSERT INTO sla_objects (name, slo_pct, scope_kind, scope, period, schedule, "
                "excluded, upstream_as, created_by) "
                "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9) "
                f"RETURNING {_SLA_COLUMNS}",
                obj.name,
                obj.slo_pct,
                obj.scope_kind,
                obj.scope,
                obj.period,
                json.dumps([r.model_dump(mode="json") for r in obj.schedule]),
                json.dumps([x.model_dump(mode="json") for x in obj.excluded]),
                obj.upstream_as,
                actor,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"an SLA object named {obj.name!r} exists already") from None
        assert row is not None
        out = _sla_out(row)
        if audit is not None:
            await audit(conn, None, out)
    return out


async def list_slas(ctx: OpsContext) -> list[SlaObjectOut]:
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT {_SLA_COLUMNS} FROM sla_objects ORDER BY id")
    return [_sla_out(r) for r in rows]


async def get_sla(ctx: OpsContext, sla_id: int) -> SlaObjectOut:
    async with ctx.pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT {_SLA_COLUMNS} FROM sla_objects WHERE id = $1", sla_id)
    if row is None:
        raise NotFound(f"no SLA object {sla_id}")
    return _sla_out(row)


async def delete_sla(
    ctx: OpsContext,
    sla_id: int,
    actor: str,
    audit: Recorder | None = None,
) -> SlaObjectOut:
    """Remove an SLA object; returns what was removed (for the audit log's "before").
    ``audit(conn, removed, None)``, when given, writes the audit row in the same transaction."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"DELETE FROM sla_objects WHERE id = $1 RETURNING {_SLA_COLUMNS}", sla_id
        )
        if row is None:
            raise NotFound(f"no SLA object {sla_id}")
        out = _sla_out(row)
        if audit is not None:
            await audit(conn, out, None)
    return out


# --- the report -----------------------------------------------------------------------------


class Availability(BaseModel):
    """Availability of a set of devices: device-seconds, so a unit weighs its devices' time."""

    key: str
    name: str
    devices: int = 0
    measured_s: float = 0.0
    unavailable_s: float = 0.0
    maintenance_s: float = 0.0
    upstream_s: float = 0.0

    @property
    def availability_pct(self) -> float | None:
        if self.measured_s <= 0:
            return None
        return 100.0 * (1.0 - self.unavailable_s / self.measured_s)


class DeviceAvailability(Availability):
    device_class: str
    site_id: str
    site_name: str
    unit_code: str
    unit_name: str


def _figures(row: asyncpg.Record) -> dict[str, Any]:
    """A row's device-seconds, as the report's models name them."""
    return {
        "measured_s": row["measured_s"],
        "unavailable_s": row["unavailable_s"],
        "maintenance_s": row["maintenance_s"],
        "upstream_s": row["upstream_s"],
    }


def _availability(key: str, name: str, row: asyncpg.Record | None) -> Availability:
    """A set of devices' figures from a summed row (none: no device)."""
    if row is None:
        return Availability(key=key, name=name)
    return Availability(key=key, name=name, devices=row["devices"], **_figures(row))


def _device_availability(row: asyncpg.Record, place: asyncpg.Record) -> DeviceAvailability:
    """One listed device: its figures (``row``, keyed by its id) and where it is."""
    return DeviceAvailability(
        key=row["key"],
        name=row["key"],
        devices=1,
        **_figures(row),
        device_class=row["device_class"],
        site_id=place["site_id"],
        site_name=place["site_name"],
        unit_code=place["unit_code"],
        unit_name=place["unit_name"],
    )


class Outage(BaseModel):
    device_id: str
    device_class: str
    state: str
    site_id: str
    site_name: str
    unit_code: str
    unit_name: str
    start: dt.datetime
    end: dt.datetime
    ongoing: bool
    minutes: float
    maintenance_minutes: float
    in_maintenance: bool


class MaintenanceInPeriod(BaseModel):
    window_id: int
    scope_kind: str
    scope: str
    start: dt.datetime
    end: dt.datetime
    note: str
    cancelled_at: dt.datetime | None
    devices: int


class SlaReport(BaseModel):
    unit_code: str
    unit_name: str
    period: str
    start: dt.datetime
    end: dt.datetime
    measured_until: dt.datetime
    generated_at: dt.datetime
    lang: Lang
    upstream_as: UpstreamAs
    domain: str | None
    sla: SlaObjectOut | None
    slo_pct: float | None
    slo_met: bool | None
    overall: Availability
    units: list[Availability]
    classes: list[Availability]
    worst: list[DeviceAvailability]
    outages: list[Outage]
    outages_total: int
    maintenance: list[MaintenanceInPeriod]


_SCOPE_FILTER = """
  s.unit_code IN (SELECT unit_code FROM unit_ancestors WHERE ancestor_code = $1)
  AND ($2::text IS NULL OR device_domain(d.device_class) = $2)
  AND ($3::text IS NULL OR d.device_class = $3)
"""

_FIGURES_SQL = f"""
WITH a AS MATERIALIZED (
    SELECT a.device_id, a.measured_s, a.unavailable_s, a.maintenance_s, a.upstream_s,
           d.device_class, child.code AS child_code
    FROM device_availability($4, $5, $6, sla_counted_time($7::jsonb, $8::jsonb, $4, $5), $9) a
    JOIN devices d ON d.id = a.device_id
    JOIN sites s ON s.id = d.site_id
    LEFT JOIN (SELECT ua.unit_code, c.code FROM unit_ancestors ua
               JOIN admin_units c ON c.code = ua.ancestor_code
               WHERE c.parent_code = $1) child ON child.unit_code = s.unit_code
    WHERE {_SCOPE_FILTER}
)
SELECT CASE WHEN grouping(child_code) = 0 THEN 'unit'
            WHEN grouping(device_class) = 0 THEN 'class' ELSE 'all' END AS kind,
       CASE WHEN grouping(child_code) = 0 THEN child_code ELSE device_class END AS key,
       count(*) AS devices, coalesce(sum(measured_s), 0) AS measured_s,
       coalesce(sum(unavailable_s), 0) AS unavailable_s,
       coalesce(sum(maintenance_s), 0) AS maintenance_s,
       coalesce(sum(upstream_s), 0) AS upstream_s, NULL AS device_class
FROM a GROUP BY GROUPING SETS ((child_code), (device_class), ())
UNION ALL
(SELECT 'device', device_id, 1, measured_s, unavailable_s, maintenance_s, upstream_s,
        device_class
 FROM a WHERE measured_s > 0
 ORDER BY 100.0 * (1.0 - unavailable_s / measured_s), unavailable_s DESC,
          device_id COLLATE "C"
 LIMIT {WORST_DEVICES})
"""
"""The report's figures, summed in the database (a national report is 100,000 devices):
kind ``all`` (the unit), ``unit`` (per unit directly below; key NULL: devices directly in
the unit), ``class`` (per device class), and ``device`` (the worst devices: lowest
availability, then most unavailable time, then id), as rows of device-seconds."""

_PLACES_SQL = """
SELECT d.id AS device_id, d.site_id, s.name AS site_name, s.unit_code, u.name AS unit_name
FROM devices d
JOIN sites s ON s.id = d.site_id
JOIN admin_units u ON u.code = s.unit_code
WHERE d.id = ANY($1::text[])
"""
"""Where the worst devices are (names only for those the report lists)."""

_OUTAGES_SQL = f"""
WITH iv AS (
    SELECT i.device_id, i.state, greatest(i.start_ts, $4) AS s,
           least(coalesce(i.end_ts, now()), $5, now()) AS e, i.end_ts IS NULL AS ongoing,
           d.device_class, d.site_id
    FROM device_state_intervals i
    JOIN devices d ON d.id = i.device_id
    JOIN sites s ON s.id = d.site_id
    WHERE i.state = ANY($6::text[]) AND i.start_ts < least($5, now())
      AND coalesce(i.end_ts, 'infinity'::timestamptz) > $4
      AND {_SCOPE_FILTER}
), longest AS (
    -- the longest first; names and maintenance only for those listed
    SELECT iv.*, count(*) OVER () AS total FROM iv
    ORDER BY iv.e - iv.s DESC, iv.s, iv.device_id
    LIMIT {MAX_OUTAGES}
)
SELECT l.device_id, l.state, l.s, l.e, l.ongoing, l.device_class, l.site_id,
       st.name AS site_name, st.unit_code, u.name AS unit_name,
       CASE WHEN mw.m IS NULL THEN 0::double precision
            ELSE multirange_seconds(tstzmultirange(tstzrange(l.s, greatest(l.s, l.e))) * mw.m)
       END AS maint_s,
       l.total
FROM longest l
JOIN sites st ON st.id = l.site_id
JOIN admin_units u ON u.code = st.unit_code
LEFT JOIN device_maintenance($4, $5) mw ON mw.device_id = l.device_id
ORDER BY l.e - l.s DESC, l.s, l.device_id
"""

_MAINTENANCE_SQL = f"""
SELECT o.window_id, w.scope_kind, w.scope, o.start_ts, o.end_ts, coalesce(w.note, '') AS note,
       w.cancelled_at, count(DISTINCT mdw.device_id) AS devices
FROM maintenance_occurrences o
JOIN maintenance_windows w ON w.id = o.window_id
JOIN maintenance_device_windows mdw
    ON mdw.window_id = o.window_id AND mdw.start_ts = o.start_ts
JOIN devices d ON d.id = mdw.device_id
JOIN sites s ON s.id = d.site_id
WHERE o.start_ts < $5 AND o.end_ts > $4 AND {_SCOPE_FILTER}
GROUP BY o.window_id, w.scope_kind, w.scope, o.start_ts, o.end_ts, w.note, w.cancelled_at
ORDER BY o.start_ts, o.window_id
"""


async def _applicable_sla(
    conn: asyncpg.Connection, unit: str, domain: str | None, sla_id: int | None, auto: bool
) -> SlaObjectOut | None:
    """The SLA object named; else, only when ``auto``, one scoped to this unit, else one
    scoped to the domain; else None."""
    if sla_id is not None:
        row = await conn.fetchrow(f"SELECT {_SLA_COLUMNS} FROM sla_objects WHERE id = $1", sla_id)
        if row is None:
            raise NotFound(f"no SLA object {sla_id}")
        return _sla_out(row)
    if not auto:
        return None
    row = await conn.fetchrow(
        f"SELECT {_SLA_COLUMNS} FROM sla_objects "
        "WHERE (scope_kind = 'unit' AND scope = $1) "
        "   OR ($2::text IS NOT NULL AND scope_kind = 'domain' AND scope = $2) "
        "ORDER BY scope_kind = 'unit' DESC, id LIMIT 1",
        unit,
        domain,
    )
    return _sla_out(row) if row is not None else None


async def sla_report(
    ctx: OpsContext,
    unit: str,
    period: str,
    *,
    upstream_as: UpstreamAs | None = None,
    domain: str | None = None,
    sla_id: int | None = None,
    auto_sla: bool = False,
    lang: Lang = "vi",
) -> SlaReport:
    """Availability of a unit's subtree over a period, overall, per unit directly below and
    per device class, against an SLA object's objective.

    An SLA object applies only when asked for: ``sla_id`` names it, or ``auto_sla`` picks the
    one scoped to the unit (else to ``domain``). Without either the report has no objective,
    counts all the time and unreachable-upstream as the upstream's outage: the SLA dashboard's
    default (``$sla`` = none), so the two agree. An SLA object that applies brings its
    schedule, excluded downtime, scope (domain or device class) and way of counting
    unreachable-upstream time, as the dashboard does when it is chosen there; an explicit
    ``upstream_as`` is never overridden (the report's ``upstream_as`` says which was used).
    ``upstream_as`` unset: the SLA object's, else ``upstream``."""
    t0, t1 = parse_period(period)
    if upstream_as is not None and upstream_as not in ("upstream", "device"):
        raise Invalid(f"upstream_as {upstream_as!r} is not 'upstream' or 'device'")
    if domain is not None and domain not in _domains():
        raise Invalid(f"domain {domain!r} is not one of {', '.join(_domains())}")
    async with ctx.pool.acquire() as conn:
        unit_name = await conn.fetchval("SELECT name FROM admin_units WHERE code = $1", unit)
        if unit_name is None:
            raise NotFound(f"no unit {unit!r}")
        sla = await _applicable_sla(conn, unit, domain, sla_id, auto_sla)
        device_class: str | None = None
        schedule: list[Any] = []
        excluded: list[Any] = []
        counting: UpstreamAs = upstream_as or "upstream"
        if sla is not None:
            counting = upstream_as or sla.upstream_as
            schedule = [r.model_dump(mode="json") for r in sla.schedule]
            excluded = [x.model_dump(mode="json") for x in sla.excluded]
            if sla.scope_kind == "domain":
                domain = sla.scope if domain is None or domain == sla.scope else domain
            elif sla.scope_kind == "device_class":
                device_class = sla.scope
        scope = (unit, domain, device_class, t0, t1)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # JIT compiling these plans (cost in the millions, from the maintenance view's
            # recursive estimate) took 1.2-1.5 s per query at national scale and saved less.
            # A plan per call: after five calls PostgreSQL may keep a generic plan, made
            # without the unit and period; a country's report then ran twice as long as its
            # own plan takes (planning is milliseconds against seconds).
            await conn.execute("SET LOCAL jit = off; SET LOCAL plan_cache_mode = force_custom_plan")
            now = await conn.fetchval("SELECT now()")
            # every device under the unit: no need to pick them (the country, in a national
            # deployment with one root)
            roots = await conn.fetch("SELECT code FROM admin_units WHERE parent_code IS NULL")
            under = None if [r["code"] for r in roots] == [unit] else unit
            figures = await conn.fetch(
                _FIGURES_SQL,
                *scope,
                counting,
                json.dumps(schedule),
                json.dumps(excluded),
                under,
            )
            worst_rows = [r for r in figures if r["kind"] == "device"]
            places = {
                r["device_id"]: r
                for r in await conn.fetch(_PLACES_SQL, [r["key"] for r in worst_rows])
            }
            states = [*UNAVAILABLE_STATES] + ([UPSTREAM_STATE] if counting == "device" else [])
            outage_rows = await conn.fetch(_OUTAGES_SQL, *scope, states)
            maint_rows = await conn.fetch(_MAINTENANCE_SQL, *scope)
            children = await conn.fetch(
                "SELECT code, name FROM admin_units WHERE parent_code = $1 ORDER BY code", unit
            )

    sums = {(r["kind"], r["key"]): r for r in figures if r["kind"] != "device"}
    worst = [_device_availability(r, places[r["key"]]) for r in worst_rows]
    own = _availability(
        unit, unit_name + tr(lang, " (trực tiếp)", " (directly)"), sums.get(("unit", None))
    )
    per_unit = {
        r["code"]: _availability(r["code"], r["name"], sums.get(("unit", r["code"])))
        for r in children
    }
    per_class = {
        key: _availability(key, key, row) for (kind, key), row in sums.items() if kind == "class"
    }
    overall_availability = _availability(unit, unit_name, sums.get(("all", None)))
    units = [u for u in per_unit.values() if u.devices] + ([own] if own.devices else [])
    outages = [
        Outage(
            device_id=r["device_id"],
            device_class=r["device_class"],
            state=r["state"],
            site_id=r["site_id"],
            site_name=r["site_name"],
            unit_code=r["unit_code"],
            unit_name=r["unit_name"],
            start=r["s"],
            end=r["e"],
            ongoing=r["ongoing"],
            minutes=(r["e"] - r["s"]).total_seconds() / 60.0,
            maintenance_minutes=r["maint_s"] / 60.0,
            in_maintenance=r["maint_s"] > 0,
        )
        for r in outage_rows
    ]
    pct = overall_availability.availability_pct
    slo = sla.slo_pct if sla is not None else None
    return SlaReport(
        unit_code=unit,
        unit_name=unit_name,
        period=period.strip(),
        start=t0,
        end=t1,
        measured_until=min(t1, max(t0, now)),
        generated_at=now,
        lang=lang,
        upstream_as=counting,
        domain=domain,
        sla=sla,
        slo_pct=slo,
        slo_met=None if slo is None or pct is None else pct >= slo,
        overall=overall_availability,
        units=units,
        classes=sorted(per_class.values(), key=lambda c: c.key),
        worst=worst,
        outages=outages,
        outages_total=int(outage_rows[0]["total"]) if outage_rows else 0,
        maintenance=[
            MaintenanceInPeriod(
                window_id=r["window_id"],
                scope_kind=r["scope_kind"],
                scope=r["scope"],
                start=r["start_ts"],
                end=r["end_ts"],
                note=r["note"],
                cancelled_at=r["cancelled_at"],
                devices=r["devices"],
            )
            for r in maint_rows
        ],
    )


# --- renderings -----------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _vn_time(value: dt.datetime) -> str:
    return value.astimezone(VN_TZ).strftime("%Y-%m-%d %H:%M")


def render_csv(report: SlaReport) -> str:
    """Blocks separated by a blank line, each with its header: summary, units, device
    classes, worst devices, outages, maintenance. Times are UTC ISO 8601."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        [
            "unit",
            "unit_name",
            "period",
            "start",
            "end",
            "upstream_as",
            "domain",
            "sla",
            "slo_pct",
            "slo_met",
            "availability_pct",
            "devices",
        ],
    )
    w.writerow(
        [
            report.unit_code,
            report.unit_name,
            report.period,
            report.start.isoformat(),
            report.end.isoformat(),
            report.upstream_as,
            report.domain or "",
            report.sla.name if report.sla else "",
            report.slo_pct or "",
            "" if report.slo_met is None else str(report.slo_met).lower(),
            _pct(report.overall.availability_pct),
            report.overall.devices,
        ]
    )
    figures = ["devices", "measured_s", "unavailable_s", "maintenance_s", "upstream_s"]
    for section, rows in (("unit", report.units), ("device_class", report.classes)):
        w.writerow([])
        w.writerow([section, "name", *figures, "availability_pct"])
        for a in rows:
            w.writerow(
                [
                    a.key,
                    a.name,
                    a.devices,
                    f"{a.measured_s:.0f}",
                    f"{a.unavailable_s:.0f}",
                    f"{a.maintenance_s:.0f}",
                    f"{a.upstream_s:.0f}",
                    _pct(a.availability_pct),
                ]
            )
    w.writerow([])
    w.writerow(["device", "device_class", "site", "unit", *figures[1:], "availability_pct"])
    for d in report.worst:
        w.writerow(
            [
                d.key,
                d.device_class,
                d.site_id,
                d.unit_code,
                f"{d.measured_s:.0f}",
                f"{d.unavailable_s:.0f}",
                f"{d.maintenance_s:.0f}",
                f"{d.upstream_s:.0f}",
                _pct(d.availability_pct),
            ]
        )
    w.writerow([])
    w.writerow(
        [
            "outage_device",
            "device_class",
            "state",
            "site",
            "unit",
            "start",
            "end",
            "minutes",
            "maintenance_minutes",
            "in_maintenance",
            "ongoing",
        ]
    )
    for o in report.outages:
        w.writerow(
            [
                o.device_id,
                o.device_class,
                o.state,
                o.site_id,
                o.unit_code,
                o.start.isoformat(),
                o.end.isoformat(),
                f"{o.minutes:.1f}",
                f"{o.maintenance_minutes:.1f}",
                str(o.in_maintenance).lower(),
                str(o.ongoing).lower(),
            ]
        )
    w.writerow([])
    w.writerow(["maintenance_window", "scope_kind", "scope", "start", "end", "devices", "note"])
    for m in report.maintenance:
        w.writerow(
            [
                m.window_id,
                m.scope_kind,
                m.scope,
                m.start.isoformat(),
                m.end.isoformat(),
                m.devices,
                m.note,
            ]
        )
    return out.getvalue()


_RC: dict[Any, Any] = {
    "font.family": "DejaVu Sans",  # ships with matplotlib and has Vietnamese diacritics
    "font.size": 9,
    "svg.fonttype": "none",  # text stays text in the HTML
    "pdf.fonttype": 42,  # embedded TrueType in the PDF
    "svg.hashsalt": "ioc-sla",  # stable ids: the same report renders the same SVG
}
_GOOD, _BAD, _MAINT = "#2e7d32", "#c62828", "#90a4ae"


def _days(t: dt.datetime) -> float:
    """Matplotlib's date number (days since its default epoch, 1970-01-01 UTC)."""
    return t.timestamp() / 86400.0


def _bar_chart(
    fig: Figure,
    labels: Sequence[str],
    values: Sequence[float | None],
    title: str,
    slo: float | None,
    lang: Lang,
) -> None:
    ax = fig.subplots()
    vals = [v if v is not None else 0.0 for v in values]
    colours = [_GOOD if slo is None or v >= slo else _BAD for v in vals]
    ys = list(range(len(labels)))[::-1]
    ax.barh(ys, vals, color=colours)
    ax.set_yticks(ys, labels)
    low = min([*vals, slo if slo is not None else 100.0, 100.0])
    ax.set_xlim(max(0.0, low - max(0.5, (100.0 - low) * 0.2)), 100.0)
    for y, v in zip(ys, values, strict=True):
        ax.text(100.0, y, f"{_pct(v)} ", va="center", ha="right", fontsize=7, color="black")
    if slo is not None:
        ax.axvline(slo, color="black", linestyle="--", linewidth=1)
        ax.text(slo, len(labels) - 0.4, f"SLO {slo:g}%", fontsize=7, ha="right")
    ax.set_xlabel(tr(lang, "Khả dụng (%)", "Availability (%)"))
    ax.set_title(title)
    fig.tight_layout()


def _unit_chart(report: SlaReport, lang: Lang) -> Figure:
    rows = [report.overall, *report.units]
    fig = Figure(figsize=(8, 0.45 * len(rows) + 1.4))
    labels = [tr(lang, "Toàn bộ: ", "All: ") + report.unit_name] + [u.name for u in report.units]
    _bar_chart(
        fig,
        labels,
        [a.availability_pct for a in rows],
        tr(lang, "Khả dụng theo đơn vị", "Availability per unit"),
        report.slo_pct,
        lang,
    )
    return fig


def _worst_chart(report: SlaReport, lang: Lang) -> Figure:
    rows = report.worst or []
    fig = Figure(figsize=(8, 0.32 * max(len(rows), 1) + 1.4))
    _bar_chart(
        fig,
        [f"{d.key} ({d.site_name})" for d in rows],
        [d.availability_pct for d in rows],
        tr(lang, "Thiết bị kém khả dụng nhất", "Least available devices"),
        report.slo_pct,
        lang,
    )
    return fig


def _timeline_chart(report: SlaReport, lang: Lang, max_devices: int = 25) -> Figure:
    order: list[str] = []
    spans: dict[str, list[Outage]] = defaultdict(list)
    for o in report.outages:
        if o.device_id not in spans and len(order) >= max_devices:
            continue
        if o.device_id not in spans:
            order.append(o.device_id)
        spans[o.device_id].append(o)
    fig = Figure(figsize=(10, 0.32 * max(len(order), 1) + 1.6))
    ax = fig.subplots()
    for y, dev in enumerate(reversed(order)):
        for o in spans[dev]:
            ax.barh(
                y,
                _days(o.end) - _days(o.start),
                left=_days(o.start),
                height=0.6,
                color=_MAINT if o.in_maintenance else _BAD,
            )
    ax.set_yticks(list(range(len(order))), list(reversed(order)))
    ax.set_xlim(_days(report.start), _days(report.end))
    ax.xaxis_date(tz=VN_TZ)
    fig.autofmt_xdate()
    ax.set_title(
        tr(
            lang,
            "Dòng thời gian sự cố (xám: trong bảo trì), giờ Việt Nam",
            "Outage timeline (grey: in maintenance), Vietnam time",
        )
    )
    if not order:
        ax.text(0.5, 0.5, tr(lang, "Không có sự cố", "No outages"), transform=ax.transAxes)
    fig.tight_layout()
    return fig


def _charts(report: SlaReport, lang: Lang) -> list[Figure]:
    return [_unit_chart(report, lang), _worst_chart(report, lang), _timeline_chart(report, lang)]


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _summary(report: SlaReport, lang: Lang) -> list[tuple[str, str]]:
    slo = (
        tr(lang, "không có đối tượng SLA", "no SLA object")
        if report.sla is None
        else f"{report.sla.name}: {report.slo_pct:g}% — "
        + (
            tr(lang, "chưa đo được", "nothing measured")
            if report.slo_met is None
            else tr(lang, "ĐẠT", "MET")
            if report.slo_met
            else tr(lang, "KHÔNG ĐẠT", "NOT MET")
        )
    )
    return [
        (tr(lang, "Đơn vị", "Unit"), f"{report.unit_name} ({report.unit_code})"),
        (
            tr(lang, "Kỳ", "Period"),
            f"{report.period}: {_vn_time(report.start)} - {_vn_time(report.end)} "
            + tr(lang, "(giờ Việt Nam)", "(Vietnam time)"),
        ),
        (tr(lang, "Khả dụng", "Availability"), f"{_pct(report.overall.availability_pct)} %"),
        ("SLA", slo),
        (tr(lang, "Số thiết bị được đo", "Devices measured"), str(report.overall.devices)),
        (
            tr(lang, "Mất kết nối do tuyến trên", "Unreachable upstream"),
            tr(lang, "tính cho nút tuyến trên", "counted on the upstream node")
            if report.upstream_as == "upstream"
            else tr(lang, "tính cho thiết bị", "counted on the device"),
        ),
        (
            tr(lang, "Thời gian bảo trì (loại trừ)", "Maintenance (excluded)"),
            f"{report.overall.maintenance_s / 3600:.1f} h",
        ),
        (tr(lang, "Đo đến", "Measured until"), _vn_time(report.measured_until)),
    ]


def _figure_rows(rows: Iterable[Availability]) -> list[list[str]]:
    return [
        [
            a.name,
            str(a.devices),
            _pct(a.availability_pct),
            f"{a.unavailable_s / 60:.1f}",
            f"{a.upstream_s / 60:.1f}",
            f"{a.maintenance_s / 60:.1f}",
        ]
        for a in rows
    ]


def _figure_header(lang: Lang, first: str) -> list[str]:
    return [
        first,
        tr(lang, "Thiết bị", "Devices"),
        tr(lang, "Khả dụng %", "Availability %"),
        tr(lang, "Không khả dụng (phút)", "Unavailable (min)"),
        tr(lang, "Mất tuyến trên (phút)", "Upstream (min)"),
        tr(lang, "Bảo trì (phút)", "Maintenance (min)"),
    ]


def _outage_header(lang: Lang) -> list[str]:
    return [
        tr(lang, "Thiết bị", "Device"),
        tr(lang, "Trạng thái", "State"),
        tr(lang, "Điểm", "Site"),
        tr(lang, "Đơn vị", "Unit"),
        tr(lang, "Bắt đầu", "Start"),
        tr(lang, "Kết thúc", "End"),
        tr(lang, "Phút", "Minutes"),
        tr(lang, "Bảo trì", "Maintenance"),
    ]


def _outage_rows(report: SlaReport, lang: Lang, limit: int) -> list[list[str]]:
    yes, no = tr(lang, "có", "yes"), tr(lang, "không", "no")
    return [
        [
            o.device_id,
            o.state,
            o.site_name,
            o.unit_name,
            _vn_time(o.start),
            _vn_time(o.end) + (tr(lang, " (đang diễn ra)", " (ongoing)") if o.ongoing else ""),
            f"{o.minutes:.1f}",
            yes if o.in_maintenance else no,
        ]
        for o in report.outages[:limit]
    ]


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:"DejaVu Sans","Noto Sans",Arial,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}
th{background:#eceff1} .met{color:#2e7d32;font-weight:bold} .missed{color:#c62828;font-weight:bold}
svg{max-width:100%;height:auto}
"""


def render_html(report: SlaReport, lang: Lang) -> str:
    """One self-contained page: summary, charts as inline SVG, and the tables."""
    title = tr(lang, "Báo cáo SLA", "SLA report") + f" — {report.unit_name} — {report.period}"
    with rc_context(_RC):
        charts = [_svg(f) for f in _charts(report, lang)]
    parts = [
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _table(
            [tr(lang, "Mục", "Item"), tr(lang, "Giá trị", "Value")],
            [[k, v] for k, v in _summary(report, lang)],
        ),
        f"<h2>{tr(lang, 'Khả dụng theo đơn vị', 'Availability per unit')}</h2>",
        charts[0],
        _table(_figure_header(lang, tr(lang, "Đơn vị", "Unit")), _figure_rows(report.units)),
        f"<h2>{tr(lang, 'Theo loại thiết bị', 'Per device class')}</h2>",
        _table(_figure_header(lang, tr(lang, "Loại", "Class")), _figure_rows(report.classes)),
        f"<h2>{tr(lang, 'Thiết bị kém khả dụng nhất', 'Least available devices')}</h2>",
        charts[1],
        _table(_figure_header(lang, tr(lang, "Thiết bị", "Device")), _figure_rows(report.worst)),
        f"<h2>{tr(lang, 'Sự cố', 'Outages')} ({report.outages_total})</h2>",
        charts[2],
        _table(_outage_header(lang), _outage_rows(report, lang, 100)),
        f"<h2>{tr(lang, 'Bảo trì trong kỳ', 'Maintenance in the period')}</h2>",
        _table(
            [
                "#",
                tr(lang, "Phạm vi", "Scope"),
                tr(lang, "Bắt đầu", "Start"),
                tr(lang, "Kết thúc", "End"),
                tr(lang, "Thiết bị", "Devices"),
                tr(lang, "Ghi chú", "Note"),
            ],
            [
                [
                    str(m.window_id),
                    f"{m.scope_kind}: {m.scope}",
                    _vn_time(m.start),
                    _vn_time(m.end),
                    str(m.devices),
                    m.note,
                ]
                for m in report.maintenance
            ],
        ),
        f"<p><small>{tr(lang, 'Tạo lúc', 'Generated')} {_vn_time(report.generated_at)}"
        "</small></p></body></html>",
    ]
    return "\n".join(parts)


def _table_page(title: str, header: list[str], rows: list[list[str]]) -> Figure:
    fig = Figure(figsize=(11.69, 8.27))  # A4 landscape
    ax = fig.subplots()
    ax.axis("off")
    ax.set_title(title, loc="left", fontsize=12)
    if rows:
        table = ax.table(cellText=rows, colLabels=header, loc="upper left", cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        table.scale(1, 1.2)
    return fig


def render_pdf(report: SlaReport, lang: Lang) -> bytes:
    """The summary, the same charts as the HTML, and the tables, one A4 page each."""
    buf = io.BytesIO()
    title = tr(lang, "Báo cáo SLA", "SLA report") + f" — {report.unit_name} — {report.period}"
    with rc_context(_RC), PdfPages(buf, metadata={"Title": title, "CreationDate": None}) as pdf:
        pages = [
            _table_page(
                title,
                [tr(lang, "Mục", "Item"), tr(lang, "Giá trị", "Value")],
                [[k, v] for k, v in _summary(report, lang)],
            ),
            *_charts(report, lang),
            _table_page(
                tr(lang, "Khả dụng theo đơn vị và loại thiết bị", "Per unit and device class"),
                _figure_header(lang, tr(lang, "Đơn vị / loại", "Unit / class")),
                _figure_rows([*report.units, *report.classes]),
            ),
            _table_page(
                tr(lang, "Sự cố dài nhất", "Longest outages"),
                _outage_header(lang),
                _outage_rows(report, lang, 35),
            ),
        ]
        for fig in pages:
            pdf.savefig(fig)
    return buf.getvalue()
