"""The silencer: keeps Alertmanager's silences in step with incidents and maintenance.

Every round (:meth:`Silencer.reconcile_once`):

(a) an acknowledged incident gets silences for its alerts (:func:`incident_matchers`, from its
    root device and its ``affected`` members), rows of ``incident_silences``, renewed before
    they run out (:data:`INCIDENT_TTL`) and replaced as soon as the matcher sets they should
    have change (a correlated device joins or leaves the incident: what they have is read back
    from Alertmanager); a resolved incident's silences are expired, so a silence ends when its
    incident resolves;
(b) recurring windows' occurrences are materialised up to the horizon, and each occurrence
    starting within :data:`AHEAD` gets silences with its own start and end (Alertmanager starts
    and ends them on time; their ids in ``maintenance_occurrences.silence_ids``);
(c) any silence of ours that the tables no longer hold (a cancelled window, a renewed or
    resolved incident, a crash between Alertmanager and the database) is expired.

All state is in the tables and in Alertmanager (our silences carry a tag naming the database
schema and the incident or window), so a restart or an Alertmanager outage only delays the
work to a later round. Alertmanager's own ``pending``/``active``/``expired`` tells whether a
silence is still there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from typing import Any

import asyncpg

from ioc.services.ops.alertmanager import Matcher, incident_matchers, silence_matchers
from ioc.services.ops.common import NotFound, OpsContext
from ioc.services.ops.maintenance import HORIZON, materialise, window_matchers

log = logging.getLogger(__name__)

INCIDENT_TTL = dt.timedelta(hours=24)
"""How long an incident's silence lasts in Alertmanager before it must be renewed: if the
service is gone for good, silences end on their own within a day."""
RENEW_AFTER = dt.timedelta(hours=20)
"""An incident silence older than this is replaced by a fresh one."""
AHEAD = dt.timedelta(days=1)
"""Maintenance occurrences starting within this get their (pending) silences."""
GRACE = dt.timedelta(minutes=2)
"""A silence of ours younger than this is never treated as stale: its database row may be
about to be committed."""
LIVE = ("active", "pending")

_TAG = re.compile(r"\[ioc:(?P<schema>[^:\]]+):(?P<kind>incident|maintenance):(?P<key>\d+)\]")


def tag(schema: str, kind: str, key: int) -> str:
    """The marker in a silence's comment that says whose it is (schema, incident or window)."""
    return f"[ioc:{schema}:{kind}:{key}]"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _state(silence: dict[str, Any] | None) -> str:
    if silence is None:
        return "missing"
    status = silence.get("status")
    return str(status.get("state", "")) if isinstance(status, dict) else ""


def _wanted(
    ctx: OpsContext, kind: str, root_device: str, affected: list[str] | None
) -> list[list[Matcher]]:
    """The matcher sets an incident's silences should have now."""
    return incident_matchers(kind, root_device, ctx.topology, affected or [])


def _differs(
    wanted: list[list[Matcher]], ids: list[str], seen: dict[str, frozenset[Matcher]]
) -> bool:
    """Whether the live silences ``ids`` (their matchers as ``seen`` in Alertmanager) cover
    other matcher sets than ``wanted``. A silence not in ``seen`` was created after that
    snapshot (under the incident's lock, for the members of that moment): not known to
    differ, the next round looks again."""
    if not ids or any(i not in seen for i in ids):
        return False
    return {seen[i] for i in ids} != {frozenset(m) for m in wanted}


def _updated(silence: dict[str, Any]) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(str(silence.get("updatedAt", "")))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)


async def _create_all(
    ctx: OpsContext,
    sets: list[list[Matcher]],
    starts: dt.datetime,
    ends: dt.datetime,
    created_by: str,
    comment: str,
) -> list[str]:
    """One silence per matcher set; all or none (those created are expired on a failure)."""
    ids: list[str] = []
    try:
        for matchers in sets:
            ids.append(
                await ctx.alertmanager.create_silence(matchers, starts, ends, created_by, comment)
            )
    except BaseException:
        await _expire_quietly(ctx, ids)
        raise
    return ids


async def _expire_quietly(ctx: OpsContext, ids: list[str]) -> list[str]:
    """Expire what can be expired; return the ids that were (the rest: a later round)."""
    done = []
    for silence_id in ids:
        try:
            await ctx.alertmanager.expire_silence(silence_id)
            done.append(silence_id)
        except Exception as exc:
            log.warning("silence %s not expired yet: %s", silence_id, exc)
    return done


async def _silence_incident(
    ctx: OpsContext,
    incident_id: int,
    gone: set[str] | None = None,
    seen: dict[str, frozenset[Matcher]] | None = None,
) -> list[str]:
    """Make sure a not-yet-resolved incident has live silences with the matcher sets it
    wants now (under an advisory lock, so the API and the silencer never both create them).
    ``gone``: silence ids known to be missing from Alertmanager, replaced too. ``seen``: the
    matchers of the silences Alertmanager listed; when the live ones cover other sets than
    the incident's members call for, all are replaced. New silences first, then the rows,
    and only then are the replaced ones expired: the alerts are never unsilenced between.
    Returns the live ids."""
    schema = ctx.settings.db_schema
    now = _now()
    replaced: list[str] = []
    async with ctx.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"{schema}:incident-silence:{incident_id}",
        )
        inc = await conn.fetchrow(
            """SELECT id, kind, root_device, status, acknowledged_by, title, affected
               FROM incidents WHERE id = $1""",
            incident_id,
        )
        if inc is None:
            raise NotFound(f"no incident {incident_id}")
        if inc["status"] == "resolved":
            return []
        rows = await conn.fetch(
            """SELECT silence_id, created_at FROM incident_silences
               WHERE incident_id = $1 AND expired_at IS NULL""",
            incident_id,
        )
        fresh = [
            r["silence_id"]
            for r in rows
            if r["created_at"] > now - RENEW_AFTER and r["silence_id"] not in (gone or set())
        ]
        wanted = _wanted(ctx, inc["kind"], inc["root_device"], inc["affected"])
        if rows and len(fresh) == len(rows) and not _differs(wanted, fresh, seen or {}):
            return fresh
        who = inc["acknowledged_by"] or "ioc-ops"
        comment = (
            f"Incident #{incident_id} acknowledged by {who}: {inc['title']} "
            f"(silenced until it resolves) {tag(schema, 'incident', incident_id)}"
        )
        ids = await _create_all(
            ctx,
            wanted,
            now,
            now + INCIDENT_TTL,
            who,
            comment,
        )
        try:
            await conn.executemany(
                "INSERT INTO incident_silences (incident_id, silence_id) VALUES ($1, $2)",
                [(incident_id, s) for s in ids],
            )
            replaced = [r["silence_id"] for r in rows]
            await conn.execute(
                """UPDATE incident_silences SET expired_at = $2
                   WHERE incident_id = $1 AND silence_id = ANY($3::text[])""",
                incident_id,
                now,
                replaced,
            )
        except BaseException:
            await _expire_quietly(ctx, ids)
            raise
    await _expire_quietly(ctx, replaced)
    return ids


async def silence_incident_now(ctx: OpsContext, incident_id: int) -> list[str]:
    """Silence an incident's alerts right away (the API calls it on an acknowledgement, so
    the silence exists before it answers; the silencer then finds the work done). Returns the
    silence ids; [] for a resolved incident. :class:`NotFound`, :class:`Unavailable`."""
    return await _silence_incident(ctx, incident_id)


async def expire_incident_silences(ctx: OpsContext, incident_id: int) -> None:
    """Expire an incident's silences (in Alertmanager first, then the rows)."""
    rows = await ctx.pool.fetch(
        """SELECT silence_id FROM incident_silences
           WHERE incident_id = $1 AND expired_at IS NULL""",
        incident_id,
    )
    done = await _expire_quietly(ctx, [r["silence_id"] for r in rows])
    if done:
        await ctx.pool.execute(
            """UPDATE incident_silences SET expired_at = now()
               WHERE incident_id = $1 AND silence_id = ANY($2::text[])""",
            incident_id,
            done,
        )


class Silencer:
    """The operations service's background loop over silences (see the module docstring)."""

    def __init__(self, ctx: OpsContext, interval_s: float = 2.0) -> None:
        self.ctx = ctx
        self.interval_s = interval_s

    async def reconcile_once(self) -> None:
        """One round; every part on its own, a failure logged and retried next round."""
        snap_at = _now()
        try:
            await self._materialise(snap_at)  # needs no Alertmanager
        except Exception:
            log.exception("silencer: materialising occurrences failed, retrying next round")
        try:
            silences = {str(s.get("id")): s for s in await self.ctx.alertmanager.silences()}
        except Exception as exc:
            log.warning("silencer: Alertmanager unavailable, retrying: %s", exc)
            return
        for part in (self._incidents, self._occurrences, self._stale):
            try:
                await part(silences, snap_at)
            except Exception:
                log.exception("silencer: %s failed, retrying next round", part.__name__)

    async def run(self) -> None:
        """Reconcile every ``interval_s`` until cancelled."""
        while True:
            try:
                await self.reconcile_once()
            except Exception:  # reconcile_once logs its own; never let the loop die
                log.exception("silencer round failed")
            await asyncio.sleep(self.interval_s)

    # (a) incidents

    async def _incidents(self, silences: dict[str, dict[str, Any]], snap_at: dt.datetime) -> None:
        rows = await self.ctx.pool.fetch(
            """SELECT i.id, i.status, i.kind, i.root_device, i.affected, s.silence_id, s.created_at
               FROM incidents i
               LEFT JOIN incident_silences s ON s.incident_id = i.id AND s.expired_at IS NULL
               WHERE i.status = 'acknowledged'
                  OR (i.status = 'resolved' AND s.silence_id IS NOT NULL)"""
        )
        acked: dict[int, list[asyncpg.Record]] = {}
        wanted: dict[int, list[list[Matcher]]] = {}
        resolved: dict[int, list[str]] = {}
        for r in rows:
            if r["status"] == "resolved":
                resolved.setdefault(r["id"], []).append(r["silence_id"])
            else:
                acked.setdefault(r["id"], [])
                wanted[r["id"]] = _wanted(self.ctx, r["kind"], r["root_device"], r["affected"])
                if r["silence_id"] is not None:
                    acked[r["id"]].append(r)
        seen = {sid: silence_matchers(s) for sid, s in silences.items() if _state(s) in LIVE}
        for incident_id, live in acked.items():
            gone = {
                r["silence_id"]
                for r in live
                if r["created_at"] < snap_at and _state(silences.get(r["silence_id"])) not in LIVE
            }
            due = (
                not live
                or gone
                or any(r["created_at"] <= snap_at - RENEW_AFTER for r in live)
                or _differs(wanted[incident_id], [r["silence_id"] for r in live], seen)
            )
            if due:
                try:
                    await _silence_incident(self.ctx, incident_id, gone, seen)
                except Exception as exc:
                    log.warning("silencer: incident %s not silenced yet: %s", incident_id, exc)
        for incident_id in resolved:
            await expire_incident_silences(self.ctx, incident_id)

    # (b) maintenance

    async def _materialise(self, snap_at: dt.datetime) -> None:
        windows = await self.ctx.pool.fetch(
            """SELECT id, scope_kind, scope, start_ts, end_ts, cron, duration_s
               FROM maintenance_windows
               WHERE cancelled_at IS NULL AND cron IS NOT NULL AND end_ts > $1""",
            snap_at,
        )
        for w in windows:
            async with self.ctx.pool.acquire() as conn, conn.transaction():
                await materialise(conn, w, snap_at + HORIZON)

    async def _occurrences(self, silences: dict[str, dict[str, Any]], snap_at: dt.datetime) -> None:
        rows = await self.ctx.pool.fetch(
            """SELECT o.window_id, o.start_ts, o.silence_ids
               FROM maintenance_occurrences o JOIN maintenance_windows w ON w.id = o.window_id
               WHERE w.cancelled_at IS NULL AND o.end_ts > $1 AND o.start_ts < $2
               ORDER BY o.start_ts""",
            snap_at,
            snap_at + AHEAD,
        )
        for r in rows:
            ids: list[str] = list(r["silence_ids"])
            if ids and all(_state(silences.get(s)) in LIVE for s in ids):
                continue
            try:
                await self._silence_occurrence(r["window_id"], r["start_ts"], ids)
            except Exception as exc:
                log.warning(
                    "silencer: window %s occurrence %s not silenced yet: %s",
                    r["window_id"],
                    r["start_ts"],
                    exc,
                )

    async def _silence_occurrence(
        self, window_id: int, start: dt.datetime, seen: list[str]
    ) -> None:
        """Silence one occurrence from its start (or now) to its end, replacing ``seen``."""
        schema = self.ctx.settings.db_schema
        async with self.ctx.pool.acquire() as conn, conn.transaction():
            occ = await conn.fetchrow(
                """SELECT end_ts, silence_ids FROM maintenance_occurrences
                   WHERE window_id = $1 AND start_ts = $2 FOR UPDATE""",
                window_id,
                start,
            )
            # a fresh statement, a fresh snapshot: sees a cancellation committed meanwhile
            w = await conn.fetchrow(
                """SELECT scope_kind, scope, created_by, coalesce(note, '') AS note, cancelled_at
                   FROM maintenance_windows WHERE id = $1""",
                window_id,
            )
            now = _now()
            if (
                occ is None
                or w is None
                or w["cancelled_at"] is not None
                or occ["end_ts"] <= now + dt.timedelta(seconds=5)
                or list(occ["silence_ids"]) != seen
            ):
                return
            comment = (
                f"Maintenance window #{window_id} ({w['scope_kind']} {w['scope']})"
                f"{': ' + w['note'] if w['note'] else ''} {tag(schema, 'maintenance', window_id)}"
            )
            ids = await _create_all(
                self.ctx,
                window_matchers(w["scope_kind"], w["scope"], self.ctx.topology),
                max(start, now),
                occ["end_ts"],
                w["created_by"],
                comment,
            )
            try:
                await conn.execute(
                    """UPDATE maintenance_occurrences SET silence_ids = $3
                       WHERE window_id = $1 AND start_ts = $2""",
                    window_id,
                    start,
                    ids,
                )
            except BaseException:
                await _expire_quietly(self.ctx, ids)
                raise
        await _expire_quietly(self.ctx, seen)

    # (c) leftovers

    async def _stale(self, silences: dict[str, dict[str, Any]], snap_at: dt.datetime) -> None:
        """Expire our live silences that no row holds (older than :data:`GRACE`)."""
        schema = self.ctx.settings.db_schema
        ours = []
        for sid, s in silences.items():
            match = _TAG.search(str(s.get("comment", "")))
            if (
                match is not None
                and match["schema"] == schema
                and _state(s) in LIVE
                and _updated(s) < snap_at - GRACE
            ):
                ours.append((sid, match["kind"]))
        if not ours:
            return
        known_incident = {
            r["silence_id"]
            for r in await self.ctx.pool.fetch(
                "SELECT silence_id FROM incident_silences WHERE expired_at IS NULL"
            )
        }
        known_maintenance = {
            r["id"]
            for r in await self.ctx.pool.fetch(
                """SELECT DISTINCT unnest(o.silence_ids) AS id
                   FROM maintenance_occurrences o JOIN maintenance_windows w ON w.id = o.window_id
                   WHERE w.cancelled_at IS NULL AND o.end_ts > $1""",
                snap_at - GRACE,
            )
        }
        stale = [
            sid
            for sid, kind in ours
            if sid not in (known_incident if kind == "incident" else known_maintenance)
        ]
        if stale:
            log.info("silencer: expiring %d silences no longer wanted", len(stale))
            await _expire_quietly(self.ctx, stale)
