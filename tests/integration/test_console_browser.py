"""The operator console in a real browser: Debian's chromium driven by Playwright.

The real operations app (``create_app`` over ``build``) serves on a free port in this test's
namespace, with the default scenario's topology and incidents written as the incident agent
writes them. An operator signs in through the form, sees the wall, acknowledges through the
button, meets a 409 as a message, schedules and cancels maintenance through the form, opens
the SLA report, switches to English and back; a viewer sees no buttons and is refused; a POST
without the form token is refused. Every page fits a 1920x1080 wall and a 1366x768 laptop
without horizontal scroll, and Vietnamese text is drawn with a font that has its glyphs.

The incident agent is not running: an acknowledgement is put on Kafka and the console says
it was sent (the agent's side is tested in test_incident_agent.py and the API tests). The
screenshots (docs/operations.md) are written to the test's directory, and into docs/images
when ``IOC_UPDATE_SCREENSHOTS=1`` or an image is missing there.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Page, ViewportSize, expect

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract.topology import Topology
from ioc.services.ops import auth
from ioc.services.ops.app import build, close, create_app
from ioc.services.ops.audit import Where
from ioc.services.ops.common import VN_TZ, OpsContext
from ioc.services.ops.console import csrf_token
from ioc.services.ops.models import Role, TokenIn
from tests.support.browser import chromium, no_horizontal_scroll, rendering_fonts
from tests.support.ports import free_ports

SCENARIO = "yen-bai-2022"  # the default scenario
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WALL = ViewportSize(width=1920, height=1080)
LAPTOP = ViewportSize(width=1366, height=768)
VIETNAMESE_FONTS = {"DejaVu Sans", "Noto Sans", "Liberation Sans"}


async def _incident(
    ctx: OpsContext,
    device: str,
    kind: str,
    severity: str,
    minutes_ago: int,
    status: str = "open",
    acknowledged_by: str | None = None,
) -> int:
    """An incident and its ``opened`` step, as the incident agent writes them."""
    topology = ctx.topology
    dev = topology.devices[device]
    site = topology.sites[dev.site]
    behind = topology.devices_behind(device) if kind == "site-isolated" else []
    title = (
        f"Site isolated: node {device} at {site.name} is down, {len(behind)} devices cut off"
        if behind
        else f"{dev.device_class} {device} at {site.name} is down (no data for 180 s)"
    )
    opened = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    async with ctx.pool.acquire() as conn, conn.transaction():
        incident_id: int = await conn.fetchval(
            """INSERT INTO incidents (kind, severity, status, title, root_device, device_class,
                   unit_code, site_id, opened_at, acknowledged_at, acknowledged_by, affected)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
            kind,
            severity,
            status,
            title,
            device,
            dev.device_class,
            topology.unit_of_device[device],
            dev.site,
            opened,
            opened + timedelta(minutes=2) if acknowledged_by else None,
            acknowledged_by,
            behind or [device],
        )
        steps = [("opened", "open", "ioc", "no data for 180 s", opened)]
        if acknowledged_by:
            steps.append(
                ("acknowledged", "acknowledged", acknowledged_by, "", opened + timedelta(minutes=2))
            )
        for seq, (event, st, actor, note, at) in enumerate(steps, 1):
            await conn.execute(
                """INSERT INTO incident_events (incident_id, seq, event, status, at, actor,
                       note, published) VALUES ($1, $2, $3, $4, $5, $6, $7, true)""",
                incident_id,
                seq,
                event,
                st,
                at,
                actor,
                note,
            )
    return incident_id


async def _history(ctx: OpsContext, node: str, down_minutes_ago: int) -> None:
    """State intervals since the start of the month (what the SLA report reads), a few
    outages among them, the node's outage now with the devices behind it unreachable, and
    the page and escalation of its incident: so the report's charts and the incident page
    have something to show."""
    topology = ctx.topology
    now = datetime.now(UTC)
    month = datetime.now(VN_TZ).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    down_at = now - timedelta(minutes=down_minutes_ago)
    behind = set(topology.devices_behind(node))
    rows: list[tuple[str, str, str | None, datetime, datetime | None]] = []
    outages = [d for d in sorted(topology.devices) if d not in behind and d != node][::40]
    for device in sorted(topology.devices):
        if device == node or device in behind:
            state = "down" if device == node else "unreachable-upstream"
            rows.append((device, "up", None, month, down_at))
            rows.append((device, state, "no data for 180 s", down_at, None))
        elif device in outages:
            k = outages.index(device)
            start = month + timedelta(days=1 + k % 20, hours=k % 7)
            end = start + timedelta(minutes=30 + 45 * (k % 5))
            rows.append((device, "up", None, month, start))
            rows.append((device, "down", "no data for 180 s", start, end))
            rows.append((device, "up", None, end, None))
        else:
            rows.append((device, "up", None, month, None))
    async with ctx.pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO device_state_intervals (device_id, state, reason, start_ts, end_ts) "
            "VALUES ($1, $2, $3, $4, $5)",
            rows,
        )
        await conn.executemany(
            "INSERT INTO device_state (device_id, state, reason, since) VALUES ($1, $2, $3, $4)",
            [(d, s, r, t0) for d, s, r, t0, t1 in rows if t1 is None],
        )
        incident_id = await conn.fetchval("SELECT id FROM incidents WHERE root_device = $1", node)
        await conn.execute(
            """INSERT INTO pages (fingerprint, status, alertname, severity, domain, device_id,
                   summary, starts_at, received_at, incident_id, deliveries)
               VALUES ('f1', 'firing', 'SiteIsolated', 'critical', 'network', $1, $2, $3, $4,
                       $5, $6::jsonb)""",
            node,
            f"Node {node} down, {len(behind)} devices cut off",
            down_at,
            down_at + timedelta(minutes=1),
            incident_id,
            '[{"channel": "zalo", "recipient": "Nguyễn Văn An", "result": "ok"},'
            ' {"channel": "sms", "recipient": "+84912345678", "result": "ok"}]',
        )
        await conn.execute(
            "INSERT INTO escalations (incident_id, level, targets, paged_at) "
            "VALUES ($1, 2, $2, $3)",
            incident_id,
            ["Trần Thị Bình (trưởng ca)"],
            down_at + timedelta(minutes=11),
        )


async def _token(ctx: OpsContext, name: str, role: Role, unit: str | None = None) -> str:
    created = await auth.create_token(
        ctx.pool,
        ctx.topology,
        TokenIn(name=name, role=role, unit_code=unit),
        None,
        Where(None, "CLI", "test"),
    )
    return created.token


@pytest.fixture
async def console(namespace: Settings) -> AsyncIterator[tuple[str, OpsContext]]:
    """The operations app on a free port (base URL of the console, the context)."""
    topology: Topology = await bootstrap(namespace, SCENARIO)
    ctx = await build(namespace, topology)
    port = free_ports()
    app = create_app(ctx, apply_wait_s=0.5)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/console", ctx
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await close(ctx)


def _shot(tmp_path: Path, name: str) -> Path:
    return tmp_path / f"console-{name}.png"


def _publish(tmp_path: Path) -> list[str]:
    """Copy the screenshots into docs/images when asked to, or when one is missing there;
    the names taken."""
    update = os.environ.get("IOC_UPDATE_SCREENSHOTS") == "1"
    shots = sorted(tmp_path.glob("console-*.png"))
    for shot in shots:
        target = IMAGES / shot.name
        if update or not target.exists():
            IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, target)
    return [s.name for s in shots]


async def _fits(page: Page, what: str) -> None:
    """No horizontal scroll at this viewport."""
    scroll, inner = await no_horizontal_scroll(page)
    assert scroll <= inner, f"{what}: scrollWidth {scroll} > innerWidth {inner}"


async def _fits_both(page: Page, what: str) -> None:
    for viewport in (LAPTOP, WALL):
        await page.set_viewport_size(viewport)
        await _fits(page, f"{what} at {viewport['width']}x{viewport['height']}")
    await page.set_viewport_size(LAPTOP)


async def _login(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/incidents")
    await expect(page).to_have_url(re.compile(r"/console/login\?next="))
    await expect(page.locator("html")).to_have_attribute("lang", "vi")
    await page.fill("#token", token)
    await page.click("form[action$='/login'] button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/console/incidents$"))


async def test_console_in_a_real_browser(console: tuple[str, OpsContext], tmp_path: Path) -> None:
    base, ctx = console
    topo = ctx.topology
    node = next(d.id for d in topo.devices.values() if d.id == "nn-132")
    cameras = [d.id for d in topo.devices.values() if d.device_class == "camera"]
    station = next(d.id for d in topo.devices.values() if d.device_class == "telehealth")
    isolated = await _incident(ctx, node, "site-isolated", "critical", 14)
    down = await _incident(ctx, cameras[0], "device-down", "warning", 42)
    raced = await _incident(ctx, cameras[1], "device-down", "warning", 7)
    await _incident(ctx, station, "device-down", "critical", 95, "acknowledged", "op-huong")
    await _history(ctx, node, 14)
    operator = await _token(ctx, "op-linh", "operator")
    viewer = await _token(ctx, "xem-lucyen", "viewer", "135")

    async with chromium(viewport=LAPTOP) as browser:
        page = await browser.new_page()
        await _login(page, base, operator)

        # the wall: Vietnamese, diacritics drawn with a real font, every open incident
        await expect(page.locator("h1")).to_contain_text("Sự cố đang mở")
        await expect(page.locator("html")).to_have_attribute("lang", "vi")
        assert await page.evaluate("document.characterSet") == "UTF-8"
        fonts = await rendering_fonts(page, "h1")
        assert fonts and all(f["familyName"] in VIETNAMESE_FONTS for f in fonts), fonts
        assert sum(f["glyphCount"] for f in fonts) >= len("Sự cố đang mở") - 3, fonts
        rows = page.locator("table.incidents tbody tr")
        await expect(rows).to_have_count(4)
        await expect(rows.first).to_contain_text("Nghiêm trọng")  # critical first
        await expect(page.locator(f"tr[data-incident='{isolated}']")).to_contain_text(
            "Địa điểm bị cô lập"
        )
        await _fits_both(page, "incidents")
        await page.set_viewport_size(WALL)
        await page.screenshot(path=_shot(tmp_path, "incidents-wall"))
        await page.set_viewport_size(LAPTOP)

        # filters: by severity, then by unit (Lục Yên has none of these)
        await page.select_option("select[name=severity]", "critical")
        await page.click("form.filters button[type=submit]")
        await expect(rows).to_have_count(2)
        await page.goto(f"{base}/incidents?unit=135")
        await expect(page.locator("p.empty")).to_contain_text("Không có sự cố nào")
        await page.goto(f"{base}/incidents")

        # a stale page: someone else acknowledges first; the button answers 409 as a message
        async with ctx.pool.acquire() as conn:
            await conn.execute(
                "UPDATE incidents SET status = 'acknowledged', acknowledged_by = 'op-huong', "
                "acknowledged_at = now() WHERE id = $1",
                raced,
            )
        await page.click(f"tr[data-incident='{raced}'] button[value=acknowledge]")
        flash = page.locator("p.flash")
        await expect(flash).to_have_class(re.compile("flash-error"))
        await expect(flash).to_contain_text("op-huong")

        # acknowledge through the button: on Kafka; without the agent the console says "sent"
        await page.click(f"tr[data-incident='{down}'] button[value=acknowledge]")
        await expect(flash).to_have_class(re.compile("flash-ok"))
        await expect(flash).to_contain_text(f"Sự cố #{down}: đã gửi lệnh «xác nhận»")
        # resolve without a reason: refused with the reason, nothing sent
        row = page.locator(f"tr[data-incident='{down}']")
        await row.locator("summary").click()
        await row.locator("button[value=resolve]").click()
        await expect(flash).to_contain_text("Cần nhập lý do")

        # the incident page
        await page.click(f"tr[data-incident='{isolated}'] a")
        await expect(page).to_have_url(re.compile(rf"/console/incidents/{isolated}$"))
        await expect(page.locator("h1")).to_contain_text(f"#{isolated}")
        await expect(page.locator("body")).to_contain_text("Diễn biến")
        await expect(page.locator("body")).to_contain_text("Mở sự cố")
        affected = 1 + len(topo.devices_behind(node))  # the node and every device behind it
        await expect(page.locator("body")).to_contain_text(f"Thiết bị bị ảnh hưởng ({affected})")
        await _fits_both(page, "incident page")
        await page.screenshot(path=_shot(tmp_path, "incident"), full_page=True)

        # a POST without the form token is refused (403), and so is a forged one
        response = await page.request.post(
            f"{base}/incidents/{isolated}/act", form={"action": "acknowledge"}
        )
        assert response.status == 403, await response.text()
        response = await page.request.post(
            f"{base}/incidents/{isolated}/act", form={"action": "acknowledge", "csrf": "0" * 64}
        )
        assert response.status == 403

        # maintenance: a bad window is a message; a one-off and a recurring one are created
        await page.click("nav a[href$='/maintenance']")
        await expect(page.locator("h1")).to_contain_text("Lịch bảo trì")
        await page.select_option("#scope_kind", "unit")
        await page.fill("#scope", "không-có-đơn-vị")
        await page.click("#window-form button[type=submit]")
        await expect(flash).to_have_class(re.compile("flash-error"))
        await page.select_option("#scope_kind", "unit")
        await page.fill("#scope", "132")
        await page.fill("#wnote", "Bảo trì tuyến cáp quang Thành phố Yên Bái")
        await page.click("#window-form button[type=submit]")
        await expect(flash).to_contain_text("Đã tạo lịch bảo trì #")
        await page.select_option("#scope_kind", "domain")
        await page.fill("#scope", "network")
        await page.fill("#ends_at", "")
        await page.fill("#cron", "0 22 * * 6")
        await page.fill("#duration_minutes", "120")
        await page.fill("#wnote", "Bảo trì định kỳ tối thứ Bảy")
        await page.click("#window-form button[type=submit]")
        await expect(flash).to_contain_text("Đã tạo lịch bảo trì #")
        windows = page.locator("table.windows tbody tr")
        await expect(windows).to_have_count(2)
        await _fits_both(page, "maintenance")
        await page.screenshot(path=_shot(tmp_path, "maintenance"), full_page=True)
        await windows.last.locator("button.danger").click()
        await expect(flash).to_contain_text("Đã hủy lịch bảo trì #")
        await expect(windows).to_have_count(1)
        async with ctx.pool.acquire() as conn:
            audited = await conn.fetch(
                "SELECT action, outcome, actor FROM audit_log "
                "WHERE action LIKE 'maintenance.%' ORDER BY at, id"
            )
        assert [(r["action"], r["outcome"], r["actor"]) for r in audited] == [
            ("maintenance.create", "refused", "op-linh"),
            ("maintenance.create", "ok", "op-linh"),
            ("maintenance.create", "ok", "op-linh"),
            ("maintenance.cancel", "ok", "op-linh"),
        ]

        # the SLA report with its charts (B's HTML in a frame)
        await page.click("nav a[href$='/sla']")
        await page.click("#sla-form button[type=submit]")
        frame = page.frame_locator("#sla-report")
        await expect(frame.locator("h1")).to_contain_text("Báo cáo SLA")
        await expect(frame.locator("svg").first).to_be_visible()
        await _fits_both(page, "SLA")
        await page.screenshot(
            path=_shot(tmp_path, "sla"),
            full_page=True,
            clip={"x": 0, "y": 0, "width": LAPTOP["width"], "height": 1600},
        )
        await page.fill("input[name=period]", "2026-13")
        await page.click("#sla-form button[type=submit]")
        await expect(page.locator("p.flash-error")).to_be_visible()

        # English on request, remembered by a cookie; then Vietnamese again
        await page.goto(f"{base}/incidents")
        await page.click("a[hreflang=en]")
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await expect(page.locator("h1")).to_contain_text("Open incidents")
        await page.set_viewport_size(WALL)
        await page.screenshot(path=_shot(tmp_path, "english"))
        await page.set_viewport_size(LAPTOP)
        await page.click("nav a[href$='/maintenance']")
        await expect(page.locator("h1")).to_contain_text("Maintenance windows")
        await page.click("a[hreflang=vi]")
        await expect(page.locator("h1")).to_contain_text("Lịch bảo trì")
        await page.goto(f"{base}/incidents")
        await expect(page.locator("h1")).to_contain_text("Sự cố đang mở")

        # a viewer limited to Lục Yên: no buttons, and its POSTs are refused
        viewer_page = await browser.new_page()
        await browser.clear_cookies()
        await _login(viewer_page, base, viewer)
        await expect(viewer_page.locator("button[value=acknowledge]")).to_have_count(0)
        await expect(viewer_page.locator("body")).to_contain_text("Quyền chỉ xem")
        response = await viewer_page.request.post(
            f"{base}/incidents/{isolated}/act",
            form={"action": "acknowledge", "csrf": csrf_token(viewer)},
        )
        assert response.status == 403, await response.text()

        # logout clears the session
        await viewer_page.click("form[action$='/logout'] button")
        await expect(viewer_page).to_have_url(re.compile(r"/console/login$"))
        await viewer_page.goto(f"{base}/incidents")
        await expect(viewer_page).to_have_url(re.compile(r"/console/login\?next="))
    shots = _publish(tmp_path)
    assert shots == [
        f"console-{n}.png" for n in ("english", "incident", "incidents-wall", "maintenance", "sla")
    ]
