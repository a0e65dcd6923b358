"""The pager receiver: Alertmanager's webhook endpoint (`ioc pager`).

``POST /alertmanager/webhook`` with ``Authorization: Bearer <token>`` and Alertmanager's
webhook JSON (version 4). Each alert of the notification is recorded once per
(fingerprint, status, startsAt) in the ``pages`` table, so Alertmanager's retries and repeat
notifications do not page twice; new pages are forwarded to the configured channels
(generic webhook, e-mail over SMTP). Bad requests get a clear status and a short JSON error,
never a stack trace: 401 without the token, 413 when too large, 415 when not JSON, 400 when
the payload is not an Alertmanager notification, 503 when the database is unavailable (so
Alertmanager retries and nothing is lost). Each page names the open incident of its device,
followed from ``ioc.incidents.v1`` (:class:`~ioc.services.incidents.IncidentFollower`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiohttp
import asyncpg
import msgspec
from aiohttp import web

from ioc.config import Settings
from ioc.contract import metrics as m
from ioc.errors import IocError
from ioc.observability import counter, histogram
from ioc.services.incidents import IncidentFollower

log = logging.getLogger(__name__)

# Built from the contract's specs, like every other process's metrics.
PAGES = counter(m.PAGER_PAGES)
DUPLICATES = counter(m.PAGER_DUPLICATES)
REJECTED = counter(m.PAGER_REJECTED)
DELIVERIES = counter(m.PAGER_DELIVERIES)
REQUEST_SECONDS = histogram(m.PAGER_REQUEST_SECONDS)


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


@dataclass
class Channel:
    kind: str
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.kind)


def parse_channels(text: str) -> list[Channel]:
    try:
        items = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise IocError(f"IOC_PAGER_CHANNELS is not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise IocError("IOC_PAGER_CHANNELS must be a JSON list of channels")
    channels = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("type") not in ("webhook", "email"):
            raise IocError(f"IOC_PAGER_CHANNELS[{i}]: type must be 'webhook' or 'email'")
        if item["type"] == "webhook" and not str(item.get("url", "")).startswith(
            ("http://", "https://")
        ):
            raise IocError(f"IOC_PAGER_CHANNELS[{i}]: a webhook needs an http(s) 'url'")
        if item["type"] == "email" and not (item.get("host") and item.get("to")):
            raise IocError(f"IOC_PAGER_CHANNELS[{i}]: e-mail needs 'host' and 'to'")
        channels.append(Channel(item["type"], item))
    return channels


def _json_error(status: int, reason: str, message: str) -> web.Response:
    REJECTED.labels(reason).inc()
    return web.json_response({"error": message}, status=status)


class Pager:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        channels: list[Channel],
        incidents: IncidentFollower | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.channels = channels
        self.incidents = incidents
        self.token = settings.resolved_pager_token().encode()
        self.http: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.pager_max_body_bytes)
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
        if self.http is not None:
            await self.http.close()

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
                asyncio.get_running_loop().create_task(self.forward(new))
            return web.json_response(
                {"recorded": len(new), "duplicates": len(note.alerts) - len(new)}
            )

    async def record(self, note: AMNotification) -> list[dict[str, Any]]:
        new: list[dict[str, Any]] = []
        async with self.pool.acquire() as conn, conn.transaction():
            for alert in note.alerts:
                starts = _time(alert.startsAt) or dt.datetime.now(dt.UTC)
                labels = alert.labels
                device = labels.get("device_id") or labels.get("node_id")
                incident = self.incidents.open_for(device) if self.incidents else None
                row = await conn.fetchrow(
                    """INSERT INTO pages (fingerprint, status, alertname, severity, domain, unit,
                         site, device_id, summary, description, starts_at, ends_at, receiver,
                         group_key, labels, incident_id)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                               $15::jsonb, $16)
                       ON CONFLICT (fingerprint, status, starts_at) DO UPDATE
                         SET notifications = pages.notifications + 1
                       RETURNING id, (xmax = 0) AS inserted""",
                    alert.fingerprint or json.dumps(labels, sort_keys=True),
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
                            # on-call acts on it (`ioc incident acknowledge ID`)
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

    async def forward(self, pages: list[dict[str, Any]]) -> None:
        for channel in self.channels:
            for page in pages:
                try:
                    if channel.kind == "webhook":
                        await self._webhook(channel, page)
                    else:
                        await asyncio.to_thread(self._email, channel, page)
                    result = "ok"
                except Exception as exc:  # a channel failing must not stop the others
                    log.warning("channel %s failed for page %s: %s", channel.name, page["id"], exc)
                    result = "error"
                DELIVERIES.labels(channel.name, result).inc()
                await self._note_delivery(page["id"], channel.name, result)

    async def _webhook(self, channel: Channel, page: dict[str, Any]) -> None:
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        async with self.http.post(
            channel.config["url"], json=page, headers=channel.config.get("headers") or {}
        ) as resp:
            if resp.status >= 300:
                raise IocError(f"HTTP {resp.status}")

    def _email(self, channel: Channel, page: dict[str, Any]) -> None:
        cfg = channel.config
        msg = EmailMessage()
        state = "RESOLVED" if page["status"] == "resolved" else "FIRING"
        msg["Subject"] = (
            f"[{state}] [{page['labels'].get('severity', '')}] "
            f"{page['annotations'].get('summary', page['labels'].get('alertname'))}"
        )
        msg["From"] = cfg.get("from", "ioc-pager@localhost")
        msg["To"] = ", ".join(cfg["to"])
        msg.set_content(
            f"{page['annotations'].get('description', '')}\n\n"
            f"Runbook: {page['annotations'].get('runbook_url', '-')}\n"
            f"Labels: {json.dumps(page['labels'], ensure_ascii=False)}\n"
        )
        with smtplib.SMTP(cfg["host"], int(cfg.get("port", 25)), timeout=10) as smtp:
            if cfg.get("starttls"):
                smtp.starttls()
            if cfg.get("username"):
                smtp.login(cfg["username"], cfg.get("password", ""))
            smtp.send_message(msg)

    async def _note_delivery(self, page_id: int, channel: str, result: str) -> None:
        try:
            await self.pool.execute(
                "UPDATE pages SET deliveries = deliveries || $2::jsonb WHERE id = $1",
                page_id,
                json.dumps(
                    [
                        {
                            "channel": channel,
                            "result": result,
                            "at": dt.datetime.now(dt.UTC).isoformat(),
                        }
                    ]
                ),
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("cannot note delivery of page %s: %s", page_id, exc)


async def serve(settings: Settings, host: str = "127.0.0.1") -> None:
    from ioc.db import create_pool
    from ioc.db.migrate import migrate
    from ioc.observability import serve_metrics

    channels = parse_channels(settings.pager_channels)
    await migrate(settings.admin_dsn(), settings.db_schema)
    pool = await create_pool(
        settings.database_dsn(),
        server_settings={
            "search_path": f"{settings.db_schema},public",
            "application_name": "ioc-pager",
        },
    )
    incidents = IncidentFollower(settings)
    incidents.start()
    pager = Pager(settings, pool, channels, incidents)
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
    print(
        f"ioc pager: http://{host}:{settings.pager_port}/alertmanager/webhook, "
        f"{len(channels)} channel(s), metrics on :{settings.pager_port + 1}",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await incidents.stop()
        await runner.cleanup()
        await pool.close()
