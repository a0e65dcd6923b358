"""The pager receiver against the real database: auth, limits, dedupe, forwarding."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from ioc.config import Settings
from ioc.contract import events as ev
from ioc.db import connect, create_pool
from ioc.db.migrate import migrate
from ioc.errors import IocError
from ioc.services.channels import Dispatcher, EmailConfig, Page, WebhookConfig
from ioc.services.pager import PAGER, Pager, parse_channels

TOKEN = "test-token-123"

PagerClient = tuple[TestClient[web.Request, web.Application], Settings, list[dict[str, Any]]]
"""A client of a running pager, its settings, and what its webhook channel received."""


def notification(status: str = "firing", fingerprint: str = "abc", **labels: str) -> dict[str, Any]:
    labels = {
        "alertname": "CameraDown",
        "severity": "warning",
        "device_id": "cam-1",
        "unit": "u1",
        **labels,
    }
    return {
        "version": "4",
        "status": status,
        "receiver": "pager",
        "groupKey": "{}:{}",
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "externalURL": "http://am",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {
                    "summary": "Camera cam-1 is down",
                    "description": "d",
                    "runbook_url": "docs/runbooks/camera-down.md",
                },
                "startsAt": "2026-11-23T05:00:00Z",
                "endsAt": "2026-11-23T05:05:00Z"
                if status == "resolved"
                else "0001-01-01T00:00:00Z",
                "fingerprint": fingerprint,
            }
        ],
    }


@pytest.fixture
async def pager_client(namespace: Settings) -> AsyncIterator[PagerClient]:
    settings = namespace.model_copy(update={"pager_max_body_bytes": 64 * 1024})
    await migrate(settings.admin_dsn(), settings.db_schema)
    pool = await create_pool(
        settings.database_dsn(), server_settings={"search_path": f"{settings.db_schema},public"}
    )
    received: list[dict[str, Any]] = []

    async def sink(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({})

    sink_app = web.Application()
    sink_app.router.add_post("/hook", sink)
    sink_server = TestServer(sink_app)
    await sink_server.start_server()
    settings = settings.model_copy(update={"pager_token": SecretStr(TOKEN)})
    channel = WebhookConfig(type="webhook", url=str(sink_server.make_url("/hook")))
    pager = Pager(settings, pool, [channel])
    client = TestClient(TestServer(pager.app()))
    await client.start_server()
    yield client, settings, received
    await client.close()
    await sink_server.close()
    await pool.close()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def test_rejects_bad_requests_with_clear_statuses(pager_client: PagerClient) -> None:
    client, _settings, _ = pager_client
    url = "/alertmanager/webhook"
    resp = await client.post(url, json=notification())
    assert resp.status == 401 and "token" in (await resp.json())["error"]
    resp = await client.post(url, data=b"x", headers={**auth(), "Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await client.post(
        url, data=b"{not json", headers={**auth(), "Content-Type": "application/json"}
    )
    assert resp.status == 400
    body = await resp.text()
    assert "Traceback" not in body
    resp = await client.post(url, json={"version": "4"}, headers=auth())
    assert resp.status == 400
    resp = await client.post(
        url,
        data=b"{" + b" " * 100_000 + b"}",
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert resp.status == 413


async def test_records_each_page_once_and_forwards_it(pager_client: PagerClient) -> None:
    client, settings, received = pager_client
    url = "/alertmanager/webhook"
    for _ in range(3):  # Alertmanager retries and repeats
        resp = await client.post(url, json=notification(), headers=auth())
        assert resp.status == 200
    resp = await client.post(url, json=notification("resolved"), headers=auth())
    assert (await resp.json()) == {"recorded": 1, "duplicates": 0}
    conn = await connect(settings.admin_dsn())
    try:
        rows = await conn.fetch(
            f"SELECT status, notifications, deliveries FROM {settings.db_schema}.pages ORDER BY id"
        )
    finally:
        await conn.close()
    assert [(r["status"], r["notifications"]) for r in rows] == [("firing", 3), ("resolved", 1)]
    for _ in range(50):
        if len(received) == 2:
            break
        await asyncio.sleep(0.1)
    assert [p["status"] for p in received] == ["firing", "resolved"]
    conn = await connect(settings.admin_dsn())
    try:
        deliveries = await conn.fetchval(
            f"SELECT deliveries FROM {settings.db_schema}.pages WHERE status = 'firing'"
        )
    finally:
        await conn.close()
    assert orjson.loads(deliveries)[0]["result"] == "ok"


def test_channel_configuration_is_validated() -> None:
    assert [
        c.type
        for c in parse_channels(
            '[{"type": "webhook", "url": "https://x"}, {"type": "email", "host": "smtp", '
            '"to": ["a@b"]}]'
        )
    ] == ["webhook", "email"]
    for bad in (
        "{",
        '[{"type": "sms"}]',
        '[{"type": "pigeon"}]',
        '[{"type": "webhook", "url": "ftp://x"}]',
        '[{"type": "email", "to": []}]',
    ):
        with pytest.raises(IocError, match="IOC_PAGER_CHANNELS"):
            parse_channels(bad)


def test_email_channel_speaks_smtp() -> None:
    """A minimal SMTP peer on loopback receives the page as an e-mail."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        f = conn.makefile("rb")
        conn.sendall(b"220 test\r\n")
        while True:
            line = f.readline()
            if not line:
                break
            cmd = line[:4].upper()
            if cmd in (b"EHLO", b"HELO"):
                conn.sendall(b"250 ok\r\n")
            elif cmd == b"DATA":
                conn.sendall(b"354 go\r\n")
                while (data := f.readline()) not in (b".\r\n", b""):
                    got.append(data)
                conn.sendall(b"250 queued\r\n")
            elif cmd == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                break
            else:
                conn.sendall(b"250 ok\r\n")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    channel = EmailConfig.model_validate(
        {"type": "email", "host": "127.0.0.1", "port": port, "to": ["oncall@example.org"]}
    )
    page = Page(
        page_id=1,
        status="firing",
        severity="critical",
        title="Site isolated",
        body="Nút mạng mất kết nối",
        details={
            "labels": {"alertname": "SiteIsolated", "severity": "critical"},
            "annotations": {"runbook_url": "docs/runbooks/site-isolated.md"},
        },
    )
    dispatcher = Dispatcher([channel])
    try:
        [delivery] = asyncio.run(dispatcher.deliver(page, []))
    finally:
        asyncio.run(dispatcher.close())
    thread.join(timeout=5)
    assert delivery.result == "ok" and delivery.recipient == "oncall@example.org"
    message = email.message_from_bytes(b"".join(got), policy=email.policy.default)
    assert message["Subject"] == "[CẢNH BÁO · nghiêm trọng] Site isolated"
    assert "Nút mạng mất kết nối" in message.get_content()
    assert "docs/runbooks/site-isolated.md" in message.get_content()


async def test_a_page_names_the_open_incident_of_its_device(namespace: Settings) -> None:
    """The pager follows ioc.incidents.v1: an on-call paged for a device is told which
    incident it belongs to, and a resolved incident is no longer named."""
    from aiokafka import AIOKafkaProducer

    from ioc.contract import events as ev
    from ioc.contract.topics import INCIDENT_EVENTS
    from ioc.kafka import ensure_topics
    from ioc.kafka_clients import aiokafka_common
    from ioc.services.incidents import IncidentFollower

    settings = namespace.model_copy(update={"pager_token": SecretStr(TOKEN)})
    await migrate(settings.admin_dsn(), settings.db_schema)
    await ensure_topics(settings, [INCIDENT_EVENTS])

    def step(
        seq: int, event: ev.IncidentEventKind, status: Literal["open", "resolved"]
    ) -> ev.IncidentEvent:
        return ev.IncidentEvent(
            incident_id=7,
            seq=seq,
            event=event,
            kind="device-down",
            severity="warning",
            status=status,
            title="camera cam-1 at Junction 1 is down (silent)",
            root_device="cam-1",
            device_class="camera",
            unit_code="u1",
            site_id="s1",
            affected=["cam-1"],
            at_ms=1,
        )

    producer = AIOKafkaProducer(**aiokafka_common(settings), acks="all")
    await producer.start()
    follower = IncidentFollower(settings)
    pool = await create_pool(
        settings.database_dsn(), server_settings={"search_path": f"{settings.db_schema},public"}
    )
    received: list[dict[str, Any]] = []

    async def sink(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({})

    sink_app = web.Application()
    sink_app.router.add_post("/hook", sink)
    sink_server = TestServer(sink_app)
    await sink_server.start_server()
    channel = WebhookConfig(type="webhook", url=str(sink_server.make_url("/hook")))
    client = TestClient(TestServer(Pager(settings, pool, [channel], follower).app()))
    await client.start_server()
    topic = settings.topic(INCIDENT_EVENTS.name)
    try:
        await producer.send_and_wait(topic, ev.encode(step(1, "opened", "open")), key=b"cam-1")
        follower.start()
        for _ in range(100):
            if follower.open_for("cam-1") is not None:
                break
            await asyncio.sleep(0.1)
        resp = await client.post("/alertmanager/webhook", json=notification(), headers=auth())
        assert resp.status == 200
        await producer.send_and_wait(
            topic, ev.encode(step(2, "resolved", "resolved")), key=b"cam-1"
        )
        for _ in range(100):
            if follower.open_for("cam-1") is None and len(received) == 2:
                break
            await asyncio.sleep(0.1)
        assert follower.open_for("cam-1") is None
        assert received[0]["incident"]["id"] == 7
        assert received[0]["incident"]["status"] == "open"
        # the resolution comes from the incident stream (the pager owns resolutions)
        assert [(p["status"], p["labels"]["alertname"]) for p in received[1:]] == [
            ("resolved", "IncidentResolved")
        ]
        conn = await connect(settings.admin_dsn())
        try:
            stored = await conn.fetch(
                f"SELECT status, incident_id FROM {settings.db_schema}.pages ORDER BY id"
            )
        finally:
            await conn.close()
        assert [tuple(r) for r in stored] == [("firing", 7), ("resolved", 7)]
    finally:
        await follower.stop()
        await producer.stop()
        await client.close()
        await sink_server.close()
        await pool.close()


def resolved_event(incident_id: int, at: dt.datetime) -> ev.IncidentEvent:
    return ev.IncidentEvent(
        incident_id=incident_id,
        seq=3,
        event="resolved",
        kind="device-down",
        severity="critical",
        status="resolved",
        title="camera cam-1 at Junction 1 is down (silent)",
        root_device="cam-1",
        device_class="camera",
        unit_code="u1",
        site_id="s1",
        affected=["cam-1"],
        at_ms=int(at.timestamp() * 1000),
        note="recovered",
    )


async def test_resolution_is_recorded_once_from_the_incident_events(
    pager_client: PagerClient,
) -> None:
    """Alertmanager sends no resolution for a silenced alert: the pager records it from the
    incident stream, once however often the event is replayed, and only for an incident that
    paged."""
    client, settings, received = pager_client
    opened = dt.datetime(2026, 11, 23, 4, 58, tzinfo=dt.UTC)
    resolved = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(
            f"""INSERT INTO {settings.db_schema}.incidents (id, kind, severity, title,
                  root_device, device_class, unit_code, site_id, opened_at)
                VALUES (7, 'device-down', 'critical', 't', 'cam-1', 'camera', 'u1', 's1', $1)""",
            opened,
        )
        await conn.execute(
            f"""INSERT INTO {settings.db_schema}.pages (fingerprint, status, alertname,
                  starts_at, incident_id) VALUES ('abc', 'firing', 'CameraDown', $1, 7)""",
            opened,
        )
    finally:
        await conn.close()
    assert client.app is not None
    pager = client.app[PAGER]
    event = resolved_event(7, resolved)
    await pager.on_incident_event(event)
    await pager.on_incident_event(event)  # replayed after a restart
    await pager.on_incident_event(resolved_event(8, resolved))  # never paged: nothing
    await pager.on_incident_event(
        ev.IncidentEvent(**{**msgspec.structs.asdict(event), "event": "commented", "seq": 2})
    )
    for _ in range(50):
        if received:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.2)
    conn = await connect(settings.admin_dsn())
    try:
        rows = await conn.fetch(
            f"""SELECT fingerprint, alertname, severity, domain, unit, site, device_id,
                  starts_at, ends_at, incident_id, deliveries
                FROM {settings.db_schema}.pages WHERE status = 'resolved'"""
        )
    finally:
        await conn.close()
    assert len(rows) == 1
    row = dict(rows[0])
    assert row.pop("deliveries") != "[]"
    assert row == {
        "fingerprint": "incident:7",
        "alertname": "IncidentResolved",
        "severity": "critical",
        "domain": "camera",
        "unit": "u1",
        "site": "s1",
        "device_id": "cam-1",
        "starts_at": opened,
        "ends_at": resolved,
        "incident_id": 7,
    }
    assert len(received) == 1
    assert received[0]["status"] == "resolved" and received[0]["incident"]["id"] == 7
    assert received[0]["text"].startswith("[ĐÃ KHẮC PHỤC · nghiêm trọng]")
    assert "Sự cố #7: " in received[0]["text"]


async def test_a_resolution_is_recorded_for_pages_stored_before_the_incident_was_known(
    pager_client: PagerClient,
) -> None:
    """The follower was still replaying (or the broker was away) when the alert came in: the
    page names no incident. After acknowledgement (alerts silenced) and resolution, the
    incident's root-device pages since it opened still get their resolution, once; a page
    of the device from before the incident (beyond the slack) is not adopted."""
    client, settings, received = pager_client
    opened = dt.datetime(2026, 11, 23, 4, 58, tzinfo=dt.UTC)
    resolved = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)
    schema = settings.db_schema
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(
            f"""INSERT INTO {schema}.incidents (id, kind, severity, title,
                  root_device, device_class, unit_code, site_id, opened_at)
                VALUES (7, 'device-down', 'critical', 't', 'cam-1', 'camera', 'u1', 's1', $1)""",
            opened,
        )
        await conn.execute(
            f"""INSERT INTO {schema}.pages (fingerprint, status, alertname, device_id,
                  starts_at) VALUES ('old', 'firing', 'CameraDown', 'cam-1', $1),
                                    ('other', 'firing', 'CameraDown', 'cam-2', $2)""",
            opened - dt.timedelta(hours=2),
            opened + dt.timedelta(minutes=1),
        )
    finally:
        await conn.close()
    resp = await client.post("/alertmanager/webhook", json=notification(), headers=auth())
    assert resp.status == 200  # no follower: stored with no incident
    assert client.app is not None
    pager = client.app[PAGER]
    await pager.on_incident_event(resolved_event(7, resolved))
    await pager.on_incident_event(resolved_event(7, resolved))  # replayed
    for _ in range(50):
        if len(received) == 2:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.2)
    conn = await connect(settings.admin_dsn())
    try:
        rows = await conn.fetch(
            f"SELECT fingerprint, status, incident_id, starts_at FROM {schema}.pages ORDER BY id"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("old", "firing", None, opened - dt.timedelta(hours=2)),
        ("other", "firing", None, opened + dt.timedelta(minutes=1)),
        ("abc", "firing", 7, dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC)),
        ("incident:7", "resolved", 7, opened),
    ]
    assert [(p["status"], p["labels"]["alertname"]) for p in received] == [
        ("firing", "CameraDown"),
        ("resolved", "IncidentResolved"),
    ]


async def test_a_resolution_waits_out_any_database_outage(
    pager_client: PagerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server starting, shutting down or out of connections is retried like a dropped
    connection; a fault of the data itself is not retried forever."""
    import asyncpg

    from ioc.services import pager as pager_module

    monkeypatch.setattr(pager_module, "RESOLUTION_RETRY_FIRST_S", 0.01)
    client, _settings, _received = pager_client
    assert client.app is not None
    pager = client.app[PAGER]
    failures: list[Exception] = [
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        TimeoutError(),
    ]
    calls: list[int] = []

    async def flaky(event: ev.IncidentEvent) -> dict[str, Any] | None:
        calls.append(event.incident_id)
        if failures:
            raise failures.pop(0)
        return None

    monkeypatch.setattr(pager, "record_resolution", flaky)
    event = resolved_event(7, dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC))
    await asyncio.wait_for(pager.on_incident_event(event), 5)
    assert calls == [7] * 5

    async def bad_data(event: ev.IncidentEvent) -> dict[str, Any] | None:
        calls.append(event.incident_id)
        raise asyncpg.DataError("invalid input")

    monkeypatch.setattr(pager, "record_resolution", bad_data)
    with pytest.raises(asyncpg.DataError):
        await asyncio.wait_for(pager.on_incident_event(event), 5)


async def test_a_failed_roster_load_is_retried_after_a_cooldown(
    pager_client: PagerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from ioc.contract import topology as topology_module
    from ioc.services import pager as pager_module
    from ioc.services.channels import Contact
    from ioc.services.ops import oncall
    from ioc.services.ops.common import Invalid

    monkeypatch.setattr(pager_module, "ROSTER_RETRY_S", 0.2)
    client, _settings, _received = pager_client
    assert client.app is not None
    pager = client.app[PAGER]
    linh = Contact(name="Linh", phone="+84900000011")
    roster = SimpleNamespace(
        on_call=lambda *_: [SimpleNamespace(level=1, people=[linh])],
    )
    loads: list[int] = []

    def load_roster(settings: Settings) -> object:
        loads.append(1)
        if len(loads) == 1:
            raise Invalid("roster.yaml: cannot read the on-call roster")
        return roster

    monkeypatch.setattr(oncall, "load_roster", load_roster)
    monkeypatch.setattr(topology_module, "load_scenario", lambda name: None)
    assert pager._recipients("camera", "u1") == []  # the roster is away
    assert pager._recipients("camera", "u1") == []  # cooling down: not tried again yet
    assert len(loads) == 1
    await asyncio.sleep(0.25)
    assert pager._recipients("camera", "u1") == [linh]
    assert pager._recipients("camera", "u1") == [linh]
    assert len(loads) == 2
