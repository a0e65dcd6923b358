"""Escalation: a critical incident nobody acknowledged is paged to the next on-call level.

Every ``interval_s`` the :class:`Escalator` looks at the open (not acknowledged) critical
incidents whose root device is not under maintenance. An incident's age counts from when it
opened or, when a maintenance occurrence covered its root device meanwhile, from the end of
that occurrence (the outage was planned work until then). Levels go up one at a time: in one
pass an incident is paged to at most its next level >= 2 of the roster
(:mod:`ioc.services.ops.oncall`), due when its ``after_minutes`` have passed and, after a
level k paged at ``paged_at(k)``, no earlier than ``paged_at(k) + after(k+1) - after(k)``, so
an escalator that was down, or a maintenance window that ends, never pages several levels at
once. For each level due, it

1. claims the level and records its page in one short transaction: a row in ``escalations``
   (primary key incident, level), inserted only while the incident is still open, so two
   service instances or a restart page a level once, and the page in ``pages`` (fingerprint
   ``escalation:<incident>:<level>``, alertname ``IncidentEscalated``);
2. after the commit, delivers it to the level's people through the
   :class:`~ioc.services.channels.Dispatcher` (the pages of one pass side by side, so a slow
   channel delays no other incident's claim) and records what each channel did in
   ``pages.deliveries``. A claim is never held open while a channel retries: a level is paged
   at most once, even if the connection drops during a slow delivery;
3. puts an ``escalate`` command on the incident stream, so the incident agent writes the
   step on the incident's timeline. When the broker is away the command is retried on the
   next passes (the page has gone out already: paging does not wait for Kafka).

Level 1 is the first page, which Alertmanager's notification through the pager sends; the
escalator never sends it. Acknowledging an incident (status ``acknowledged``) or resolving it
stops its escalation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import TYPE_CHECKING

import asyncpg

from ioc.contract import tables as t
from ioc.contract.feeds import domain_of
from ioc.contract.thresholds import CRITICAL
from ioc.services.channels import Contact, Delivery, Page
from ioc.services.incidents import IncidentCommandError, send_command
from ioc.services.ops.common import Lang, tr

if TYPE_CHECKING:
    from ioc.services.ops.common import OpsContext
    from ioc.services.ops.oncall import OnCallLevel

log = logging.getLogger(__name__)

ALERTNAME = "IncidentEscalated"
ACTOR = "escalation"


def fingerprint(incident_id: int, level: int) -> str:
    return f"escalation:{incident_id}:{level}"


def _names(people: list[Contact]) -> str:
    return ", ".join(p.name for p in people)


def _level(lvl: OnCallLevel) -> int:
    return lvl.level


class Escalator:
    """The operations service's background loop that re-pages ignored critical incidents."""

    def __init__(self, ctx: OpsContext, interval_s: float = 5.0, lang: Lang = "vi") -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self.lang = lang

    async def _candidates(self, conn: asyncpg.Connection, now: dt.datetime) -> list[asyncpg.Record]:
        """Open critical incidents whose root device is not under maintenance at ``now``, each
        with ``since`` (when its age starts: it opened, or the last maintenance occurrence
        over its root device since then ended) and its highest escalated level so far."""
        rows: list[asyncpg.Record] = await conn.fetch(
            f"""SELECT i.id, i.kind, i.severity, i.title, i.root_device, i.device_class,
                       i.unit_code, i.site_id, i.opened_at,
                       greatest(i.opened_at, (
                           SELECT max(least(m.end_ts, coalesce(w.cancelled_at, m.end_ts)))
                           FROM maintenance_device_windows m
                           JOIN maintenance_windows w ON w.id = m.window_id
                           WHERE m.device_id = i.root_device AND m.start_ts <= $2
                             AND m.end_ts > i.opened_at)) AS since,
                       e.level AS last_level, e.paged_at AS last_paged_at
                FROM {t.INCIDENTS} i
                LEFT JOIN LATERAL (
                    SELECT level, paged_at FROM escalations
                    WHERE incident_id = i.id ORDER BY level DESC LIMIT 1) e ON true
                WHERE i.status = 'open' AND i.severity = $1 AND i.opened_at <= $2
                  AND NOT EXISTS (
                      SELECT 1 FROM maintenance_device_windows m
                      WHERE m.device_id = i.root_device AND m.start_ts <= $2 AND m.end_ts > $2)
                ORDER BY i.opened_at, i.id""",
            CRITICAL,
            now,
        )
        return rows

    def _unit_of(self, row: asyncpg.Record) -> str:
        topology = self.ctx.topology
        unit: str | None = row["unit_code"]
        if unit in topology.units:
            return str(unit)
        fallback = topology.unit_of_device.get(row["root_device"])
        return fallback if fallback is not None else topology.top_units()[0]

    def _due(
        self, row: asyncpg.Record, levels: list[OnCallLevel], now: dt.datetime
    ) -> OnCallLevel | None:
        """The incident's next level, when it is due at ``now``; else None."""
        last: int = row["last_level"] or 1
        ahead = sorted((lvl for lvl in levels if lvl.level > max(last, 1)), key=_level)
        if not ahead:
            return None
        nxt = ahead[0]
        due: dt.datetime = row["since"] + dt.timedelta(minutes=nxt.after_minutes)
        if row["last_paged_at"] is not None:
            prev = next((lvl for lvl in levels if lvl.level == last), None)
            gap = nxt.after_minutes - (prev.after_minutes if prev is not None else 0)
            due = max(due, row["last_paged_at"] + dt.timedelta(minutes=max(gap, 0)))
        return nxt if now >= due else None

    async def check_once(self, now: dt.datetime | None = None) -> list[tuple[int, int]]:
        """One pass: the (incident id, level) pairs escalated by this call."""
        now = now or dt.datetime.now(dt.UTC)
        await self._flush_pending()
        async with self.ctx.pool.acquire() as conn:
            rows = await self._candidates(conn, now)
        claimed: list[tuple[int, int, Page, list[Contact]]] = []
        failed: Exception | None = None
        for row in rows:
            domain = domain_of(row["device_class"])
            levels = self.ctx.roster.on_call(self.ctx.topology, domain, self._unit_of(row), now)
            lvl = self._due(row, levels, now)
            if lvl is None:
                continue
            try:
                page = await self._claim(row, lvl.level, lvl.after_minutes, lvl.people, now)
            except Exception as exc:  # the others still go out; this one is retried
                log.warning(
                    "incident %d level %d: escalation failed: %s", row["id"], lvl.level, exc
                )
                failed = exc
                continue
            if page is not None:
                claimed.append((row["id"], lvl.level, page, lvl.people))
        if claimed:
            await asyncio.gather(*(self._deliver(page, people) for _, _, page, people in claimed))
            await self._flush_pending()
        done = [(incident_id, level) for incident_id, level, _, _ in claimed]
        if failed is not None and not done:
            raise failed
        return done

    async def _claim(
        self,
        row: asyncpg.Record,
        level: int,
        after_minutes: int,
        people: list[Contact],
        now: dt.datetime,
    ) -> Page | None:
        """Claim one level and record its page, committed before anything is delivered; the
        page to deliver, or None when the level was taken already (another instance, an
        earlier pass) or the incident is no longer open."""
        incident_id: int = row["id"]
        lang = self.lang
        names = _names(people) or tr(lang, "không ai", "nobody")
        note = f"level {level}: {names}"
        unit = self._unit_of(row)
        unit_name = self.ctx.topology.units[unit].name
        console = f"{self.ctx.settings.console_base_url}/console/incidents/{incident_id}"
        title = tr(
            lang,
            f"Leo thang cấp {level}: {row['title']}",
            f"Escalated to level {level}: {row['title']}",
        )
        body = tr(
            lang,
            f"Sự cố #{incident_id} ({row['kind']}) tại {unit_name} chưa được xác nhận sau "
            f"{after_minutes} phút. Thiết bị gốc: {row['root_device']}. Người nhận: {names}.",
            f"Incident #{incident_id} ({row['kind']}) in {unit_name} has not been acknowledged "
            f"for {after_minutes} minutes. Root device: {row['root_device']}. Paged: {names}.",
        )
        async with self.ctx.pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchval(
                f"""INSERT INTO escalations (incident_id, level, targets, paged_at, note)
                    SELECT $1, $2, $3, $4, $5
                    WHERE EXISTS (SELECT 1 FROM {t.INCIDENTS} WHERE id = $1 AND status = 'open')
                    ON CONFLICT (incident_id, level) DO NOTHING
                    RETURNING level""",
                incident_id,
                level,
                [p.name for p in people],
                now,
                note,
            )
            if claimed is None:
                return None
            page_id: int | None = await conn.fetchval(
                """INSERT INTO pages (fingerprint, status, alertname, severity, domain, unit,
                     site, device_id, summary, description, starts_at, receiver, labels,
                     incident_id)
                   VALUES ($1, 'firing', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb,
                           $13)
                   ON CONFLICT (fingerprint, status, starts_at) DO NOTHING
                   RETURNING id""",
                fingerprint(incident_id, level),
                ALERTNAME,
                row["severity"],
                domain_of(row["device_class"]),
                unit,
                row["site_id"],
                row["root_device"],
                title,
                body,
                now,
                ACTOR,
                json.dumps(
                    {
                        "alertname": ALERTNAME,
                        "severity": row["severity"],
                        "level": str(level),
                        "incident_id": str(incident_id),
                    }
                ),
                incident_id,
            )
        log.info("incident %d escalated: %s", incident_id, note)
        return Page(
            page_id=page_id,
            status="firing",
            severity=row["severity"],
            title=title,
            body=body,
            incident_id=incident_id,
            console_url=console,
            lang=lang,
            details={"escalation_level": level, "root_device": row["root_device"]},
        )

    async def _deliver(self, page: Page, people: list[Contact]) -> None:
        """Send a claimed page and note what each channel did; a failure is logged (the
        level stays claimed: paged at most once)."""
        try:
            deliveries: list[Delivery] = await self.ctx.dispatcher.deliver(page, people)
        except Exception:  # a channel's bug must not stop the other pages
            log.exception(
                "escalation page %s of incident %s not sent", page.page_id, page.incident_id
            )
            return
        if page.page_id is None:
            return
        try:
            await self.ctx.pool.execute(
                "UPDATE pages SET deliveries = deliveries || $2::jsonb WHERE id = $1",
                page.page_id,
                json.dumps([d.model_dump() for d in deliveries]),
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("cannot note delivery of page %s: %s", page.page_id, exc)

    async def _flush_pending(self) -> None:
        """Put the ``escalate`` commands the broker has not taken yet on the incident stream,
        oldest first (the ``escalations`` rows are their outbox, so a restart resends them);
        stop at the first the broker refuses (retried next pass)."""
        async with self.ctx.pool.acquire() as conn:
            unsent = await conn.fetch(
                f"SELECT e.incident_id, e.level, e.note, i.root_device FROM escalations e "
                f"JOIN {t.INCIDENTS} i ON i.id = e.incident_id WHERE NOT e.timeline_sent "
                "ORDER BY e.paged_at, e.incident_id, e.level"
            )
        for item in unsent:
            try:
                await send_command(
                    self.ctx.settings,
                    self.ctx.topology,
                    item["incident_id"],
                    "escalate",
                    actor=ACTOR,
                    note=item["note"],
                    root_device=item["root_device"],
                    producer=self.ctx.commands,
                )
            except IncidentCommandError as exc:  # the incident or its device is unknown
                log.warning(
                    "escalation of incident %d not on its timeline: %s", item["incident_id"], exc
                )
            except Exception as exc:
                log.warning(
                    "incident %d level %d: escalate command not sent (%s); retrying",
                    item["incident_id"],
                    item["level"],
                    exc,
                )
                return
            await self.ctx.pool.execute(
                "UPDATE escalations SET timeline_sent = true WHERE incident_id = $1 AND level = $2",
                item["incident_id"],
                item["level"],
            )

    async def run(self) -> None:
        """Check every ``interval_s`` until cancelled; a failing pass (database or broker
        away) is logged and retried, never fatal."""
        failures = 0
        while True:
            try:
                escalated = await self.check_once()
                if escalated:
                    log.info("escalated %s", ", ".join(f"#{i} level {lv}" for i, lv in escalated))
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("escalation pass failed (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(min(60.0, self.interval_s * (2 ** min(failures, 4))))
