"""Escalation: a critical incident nobody acknowledged is paged to the next on-call level.

Every ``interval_s`` the :class:`Escalator` looks at the open (not acknowledged) critical
incidents whose root device is not under maintenance, and for each escalation level >= 2 of
the roster (:mod:`ioc.services.ops.oncall`) whose ``after_minutes`` have passed since the
incident opened, it

1. claims the level: a row in ``escalations`` (primary key incident, level), inserted only
   while the incident is still open, in a transaction held until the page is out, so two
   service instances or a restart page a level once;
2. records the page in ``pages`` (fingerprint ``escalation:<incident>:<level>``, alertname
   ``IncidentEscalated``) and delivers it to the level's people through the
   :class:`~ioc.services.channels.Dispatcher`, then commits;
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

log = logging.getLogger(__name__)

ALERTNAME = "IncidentEscalated"
ACTOR = "escalation"


def fingerprint(incident_id: int, level: int) -> str:
    return f"escalation:{incident_id}:{level}"


def _names(people: list[Contact]) -> str:
    return ", ".join(p.name for p in people)


class Escalator:
    """The operations service's background loop that re-pages ignored critical incidents."""

    def __init__(self, ctx: OpsContext, interval_s: float = 5.0, lang: Lang = "vi") -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self.lang = lang

    async def _candidates(self, conn: asyncpg.Connection, now: dt.datetime) -> list[asyncpg.Record]:
        """Open critical incidents whose root device is not under maintenance at ``now``."""
        rows: list[asyncpg.Record] = await conn.fetch(
            f"""SELECT i.id, i.kind, i.severity, i.title, i.root_device, i.device_class,
                       i.unit_code, i.site_id, i.opened_at
                FROM {t.INCIDENTS} i
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

    async def check_once(self, now: dt.datetime | None = None) -> list[tuple[int, int]]:
        """One pass: the (incident id, level) pairs escalated by this call."""
        now = now or dt.datetime.now(dt.UTC)
        await self._flush_pending()
        async with self.ctx.pool.acquire() as conn:
            rows = await self._candidates(conn, now)
        done: list[tuple[int, int]] = []
        failed: Exception | None = None
        for row in rows:
            domain = domain_of(row["device_class"])
            levels = self.ctx.roster.on_call(self.ctx.topology, domain, self._unit_of(row), now)
            age = now - row["opened_at"]
            for lvl in levels:
                if lvl.level < 2 or age < dt.timedelta(minutes=lvl.after_minutes):
                    continue
                try:
                    if await self._escalate(row, lvl.level, lvl.after_minutes, lvl.people, now):
                        done.append((row["id"], lvl.level))
                except Exception as exc:  # the others still go out; this one is retried
                    log.warning(
                        "incident %d level %d: escalation failed: %s", row["id"], lvl.level, exc
                    )
                    failed = exc
                    break
        if failed is not None and not done:
            raise failed
        return done

    async def _escalate(
        self,
        row: asyncpg.Record,
        level: int,
        after_minutes: int,
        people: list[Contact],
        now: dt.datetime,
    ) -> bool:
        """Claim, record and deliver one level's page; False when it was taken already
        (another instance, an earlier pass) or the incident is no longer open."""
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
                return False
            page_id = await conn.fetchval(
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
            page = Page(
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
            deliveries: list[Delivery] = await self.ctx.dispatcher.deliver(page, people)
            if page_id is not None:
                await conn.execute(
                    "UPDATE pages SET deliveries = $2::jsonb WHERE id = $1",
                    page_id,
                    json.dumps([d.model_dump() for d in deliveries]),
                )
        log.info("incident %d escalated: %s", incident_id, note)
        await self._flush_pending()
        return True

    async def _flush_pending(self) -> None:
        """Put the ``escalate`` commands the broker has not taken yet on the incident stream,
        oldest first (the ``escalations`` rows are their outbox, so a restart resends them);
        stop at the first the broker refuses (retried next pass)."""
        async with self.ctx.pool.acquire() as conn:
            unsent = await conn.fetch(
                "SELECT incident_id, level, note FROM escalations WHERE NOT timeline_sent "
                "ORDER BY paged_at, incident_id, level"
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
