"""The operations service: the API under ``/api/v1`` (its OpenAPI document at
``/openapi.json``, committed as ``docs/openapi.json``), the operator console at
``/console``, ``/healthz``, and the background loops (Silencer, Escalator).

Every refusal is JSON ``{"error": reason}`` with its status: an :class:`OpsError` its own,
FastAPI's validation errors 422 (the field and what is wrong), a body over
``settings.ops_max_body_bytes`` 413 (by its Content-Length, or counted while it streams),
the database away 503. Anything else is a bug: logged with its traceback and answered
``500 {"error": "internal error"}`` (no traceback to the client).
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from ioc.config import Settings
from ioc.contract import metrics as m
from ioc.contract.topology import Topology
from ioc.observability import counter, histogram
from ioc.services.ops import actions, audit, auth, queries
from ioc.services.ops.actions import APPLY_WAIT_S
from ioc.services.ops.auth import Principal, RateLimited
from ioc.services.ops.common import (
    Invalid,
    NotFound,
    OpsContext,
    OpsError,
    Unauthorized,
    Unavailable,
)
from ioc.services.ops.models import (
    AcknowledgeIn,
    AssignIn,
    AuditFilter,
    AuditRow,
    CommandAccepted,
    CommentIn,
    ErrorOut,
    Health,
    IncidentDetail,
    IncidentFilter,
    IncidentSummary,
    ResolveIn,
    TokenCreated,
    TokenIn,
    TokenOut,
    UnitOut,
    When,
)

log = logging.getLogger(__name__)

API = "/api/v1"
MAX_ID = 2**63 - 1
REQUESTS = counter(m.OPS_REQUESTS)
REQUEST_SECONDS = histogram(m.OPS_REQUEST_SECONDS)

_DB_AWAY: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)

ACQUIRE_TIMEOUT_S = 10.0
"""How long a request waits for a free database connection before a 503."""

IncidentId = Annotated[int, Path(ge=1, le=MAX_ID, description="incident id")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}


# --- context --------------------------------------------------------------------------------


class _Missing:
    """Stands in for a part of the service that could not be built (its module missing or
    its configuration wrong), so the rest of the API still serves; using it is a 503."""

    def __init__(self, what: str, why: str) -> None:
        self._what = what
        self._why = why

    def __getattr__(self, name: str) -> Any:
        raise Unavailable(f"{self._what} is not available: {self._why}")


class _BoundedAcquire:
    """``pool.acquire()`` with a bounded wait: a pool whose connections are all busy (or a
    database that does not answer) is :class:`Unavailable` (503), never a request that hangs."""

    def __init__(self, inner: Any, timeout: float) -> None:
        self._inner = inner
        self._timeout = timeout

    async def __aenter__(self) -> Any:
        try:
            return await self._inner.__aenter__()
        except TimeoutError:
            raise Unavailable(
                f"no database connection within {self._timeout:g} s (the database is away or "
                "the service is busy); retry later"
            ) from None

    async def __aexit__(self, *exc: object) -> Any:
        return await self._inner.__aexit__(*exc)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.__aenter__().__await__()


def bound_acquire(pool: asyncpg.Pool, timeout: float = ACQUIRE_TIMEOUT_S) -> asyncpg.Pool:
    """Give every ``acquire()`` of ``pool`` without its own timeout (and so ``pool.fetch*``
    and ``pool.execute``, which acquire) a default one of ``timeout`` seconds."""
    base = type(pool)

    def acquire(self: Any, *, timeout: float | None = None) -> _BoundedAcquire:
        wait = type(self).acquire_timeout_s if timeout is None else timeout
        return _BoundedAcquire(base.acquire(self, timeout=wait), wait)

    # asyncpg's Pool has __slots__: the method cannot be set on the instance, so the pool
    # becomes an instance of a slot-compatible subclass that overrides it.
    pool.__class__ = type(
        "BoundedPool",
        (base,),
        {"__slots__": (), "acquire": acquire, "acquire_timeout_s": timeout},
    )
    return pool


async def build(settings: Settings, topology: Topology) -> OpsContext:
    """The service's dependencies: a database pool on the namespace's schema (every
    acquire bounded by :data:`ACQUIRE_TIMEOUT_S`), the Alertmanager client, the paging
    dispatcher and the on-call roster."""
    from ioc.db import create_pool

    pool = await create_pool(
        settings.database_dsn(),
        max_size=8,
        server_settings={
            "search_path": f"{settings.db_schema},public",
            "application_name": "ioc-ops",
        },
    )
    bound_acquire(pool)
    parts: dict[str, Any] = {}
    try:
        from ioc.services.ops.alertmanager import AlertmanagerClient

        parts["alertmanager"] = AlertmanagerClient(settings.alertmanager_urls)
    except ImportError as exc:
        parts["alertmanager"] = _Missing("Alertmanager client", str(exc))
    try:
        from ioc.services.channels import Dispatcher

        parts["dispatcher"] = Dispatcher.from_settings(settings)
    except ImportError as exc:
        parts["dispatcher"] = _Missing("paging dispatcher", str(exc))
    try:
        from ioc.services.ops.oncall import load_roster

        parts["roster"] = load_roster(settings)
    except ImportError as exc:
        parts["roster"] = _Missing("on-call roster", str(exc))
    from ioc.services.incidents import CommandProducer

    return OpsContext(
        settings=settings, topology=topology, pool=pool, commands=CommandProducer(settings), **parts
    )


async def close(ctx: OpsContext) -> None:
    """Close what :func:`build` opened."""
    for part in (ctx.alertmanager, ctx.dispatcher):
        closer = getattr(part, "close", None) if not isinstance(part, _Missing) else None
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
    if ctx.commands is not None:
        await ctx.commands.close()
    await ctx.pool.close()


# --- request plumbing -----------------------------------------------------------------------


def _ctx(request: Request) -> OpsContext:
    ctx: OpsContext = request.app.state.ctx
    return ctx


def _where(request: Request) -> audit.Where:
    address = request.client.host if request.client else None
    return audit.Where(address, request.method, request.url.path)


_bearer = HTTPBearer(auto_error=False, description="an API token (`ioc ops token add`)")


def need(role: str) -> Callable[..., Awaitable[Principal]]:
    """The dependency that authenticates the caller (Bearer header only: the console's
    cookie is for /console, whose forms carry a CSRF token; accepting it here would let
    another site's page drive the API with it), applies its rate limit, then requires
    ``role``."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        token = credentials.credentials if credentials else None
        where = _where(request)
        principal = await auth.authenticate(
            _ctx(request),
            token,
            where.address,
            where.method,
            where.path,
            request.app.state.login_guard,
        )
        request.app.state.limiter.check(principal)
        auth.require(principal, role)
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(need("viewer"))]
Operator = Annotated[Principal, Depends(need("operator"))]
Admin = Annotated[Principal, Depends(need("admin"))]


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def _validation_reason(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            msg = "malformed JSON"
        elif err.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts) or "invalid request"


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """Outermost ASGI middleware: body size limit (Content-Length and streamed bytes),
    request metrics, and the last resort for a bug: 500 ``internal error``, logged with
    its traceback, never sent."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def _json(self, send: Send, status: int, reason: str) -> None:
        response = _error(status, reason)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        status = 500
        t0 = time.monotonic()
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._json(send, 413, f"request body larger than {self.max_body} bytes")
            self._observe(scope, 413, t0)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except BodyTooLarge as exc:
            if not started:
                status = 413
                await self._json(send, 413, str(exc.detail))
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                status = 500
                await self._json(send, 500, "internal error")
        self._observe(scope, status, t0)

    @staticmethod
    def _observe(scope: Scope, status: int, t0: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = str(scope.get("method", ""))
        REQUESTS.labels(method, route, str(status)).inc()
        REQUEST_SECONDS.labels(method, route).observe(time.monotonic() - t0)


def _install_errors(app: FastAPI) -> None:
    async def ops_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OpsError)
        headers: dict[str, str] = {}
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = 'Bearer realm="ioc-ops"'
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        return _error(exc.status, str(exc), headers)

    async def validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _error(422, _validation_reason(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    async def db_away(request: Request, exc: Exception) -> Response:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return _error(503, "database unavailable; retry later")

    async def data_error(request: Request, exc: Exception) -> Response:
        return _error(422, f"value refused by the database: {str(exc).splitlines()[0]}")

    app.add_exception_handler(OpsError, ops_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(asyncpg.DataError, data_error)
    for kind in _DB_AWAY:
        app.add_exception_handler(kind, db_away)


# --- the app --------------------------------------------------------------------------------


def create_app(ctx: OpsContext, *, apply_wait_s: float = APPLY_WAIT_S) -> FastAPI:
    """The API (and the console, when its module is there) over ``ctx``."""
    app = FastAPI(
        title="IOC operations API",
        version="1",
        description=(
            "Incidents (list, show, acknowledge, assign, comment, resolve), maintenance "
            "windows, on-call, SLA reports and objects, API tokens and the audit log. "
            "Authenticate with `Authorization: Bearer <token>`. Roles: viewer < operator < "
            "admin; viewers and operators may be limited to a unit subtree. Errors are "
            '`{"error": reason}`. Resolved incidents are never reopened: a recurrence '
            "opens a new incident."
        ),
        responses=_ERRORS,
    )
    app.state.ctx = ctx
    app.state.limiter = auth.RateLimiter()
    app.state.login_guard = auth.LoginGuard()
    app.state.apply_wait_s = apply_wait_s
    _install_errors(app)
    _incident_routes(app)
    _exchange_routes(app)
    _token_and_audit_routes(app)
    _maintenance_routes(app)
    _sla_routes(app)
    _unit_routes(app)
    _oncall_routes(app)

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Response:
        """Liveness and the database (no authentication)."""
        try:
            async with asyncio.timeout(2.0):
                await ctx.pool.fetchval("SELECT 1")
            ok = True
        except Exception:
            ok = False
        body = Health(status="ok" if ok else "degraded", database=ok)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    console = False
    try:
        from ioc.services.ops.console import router as console_router

        app.include_router(console_router, prefix="/console", include_in_schema=False)
        console = True
    except ImportError as exc:
        log.warning("operator console not available: %s", exc)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/console" if console else "/docs", status_code=307)

    app.add_middleware(Guard, max_body=ctx.settings.ops_max_body_bytes)
    return app


def _incident_routes(app: FastAPI) -> None:
    @app.get(f"{API}/incidents", response_model=list[IncidentSummary], tags=["incidents"])
    async def list_incidents(
        request: Request, principal: Viewer, f: Annotated[IncidentFilter, Query()]
    ) -> list[IncidentSummary]:
        """Incidents, newest first, filtered (unit: that unit and its subtree; status
        ``active``: not resolved; ``q``: text in title, root device or affected devices)."""
        return await queries.list_incidents(_ctx(request), f, principal)

    @app.get(f"{API}/incidents/{{incident_id}}", response_model=IncidentDetail, tags=["incidents"])
    async def show_incident(
        request: Request, principal: Viewer, incident_id: IncidentId
    ) -> IncidentDetail:
        """One incident: timeline, affected devices, pages, comments, acknowledgements,
        the root device's state changes, silences and escalations."""
        return await queries.get_incident(_ctx(request), incident_id, principal)

    async def run(
        request: Request,
        principal: Principal,
        incident_id: int,
        action: Literal["acknowledge", "assign", "comment", "resolve"],
        note: str,
        assignee: str | None = None,
    ) -> Response:
        result = await actions.act(
            _ctx(request),
            principal,
            incident_id,
            action,
            note,
            assignee,
            where=_where(request),
            wait_s=request.app.state.apply_wait_s,
        )
        status = 202 if isinstance(result, CommandAccepted) else 200
        return JSONResponse(result.model_dump(mode="json"), status_code=status)

    acted: dict[int | str, dict[str, Any]] = {
        200: {"model": IncidentDetail, "description": "applied by the incident agent"},
        202: {"model": CommandAccepted, "description": "sent; not applied yet"},
    }

    @app.post(
        f"{API}/incidents/{{incident_id}}/acknowledge",
        response_model=IncidentDetail,
        responses=acted,
        tags=["incidents"],
    )
    async def acknowledge(
        request: Request,
        principal: Operator,
        incident_id: IncidentId,
        body: AcknowledgeIn | None = None,
    ) -> Response:
        """Acknowledge (stops escalation, silences the incident's alerts until it
        resolves). 409 if already acknowledged (says by whom) or resolved."""
        return await run(request, principal, incident_id, "acknowledge", body.note if body else "")

    @app.post(
        f"{API}/incidents/{{incident_id}}/assign",
        response_model=IncidentDetail,
        responses=acted,
        tags=["incidents"],
    )
    async def assign(
        request: Request, principal: Operator, incident_id: IncidentId, body: AssignIn
    ) -> Response:
        """Hand the incident to someone."""
        return await run(request, principal, incident_id, "assign", body.note, body.assignee)

    @app.post(
        f"{API}/incidents/{{incident_id}}/comment",
        response_model=IncidentDetail,
        responses=acted,
        tags=["incidents"],
    )
    async def comment(
        request: Request, principal: Operator, incident_id: IncidentId, body: CommentIn
    ) -> Response:
        """Add a comment to the timeline."""
        return await run(request, principal, incident_id, "comment", body.note)

    @app.post(
        f"{API}/incidents/{{incident_id}}/resolve",
        response_model=IncidentDetail,
        responses=acted,
        tags=["incidents"],
    )
    async def resolve(
        request: Request, principal: Operator, incident_id: IncidentId, body: ResolveIn
    ) -> Response:
        """Resolve by hand, with a reason (``note``). Resolved incidents are never
        reopened: a recurrence opens a new incident."""
        return await run(request, principal, incident_id, "resolve", body.note)


def _exchange_routes(app: FastAPI) -> None:
    """An incident in the open formats peers import (docs/exchange.md)."""
    from ioc.services.ops import exchange

    Step = Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="that step (default: the latest)")
    ]

    @app.get(
        f"{API}/incidents/{{incident_id}}/cap.xml",
        response_class=Response,
        responses={
            200: {
                "content": {exchange.CAP_MEDIA_TYPE: {"schema": {"type": "string"}}},
                "description": "an OASIS CAP 1.2 alert",
            }
        },
        tags=["incidents", "exchange"],
    )
    async def cap_xml(
        request: Request, principal: Viewer, incident_id: IncidentId, seq: Step = None
    ) -> Response:
        """One step of the incident as an OASIS CAP 1.2 ``<alert>``: ``opened`` is an
        Alert, later steps Updates referencing it, ``resolved`` an AllClear Update. 409 if
        the incident cannot be mapped (the reason says why)."""
        ctx = _ctx(request)
        detail = await queries.get_incident(ctx, incident_id, principal)
        body = exchange.cap_xml(ctx.topology, detail, seq)
        return Response(body, media_type=f"{exchange.CAP_MEDIA_TYPE}; charset=utf-8")

    @app.get(
        f"{API}/incidents/{{incident_id}}/ngsi-ld",
        response_model=exchange.NgsiLdAlert,
        response_model_by_alias=True,
        response_model_exclude_none=True,
        response_class=exchange.LdJsonResponse,
        tags=["incidents", "exchange"],
    )
    async def ngsi_ld(
        request: Request, principal: Viewer, incident_id: IncidentId, seq: Step = None
    ) -> Response:
        """The incident as a Smart Data Models NGSI-LD ``Alert`` entity (keyValues with
        ``@context``), as of its latest step or ``seq``."""
        ctx = _ctx(request)
        detail = await queries.get_incident(ctx, incident_id, principal)
        entity = exchange.ngsi_ld(ctx.topology, detail, seq)
        return exchange.LdJsonResponse(
            entity.model_dump(mode="json", by_alias=True, exclude_none=True)
        )


def _token_and_audit_routes(app: FastAPI) -> None:
    @app.post(f"{API}/tokens", response_model=TokenCreated, status_code=201, tags=["admin"])
    async def add_token(request: Request, principal: Admin, body: TokenIn) -> TokenCreated:
        """A new API token; its text is in this answer only (the service keeps a hash)."""
        ctx = _ctx(request)
        return await auth.create_token(ctx.pool, ctx.topology, body, principal, _where(request))

    @app.get(f"{API}/tokens", response_model=list[TokenOut], tags=["admin"])
    async def tokens(
        request: Request, principal: Admin, include_revoked: bool = False
    ) -> list[TokenOut]:
        return await auth.list_tokens(_ctx(request).pool, include_revoked=include_revoked)

    @app.delete(f"{API}/tokens/{{token}}", response_model=TokenOut, tags=["admin"])
    async def revoke(
        request: Request,
        principal: Admin,
        token: Annotated[str, Path(min_length=1, max_length=128, description="id or name")],
    ) -> TokenOut:
        """Revoke a token (by id or name)."""
        if "\x00" in token:
            raise Invalid("token name must not contain NUL characters")
        _before, after = await auth.revoke_token(
            _ctx(request).pool, token, principal, _where(request)
        )
        return after

    @app.get(f"{API}/audit", response_model=list[AuditRow], tags=["admin"])
    async def audit_log(
        request: Request, principal: Admin, f: Annotated[AuditFilter, Query()]
    ) -> list[AuditRow]:
        """Who did what, when, from where, before and after; newest first."""
        return await audit.query(_ctx(request).pool, f)


def _maintenance_routes(app: FastAPI) -> None:
    try:
        from ioc.services.ops import maintenance
    except ImportError as exc:
        log.warning("maintenance API not available: %s", exc)
        return

    @app.get(f"{API}/maintenance", response_model=list[maintenance.WindowOut], tags=["maintenance"])
    async def windows(
        request: Request,
        principal: Viewer,
        include_cancelled: bool = False,
        active_at: When | None = None,
    ) -> list[maintenance.WindowOut]:
        """Maintenance windows, newest first (``active_at``: with an occurrence then)."""
        ctx = _ctx(request)
        found = await maintenance.list_windows(
            ctx, include_cancelled=include_cancelled, active_at=active_at
        )
        return [
            w for w in found if auth.sees_window(ctx.topology, principal, w.scope_kind, w.scope)
        ]

    @app.post(
        f"{API}/maintenance",
        response_model=maintenance.WindowOut,
        status_code=201,
        tags=["maintenance"],
    )
    async def add_window(
        request: Request, principal: Operator, body: maintenance.WindowIn
    ) -> maintenance.WindowOut:
        """Schedule a window (one-off, or recurring with a cron in Vietnam time); alerts in
        its scope are silenced during each occurrence, monitoring continues."""
        ctx = _ctx(request)
        auth.require_window_scope(ctx.topology, principal, body.scope_kind, body.scope)
        recorder = audit.in_transaction(
            principal, _where(request), "maintenance.create", "window:{id}", 201
        )
        return await maintenance.create_window(ctx, body, principal.name, recorder)

    @app.delete(
        f"{API}/maintenance/{{window_id}}",
        response_model=maintenance.WindowOut,
        tags=["maintenance"],
    )
    async def cancel(
        request: Request,
        principal: Operator,
        window_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    ) -> maintenance.WindowOut:
        """Cancel a window: future occurrences go, a running one ends now."""
        ctx = _ctx(request)
        current = await maintenance.get_window(ctx, window_id)
        if not auth.sees_window(ctx.topology, principal, current.scope_kind, current.scope):
            raise NotFound(f"no maintenance window {window_id}")
        auth.require_window_scope(ctx.topology, principal, current.scope_kind, current.scope)
        recorder = audit.in_transaction(
            principal, _where(request), "maintenance.cancel", f"window:{window_id}", 200
        )
        _before, after = await maintenance.cancel_window(ctx, window_id, principal.name, recorder)
        return after


def _sla_routes(app: FastAPI) -> None:
    try:
        from ioc.services.ops import sla
    except ImportError as exc:
        log.warning("SLA API not available: %s", exc)
        return

    Period = Annotated[
        str,
        Query(
            min_length=4,
            max_length=16,
            description="2026-11, 2026-11-25, 2026-W47, 2026-Q4 or 2026 (Vietnam time)",
        ),
    ]

    @app.get(
        f"{API}/sla/report",
        response_model=sla.SlaReport,
        responses={200: {"content": {"text/csv": {}, "text/html": {}, "application/pdf": {}}}},
        tags=["sla"],
    )
    async def report(
        request: Request,
        principal: Viewer,
        unit: Annotated[str, Query(min_length=1, max_length=128)],
        period: Period,
        format: Literal["json", "csv", "html", "pdf"] = "json",
        upstream_as: Literal["upstream", "device"] | None = None,
        domain: Annotated[str | None, Query(max_length=64)] = None,
        sla_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        lang: Literal["vi", "en"] = "vi",
    ) -> Response:
        """Availability of a unit's subtree over a period against its SLA objective
        (maintenance excluded); JSON, CSV, HTML or PDF (with charts)."""
        ctx = _ctx(request)
        auth.require_unit(ctx.topology, principal, unit)
        result = await sla.sla_report(
            ctx, unit, period, upstream_as=upstream_as, domain=domain, sla_id=sla_id, lang=lang
        )
        name = f"sla-{unit}-{period}"
        if format == "csv":
            return Response(
                sla.render_csv(result),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
            )
        if format == "html":
            html = await asyncio.to_thread(sla.render_html, result, lang)
            return Response(html, media_type="text/html; charset=utf-8")
        if format == "pdf":
            pdf = await asyncio.to_thread(sla.render_pdf, result, lang)
            return Response(
                pdf,
                media_type="application/pdf",
                headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
            )
        return JSONResponse(result.model_dump(mode="json"))

    @app.get(f"{API}/sla/objects", response_model=list[sla.SlaObjectOut], tags=["sla"])
    async def objects(request: Request, principal: Viewer) -> list[sla.SlaObjectOut]:
        """SLA objects (a limited principal sees those scoped to units in its subtree)."""
        ctx = _ctx(request)
        found = await sla.list_slas(ctx)
        if principal.unit_code is None:
            return found
        return [
            o
            for o in found
            if o.scope_kind == "unit" and auth.sees_unit(ctx.topology, principal, o.scope)
        ]

    @app.post(f"{API}/sla/objects", response_model=sla.SlaObjectOut, status_code=201, tags=["sla"])
    async def add_object(
        request: Request, principal: Admin, body: sla.SlaObjectIn
    ) -> sla.SlaObjectOut:
        """A new SLA object (objective, scope, period, schedule, excluded downtime)."""
        recorder = audit.in_transaction(principal, _where(request), "sla.create", "sla:{id}", 201)
        return await sla.create_sla(_ctx(request), body, principal.name, recorder)

    @app.delete(f"{API}/sla/objects/{{sla_id}}", response_model=sla.SlaObjectOut, tags=["sla"])
    async def delete_object(
        request: Request, principal: Admin, sla_id: Annotated[int, Path(ge=1, le=MAX_ID)]
    ) -> sla.SlaObjectOut:
        recorder = audit.in_transaction(
            principal, _where(request), "sla.delete", f"sla:{sla_id}", 200
        )
        return await sla.delete_sla(_ctx(request), sla_id, principal.name, recorder)


def _unit_routes(app: FastAPI) -> None:
    from ioc.services.ops.units import list_units

    @app.get(f"{API}/units", response_model=list[UnitOut], tags=["units"])
    async def units(
        request: Request, principal: Viewer, include_abolished: bool = False
    ) -> list[UnitOut]:
        """The scenario's administrative units the caller sees, top tier first: today's, and
        with ``include_abolished=true`` also those that ended in a merger (the 2025 reform),
        each with ``current``, today's unit its history rolls into."""
        return list_units(_ctx(request).topology, principal, include_abolished)


def _oncall_routes(app: FastAPI) -> None:
    try:
        from ioc.services.ops.oncall import OnCallLevel
    except ImportError as exc:
        log.warning("on-call API not available: %s", exc)
        return

    @app.get(f"{API}/oncall", response_model=list[OnCallLevel], tags=["oncall"])
    async def on_call(
        request: Request,
        principal: Viewer,
        domain: Annotated[str, Query(min_length=1, max_length=64)],
        unit: Annotated[str, Query(min_length=1, max_length=128)],
        at: When | None = None,
    ) -> list[OnCallLevel]:
        """Who is paged, level by level, for an incident of ``domain`` in ``unit`` at
        ``at`` (default now)."""
        ctx = _ctx(request)
        auth.require_unit(ctx.topology, principal, unit)
        when = at or datetime.now().astimezone()
        levels: list[OnCallLevel] = ctx.roster.on_call(ctx.topology, domain, unit, when)
        return levels


# --- serving --------------------------------------------------------------------------------


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The OpenAPI document the service serves (what ``docs/openapi.json`` commits): built
    without a database or the scenario's topology, which it does not depend on."""
    from ioc.config import load_settings
    from ioc.contract.topology import load_scenario

    def missing(what: str) -> Any:
        return _Missing(what, "not connected (OpenAPI document only)")

    ctx = OpsContext(
        settings=settings or load_settings(),
        topology=load_scenario("demo"),
        pool=missing("database"),
        alertmanager=missing("Alertmanager client"),
        dispatcher=missing("paging dispatcher"),
        roster=missing("on-call roster"),
    )
    return create_app(ctx).openapi()


def render_openapi(document: dict[str, Any]) -> str:
    """The committed form: indented, UTF-8 (Vietnamese text stays readable), newline-ended."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


async def serve(settings: Settings, host: str | None = None) -> None:
    """Check the schema (as the runtime role: bootstrap migrates), load the scenario, build,
    then serve the API with the Silencer and the Escalator running beside it, and metrics on
    ``ops_port + 1``, at ``host`` (default ``IOC_BIND_HOST``)."""
    import uvicorn

    from ioc.bootstrap import verify_schema
    from ioc.contract.topology import load_scenario
    from ioc.errors import IocError
    from ioc.observability import serve_metrics

    host = host or settings.bind_host  # IOC_BIND_HOST: loopback, or 0.0.0.0 in a container
    await verify_schema(settings)  # runtime role: no DDL (bootstrap migrates)
    topology = load_scenario(settings.scenario)
    ctx = await build(settings, topology)
    app = create_app(ctx)
    loops: list[asyncio.Task[None]] = []
    for module, name in (("silencer", "Silencer"), ("escalation", "Escalator")):
        try:
            mod = __import__(f"ioc.services.ops.{module}", fromlist=[name])
            loops.append(asyncio.create_task(getattr(mod, name)(ctx).run(), name=name))
        except (ImportError, AttributeError) as exc:
            log.warning("%s not running: %s", name, exc)
    config = uvicorn.Config(
        app, host=host, port=settings.ops_port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    metrics_port = serve_metrics(settings, "ops", settings.ops_port + 1)
    print(
        f"ioc ops: API {settings.ops_base_url}{API} (OpenAPI /openapi.json), console "
        f"{settings.console_base_url}/console, metrics on :{metrics_port}",
        flush=True,
    )
    try:
        await server.serve()
        if not server.started:
            raise IocError(
                f"cannot listen on {host}:{settings.ops_port}; set IOC_OPS_PORT to a free port"
            )
    finally:
        for task in loops:
            task.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await close(ctx)
