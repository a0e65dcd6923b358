"""The pager receiver: Alertmanager's webhook endpoint (`ioc pager`).

``POST /alertmanager/webhook`` with ``Authorization: Bearer <token>`` and Alertmanager's
webhook JSON (version 4). Each alert of the notification is recorded once per
(fingerprint, status, startsAt) in the ``pages`` table, so Alertmanager's retries and repeat
notifications do not page twice; new pages are forwarded through the configured channels
(:mod:`ioc.services.channels`: webhook, e-mail, SMS, Zalo, Telegram) to the level-1 on-call
of the alert's domain and unit when a roster is available. Bad requests get a clear status
and a short JSON error, never a stack trace: 401 without the token, 413 when too large, 415
when not JSON, 400 when the payload is not an Alertmanager notification, 503 when the
database is unavailable (so Alertmanager retries and nothing is lost). Each page names the
open incident of its device, followed from ``ioc.incidents.v1``
(:class:`~ioc.services.incidents.IncidentFollower`).

The pager is the one owner of resolutions: Alertmanager sends none for silenced or inhibited
alerts (an acknowledged incident's alerts are silenced), so when the incident stream says an
incident that paged is resolved, the pager records an ``IncidentResolved`` page (fingerprint
``incident:{id}``, once: the follower replays the topic from its beginning after a restart)
and forwards it.

Two pagers (``ioc pager`` and ``ioc pager --port``, the local stack's ``pager_peer_port``)
share the database, and Alertmanager notifies both (one webhook each), so a page goes out
while either is up. Each page is sent once: its row is inserted once (the unique key above,
``INSERT .. ON CONFLICT``), and only the pager whose insert won sends it, recording itself in
``claimed_by``; the alerts of a notification are inserted in key order, so two pagers taking
the same notification never deadlock. Each pager holds a session advisory lock on its
instance number while it runs; a page claimed by a pager whose lock is gone (it died between
recording and sending) and not yet ``sent_at`` is taken over by another pager
(:meth:`Pager.take_over_once`, every :data:`TAKEOVER_INTERVAL_S`). The escalator is not in
the pager: it runs in the operations service and claims each level by a row in
``escalations`` (:mod:`ioc.services.ops.escalation`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import logging
import secrets
import time
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from ioc.config import Settings
from ioc.contract import events as ev
from ioc.contract import metrics as m
from ioc.contract.feeds import domain_of
from ioc.db.errors import PERMANENT, classify
from ioc.errors import IocError
from ioc.observability import counter, histogram
from ioc.services.channels import (
    ChannelConfig,
    Contact,
    Delivery,
    Dispatcher,
    Page,
    parse_channels,
)
from ioc.services.incidents import IncidentFollower

__all__ = ["PAGER", "Pager", "parse_channels", "serve"]

log = logging.getLogger(__name__)

# Built from the contract's specs, like every other process's metrics.
PAGES = counter(m.PAGER_PAGES)
DUPLICATES = counter(m.PAGER_DUPLICATES)
REJECTED = counter(m.PAGER_REJECTED)
DELIVERIES = counter(m.PAGER_DELIVERIES)
REQUEST_SECONDS = histogram(m.PAGER_REQUEST_SECONDS)

ROSTER_RETRY_S = 60.0
"""After a failed load of the on-call roster, how long the channels' own recipients are
used before the roster is loaded again."""

RESOLUTION_SLACK = dt.timedelta(minutes=5)
"""How long before an incident opened a page of its root device still counts as the
incident's (an alert's ``startsAt`` can precede the incident by its rule's ``for``)."""

INSTANCE_LOCK = 0x10C9A6E
"""First key of the session advisory lock each running pager holds on (this, its instance
number): the lock is how another pager knows the page's claimant is gone."""

TAKEOVER_INTERVAL_S = 2.0
"""How often a pager looks for pages claimed by a dead pager and not yet sent."""

RESOLUTION_RETRY_FIRST_S = 1.0
RESOLUTION_RETRY_MAX_S = 30.0
"""The backoff while a resolution cannot be recorded: from the first wait, doubling, up to
the cap; retried until it is recorded."""


class AMAlert(msgspec.Struct):
    status: str
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: str = ""
    endsAt: str = ""
    fingerprint: str = ""


class AMNotification(msgspec.Struct):
    version: str
    status: str
    receiver: str
    alerts: list[AMAlert]
    groupKey: str = ""
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    externalURL: str = ""


_decoder = msgspec.json.Decoder(AMNotification)


def _time(text: str) -> dt.datetime | None:
    if not text or text.startswith("0001-"):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


PAGER: web.AppKey[Pager] = web.AppKey("pager")
"""The application's :class:`Pager` (tests drive its incident-event hook)."""


def _json_error(status: int, reason: str, message: str) -> web.Response:
    REJECTED.labels(reason).inc()
    return web.json_response({"error": message}, status=status)


class Pager:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        channels: Dispatcher | list[ChannelConfig],
        incidents: IncidentFollower | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.dispatcher = channels if isinstance(channels, Dispatcher) else Dispatcher(channels)
        self.incidents = incidents
        if incidents is not None:
            incidents.on_event = self.on_incident_event
        self.token = settings.resolved_pager_token().encode()
        self._oncall: tuple[Any, Any] | None = None
        self._oncall_retry_at = 0.0
        """While the roster cannot be loaded: when (monotonic) to try again."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.instance = secrets.randbits(30) + 1
        """This pager's number: ``pages.claimed_by`` of the pages it sends, and the second
        key of its advisory lock."""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.pager_max_body_bytes)
        app[PAGER] = self
        app.router.add_post("/alertmanager/webhook", self.webhook)
        app.router.add_get("/healthz", self.health)
        app.middlewares.append(self._errors)
        app.on_cleanup.append(self._close)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPRequestEntityTooLarge:
            return _json_error(413, "too_large", "request body too large")
        except web.HTTPException as exc:
            return _json_error(exc.status, "http", exc.reason or "error")
        except Exception:  # never a stack trace to the client
            log.exception("pager request failed")
            return _json_error(500, "internal", "internal error")

    async def _close(self, app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.dispatcher.close()

    def _spawn(self, pages: list[dict[str, Any]]) -> None:
        task = asyncio.get_running_loop().create_task(self.forward(pages))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.encode(), self.token)

    async def webhook(self, request: web.Request) -> web.Response:
        with REQUEST_SECONDS.time():
            if not self._authorised(request):
                return _json_error(401, "unauthenticated", "missing or wrong bearer token")
            if request.content_type != "application/json":
                return _json_error(415, "content_type", "expected application/json")
            if (request.content_length or 0) > self.settings.pager_max_body_bytes:
                return _json_error(413, "too_large", "request body too large")
            body = await request.read()
            try:
                note = _decoder.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                return _json_error(400, "malformed", f"not an Alertmanager notification: {exc}")
            if not note.version.startswith("4"):
                return _json_error(400, "version", f"unsupported webhook version {note.version}")
            try:
                new = await self.record(note)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("cannot record pages: %s", exc)
                return _json_error(503, "database", "pages cannot be stored right now; retry")
            log.info(
                "notification from %s: %s (%d new)",
                note.receiver,
                ", ".join(
                    f"{a.labels.get('alertname')} {a.status} "
                    f"{a.labels.get('device_id') or a.labels.get('node_id') or ''}".rstrip()
                    for a in note.alerts
                ),
                len(new),
            )
            if new:
                self._spawn(new)
            return web.json_response(
                {"recorded": len(new), "duplicates": len(note.alerts) - len(new)}
            )

    async def record(self, note: AMNotification) -> list[dict[str, Any]]:
        new: list[dict[str, Any]] = []
        now = dt.datetime.now(dt.UTC)

        def key(alert: AMAlert) -> tuple[str, str, dt.datetime]:
            fingerprint = alert.fingerprint or json.dumps(alert.labels, sort_keys=True)
            return fingerprint, alert.status, _time(alert.startsAt) or now

        # in key order: another pager inserting the same alerts locks them in the same order
        async with self.pool.acquire() as conn, conn.transaction():
            for alert in sorted(note.alerts, key=key):
                fingerprint, _, starts = key(alert)
                labels = alert.labels
                device = labels.get("device_id") or labels.get("node_id")
                incident = self.incidents.open_for(device) if self.incidents else None
                row = await conn.fetchrow(
                    """INSERT INTO pages (fingerprint, status, alertname, severity, domain, unit,
                         site, device_id, summary, description, starts_at, ends_at, receiver,
                         group_key, labels, incident_id, claimed_by)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                               $15::jsonb, $16, $17)
                       ON CONFLICT (fingerprint, status, starts_at) DO UPDATE
                         SET notifications = pages.notifications + 1
                       RETURNING id, (xmax = 0) AS inserted""",
                    fingerprint,
                    alert.status,
                    labels.get("alertname", "unknown"),
                    labels.get("severity"),
                    labels.get("domain"),
                    labels.get("unit"),
                    labels.get("site"),
                    device,
                    alert.annotations.get("summary"),
                    alert.annotations.get("description"),
                    starts,
                    _time(alert.endsAt) if alert.status == "resolved" else None,
                    note.receiver,
                    note.groupKey,
                    json.dumps(labels),
                    incident.incident_id if incident else None,
                    self.instance,
                )
                if row["inserted"]:
                    PAGES.labels(
                        labels.get("alertname", "unknown"), alert.status, labels.get("severity", "")
                    ).inc()
                    new.append(
                        {
                            "id": row["id"],
                            "status": alert.status,
                            "labels": labels,
                            "annotations": alert.annotations,
                            "startsAt": alert.startsAt,
                            # the incident this alert belongs to, from ioc.incidents.v1: the
                            # on-call acts on it (`ioc incidents ack ID`, or the console)
                            "incident": None
                            if incident is None
                            else {
                                "id": incident.incident_id,
                                "kind": incident.kind,
                                "status": incident.status,
                                "title": incident.title,
                                "assigned_to": incident.assigned_to,
                            },
                        }
                    )
                else:
                    DUPLICATES.inc()
        return new

    def _recipients(self, domain: str | None, unit: str | None) -> list[Contact]:
        """The level-1 on-call of the domain and unit, when a roster is available; otherwise
        nobody, and each channel uses its own configured recipients."""
        if not domain or not unit:
            return []
        if self._oncall is None and time.monotonic() < self._oncall_retry_at:
            return []
        try:
            if self._oncall is None:
                from ioc.contract.topology import load_scenario
                from ioc.services.ops.oncall import load_roster

                self._oncall = (load_roster(self.settings), load_scenario(self.settings.scenario))
            roster, topology = self._oncall
            levels = roster.on_call(topology, domain, unit, dt.datetime.now(dt.UTC))
            first = min(levels, key=lambda level: level.level) if levels else None
            return list(first.people) if first is not None else []
        except Exception as exc:  # the roster is optional: the channels' own recipients
            if self._oncall is None:  # tried again after a cooldown, not only after a restart
                self._oncall_retry_at = time.monotonic() + ROSTER_RETRY_S
            log.warning(
                "no on-call roster for %s/%s (%s); channels' own recipients", domain, unit, exc
            )
            return []

    def _page(self, page: dict[str, Any]) -> Page:
        labels: dict[str, str] = page["labels"]
        annotations: dict[str, str] = page["annotations"]
        incident = page.get("incident")
        incident_id = incident["id"] if incident else None
        return Page(
            page_id=page["id"],
            status="resolved" if page["status"] == "resolved" else "firing",
            severity=labels.get("severity", ""),
            title=annotations.get("summary") or labels.get("alertname", "alert"),
            body=annotations.get("description", ""),
            incident_id=incident_id,
            console_url=None
            if incident_id is None
            else f"{self.settings.console_base_url}/console/incidents/{incident_id}",
            details=page,
        )

    async def forward(self, pages: list[dict[str, Any]]) -> None:
        for page in pages:
            labels = page["labels"]
            recipients = self._recipients(labels.get("domain"), labels.get("unit"))
            try:
                deliveries = await self.dispatcher.deliver(self._page(page), recipients)
            except Exception:  # a bug in one page's forwarding must not stop the others
                log.exception("cannot forward page %s", page["id"])
                continue
            for d in deliveries:
                DELIVERIES.labels(d.channel, d.result).inc()
            await self._note_delivery(page["id"], deliveries)

    async def on_incident_event(self, event: ev.IncidentEvent) -> None:
        """The follower's hook: a resolved incident that paged gets its resolution page.
        Retried while the database is away, so the resolution is not lost."""
        if event.status != "resolved" or event.event != "resolved":
            return
        delay = RESOLUTION_RETRY_FIRST_S
        while True:  # the follower waits: it does not move on while the database is away
            try:
                page = await self.record_resolution(event)
                break
            except Exception as exc:
                if classify(exc) == PERMANENT:  # about the data: retrying cannot help
                    raise
                log.warning(
                    "cannot record the resolution of incident %s (%s: %s); retry in %.0f s",
                    event.incident_id,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(RESOLUTION_RETRY_MAX_S, delay * 2)
        if page is not None:
            self._spawn([page])

    async def record_resolution(self, event: ev.IncidentEvent) -> dict[str, Any] | None:
        """Insert the ``IncidentResolved`` page of ``event`` if the incident has a firing page
        and none was recorded yet; the new page (as :meth:`record` returns them) or None.

        The incident's firing pages are those that named it when they came in, and those of
        its root device that named no incident (the follower was still replaying the stream,
        or the broker was away) and started between :data:`RESOLUTION_SLACK` before the
        incident opened and its resolution: those are adopted (their ``incident_id`` set), so
        an incident acknowledged (its alerts silenced) before the pager knew of it still has
        its resolution paged."""
        domain = domain_of(event.device_class)
        labels = {
            "alertname": "IncidentResolved",
            "severity": event.severity,
            "domain": domain,
            "unit": event.unit_code,
            "site": event.site_id,
            "device_id": event.root_device,
            "incident_id": str(event.incident_id),
            "kind": event.kind,
        }
        resolved_at = dt.datetime.fromtimestamp(event.at_ms / 1000, dt.UTC)
        description = event.note or ""
        row = await self.pool.fetchrow(
            """WITH opened AS (
                 SELECT COALESCE((SELECT opened_at FROM incidents WHERE id = $1),
                                 (SELECT min(at) FROM incident_events WHERE incident_id = $1))
                        AS at
               ), adopted AS (
                 UPDATE pages p SET incident_id = $1
                 FROM opened o
                 WHERE p.incident_id IS NULL AND p.status = 'firing' AND p.device_id = $6
                   AND p.starts_at >= o.at - $11::interval AND p.starts_at <= $9
                 RETURNING p.starts_at
               ), f AS (
                 SELECT min(s) AS first_start FROM (
                   SELECT starts_at AS s FROM pages WHERE incident_id = $1 AND status = 'firing'
                   UNION ALL SELECT starts_at FROM adopted) x
               )
               INSERT INTO pages (fingerprint, status, alertname, severity, domain, unit, site,
                 device_id, summary, description, starts_at, ends_at, receiver, group_key,
                 labels, incident_id, claimed_by)
               SELECT 'incident:' || $1::bigint, 'resolved', 'IncidentResolved', $2, $3, $4,
                 $5, $6, $7, $8, COALESCE(o.at, f.first_start),
                 $9, 'incident-events', '', $10::jsonb, $1, $12
               FROM f, opened o
               WHERE f.first_start IS NOT NULL
               ON CONFLICT (fingerprint, status, starts_at) DO NOTHING
               RETURNING id, starts_at""",
            event.incident_id,
            event.severity,
            domain,
            event.unit_code,
            event.site_id,
            event.root_device,
            event.title,
            description,
            resolved_at,
            json.dumps(labels),
            RESOLUTION_SLACK,
            self.instance,
        )
        if row is None:
            return None
        PAGES.labels("IncidentResolved", "resolved", event.severity).inc()
        log.info("incident %s resolved: resolution page %s", event.incident_id, row["id"])
        return {
            "id": row["id"],
            "status": "resolved",
            "labels": labels,
            "annotations": {"summary": event.title, "description": description},
            "startsAt": row["starts_at"].isoformat(),
            "endsAt": resolved_at.isoformat(),
            "incident": {
                "id": event.incident_id,
                "kind": event.kind,
                "status": event.status,
                "title": event.title,
                "assigned_to": event.assigned_to,
            },
        }

    async def _note_delivery(self, page_id: int, deliveries: list[Delivery]) -> None:
        at = dt.datetime.now(dt.UTC).isoformat()
        try:
            await self.pool.execute(
                "UPDATE pages SET deliveries = deliveries || $2::jsonb, sent_at = now() "
                "WHERE id = $1",
                page_id,
                json.dumps([{**d.model_dump(), "at": at} for d in deliveries]),
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("cannot note delivery of page %s: %s", page_id, exc)

    async def take_over_once(self) -> list[dict[str, Any]]:
        """Claim the pages whose claimant holds no instance lock (it died before they were
        sent); each is claimed by a compare-and-set on ``claimed_by``, so of two pagers
        taking over at once only one sends. The pages, as :meth:`record` returns them."""
        orphans = await self.pool.fetch(
            """SELECT p.id, p.claimed_by FROM pages p
               WHERE p.claimed_by IS NOT NULL AND p.sent_at IS NULL AND p.claimed_by <> $1
                 AND NOT EXISTS (
                   SELECT 1 FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                     AND l.classid = $2::bigint::oid AND l.objid = p.claimed_by::bigint::oid
                     AND l.database = (SELECT oid FROM pg_database
                                       WHERE datname = current_database()))
               ORDER BY p.id LIMIT 100""",
            self.instance,
            INSTANCE_LOCK,
        )
        taken: list[dict[str, Any]] = []
        for orphan in orphans:
            row = await self.pool.fetchrow(
                """UPDATE pages SET claimed_by = $3
                   WHERE id = $1 AND claimed_by = $2 AND sent_at IS NULL
                   RETURNING id, status, labels, summary, description, starts_at, incident_id""",
                orphan["id"],
                orphan["claimed_by"],
                self.instance,
            )
            if row is None:
                continue  # another pager took it, or it went out meanwhile
            labels = json.loads(row["labels"]) if isinstance(row["labels"], str) else row["labels"]
            annotations = {
                k: v
                for k, v in (("summary", row["summary"]), ("description", row["description"]))
                if v is not None
            }
            log.warning(
                "page %s (%s %s) was claimed by pager %s, gone before sending it: sending it",
                row["id"],
                labels.get("alertname"),
                row["status"],
                orphan["claimed_by"],
            )
            taken.append(
                {
                    "id": row["id"],
                    "status": row["status"],
                    "labels": labels,
                    "annotations": annotations,
                    "startsAt": row["starts_at"].isoformat(),
                    "incident": None if row["incident_id"] is None else {"id": row["incident_id"]},
                    "taken_over_from": orphan["claimed_by"],
                }
            )
        return taken

    async def run_takeover(self, dsn: str, server_settings: dict[str, str]) -> None:
        """Hold this pager's instance lock on a connection of its own (re-taken when that
        connection drops) and send the pages dead pagers left, every
        :data:`TAKEOVER_INTERVAL_S`."""
        from ioc.db import connect

        conn: asyncpg.Connection | None = None
        try:
            while True:
                try:
                    if conn is None or conn.is_closed():
                        conn = await connect(dsn, server_settings=server_settings)
                        await conn.execute(
                            "SELECT pg_advisory_lock($1, $2)", INSTANCE_LOCK, self.instance
                        )
                    else:
                        await conn.execute("SELECT 1")  # notice a dropped connection
                    taken = await self.take_over_once()
                    if taken:
                        self._spawn(taken)
                except (OSError, IocError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("page takeover pass failed (%s: %s)", type(exc).__name__, exc)
                    if conn is not None:
                        conn.terminate()
                    conn = None
                await asyncio.sleep(TAKEOVER_INTERVAL_S)
        finally:
            if conn is not None:
                conn.terminate()


async def serve(settings: Settings, host: str | None = None) -> None:
    from ioc.bootstrap import verify_schema
    from ioc.db import create_pool
    from ioc.observability import serve_metrics

    host = host or settings.bind_host  # IOC_BIND_HOST: loopback, or 0.0.0.0 in a container
    dispatcher = Dispatcher.from_settings(settings)
    await verify_schema(settings)  # runtime role: no DDL (bootstrap migrates)
    server_settings = {
        "search_path": f"{settings.db_schema},public",
        "application_name": "ioc-pager",
    }
    pool = await create_pool(settings.database_dsn(), server_settings=server_settings)
    incidents = IncidentFollower(settings)
    incidents.start()
    pager = Pager(settings, pool, dispatcher, incidents)
    runner = web.AppRunner(pager.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, settings.pager_port)
    try:
        await site.start()
    except OSError as exc:
        raise IocError(
            f"cannot listen on {host}:{settings.pager_port} ({exc}); set IOC_PAGER_PORT"
        ) from None
    # /metrics on the pager port + 1 (file_sd registered for the local Prometheus)
    serve_metrics(settings, "pager", settings.pager_port + 1)
    takeover = asyncio.create_task(pager.run_takeover(settings.database_dsn(), server_settings))
    # resolutions Alertmanager drops (inhibited or silenced when resolved): ioc.services.resolutions
    from ioc.services.resolutions import Reconciler

    reconcile = asyncio.create_task(Reconciler(pager, settings.alertmanager_urls).run())
    print(
        f"ioc pager: http://{host}:{settings.pager_port}/alertmanager/webhook, "
        f"{len(dispatcher.channels)} channel(s), metrics on :{settings.pager_port + 1}, "
        f"instance {pager.instance}",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        takeover.cancel()
        reconcile.cancel()
        await asyncio.gather(takeover, reconcile, return_exceptions=True)
        await incidents.stop()
        await runner.cleanup()
        await pool.close()
