"""The operators' loop on the whole local stack: see -> acknowledge -> act -> report.

simulator -> Kafka -> worker (states, incident agent) -> Prometheus rules -> Alertmanager
(routing, grouping, inhibition) -> `ioc pager`, and `ioc ops serve` (API, silencer,
escalator) beside them. One run of about three and a half minutes with a camera dark and
three network nodes cut:

- every outage pages once, within 90 s of the fault; no device behind a cut node pages (one
  page per root cause), and the camera's resolution comes from Alertmanager;

- A is acknowledged through the API after its page: a silence appears for exactly its alerts,
  it is never escalated, and when it recovers the incident resolves, a resolved page is
  recorded (from the incident stream: Alertmanager sends none for a silenced alert), the
  silence is gone, and the audit log has each step;
- B is left alone: it is escalated to the second level after the configured minute, and
  only once;
- C goes down inside a maintenance window: no page, its intervals are recorded and the SLA
  report excludes the outage; after the window is cancelled the same outage pages.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import aiohttp

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract.topology import load_scenario
from ioc.db import connect
from ioc.simulators.run import SimConfig, Summary, run_simulation
from tests.support.alertmanager import forget_pages_sent
from tests.support.processes import Worker, ioc_process

SCENARIO = "yen-bai-2022"
A, B, C = "nn-132-007", "nn-133-006", "nn-136-001"
CAMERA = "cam-135-002"  # behind none of them
ESCALATE_AFTER_MIN = 1

ROSTER = f"""
people:
  - {{id: truc-ca, name: Trực ca, telegram_chat_id: "1001"}}
  - {{id: truong-nhom, name: Trưởng nhóm, telegram_chat_id: "1002"}}
  - {{id: truc-ban, name: Trực ban, telegram_chat_id: "1003"}}
teams:
  - id: ioc
    name: Tổ trực IOC
    domain: "*"
    unit: "15"
    lead: truong-nhom
    shifts:
      - {{days: daily, start: "00:00", end: "00:00", people: [truc-ca]}}
duty_manager:
  name: Trực ban
  shifts:
    - {{days: daily, start: "00:00", end: "00:00", people: [truc-ban]}}
escalation:
  - {{level: 1, after_minutes: 0, page: [on_call]}}
  - {{level: 2, after_minutes: {ESCALATE_AFTER_MIN}, page: [lead]}}
  - {{level: 3, after_minutes: 90, page: [duty_manager]}}
"""


async def rows(settings: Settings, sql: str, *args: Any) -> list[Any]:
    conn = await connect(
        settings.admin_dsn(), server_settings={"search_path": f"{settings.db_schema},public"}
    )
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def until(what: str, timeout: float, check: Any, interval: float = 2.0) -> Any:
    """Poll the async ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


class Api:
    def __init__(self, settings: Settings, token: str) -> None:
        self.base = f"{settings.ops_base_url}/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                method, self.base + path, json=body, params=params, headers=self.headers
            ) as resp,
        ):
            doc = await resp.json(content_type=None)
            assert resp.status < 300, (method, path, resp.status, doc)
            return doc


async def incident_of(settings: Settings, node: str) -> Any:
    found = await rows(
        settings,
        "SELECT id, status, severity FROM incidents WHERE root_device = $1 ORDER BY id",
        node,
    )
    return found[-1] if found else None


async def silences_of(settings: Settings, node: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{settings.alertmanager_url}/api/v2/silences") as resp,
    ):
        every: list[dict[str, Any]] = await resp.json()
    return [
        s
        for s in every
        if any(m["name"] == "node_id" and m["value"] == node for m in s["matchers"])
    ]


async def test_acknowledge_escalate_and_maintain_on_the_live_stack(
    namespace: Settings, tmp_path: Path
) -> None:
    topology = load_scenario(SCENARIO)
    roster = tmp_path / "oncall.yaml"
    roster.write_text(ROSTER)
    settings = namespace.model_copy(update={"oncall_file": roster})
    await bootstrap(settings, SCENARIO)
    await asyncio.to_thread(forget_pages_sent, settings)
    pager = ioc_process(settings, tmp_path / "pager.log", "pager").start()
    ops = ioc_process(settings, tmp_path / "ops.log", "ops", "serve").start()
    worker = Worker(settings, SCENARIO, tmp_path / "worker.log").start()
    admin = Api(settings, settings.resolved_ops_admin_token())
    sim: asyncio.Task[Summary] | None = None
    window_id: int | None = None
    try:

        async def ops_up() -> bool:
            assert ops.alive(), ops.log_text()
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"{settings.ops_base_url}/healthz") as resp,
                ):
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await until("the operations service", 60, ops_up)
        operator = Api(
            settings,
            (await admin.call("POST", "/tokens", {"name": "op-lan", "role": "operator"}))["token"],
        )
        now = dt.datetime.now(dt.UTC)
        window = await operator.call(
            "POST",
            "/maintenance",
            {
                "scope_kind": "device",
                "scope": C,
                "starts_at": now.isoformat(),
                "ends_at": (now + dt.timedelta(minutes=30)).isoformat(),
                "note": "thay thiết bị chuyển mạch",
            },
        )
        window_id = int(window["id"])

        async def window_silenced() -> bool:
            return bool(await silences_of(settings, C))

        await until("the maintenance window's silence", 30, window_silenced)
        await asyncio.sleep(10)  # worker joins its group; Prometheus discovers it (file_sd, 5 s)
        started = time.monotonic()
        sim = asyncio.ensure_future(
            asyncio.to_thread(
                run_simulation,
                settings,
                SimConfig(
                    scenario=SCENARIO,
                    mode="realtime",
                    duration_s=200,
                    progress=False,
                    fault_flags=[
                        f"device_dark:{CAMERA}@20+60",
                        f"node_down:{A}@20+110",
                        f"node_down:{B}@20+130",
                        f"node_down:{C}@20+60",
                        f"node_down:{C}@115+70",
                    ],
                ),
            )
        )

        # --- A: incident -> page -> acknowledged through the API ---
        async def a_paged() -> Any:
            found = await rows(
                settings,
                "SELECT incident_id FROM pages WHERE alertname = 'SiteIsolated' "
                "AND device_id = $1 AND status = 'firing'",
                A,
            )
            return found[0] if found else None

        page = await until("A's page", 120, a_paged, 3)
        inc_a = await incident_of(settings, A)
        assert inc_a is not None and inc_a["severity"] == "critical"
        assert page["incident_id"] == inc_a["id"], "the page names A's incident"
        print(f"A paged {time.monotonic() - started:.0f} s into the run")
        acked = await operator.call(
            "POST", f"/incidents/{inc_a['id']}/acknowledge", {"note": "đã nhận, đang xử lý"}
        )
        assert acked["status"] == "acknowledged", acked
        silenced = [s for s in await silences_of(settings, A) if s["status"]["state"] == "active"]
        assert silenced, "acknowledging silences the incident's alerts"

        # --- B: unacknowledged, escalated to level 2 after the configured time ---
        async def b_escalated() -> Any:
            inc = await incident_of(settings, B)
            if inc is None:
                return None
            return await rows(
                settings, "SELECT level, targets FROM escalations WHERE incident_id = $1", inc["id"]
            )

        escalated = await until("B's escalation", 240, b_escalated, 3)
        assert [(r["level"], r["targets"]) for r in escalated] == [(2, ["Trưởng nhóm"])]
        print(f"B escalated {time.monotonic() - started:.0f} s into the run")

        # --- C: cancel the window after its first outage; the second one pages ---
        await until("C's first outage to pass", 140, lambda: _elapsed(started, 100))
        cancelled = await operator.call("DELETE", f"/maintenance/{window_id}")
        assert cancelled["cancelled_at"], cancelled
        window_id = None

        summary = await sim
        assert summary.errors == 0
        fault_at = {
            (f["target"], round(f["start_ms"] / 1000)): f["start_ms"] / 1000 for f in summary.faults
        }
        inc_b = await incident_of(settings, B)

        async def settled() -> bool:
            a = await incident_of(settings, A)
            b = await incident_of(settings, B)
            c_pages = await rows(
                settings,
                "SELECT 1 FROM pages WHERE alertname = 'SiteIsolated' AND device_id = $1",
                C,
            )
            return (
                a["status"] == "resolved"
                and b["status"] == "resolved"
                and bool(c_pages)
                and not [
                    s for s in await silences_of(settings, A) if s["status"]["state"] == "active"
                ]
            )

        await until("A and B resolved, C paged, A's silence gone", 150, settled, 3)

        # A: resolved page recorded (from the incident stream), never escalated, audited
        resolved = await rows(
            settings,
            "SELECT alertname FROM pages WHERE incident_id = $1 AND status = 'resolved'",
            inc_a["id"],
        )
        assert resolved, "A's resolution is paged"
        assert not await rows(
            settings, "SELECT 1 FROM escalations WHERE incident_id = $1", inc_a["id"]
        ), "an acknowledged incident is not escalated"
        assert not [
            p
            for p in await rows(
                settings,
                "SELECT alertname FROM pages WHERE incident_id = $1 AND status = 'firing'",
                inc_a["id"],
            )
            if p["alertname"] == "IncidentEscalated"
        ]
        steps = await rows(
            settings,
            "SELECT event, actor FROM incident_events WHERE incident_id = $1 ORDER BY seq",
            inc_a["id"],
        )
        assert [s["event"] for s in steps][:2] == ["opened", "acknowledged"], steps
        assert steps[-1]["event"] == "resolved"
        assert any(s["actor"] == "op-lan" for s in steps)
        gone = await rows(
            settings, "SELECT expired_at FROM incident_silences WHERE incident_id = $1", inc_a["id"]
        )
        assert gone and all(r["expired_at"] is not None for r in gone)
        audit = await rows(settings, "SELECT action, target, actor, outcome FROM audit_log")
        actions = {(r["action"], r["target"], r["actor"]) for r in audit}
        assert ("incident.acknowledge", f"incident:{inc_a['id']}", "op-lan") in actions, audit
        assert any(a.startswith("maintenance.create") for a, _t, _u in actions), audit
        assert any(a.startswith("maintenance.cancel") for a, _t, _u in actions), audit

        # B: escalated once, on its timeline
        assert inc_b is not None
        b_steps = [
            r["event"]
            for r in await rows(
                settings, "SELECT event FROM incident_events WHERE incident_id = $1", inc_b["id"]
            )
        ]
        assert b_steps.count("escalated") == 1, b_steps
        assert (
            len(
                await rows(
                    settings,
                    "SELECT 1 FROM pages WHERE incident_id = $1 "
                    "AND alertname = 'IncidentEscalated'",
                    inc_b["id"],
                )
            )
            == 1
        )

        # every outage paged once and in time; nothing behind a cut node paged
        firing = await rows(
            settings,
            "SELECT alertname, device_id, received_at FROM pages WHERE status = 'firing' "
            "AND alertname NOT IN ('Watchdog', 'IncidentEscalated')",
        )
        paged = [(p["alertname"], p["device_id"]) for p in firing]
        print("pages:", paged)
        for alert in (("CameraDown", CAMERA), ("SiteIsolated", A), ("SiteIsolated", B)):
            assert paged.count(alert) == 1, (alert, paged)
            start = min(t for (target, _s), t in fault_at.items() if target == alert[1])
            got = next(
                p["received_at"] for p in firing if (p["alertname"], p["device_id"]) == alert
            )
            print(f"{alert}: paged {got.timestamp() - start:.1f} s after the fault")
            assert got.timestamp() - start <= 90, alert
        behind = set().union(*(topology.devices_behind(n) for n in (A, B, C)))
        assert not [p for p in paged if p[1] in behind], "a device behind a cut node paged"
        assert await rows(
            settings,
            "SELECT 1 FROM pages WHERE alertname = 'CameraDown' AND device_id = $1 "
            "AND status = 'resolved'",
            CAMERA,
        ), "the camera's resolution is paged"
        assert await rows(settings, "SELECT 1 FROM pages WHERE alertname = 'Watchdog'")

        # C: the outage inside the window paged nothing, was recorded, and the SLA excludes it
        c_pages = await rows(
            settings,
            "SELECT received_at FROM pages WHERE alertname = 'SiteIsolated' AND device_id = $1 "
            "AND status = 'firing'",
            C,
        )
        assert len(c_pages) == 1, "only the outage after the window pages"
        assert c_pages[0]["received_at"].timestamp() > time.time() - 200
        downs = await rows(
            settings,
            "SELECT start_ts, end_ts FROM device_state_intervals WHERE device_id = $1 "
            "AND state = 'down' ORDER BY start_ts",
            C,
        )
        assert len(downs) == 2, downs
        t0 = downs[0]["start_ts"] - dt.timedelta(minutes=1)
        first = await rows(
            settings,
            "SELECT * FROM device_availability($1, $2) WHERE device_id = $3",
            t0,
            downs[0]["end_ts"],
            C,
        )
        assert first[0]["unavailable_s"] < 1.0, first
        assert first[0]["maintenance_s"] > 30, first
        today = dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).strftime("%Y-%m-%d")
        unit = await rows(
            settings,
            "SELECT s.unit_code FROM devices d JOIN sites s ON s.id = d.site_id WHERE d.id = $1",
            C,
        )
        report = await operator.call(
            "GET", "/sla/report", unit=unit[0]["unit_code"], period=today, format="json"
        )
        outages = [o for o in report["outages"] if o["device_id"] == C]
        assert [o["in_maintenance"] for o in sorted(outages, key=lambda o: o["start"])] == [
            True,
            False,
        ], outages
    finally:
        if sim is not None and not sim.done():
            await asyncio.wait([sim])
        if window_id is not None:
            try:
                await admin.call("DELETE", f"/maintenance/{window_id}")
            except Exception as exc:  # the test's own failure matters more
                print("could not cancel the window:", exc)
        worker.stop()
        ops.stop(timeout=30)
        pager.stop(timeout=30)
        for node in (A, B, C):  # leave no silence behind for other tests
            for s in await silences_of(settings, node):
                if s["status"]["state"] != "expired":
                    async with (
                        aiohttp.ClientSession() as http,
                        http.delete(f"{settings.alertmanager_url}/api/v2/silence/{s['id']}"),
                    ):
                        pass


async def _elapsed(started: float, seconds: float) -> bool:
    return time.monotonic() - started >= seconds
