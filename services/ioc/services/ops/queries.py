"""Reading incidents for the API and the console: the list with its filters and one
incident with everything an operator needs to act on it.

Every value from a request is a bound parameter (``$n``), never text in the SQL: a title
search for ``'; DROP TABLE incidents; --`` looks for that text and finds nothing. The LIKE
wildcards in a search are escaped, so ``%`` and ``_`` match themselves.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ioc.contract.feeds import domain_of
from ioc.services.ops.auth import Principal, sees_unit
from ioc.services.ops.common import Forbidden, Invalid, NotFound, OpsContext
from ioc.services.ops.models import (
    AffectedDevice,
    EscalationRow,
    IncidentDetail,
    IncidentFilter,
    IncidentSummary,
    PageRow,
    StateChange,
    TimelineStep,
)

if TYPE_CHECKING:
    import asyncpg

    from ioc.contract.topology import Topology

MAX_STATE_CHANGES = 500

_SUMMARY = """
SELECT i.id, i.kind, i.severity, i.status, i.title, i.root_device, i.device_class,
       device_domain(i.device_class) AS domain, i.unit_code, u.name AS unit_name, i.site_id,
       i.opened_at, i.acknowledged_at, i.acknowledged_by, i.assigned_to, i.resolved_at,
       cardinality(i.affected) AS affected_count
FROM incidents i
LEFT JOIN admin_units u ON u.code = i.unit_code
"""

_IN_UNIT = (
    "EXISTS (SELECT 1 FROM unit_ancestors a "
    "WHERE a.unit_code = i.unit_code AND a.ancestor_code = ${n})"
)


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's own wildcards (and its escape character) matching themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def domains(topology: Topology) -> set[str]:
    return {domain_of(d.device_class) for d in topology.devices.values()}


def _check_filter(topology: Topology, f: IncidentFilter, principal: Principal) -> None:
    if f.unit is not None and f.unit not in topology.units:
        raise Invalid(f"no unit {f.unit!r} in scenario {topology.name}")
    if f.domain is not None and f.domain not in domains(topology):
        known = ", ".join(sorted(domains(topology)))
        raise Invalid(f"no domain {f.domain!r}; known: {known}")
    if f.since is not None and f.until is not None and f.until <= f.since:
        raise Invalid("until must be after since")
    if principal.unit_code is not None and principal.unit_code not in topology.units:
        raise Forbidden(
            f"{principal.name} is limited to unit {principal.unit_code}, which scenario "
            f"{topology.name} does not have"
        )
    if (
        principal.unit_code is not None
        and f.unit is not None
        and not sees_unit(topology, principal, f.unit)
        and f.unit not in topology.ancestors(principal.unit_code)
    ):
        raise Forbidden(f"{principal.name} is limited to unit {principal.unit_code}")


def _summary(row: Any) -> IncidentSummary:
    return IncidentSummary(**dict(row))


async def list_incidents(
    ctx: OpsContext, f: IncidentFilter, principal: Principal
) -> list[IncidentSummary]:
    """Incidents matching ``f`` inside the principal's scope, newest first."""
    _check_filter(ctx.topology, f, principal)
    where: list[str] = []
    args: list[Any] = []

    def add(sql: str, value: str | datetime) -> None:
        args.append(value)
        where.append(sql.format(n=len(args)))

    if principal.unit_code is not None:
        add(_IN_UNIT, principal.unit_code)
    if f.unit is not None:
        add(_IN_UNIT, f.unit)
    if f.domain is not None:
        add("device_domain(i.device_class) = ${n}", f.domain)
    if f.severity is not None:
        add("i.severity = ${n}", f.severity)
    if f.status == "active":
        where.append("i.status <> 'resolved'")
    elif f.status is not None:
        add("i.status = ${n}", f.status)
    if f.since is not None:
        add("i.opened_at >= ${n}", f.since)
    if f.until is not None:
        add("i.opened_at < ${n}", f.until)
    if f.q is not None:
        add(
            "(i.title ILIKE ${n} OR i.root_device ILIKE ${n} OR EXISTS "
            "(SELECT 1 FROM unnest(i.affected) AS d(id) WHERE d.id ILIKE ${n}))",
            like_pattern(f.q),
        )
    args.extend([f.limit, f.offset])
    sql = (
        _SUMMARY
        + (f"WHERE {' AND '.join(where)}\n" if where else "")
        + f"ORDER BY i.opened_at DESC, i.id DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}"
    )
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(sql, *args)
    return [_summary(r) for r in rows]


async def incident_summary(
    conn: asyncpg.Connection, topology: Topology, incident_id: int, principal: Principal
) -> IncidentSummary:
    """One incident's summary row, or :class:`NotFound` (also for one outside the
    principal's unit: its existence is not told)."""
    row = await conn.fetchrow(_SUMMARY + "WHERE i.id = $1", incident_id)
    if row is None or not sees_unit(topology, principal, row["unit_code"]):
        raise NotFound(f"no incident {incident_id}")
    return _summary(row)


def _json_list(value: Any) -> list[dict[str, Any]]:
    decoded = json.loads(value) if isinstance(value, str) else value
    if not isinstance(decoded, list):
        return []
    return [d if isinstance(d, dict) else {"value": d} for d in decoded]


async def get_incident(ctx: OpsContext, incident_id: int, principal: Principal) -> IncidentDetail:
    """The incident with its timeline, affected devices (and their current state), the pages
    sent for it, its comments and acknowledgements, the root device's state changes during
    it, its Alertmanager silences and its escalations; :class:`NotFound` if unknown."""
    async with (
        ctx.pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        summary = await incident_summary(conn, ctx.topology, incident_id, principal)
        devices = await conn.fetchval(
            "SELECT array_prepend(root_device, array_remove(affected, root_device)) "
            "FROM incidents WHERE id = $1",
            incident_id,
        )
        affected = await conn.fetch(
            """
            SELECT a.device_id, d.device_class, d.site_id, s.name AS site_name, s.unit_code,
                   u.name AS unit_name, ds.state, ds.since AS state_since
            FROM unnest($1::text[]) WITH ORDINALITY AS a(device_id, n)
            LEFT JOIN devices d ON d.id = a.device_id
            LEFT JOIN sites s ON s.id = d.site_id
            LEFT JOIN admin_units u ON u.code = s.unit_code
            LEFT JOIN device_state ds ON ds.device_id = a.device_id
            ORDER BY a.n
            """,
            list(devices or []),
        )
        timeline = await conn.fetch(
            "SELECT seq, event, status, at, actor, note, assigned_to FROM incident_events "
            "WHERE incident_id = $1 ORDER BY seq",
            incident_id,
        )
        pages = await conn.fetch(
            "SELECT id, status, alertname, severity, device_id, summary, starts_at, "
            "received_at, notifications, deliveries FROM pages WHERE incident_id = $1 "
            "ORDER BY received_at, id",
            incident_id,
        )
        changes = await conn.fetch(
            "SELECT device_id, state, reason, start_ts, end_ts FROM device_state_intervals "
            "WHERE device_id = $1 AND start_ts < coalesce($3, now()) "
            "AND (end_ts IS NULL OR end_ts > $2) ORDER BY start_ts LIMIT $4",
            summary.root_device,
            summary.opened_at,
            summary.resolved_at,
            MAX_STATE_CHANGES,
        )
        silences = await conn.fetch(
            "SELECT silence_id FROM incident_silences WHERE incident_id = $1 "
            "AND expired_at IS NULL ORDER BY created_at, silence_id",
            incident_id,
        )
        escalations = await conn.fetch(
            "SELECT level, targets, paged_at FROM escalations WHERE incident_id = $1 "
            "ORDER BY level",
            incident_id,
        )
    steps = [TimelineStep(**dict(r)) for r in timeline]
    return IncidentDetail(
        **summary.model_dump(),
        affected=[AffectedDevice(**dict(r)) for r in affected],
        timeline=steps,
        comments=[s for s in steps if s.event == "commented"],
        acknowledgements=[s for s in steps if s.event == "acknowledged"],
        pages=[PageRow(**{**dict(r), "deliveries": _json_list(r["deliveries"])}) for r in pages],
        state_changes=[StateChange(**dict(r)) for r in changes],
        silences=[r["silence_id"] for r in silences],
        escalations=[
            EscalationRow(level=r["level"], targets=list(r["targets"]), paged_at=r["paged_at"])
            for r in escalations
        ],
    )
