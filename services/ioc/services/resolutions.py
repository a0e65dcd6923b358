"""Resolutions Alertmanager never sends: the pager reconciles its firing pages with the alerts
Alertmanager still holds.

Alertmanager (0.25, Debian bookworm's ``prometheus-alertmanager``; upstream issues #1807,
#2754) drops the resolved notification of an alert that is inhibited or silenced when it
resolves: the mute stage filters resolved alerts like firing ones, and the aggregation group
forgets them after the flush. A consequence paged before its root cause (a district's online
ratio, then the node's SiteIsolated) that recovers while the root cause still inhibits it
would stay "firing" at the pager forever. So every :data:`INTERVAL_S` the pager asks
Alertmanager (``GET /api/v2/alerts``: active, silenced, inhibited and unprocessed alike) which
alerts it holds; a firing page whose alert no Alertmanager has listed for :data:`ABSENT_S`
gets its resolved page, recorded and forwarded like one from Alertmanager. A later resolved
notification for the same alert (it was only waiting for ``group_interval``) is a duplicate
by the pages' unique key, so nothing is paged twice. ``ABSENT_S`` is longer than Prometheus's
resend interval (1 min), so an Alertmanager that restarted (and lost its alerts until
Prometheus sends them again) resolves nothing; when no Alertmanager answers, nothing is
resolved either.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from ioc.contract import metrics as m
from ioc.observability import counter

if TYPE_CHECKING:
    from ioc.services.pager import Pager

log = logging.getLogger(__name__)

INTERVAL_S = 15.0
"""How often the pager compares its firing pages with Alertmanager's alerts."""
ABSENT_S = 75.0
"""How long no Alertmanager may list an alert before its firing page is resolved."""
LOOKBACK = dt.timedelta(days=7)
"""Firing pages older than this are not reconciled (the query stays cheap)."""
NOT_RECONCILED = ("watchdog",)
"""Receivers whose alerts have no resolution: the dead-man's switch (``send_resolved: false``
on purpose). Pages Alertmanager did not send (no group key: the pager's incident resolutions,
the escalator's, these) are not reconciled either."""
RECEIVER = "reconciled"

PAGES = counter(m.PAGER_PAGES)


async def active_fingerprints(urls: list[str], timeout_s: float = 5.0) -> set[str] | None:
    """The fingerprints of every alert any of these Alertmanagers holds, or None when none
    of them answered (then nothing may be resolved)."""
    found: set[str] = set()
    answered = False
    client_timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        for url in urls:
            try:
                async with session.get(f"{url.rstrip('/')}/api/v2/alerts") as resp:
                    resp.raise_for_status()
                    alerts: list[dict[str, Any]] = await resp.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.debug("alertmanager %s not listed: %s", url, exc)
                continue
            answered = True
            found |= {str(a["fingerprint"]) for a in alerts if a.get("fingerprint")}
    return found if answered else None


class Reconciler:
    """Remembers since when each firing page's alert has been absent from Alertmanager."""

    def __init__(self, pager: Pager, urls: list[str]) -> None:
        self.pager = pager
        self.urls = urls
        self.absent_since: dict[str, float] = {}

    async def once(
        self, active: set[str] | None = None, now: float | None = None
    ) -> list[dict[str, Any]]:
        """One comparison; the resolved pages it recorded (to forward). ``active`` and
        ``now`` (monotonic seconds) are for tests."""
        now = time.monotonic() if now is None else now
        if active is None:
            active = await active_fingerprints(self.urls)
        if active is None:
            return []
        rows = await self.pager.pool.fetch(
            """SELECT p.id, p.fingerprint, p.alertname, p.severity, p.domain, p.unit, p.site,
                      p.device_id, p.summary, p.description, p.starts_at, p.labels,
                      p.incident_id,
                      (SELECT max(n.starts_at) FROM pages n WHERE n.fingerprint = p.fingerprint
                         AND n.status = 'firing') AS newest
               FROM pages p
               WHERE p.status = 'firing' AND p.received_at > now() - $1::interval
                 AND NOT p.receiver = ANY($2::text[]) AND coalesce(p.group_key, '') <> ''
                 AND NOT EXISTS (SELECT 1 FROM pages r WHERE r.fingerprint = p.fingerprint
                                   AND r.status = 'resolved' AND r.starts_at = p.starts_at)""",
            LOOKBACK,
            list(NOT_RECONCILED),
        )
        due = []
        for r in rows:
            if r["starts_at"] < r["newest"]:
                due.append(r)  # the same alert fired again since: this episode ended
                continue
            if r["fingerprint"] in active:
                self.absent_since.pop(r["fingerprint"], None)
                continue
            since = self.absent_since.setdefault(r["fingerprint"], now)
            if now - since >= ABSENT_S:
                due.append(r)
        pending = {r["fingerprint"] for r in rows}
        for fingerprint in list(self.absent_since):
            if fingerprint not in pending:
                del self.absent_since[fingerprint]
        return [page for r in due if (page := await self._resolve(r)) is not None]

    async def _resolve(self, r: Any) -> dict[str, Any] | None:
        ended = dt.datetime.now(dt.UTC)
        labels = json.loads(r["labels"]) if isinstance(r["labels"], str) else dict(r["labels"])
        row = await self.pager.pool.fetchrow(
            """INSERT INTO pages (fingerprint, status, alertname, severity, domain, unit, site,
                 device_id, summary, description, starts_at, ends_at, receiver, group_key,
                 labels, incident_id, claimed_by)
               VALUES ($1, 'resolved', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, '',
                       $13::jsonb, $14, $15)
               ON CONFLICT (fingerprint, status, starts_at) DO NOTHING
               RETURNING id""",
            r["fingerprint"],
            r["alertname"],
            r["severity"],
            r["domain"],
            r["unit"],
            r["site"],
            r["device_id"],
            r["summary"],
            r["description"],
            r["starts_at"],
            ended,
            RECEIVER,
            json.dumps(labels),
            r["incident_id"],
            self.pager.instance,
        )
        self.absent_since.pop(r["fingerprint"], None)
        if row is None:
            return None  # resolved meanwhile (Alertmanager's own, or the other pager)
        PAGES.labels(r["alertname"], "resolved", r["severity"] or "").inc()
        log.info(
            "%s %s: no resolved notification came (inhibited or silenced when it resolved); "
            "resolution page %s recorded",
            r["alertname"],
            r["device_id"] or r["fingerprint"],
            row["id"],
        )
        return {
            "id": row["id"],
            "status": "resolved",
            "labels": labels,
            "annotations": {"summary": r["summary"] or "", "description": r["description"] or ""},
            "startsAt": r["starts_at"].isoformat(),
            "endsAt": ended.isoformat(),
            "incident": None,
        }

    async def run(self) -> None:
        """Forever, every :data:`INTERVAL_S`; a failed round is logged and retried."""
        while True:
            await asyncio.sleep(INTERVAL_S)
            try:
                resolved = await self.once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: the next round tries again
                log.warning("cannot reconcile resolutions: %s: %s", type(exc).__name__, exc)
                continue
            if resolved:
                self.pager._spawn(resolved)
