"""The operator console: server-rendered pages over the same functions as the API.

No JavaScript framework and no build step: Jinja2 templates (autoescaped), one CSS file and
HTML forms, so it works on the room's wall display (1920x1080, refreshes itself every 30 s)
and on a laptop. Vietnamese by default, English with ``?lang=en`` (remembered in a cookie).

Sign-in is the API token, kept in an HttpOnly, SameSite=Strict cookie. Every form carries a
CSRF token derived from that cookie (signed double-submit): a POST without it, or from a
viewer, is refused with 403. Errors from the service (409 incident resolved, 422 bad window)
come back as a message on the page, never as a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlencode

import jinja2
import pydantic
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup

from ioc.contract.events import CommandAction
from ioc.contract.feeds import domain_of
from ioc.contract.topology import Topology
from ioc.services.ops import actions, audit, auth, maintenance, queries, sla
from ioc.services.ops.common import (
    DEFAULT_LANG,
    VN_TZ,
    Forbidden,
    Invalid,
    Lang,
    NotFound,
    OpsContext,
    OpsError,
    Unauthorized,
    tr,
)
from ioc.services.ops.models import IncidentFilter

router = APIRouter()

PREFIX: Final = "/console"
TOKEN_COOKIE: Final = "ioc_token"
LANG_COOKIE: Final = "ioc_lang"
FLASH_COOKIE: Final = "ioc_flash"
LOGIN_CSRF_COOKIE: Final = "ioc_login_csrf"
CSRF_FIELD: Final = "csrf"
REFRESH_S: Final = 30
"""The incidents page reloads itself this often (paused while an operator types)."""

TEMPLATES = Path(__file__).parent / "templates"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# --- language -----------------------------------------------------------------------------

CATALOG: Final[dict[str, tuple[str, str]]] = {
    "app": ("Trung tâm Điều hành IOC", "IOC Operations Centre"),
    "incidents": ("Sự cố", "Incidents"),
    "open_incidents": ("Sự cố đang mở", "Open incidents"),
    "maintenance": ("Bảo trì", "Maintenance"),
    "maintenance_windows": ("Lịch bảo trì", "Maintenance windows"),
    "sla": ("Báo cáo SLA", "SLA report"),
    "login": ("Đăng nhập", "Sign in"),
    "logout": ("Đăng xuất", "Sign out"),
    "token": ("Mã truy cập (API token)", "Access token (API token)"),
    "login_hint": (
        "Dán mã truy cập do quản trị viên cấp (lệnh «ioc ops token»).",
        "Paste the access token your administrator issued (`ioc ops token`).",
    ),
    "severity": ("Mức độ", "Severity"),
    "status": ("Trạng thái", "Status"),
    "title": ("Nội dung", "Title"),
    "unit": ("Đơn vị", "Unit"),
    "domain": ("Lĩnh vực", "Domain"),
    "opened": ("Mở lúc", "Opened"),
    "assigned": ("Người xử lý", "Assigned to"),
    "actions": ("Thao tác", "Actions"),
    "all": ("Tất cả", "All"),
    "filter": ("Lọc", "Filter"),
    "acknowledge": ("Xác nhận", "Acknowledge"),
    "comment": ("Ghi chú", "Comment"),
    "resolve": ("Đóng sự cố", "Resolve"),
    "assign": ("Giao việc", "Assign"),
    "assignee": ("Giao cho", "Assignee"),
    "note_or_reason": ("Ghi chú / lý do đóng", "Comment / reason to resolve"),
    "reason": ("Lý do", "Reason"),
    "more": ("Ghi chú, đóng…", "Comment, resolve…"),
    "none_open": ("Không có sự cố nào đang mở.", "No open incidents."),
    "count_open": ("sự cố đang mở", "open incidents"),
    "updated": ("Cập nhật lúc", "Updated at"),
    "auto_refresh": ("tự làm mới mỗi 30 giây", "refreshes every 30 s"),
    "incident": ("Sự cố", "Incident"),
    "kind": ("Loại", "Kind"),
    "root_device": ("Thiết bị gốc", "Root device"),
    "site": ("Địa điểm", "Site"),
    "acknowledged_by": ("Người xác nhận", "Acknowledged by"),
    "resolved_at": ("Đóng lúc", "Resolved at"),
    "timeline": ("Diễn biến", "Timeline"),
    "at": ("Thời điểm", "At"),
    "event": ("Sự kiện", "Event"),
    "actor": ("Người thực hiện", "By"),
    "note": ("Ghi chú", "Note"),
    "affected": ("Thiết bị bị ảnh hưởng", "Affected devices"),
    "n_affected": ("thiết bị bị ảnh hưởng", "affected"),
    "device": ("Thiết bị", "Device"),
    "device_class": ("Loại thiết bị", "Device class"),
    "state": ("Tình trạng", "State"),
    "since": ("Từ lúc", "Since"),
    "pages": ("Thông báo đã gửi", "Pages sent"),
    "alert": ("Cảnh báo", "Alert"),
    "received": ("Nhận lúc", "Received"),
    "deliveries": ("Kênh gửi", "Deliveries"),
    "silences": ("Tạm tắt cảnh báo (Alertmanager)", "Silences (Alertmanager)"),
    "escalations": ("Leo thang", "Escalations"),
    "level": ("Cấp", "Level"),
    "targets": ("Người nhận", "Paged"),
    "paged_at": ("Gửi lúc", "Paged at"),
    "state_changes": ("Trạng thái thiết bị gốc", "Root device states"),
    "from": ("Từ", "From"),
    "to": ("Đến", "To"),
    "nothing": ("Không có.", "None."),
    "back": ("← Danh sách sự cố", "← Incident list"),
    "scope_kind": ("Loại phạm vi", "Scope kind"),
    "scope": ("Phạm vi", "Scope"),
    "scope_device": ("Thiết bị", "Device"),
    "scope_site": ("Địa điểm", "Site"),
    "scope_unit": ("Đơn vị (cả cấp dưới)", "Unit (and below)"),
    "scope_domain": ("Lĩnh vực", "Domain"),
    "scope_hint": (
        "Mã thiết bị, mã địa điểm, mã đơn vị hoặc lĩnh vực (network, camera, telehealth).",
        "A device id, site id, unit code or domain (network, camera, telehealth).",
    ),
    "starts_at": ("Bắt đầu", "Start"),
    "ends_at": ("Kết thúc", "End"),
    "cron": ("Lặp lại (cron, giờ Việt Nam)", "Repeat (cron, Vietnam time)"),
    "cron_hint": (
        "Ví dụ «0 22 * * 6»: 22 giờ thứ Bảy hằng tuần. Bỏ trống nếu chỉ một lần.",
        "E.g. `0 22 * * 6`: Saturdays at 22:00. Leave empty for a one-off window.",
    ),
    "duration": ("Thời lượng (phút)", "Duration (minutes)"),
    "minutes": ("phút", "min"),
    "times_hint": ("Giờ Việt Nam (UTC+7).", "Vietnam time (UTC+7)."),
    "create": ("Tạo lịch bảo trì", "Create window"),
    "new_window": ("Lịch bảo trì mới", "New maintenance window"),
    "cancel": ("Hủy", "Cancel"),
    "cancelled": ("Đã hủy", "Cancelled"),
    "created_by": ("Người tạo", "Created by"),
    "next_occurrences": ("Các lần tới", "Next occurrences"),
    "show_cancelled": ("Hiện cả lịch đã hủy", "Show cancelled windows"),
    "no_windows": ("Chưa có lịch bảo trì nào.", "No maintenance windows."),
    "one_off": ("Một lần", "One-off"),
    "period": ("Kỳ báo cáo", "Period"),
    "period_hint": (
        "Tháng 2026-11, ngày 2026-11-25, tuần 2026-W47, quý 2026-Q4 hoặc năm 2026.",
        "Month 2026-11, day 2026-11-25, week 2026-W47, quarter 2026-Q4 or year 2026.",
    ),
    "show_report": ("Xem báo cáo", "Show report"),
    "language": ("Ngôn ngữ", "Language"),
    "role": ("Vai trò", "Role"),
    "viewer_note": (
        "Quyền chỉ xem: không thể thao tác trên sự cố hay lịch bảo trì.",
        "View-only access: incidents and maintenance cannot be changed.",
    ),
    "error": ("Lỗi", "Error"),
}

STATUS: Final[dict[str, tuple[str, str]]] = {
    "open": ("Đang mở", "Open"),
    "acknowledged": ("Đã xác nhận", "Acknowledged"),
    "resolved": ("Đã đóng", "Resolved"),
}
SEVERITY: Final[dict[str, tuple[str, str]]] = {
    "critical": ("Nghiêm trọng", "Critical"),
    "warning": ("Cảnh báo", "Warning"),
    "info": ("Thông tin", "Info"),
}
EVENTS: Final[dict[str, tuple[str, str]]] = {
    "opened": ("Mở sự cố", "Opened"),
    "acknowledged": ("Đã xác nhận", "Acknowledged"),
    "assigned": ("Giao việc", "Assigned"),
    "commented": ("Ghi chú", "Comment"),
    "resolved": ("Đã đóng", "Resolved"),
    "escalated": ("Leo thang", "Escalated"),
}
KINDS: Final[dict[str, tuple[str, str]]] = {
    "device-down": ("Thiết bị mất kết nối", "Device down"),
    "site-isolated": ("Địa điểm bị cô lập", "Site isolated"),
    "flapping": ("Chập chờn", "Flapping"),
    "degraded": ("Suy giảm chất lượng", "Degraded"),
    "security-alert": ("Cảnh báo an ninh", "Security alert"),
}
STATES: Final[dict[str, tuple[str, str]]] = {
    "up": ("Hoạt động", "Up"),
    "down": ("Mất kết nối", "Down"),
    "degraded": ("Suy giảm", "Degraded"),
    "unreachable-upstream": ("Mất do tuyến trên", "Unreachable (upstream)"),
    "flapping": ("Chập chờn", "Flapping"),
    "unknown": ("Chưa rõ", "Unknown"),
    "firing": ("Đang báo", "Firing"),
    "resolved": ("Đã hết", "Resolved"),
}
ROLES: Final[dict[str, tuple[str, str]]] = {
    "viewer": ("Chỉ xem", "Viewer"),
    "operator": ("Vận hành", "Operator"),
    "admin": ("Quản trị", "Admin"),
}
SEVERITY_ORDER: Final = {"critical": 0, "warning": 1, "info": 2}
ACTIONS: Final[dict[str, CommandAction]] = {
    "acknowledge": "acknowledge",
    "assign": "assign",
    "comment": "comment",
    "resolve": "resolve",
}
"""The console's buttons (``escalate`` is the escalator's, not an operator's)."""


def _label(table: Mapping[str, tuple[str, str]], lang: Lang) -> Callable[[str | None], str]:
    def label(key: str | None) -> str:
        if key is None:
            return ""
        pair = table.get(key)
        return key if pair is None else tr(lang, *pair)

    return label


def text(lang: Lang, key: str) -> str:
    """A catalog string in the reader's language (KeyError for a key not in the catalog:
    every visible string exists in both languages)."""
    return tr(lang, *CATALOG[key])


def request_lang(request: Request) -> Lang:
    """``?lang=`` first (then remembered), else the cookie, else Vietnamese."""
    for value in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if value in ("vi", "en"):
            return "en" if value == "en" else "vi"
    return DEFAULT_LANG


# --- time ---------------------------------------------------------------------------------


def fmt_time(value: datetime | None, lang: Lang) -> str:
    """Vietnam time, the way each language writes dates."""
    if value is None:
        return ""
    local = value.astimezone(VN_TZ)
    return local.strftime("%d/%m/%Y %H:%M" if lang == "vi" else "%Y-%m-%d %H:%M")


def fmt_age(value: datetime | None, lang: Lang, now: datetime | None = None) -> str:
    """How long ago, in minutes/hours/days: what the room reads at a glance."""
    if value is None:
        return ""
    seconds = max(0, int(((now or datetime.now(VN_TZ)) - value).total_seconds()))
    if seconds < 3600:
        n, vi, en = seconds // 60, "phút", "min"
    elif seconds < 86400:
        n, vi, en = seconds // 3600, "giờ", "h"
    else:
        n, vi, en = seconds // 86400, "ngày", "d"
    return tr(lang, f"{n} {vi} trước", f"{n} {en} ago")


def parse_local(value: str, field: str, lang: Lang) -> datetime | None:
    """A ``datetime-local`` field (Vietnam time) as an aware datetime; empty is None."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(
            tr(lang, f"{field}: ngày giờ không hợp lệ: {value!r}", f"{field}: bad date: {value!r}")
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=VN_TZ)


# --- sessions, CSRF, flash ----------------------------------------------------------------


def csrf_token(session: str) -> str:
    """The form token of a session: an HMAC of the session cookie, so a page from another
    site (which cannot read the HttpOnly cookie) cannot forge it, and nothing is stored."""
    return hmac.new(session.encode(), b"ioc-console-csrf", hashlib.sha256).hexdigest()


def _ctx(request: Request) -> OpsContext:
    ctx: OpsContext = request.app.state.ctx
    return ctx


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _where(request: Request) -> audit.Where:
    return audit.Where(_address(request), request.method, request.url.path)


async def _audit(
    request: Request,
    session: _Session,
    action: str,
    target: str | None,
    outcome: str,
    status: int,
    before: Any,
    after: Any,
) -> None:
    """The audit row of a refused console write (a maintenance write that succeeds is
    audited inside its transaction, :func:`audit.in_transaction`; incident actions audit
    themselves in :func:`actions.act`)."""
    if isinstance(after, str):
        after = {"error": after}
    async with _ctx(request).pool.acquire() as conn:
        await audit.record(
            conn,
            session.principal,
            _address(request),
            request.method,
            request.url.path,
            action,
            target,
            outcome,
            status,
            before=before,
            after=after,
        )


def _url(path: str) -> str:
    return f"{PREFIX}{path}"


def _safe_next(value: str | None, default: str) -> str:
    """Only our own pages: ``next`` is never an open redirect."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//"):
        return value
    return default


def _set_cookie(response: Response, request: Request, name: str, value: str, **kw: Any) -> None:
    response.set_cookie(
        name,
        value,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        **kw,
    )


def _flash(response: Response, request: Request, kind: str, message: str) -> None:
    """A one-shot message for the page the redirect leads to (shown once, then cleared)."""
    _set_cookie(response, request, FLASH_COOKIE, quote(f"{kind}:{message[:300]}"), max_age=60)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


class _Session:
    """The signed-in principal and its raw session token (for the CSRF token)."""

    def __init__(self, principal: auth.Principal, token: str) -> None:
        self.principal = principal
        self.token = token

    @property
    def can_act(self) -> bool:
        return self.principal.role in ("operator", "admin")


async def _session(request: Request) -> _Session | Response:
    """The principal of the cookie, or the response to send instead (to the sign-in page)."""
    token = request.cookies.get(TOKEN_COOKIE)
    lang = request_lang(request)
    login = _url("/login") + "?" + urlencode({"next": _current(request)})
    if not token:
        return _redirect(login)
    try:
        principal = await auth.authenticate(
            _ctx(request),
            token,
            _address(request),
            request.method,
            request.url.path,
            getattr(request.app.state, "login_guard", None),
        )
    except Unauthorized:
        response = _redirect(login)
        response.delete_cookie(TOKEN_COOKIE, path=PREFIX)
        _flash(
            response,
            request,
            "error",
            tr(lang, "Mã truy cập không hợp lệ hoặc đã bị thu hồi.", "Invalid or revoked token."),
        )
        return response
    except OpsError as exc:  # 503: say so on a page
        return _error_page(request, lang, exc.status, str(exc))
    try:  # the API's per-token rate limit covers the console too
        limiter = getattr(request.app.state, "limiter", None)
        if limiter is not None:
            limiter.check(principal)
    except OpsError as exc:
        return _error_page(request, lang, exc.status, str(exc))
    return _Session(principal, token)


def _current(request: Request) -> str:
    """This page's path and query, without ``lang`` (what ``next`` and the switch keep)."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return request.url.path + ("?" + urlencode(query) if query else "")


async def _form(request: Request, session: _Session) -> dict[str, str]:
    """The POSTed form, checked: CSRF token (403), then role (403 for viewers)."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    sent = values.get(CSRF_FIELD, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(session.token).encode()):
        raise Forbidden(
            tr(
                request_lang(request),
                "Biểu mẫu không hợp lệ hoặc đã hết hạn (CSRF): tải lại trang và thử lại.",
                "Form expired or forged (CSRF): reload the page and try again.",
            )
        )
    auth.require(session.principal, "operator")
    return values


# --- rendering ----------------------------------------------------------------------------


def _error_page(request: Request, lang: Lang, status: int, message: str) -> HTMLResponse:
    return _render(request, lang, None, "error.html", status=status, code=status, message=message)


def _render(
    request: Request,
    lang: Lang,
    session: _Session | None,
    template: str,
    *,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    flash: tuple[str, str] | None = None
    raw = request.cookies.get(FLASH_COOKIE)
    if raw:
        kind, _, message = unquote(raw).partition(":")
        flash = (kind if kind in ("ok", "error") else "error", message)
    here = _current(request)
    sep = "&" if "?" in here else "?"
    html = _env.get_template(template).render(
        lang=lang,
        t=lambda key: text(lang, key),
        status_label=_label(STATUS, lang),
        severity_label=_label(SEVERITY, lang),
        event_label=_label(EVENTS, lang),
        kind_label=_label(KINDS, lang),
        state_label=_label(STATES, lang),
        role_label=_label(ROLES, lang),
        time=lambda v: fmt_time(v, lang),
        age=lambda v: fmt_age(v, lang),
        prefix=PREFIX,
        active={"incident.html": "incidents"}.get(template, template.removesuffix(".html")),
        here=here,
        lang_urls={"vi": f"{here}{sep}lang=vi", "en": f"{here}{sep}lang=en"},
        title_of=lambda incident: incident_title(_ctx(request).topology, incident, lang),
        principal=session.principal if session else None,
        can_act=session.can_act if session else False,
        csrf=csrf_token(session.token) if session else "",
        flash=flash,
        **values,
    )
    response = HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)
    if raw:
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    if request.query_params.get("lang") in ("vi", "en"):
        response.set_cookie(LANG_COOKIE, lang, path=PREFIX, max_age=365 * 86400, samesite="lax")
    return response


_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self' 'unsafe-inline'; frame-src 'self'; frame-ancestors 'self'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _unit_options(
    topology: Topology, root: str | None, include_abolished: bool = False
) -> list[tuple[str, str]]:
    """(code, indented name) of every unit of today, depth first; under ``root`` only if
    given; the units abolished in a merger (and what lies below them) too when asked."""
    out: list[tuple[str, str]] = []

    def walk(code: str, depth: int) -> None:
        unit = topology.units[code]
        if unit.superseded() and not include_abolished:
            return
        until = f", ≤{unit.valid_to}" if unit.abolished() else ""
        out.append((code, f"{' ' * 3 * depth}{unit.name} ({code}{until})"))
        for child in sorted(topology.children.get(code, []), key=lambda c: topology.units[c].name):
            walk(child, depth + 1)

    tops = [root] if root and root in topology.units else topology.root_units()
    for top in tops:
        walk(top, 0)
    return out


def incident_title(topology: Topology, incident: Any, lang: Lang) -> str:
    """The incident's title in the reader's language. The incident agent stores an English
    title; in Vietnamese it is rebuilt from the kind, root device and site (the stored text
    when the device is not in the scenario)."""
    if lang == "en":
        return str(incident.title)
    device = topology.devices.get(incident.root_device)
    if device is None:
        return str(incident.title)
    site = topology.sites[device.site].name if device.site in topology.sites else device.site
    what = f"{device.device_class} {device.id} tại {site}"
    if incident.kind == "site-isolated":
        n = len(topology.devices_behind(device.id))
        return f"Địa điểm bị cô lập: nút {device.id} tại {site} mất kết nối, {n} thiết bị bị cắt"
    verb = {
        "device-down": "mất kết nối",
        "flapping": "chập chờn",
        "degraded": "suy giảm chất lượng",
    }.get(incident.kind)
    return f"{what} {verb}" if verb else str(incident.title)


def _domains(topology: Topology) -> list[str]:
    return sorted({domain_of(d.device_class) for d in topology.devices.values()})


# --- pages --------------------------------------------------------------------------------


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
async def home() -> Response:
    return _redirect(_url("/incidents"))


@router.get("/static/console.css", include_in_schema=False)
async def stylesheet() -> Response:
    return Response(
        (TEMPLATES / "console.css").read_bytes(),
        media_type="text/css; charset=utf-8",
        headers={"Cache-Control": "max-age=300"},
    )


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request) -> Response:
    lang = request_lang(request)
    nonce = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = _render(
        request,
        lang,
        None,
        "login.html",
        login_csrf=nonce,
        next=_safe_next(request.query_params.get("next"), _url("/incidents")),
    )
    _set_cookie(response, request, LOGIN_CSRF_COOKIE, nonce, max_age=3600)
    return response


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """The token form: checked like an API call (a wrong one is audited as a failed login)."""
    lang = request_lang(request)
    form = await request.form()
    nonce = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = str(form.get(CSRF_FIELD, ""))
    if not nonce or not hmac.compare_digest(nonce.encode(), sent.encode()):
        return _error_page(
            request,
            lang,
            403,
            tr(
                lang,
                "Biểu mẫu đăng nhập không hợp lệ hoặc đã hết hạn: tải lại trang.",
                "Sign-in form expired or forged: reload the page.",
            ),
        )
    token = str(form.get("token", "")).strip()
    target = _safe_next(str(form.get("next", "")), _url("/incidents"))
    try:
        principal = await auth.authenticate(
            _ctx(request),
            token or None,
            _address(request),
            "POST",
            request.url.path,
            getattr(request.app.state, "login_guard", None),
        )
    except OpsError as exc:
        response = _redirect(_url("/login") + "?" + urlencode({"next": target}))
        message = (
            tr(lang, "Mã truy cập không đúng.", "Wrong token.")
            if isinstance(exc, Unauthorized)
            else str(exc)
        )
        _flash(response, request, "error", message)
        return response
    response = _redirect(target)
    _set_cookie(response, request, TOKEN_COOKIE, token, max_age=12 * 3600)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    _flash(
        response,
        request,
        "ok",
        tr(lang, f"Xin chào {principal.name}.", f"Welcome, {principal.name}."),
    )
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    session = await _session(request)
    if isinstance(session, Response):
        return session
    form = await request.form()
    if not hmac.compare_digest(
        str(form.get(CSRF_FIELD, "")).encode(), csrf_token(session.token).encode()
    ):
        return _error_page(request, request_lang(request), 403, "CSRF")
    response = _redirect(_url("/login"))
    response.delete_cookie(TOKEN_COOKIE, path=PREFIX)
    return response


@router.get("/incidents", response_class=HTMLResponse, include_in_schema=False)
async def incidents_page(request: Request) -> Response:
    """The wall: open and acknowledged incidents, worst first, refreshed every 30 s."""
    session = await _session(request)
    if isinstance(session, Response):
        return session
    lang = request_lang(request)
    ctx = _ctx(request)
    params = request.query_params
    chosen = {k: params.get(k) or None for k in ("unit", "domain", "severity")}
    error: str | None = None
    rows: list[Any] = []
    try:
        f = IncidentFilter(status="active", limit=500, **chosen)
        rows = await queries.list_incidents(ctx, f, session.principal)
    except pydantic.ValidationError as exc:
        error = _validation_message(exc)
    except OpsError as exc:
        error = str(exc)
    rows.sort(key=lambda r: (SEVERITY_ORDER.get(r.severity, 9), -r.opened_at.timestamp()))
    return _render(
        request,
        lang,
        session,
        "incidents.html",
        status=200 if error is None else 422,
        incidents=rows,
        error=error,
        chosen=chosen,
        units=_unit_options(ctx.topology, session.principal.unit_code),
        domains=_domains(ctx.topology),
        severities=list(SEVERITY),
        refresh_s=REFRESH_S,
        now=datetime.now(VN_TZ),
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse, include_in_schema=False)
async def incident_page(request: Request, incident_id: int) -> Response:
    """One incident: timeline, affected devices, pages, silences, escalations."""
    session = await _session(request)
    if isinstance(session, Response):
        return session
    lang = request_lang(request)
    try:
        detail = await queries.get_incident(_ctx(request), incident_id, session.principal)
    except OpsError as exc:
        return _error_page(request, lang, exc.status, str(exc))
    return _render(request, lang, session, "incident.html", incident=detail)


@router.post("/incidents/{incident_id}/act", include_in_schema=False)
async def incident_action(request: Request, incident_id: int) -> Response:
    """A button of the list or the incident page: the command goes through
    :func:`actions.act` (Kafka, the incident agent), then back to the page with a message."""
    session = await _session(request)
    if isinstance(session, Response):
        return session
    lang = request_lang(request)
    try:
        form = await _form(request, session)
    except OpsError as exc:
        return _error_page(request, lang, exc.status, str(exc))
    back = _safe_next(form.get("next"), _url(f"/incidents/{incident_id}"))
    response = _redirect(back)
    action = form.get("action", "")
    note = form.get("note", "").strip()
    assignee = form.get("assignee", "").strip() or None
    try:
        if action not in ACTIONS:
            raise Invalid(tr(lang, f"Thao tác lạ: {action!r}", f"Unknown action: {action!r}"))
        if action in ("comment", "resolve") and not note:
            raise Invalid(
                tr(
                    lang,
                    "Cần nhập lý do để đóng sự cố."
                    if action == "resolve"
                    else "Ghi chú đang để trống.",
                    "A reason is needed to resolve." if action == "resolve" else "Empty comment.",
                )
            )
        if action == "assign" and not assignee:
            raise Invalid(tr(lang, "Cần nhập người được giao.", "Who to assign to?"))
        result = await actions.act(
            _ctx(request),
            session.principal,
            incident_id,
            ACTIONS[action],
            note,
            assignee,
            where=_where(request),
            wait_s=getattr(request.app.state, "apply_wait_s", actions.APPLY_WAIT_S),
        )
    except pydantic.ValidationError as exc:
        _flash(response, request, "error", f"#{incident_id}: {_validation_message(exc)}")
        return response
    except OpsError as exc:
        _flash(response, request, "error", f"#{incident_id}: {exc}")
        return response
    verb = _label(
        {
            "acknowledge": ("xác nhận", "acknowledge"),
            "assign": ("giao việc", "assign"),
            "comment": ("ghi chú", "comment"),
            "resolve": ("đóng sự cố", "resolve"),
        },
        lang,
    )(action)
    status = getattr(result, "status", None)
    if status is None:  # 202: on the stream, not applied yet
        message = tr(
            lang,
            f"Sự cố #{incident_id}: đã gửi lệnh «{verb}», diễn biến sẽ cập nhật sau ít giây.",
            f"Incident #{incident_id}: “{verb}” sent; the timeline updates in a few seconds.",
        )
    else:
        message = tr(
            lang,
            f"Sự cố #{incident_id}: đã {verb} (trạng thái: {_label(STATUS, lang)(status)}).",
            f"Incident #{incident_id}: {verb} done (status: {_label(STATUS, lang)(status)}).",
        )
    _flash(response, request, "ok", message)
    return response


@router.get("/maintenance", response_class=HTMLResponse, include_in_schema=False)
async def maintenance_page(request: Request) -> Response:
    session = await _session(request)
    if isinstance(session, Response):
        return session
    lang = request_lang(request)
    ctx = _ctx(request)
    include = request.query_params.get("cancelled") == "1"
    error: str | None = None
    windows: list[Any] = []
    try:
        found = await maintenance.list_windows(ctx, include_cancelled=include)
        windows = [
            w
            for w in found
            if auth.sees_window(ctx.topology, session.principal, w.scope_kind, w.scope)
        ]
    except OpsError as exc:
        error = str(exc)
    now = datetime.now(VN_TZ).replace(second=0, microsecond=0, tzinfo=None)
    return _render(
        request,
        lang,
        session,
        "maintenance.html",
        windows=windows,
        error=error,
        include_cancelled=include,
        scope_kinds=["device", "site", "unit", "domain"],
        units=_unit_options(ctx.topology, session.principal.unit_code),
        domains=_domains(ctx.topology),
        default_start=(now + timedelta(hours=1)).isoformat(timespec="minutes"),
        default_end=(now + timedelta(hours=3)).isoformat(timespec="minutes"),
    )


@router.post("/maintenance", include_in_schema=False)
async def maintenance_create(request: Request) -> Response:
    session = await _session(request)
    if isinstance(session, Response):
        return session
    lang = request_lang(request)
    try:
        form = await _form(request, session)
    except OpsError as exc:
        return _error_page(request, lang, exc.status, str(exc))
    response = _redirect(_url("/maintenance"))
    try:
        duration = form.get("duration_minutes", "").strip()
        if duration and not (duration.isascii() and duration.isdigit()):
            raise Invalid(
                tr(lang, f"Thời lượng không hợp lệ: {duration!r}", f"Bad duration: {duration!r}")
            )
        window = maintenance.WindowIn(
            scope_kind=form.get("scope_kind", ""),
            scope=form.get("scope", "").strip(),
            starts_at=parse_local(form.get("starts_at", ""), text(lang, "starts_at"), lang),
            ends_at=parse_local(form.get("ends_at", ""), text(lang, "ends_at"), lang),
            cron=form.get("cron", "").strip() or None,
            duration_minutes=int(duration) if duration else None,
            note=form.get("note", "").strip(),
        )
        auth.require_window_scope(
            _ctx(request).topology, session.principal, window.scope_kind, window.scope
        )
        recorder = audit.in_transaction(
            session.principal, _where(request), "maintenance.create", "window:{id}", 201
        )
        created = await maintenance.create_window(
            _ctx(request), window, session.principal.name, recorder
        )
    except pydantic.ValidationError as exc:
        await _audit(request, session, "maintenance.create", None, "refused", 422, None, str(exc))
        _flash(response, request, "error", _validation_message(exc))
        return response
    except OpsError as exc:
        await _audit(
            request, session, "maintenance.create", None, "refused", exc.status, None, str(exc)
        )
        _flash(response, request, "error", str(exc))
        return response
    _flash(
        response,
        request,
        "ok",
        tr(
            lang,
            f"Đã tạo lịch bảo trì #{created.id} cho {created.scope}.",
            f"Maintenance window #{created.id} created for {created.scope}.",
        ),
    )
    return response


@router.post("/maintenance/{window_id}/cancel", include_in_schema=False)
async def maintenance_cancel(request: Request, window_id: int) -> Response:
    session = await _session(request)
    if isinstance(session, Response):
        return session
    lang = request_lang(request)
    try:
        await _form(request, session)
    except OpsError as exc:
        return _error_page(request, lang, exc.status, str(exc))
    response = _redirect(_url("/maintenance"))
    try:
        ctx = _ctx(request)
        current = await maintenance.get_window(ctx, window_id)
        if not auth.sees_window(ctx.topology, session.principal, current.scope_kind, current.scope):
            raise NotFound(f"no maintenance window {window_id}")  # as the API: not told
        auth.require_window_scope(
            ctx.topology, session.principal, current.scope_kind, current.scope
        )
        recorder = audit.in_transaction(
            session.principal, _where(request), "maintenance.cancel", f"window:{window_id}", 200
        )
        await maintenance.cancel_window(ctx, window_id, session.principal.name, recorder)
    except OpsError as exc:
        target = f"window:{window_id}"
        await _audit(
            request, session, "maintenance.cancel", target, "refused", exc.status, None, str(exc)
        )
        _flash(response, request, "error", str(exc))
        return response
    _flash(
        response,
        request,
        "ok",
        tr(
            lang,
            f"Đã hủy lịch bảo trì #{window_id}.",
            f"Maintenance window #{window_id} cancelled.",
        ),
    )
    return response


@router.get("/sla", response_class=HTMLResponse, include_in_schema=False)
async def sla_page(request: Request) -> Response:
    """The SLA form and, once asked, the report with its charts (B's HTML, in a frame of its
    own so its styles and ours do not mix)."""
    session = await _session(request)
    if isinstance(session, Response):
        return session
    lang = request_lang(request)
    ctx = _ctx(request)
    unit = request.query_params.get("unit") or ""
    # an abolished unit's report as it was: on request (?abolished=1), or when one is chosen
    chosen = ctx.topology.units.get(unit)
    abolished = request.query_params.get("abolished") == "1" or bool(chosen and chosen.superseded())
    units = _unit_options(ctx.topology, session.principal.unit_code, abolished)
    period = (request.query_params.get("period") or "").strip()
    report_html: str | None = None
    error: str | None = None
    if unit and period:
        try:
            auth.require_unit(ctx.topology, session.principal, unit)
            report = await sla.sla_report(ctx, unit, period, lang=lang)
            report_html = await asyncio.to_thread(sla.render_html, report, lang)
        except pydantic.ValidationError as exc:
            error = _validation_message(exc)
        except OpsError as exc:
            error = str(exc)
    return _render(
        request,
        lang,
        session,
        "sla.html",
        status=200 if error is None else 422,
        units=units,
        unit=unit or (units[0][0] if units else ""),
        period=period or datetime.now(VN_TZ).strftime("%Y-%m"),
        report_html=report_html,
        report_inline=Markup(report_html)
        if report_html and not _is_document(report_html)
        else None,
        error=error,
    )


def _is_document(html: str) -> bool:
    head = html.lstrip()[:200].lower()
    return head.startswith("<!doctype") or head.startswith("<html")


def _validation_message(exc: pydantic.ValidationError) -> str:
    """pydantic's errors in one line: ``field: reason; field: reason``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "input"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
