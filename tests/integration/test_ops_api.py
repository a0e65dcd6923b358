"""The operations API against the real database and broker: authentication and roles,
unit-scoped tokens, rate limits, the audit trail, incident filters and detail, operator
actions through the incident agent, and bad input (never a 500)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ioc.config import Settings
from ioc.contract import events as ev
from ioc.contract.topics import DEVICE_EVENTS, INCIDENT_EVENTS
from ioc.kafka_clients import aiokafka_common
from ioc.services.ops.actions import REOPENING_RULE
from ioc.streams.incidents import IncidentAgent
from tests.support.ops_server import ADMIN_TOKEN, OpsService, ops_service, store_incident

NOW = datetime.now(UTC).replace(microsecond=0)
INJECTION = "'; DROP TABLE incidents; --"


async def _seed(svc: OpsService) -> dict[str, int]:
    """Three incidents: a camera in commune 991-001 (critical, open), a node outage in
    district 992 (acknowledged), a camera in commune 991-002 resolved three days ago."""
    cam = await store_incident(
        svc,
        "cam-991-001",
        "device-down",
        "critical",
        "open",
        "Camera cam-991-001 mất tín hiệu",
        NOW - timedelta(hours=2),
    )
    node = await store_incident(
        svc,
        "nn-992",
        "site-isolated",
        "warning",
        "acknowledged",
        "Nút mạng nn-992 mất kết nối",
        NOW - timedelta(hours=1),
        affected=svc.topology.devices_behind("nn-992"),
        acknowledged_by="op-an",
    )
    old = await store_incident(
        svc,
        "cam-991-003",
        "device-down",
        "warning",
        "resolved",
        "Camera cam-991-003 100% offline",
        NOW - timedelta(days=3),
        resolved=NOW - timedelta(days=3) + timedelta(hours=1),
    )
    async with svc.ctx.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO device_state_intervals (device_id, state, reason, start_ts, end_ts) "
            "VALUES ('cam-991-001', 'up', '', $1, $2), ('cam-991-001', 'down', 'silent', $2, NULL)",
            NOW - timedelta(days=1),
            NOW - timedelta(hours=2),
        )
        await conn.execute(
            "INSERT INTO device_state (device_id, state, reason, since) "
            "VALUES ('cam-991-001', 'down', 'silent', $1)",
            NOW - timedelta(hours=2),
        )
        await conn.execute(
            "INSERT INTO pages (fingerprint, status, alertname, severity, device_id, summary, "
            "starts_at, incident_id, deliveries) VALUES ('fp1', 'firing', 'DeviceDown', "
            "'critical', 'cam-991-001', 'down', $1, $2, '[{\"channel\": \"webhook\", "
            '"result": "ok"}]\')',
            NOW - timedelta(hours=2),
            cam,
        )
        await conn.execute(
            "INSERT INTO escalations (incident_id, level, targets) VALUES ($1, 2, '{lan}')", cam
        )
        await conn.execute(
            "INSERT INTO incident_silences (incident_id, silence_id) VALUES ($1, 'sil-1')", node
        )
    return {"cam": cam, "node": node, "old": old}


async def _call(
    http: aiohttp.ClientSession,
    svc: OpsService,
    method: str,
    path: str,
    token: str | None = ADMIN_TOKEN,
    **kw: Any,
) -> tuple[int, Any, dict[str, str]]:
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.request(method, svc.url + path, headers=headers, **kw) as resp:
        text = await resp.text()
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        assert resp.status < 500, (resp.status, body)
        return resp.status, body, dict(resp.headers)


def _ids(body: list[dict[str, Any]]) -> list[int]:
    return [row["id"] for row in body]


async def _token(
    http: aiohttp.ClientSession, svc: OpsService, name: str, role: str, **extra: Any
) -> str:
    status, body, _ = await _call(
        http, svc, "POST", "/api/v1/tokens", json={"name": name, "role": role, **extra}
    )
    assert status == 201, body
    token: str = body["token"]
    return token


async def test_auth_roles_scope_rate_limit_and_audit(namespace: Settings) -> None:
    async with ops_service(namespace) as svc, aiohttp.ClientSession() as http:
        ids = await _seed(svc)
        # 401: no token (with WWW-Authenticate), a wrong token (audited, without its text)
        status, body, headers = await _call(http, svc, "GET", "/api/v1/incidents", token=None)
        assert status == 401 and "Bearer" in headers["WWW-Authenticate"], body
        wrong = "not-a-token-" + "x" * 30
        status, body, _ = await _call(http, svc, "GET", "/api/v1/incidents", token=wrong)
        assert status == 401 and body["error"]
        status, audit, _ = await _call(http, svc, "GET", "/api/v1/audit?action=login.failed")
        assert status == 200 and len(audit) == 1, audit
        assert audit[0]["address"] == "127.0.0.1" and audit[0]["path"] == "/api/v1/incidents"
        assert wrong not in json.dumps(audit)

        viewer = await _token(http, svc, "viewer-all", "viewer")
        operator = await _token(http, svc, "op-991", "operator", unit_code="991")
        status, body, _ = await _call(http, svc, "GET", "/api/v1/incidents", token=viewer)
        assert status == 200 and set(_ids(body)) == set(ids.values())
        # 403: role too low
        status, body, _ = await _call(
            http, svc, "POST", f"/api/v1/incidents/{ids['cam']}/acknowledge", token=viewer
        )
        assert status == 403 and "operator" in body["error"], body
        status, body, _ = await _call(http, svc, "GET", "/api/v1/tokens", token=operator)
        assert status == 403
        # a unit-limited operator sees its subtree only: 404 outside, 403 for another unit
        status, body, _ = await _call(http, svc, "GET", "/api/v1/incidents", token=operator)
        assert set(_ids(body)) == {ids["cam"], ids["old"]}
        status, body, _ = await _call(
            http, svc, "GET", f"/api/v1/incidents/{ids['node']}", token=operator
        )
        assert status == 404
        status, body, _ = await _call(
            http, svc, "GET", "/api/v1/incidents?unit=992", token=operator
        )
        assert status == 403
        status, body, _ = await _call(http, svc, "GET", "/api/v1/incidents?unit=99", token=operator)
        assert status == 200 and set(_ids(body)) == {ids["cam"], ids["old"]}
        status, body, _ = await _call(
            http, svc, "POST", f"/api/v1/incidents/{ids['node']}/acknowledge", token=operator
        )
        assert status == 404
        # admins are never unit-limited
        status, body, _ = await _call(
            http,
            svc,
            "POST",
            "/api/v1/tokens",
            json={"name": "a", "role": "admin", "unit_code": "991"},
        )
        assert status == 422
        # rate limit: 429 with Retry-After
        slow = await _token(http, svc, "slow", "viewer", rate_per_min=3)
        statuses = []
        for _ in range(4):
            status, body, headers = await _call(http, svc, "GET", "/healthz", token=None)
            status, body, headers = await _call(http, svc, "GET", "/api/v1/incidents", token=slow)
            statuses.append(status)
        assert statuses == [200, 200, 200, 429], statuses
        assert int(headers["Retry-After"]) >= 1 and "rate limit" in body["error"]
        # revoke: the token stops working, revoking twice is a 409
        status, body, _ = await _call(http, svc, "DELETE", "/api/v1/tokens/viewer-all")
        assert status == 200 and body["revoked_at"]
        status, body, _ = await _call(http, svc, "DELETE", "/api/v1/tokens/viewer-all")
        assert status == 409
        status, body, _ = await _call(http, svc, "GET", "/api/v1/incidents", token=viewer)
        assert status == 401
        status, listed, _ = await _call(http, svc, "GET", "/api/v1/tokens")
        assert {t["name"] for t in listed} == {"op-991", "slow"}
        assert all("token" not in t and "token_hash" not in t for t in listed)
        # every write audited, with before and after
        status, audit, _ = await _call(http, svc, "GET", "/api/v1/audit?target=token:viewer-all")
        assert [a["action"] for a in audit] == ["token.revoke", "token.create"], audit
        assert audit[0]["before"]["revoked_at"] is None and audit[0]["after"]["revoked_at"]
        assert audit[0]["actor"] == "bootstrap-admin"
        status, audit, _ = await _call(http, svc, "GET", "/api/v1/audit?actor=op-991")
        refused = [a for a in audit if a["action"] == "incident.acknowledge"]
        assert refused and refused[0]["status"] == 404 and refused[0]["outcome"] == "refused"
        async with svc.ctx.pool.acquire() as conn:
            hashes = await conn.fetch("SELECT token_hash FROM api_tokens")
        assert all(len(r["token_hash"]) == 64 for r in hashes)
        assert viewer not in {r["token_hash"] for r in hashes}


async def test_incident_filters_and_detail(namespace: Settings) -> None:
    async with ops_service(namespace) as svc, aiohttp.ClientSession() as http:
        ids = await _seed(svc)

        async def listed(query: str) -> list[int]:
            status, body, _ = await _call(http, svc, "GET", "/api/v1/incidents?" + query)
            assert status == 200, body
            return _ids(body)

        everything = [ids["node"], ids["cam"], ids["old"]]  # newest first
        assert await listed("") == everything
        assert await listed("unit=99") == everything
        assert await listed("unit=991") == [ids["cam"], ids["old"]]
        assert await listed("unit=991-001") == [ids["cam"]]
        assert await listed("unit=992-001") == []
        assert await listed("domain=network") == [ids["node"]]
        assert await listed("domain=camera") == [ids["cam"], ids["old"]]
        assert await listed("severity=critical") == [ids["cam"]]
        assert await listed("status=active") == [ids["node"], ids["cam"]]
        assert await listed("status=resolved") == [ids["old"]]
        assert await listed("status=acknowledged") == [ids["node"]]
        since = (NOW - timedelta(days=1)).isoformat()
        assert await listed("since=" + quote(since, safe="")) == [
            ids["node"],
            ids["cam"],
        ]
        # a time without a zone is Vietnam time
        until_vn = (NOW - timedelta(days=1)).astimezone(UTC) + timedelta(hours=7)
        assert await listed("until=" + until_vn.replace(tzinfo=None).isoformat()) == [ids["old"]]
        assert await listed("q=m%E1%BA%A5t") == [ids["node"], ids["cam"]]  # "mất"
        assert await listed("q=th-992") == [ids["node"]]  # an affected device
        assert await listed("q=100%25") == [ids["old"]]  # "100%": % is literal
        assert await listed("q=10_") == []  # _ is literal too
        assert await listed("limit=1&offset=1") == [ids["cam"]]
        # SQL-looking text is text
        assert await listed("q=" + quote(INJECTION, safe="")) == []
        assert await listed("") == everything
        # bad filters: 422 with a reason
        for query, word in [
            ("unit=nowhere", "no unit"),
            ("domain=plumbing", "no domain"),
            ("status=closed", "status"),
            ("limit=0", "limit"),
            ("limit=100000", "limit"),
            ("since=yesterday", "since"),
            ("bogus=1", "unknown field"),
            (f"since={NOW.isoformat()}&until=2000-01-01T00:00:00Z", "until"),
        ]:
            status, body, _ = await _call(
                http, svc, "GET", "/api/v1/incidents?" + query.replace("+", "%2B")
            )
            assert status == 422 and word in body["error"], (query, body)

        status, detail, _ = await _call(http, svc, "GET", f"/api/v1/incidents/{ids['cam']}")
        assert status == 200, detail
        assert detail["domain"] == "camera" and detail["unit_name"] == "Phường Đại Châu"
        assert [a["device_id"] for a in detail["affected"]] == ["cam-991-001"]
        assert detail["affected"][0]["state"] == "down"
        assert detail["affected"][0]["site_id"] == svc.topology.devices["cam-991-001"].site
        assert [p["alertname"] for p in detail["pages"]] == ["DeviceDown"]
        assert detail["pages"][0]["deliveries"] == [{"channel": "webhook", "result": "ok"}]
        assert [s["state"] for s in detail["state_changes"]] == ["down"]
        assert [e["level"] for e in detail["escalations"]] == [2]
        status, detail, _ = await _call(http, svc, "GET", f"/api/v1/incidents/{ids['node']}")
        assert [s["event"] for s in detail["timeline"]] == ["opened", "acknowledged", "commented"]
        assert [c["note"] for c in detail["comments"]] == ["đã cử đội"]
        assert [a["actor"] for a in detail["acknowledgements"]] == ["op-an"]
        assert detail["silences"] == ["sil-1"]
        assert detail["affected"][0]["device_id"] == "nn-992"
        assert detail["affected_count"] == len(svc.topology.devices_behind("nn-992"))
        for path in ("/api/v1/incidents/999999", "/api/v1/incidents/9223372036854775807"):
            status, body, _ = await _call(http, svc, "GET", path)
            assert status == 404 and "no incident" in body["error"]
        for path in (
            "/api/v1/incidents/0",
            "/api/v1/incidents/9223372036854775808",
            "/api/v1/incidents/x",
        ):
            status, body, _ = await _call(http, svc, "GET", path)
            assert status == 422, (path, body)


async def _run_agent(svc: OpsService, stop: asyncio.Event) -> None:
    """The incident agent's logic on the commands that reach the device-events topic (what
    the Faust worker does in production)."""
    settings = svc.settings
    producer = AIOKafkaProducer(**aiokafka_common(settings), acks="all")
    consumer = AIOKafkaConsumer(**aiokafka_common(settings), group_id=None)
    await producer.start()
    await consumer.start()
    try:
        topic = settings.topic(DEVICE_EVENTS.name)
        tps = [TopicPartition(topic, p) for p in range(DEVICE_EVENTS.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)

        async def send(key: bytes, value: bytes) -> Any:
            return await producer.send(settings.topic(INCIDENT_EVENTS.name), value, key=key)

        agent = IncidentAgent(svc.topology, svc.ctx.pool, send)
        state: dict[str, Any] | None = None
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    state = await agent.apply(state, ev.decode_device_event(record.value or b""))
    finally:
        await consumer.stop()
        await producer.stop()


async def test_actions_through_the_incident_agent(namespace: Settings) -> None:
    async with ops_service(namespace, apply_wait_s=10.0) as svc, aiohttp.ClientSession() as http:
        ids = await _seed(svc)
        base = f"/api/v1/incidents/{ids['cam']}"
        # refused before anything is sent
        status, body, _ = await _call(http, svc, "POST", "/api/v1/incidents/999999/acknowledge")
        assert status == 404
        status, body, _ = await _call(
            http, svc, "POST", f"/api/v1/incidents/{ids['old']}/acknowledge"
        )
        assert status == 409 and REOPENING_RULE in body["error"], body
        status, body, _ = await _call(
            http, svc, "POST", f"/api/v1/incidents/{ids['old']}/comment", json={"note": "x"}
        )
        assert status == 409
        status, body, _ = await _call(
            http, svc, "POST", f"/api/v1/incidents/{ids['node']}/acknowledge"
        )
        assert status == 409 and "op-an" in body["error"], body
        status, body, _ = await _call(http, svc, "POST", base + "/resolve", json={})
        assert status == 422 and "note" in body["error"]
        status, body, _ = await _call(http, svc, "POST", base + "/resolve", json={"note": ""})
        assert status == 422
        status, body, _ = await _call(
            http, svc, "POST", base + "/assign", json={"assignee": "an", "asignee": "b"}
        )
        assert status == 422 and "unknown field" in body["error"], body
        status, body, _ = await _call(
            http,
            svc,
            "POST",
            base + "/comment",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert status in (400, 422) and "JSON" in body["error"], body
        status, body, _ = await _call(http, svc, "POST", base + "/comment", json={"note": 5})
        assert status == 422
        huge = {"note": "x" * (svc.settings.ops_max_body_bytes + 10)}
        status, body, _ = await _call(http, svc, "POST", base + "/comment", json=huge)
        assert status == 413, body

        async def chunks() -> Any:
            for _ in range(svc.settings.ops_max_body_bytes // 1024 + 2):
                yield b" " * 1024

        status, body, _ = await _call(
            http,
            svc,
            "POST",
            base + "/comment",
            data=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert status == 413, body
        status, body, _ = await _call(http, svc, "POST", base + "/comment", json={"note": "\x00"})
        assert status == 422

        # applied by the agent: 200 with the updated incident, in order, audited
        stop = asyncio.Event()
        agent = asyncio.create_task(_run_agent(svc, stop))
        try:
            operator = await _token(http, svc, "op-linh", "operator")
            status, detail, _ = await _call(
                http, svc, "POST", base + "/acknowledge", token=operator, json={"note": "đang xem"}
            )
            assert status == 200, detail
            assert detail["status"] == "acknowledged" and detail["acknowledged_by"] == "op-linh"
            status, body, _ = await _call(http, svc, "POST", base + "/acknowledge", token=operator)
            assert status == 409 and "op-linh" in body["error"]
            status, detail, _ = await _call(
                http, svc, "POST", base + "/assign", token=operator, json={"assignee": "đội 2"}
            )
            assert status == 200 and detail["assigned_to"] == "đội 2", detail
            status, detail, _ = await _call(
                http, svc, "POST", base + "/comment", token=operator, json={"note": INJECTION}
            )
            assert status == 200 and detail["comments"][-1]["note"] == INJECTION
            status, detail, _ = await _call(
                http, svc, "POST", base + "/resolve", token=operator, json={"note": "thay nguồn"}
            )
            assert status == 200 and detail["status"] == "resolved", detail
            assert [(s["event"], s["actor"]) for s in detail["timeline"]] == [
                ("opened", "ioc"),
                ("acknowledged", "op-linh"),
                ("assigned", "op-linh"),
                ("commented", "op-linh"),
                ("resolved", "op-linh"),
            ]
            status, body, _ = await _call(http, svc, "POST", base + "/comment", json={"note": "x"})
            assert status == 409 and REOPENING_RULE in body["error"]
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await agent
        status, audit, _ = await _call(
            http, svc, "GET", f"/api/v1/audit?actor=op-linh&target=incident:{ids['cam']}"
        )
        ok = [(a["action"], a["status"]) for a in reversed(audit) if a["outcome"] == "ok"]
        assert ok == [
            ("incident.acknowledge", 200),
            ("incident.assign", 200),
            ("incident.comment", 200),
            ("incident.resolve", 200),
        ], audit
        first = next(a for a in reversed(audit) if a["outcome"] == "ok")
        assert first["before"]["status"] == "open" and first["after"]["status"] == "acknowledged"
        # the incidents table survived the injection attempt
        async with svc.ctx.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM incidents") == 3


async def test_slow_agent_answers_202(namespace: Settings) -> None:
    async with ops_service(namespace, apply_wait_s=0.3) as svc, aiohttp.ClientSession() as http:
        ids = await _seed(svc)
        status, body, _ = await _call(
            http, svc, "POST", f"/api/v1/incidents/{ids['cam']}/comment", json={"note": "hello"}
        )
        assert status == 202, body
        assert body["action"] == "comment" and body["actor"] == "bootstrap-admin"
        status, health, _ = await _call(http, svc, "GET", "/healthz", token=None)
        assert status == 200 and health == {"status": "ok", "database": True}
        status, body, _ = await _call(http, svc, "GET", "/nowhere")
        assert status == 404 and body["error"]
        status, body, _ = await _call(http, svc, "DELETE", "/api/v1/incidents")
        assert status == 405 and body["error"]


async def test_review_regressions_tokens_logins_and_pool(namespace: Settings) -> None:
    """Token names and ids, failed logins over the limit, a token whose unit the scenario
    lacks, concurrent token creation, a huge incident id, and an exhausted pool."""
    from ioc.services.ops import auth

    async with ops_service(namespace) as svc, aiohttp.ClientSession() as http:
        ids = await _seed(svc)
        # a superscript digit is no id: 404 by name, not a 500
        status, body, _ = await _call(http, svc, "DELETE", "/api/v1/tokens/%C2%B2")
        assert status == 404, body
        # an all-digit name would read as an id when revoking
        status, body, _ = await _call(
            http, svc, "POST", "/api/v1/tokens", json={"name": "123", "role": "viewer"}
        )
        assert status == 422 and "digits" in body["error"], body
        # the same name twice at once: one 201, one 409 (never a 500)
        results = await asyncio.gather(
            *(
                _call(http, svc, "POST", "/api/v1/tokens", json={"name": "twin", "role": "viewer"})
                for _ in range(2)
            )
        )
        assert sorted(r[0] for r in results) == [201, 409], results
        # an id above 2^31-1 is an unknown incident, not a refused value
        status, body, _ = await _call(http, svc, "POST", "/api/v1/incidents/3000000000/acknowledge")
        assert status == 404, body
        # a token limited to a unit the running scenario lacks: 403 with the reason
        async with svc.ctx.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO api_tokens (name, role, unit_code, token_hash, created_by) "
                "VALUES ('elsewhere', 'viewer', 'not-a-unit', $1, 'test')",
                auth.hash_token("elsewhere-token"),
            )
        for query in ("", "?unit=991"):
            status, body, _ = await _call(
                http, svc, "GET", "/api/v1/incidents" + query, token="elsewhere-token"
            )
            assert status == 403 and "not-a-unit" in body["error"], body

        # failed logins: audited up to the limit, then 429 before any lookup, then counted
        now = [0.0]
        svc.app.state.login_guard = auth.LoginGuard(clock=lambda: now[0])
        statuses = []
        for n in range(auth.FAILED_LOGIN_BURST + 3):
            status, body, headers = await _call(
                http, svc, "GET", "/api/v1/incidents", token=f"wrong-{n}-" + "x" * 30
            )
            statuses.append(status)
        assert statuses == [401] * auth.FAILED_LOGIN_BURST + [429] * 3, statuses
        assert int(headers["Retry-After"]) >= 1 and "failed logins" in body["error"]
        status, rows, _ = await _call(http, svc, "GET", "/api/v1/audit?action=login.failed")
        assert len(rows) == auth.FAILED_LOGIN_BURST, rows
        now[0] += 60.0  # the bucket refills: the next failure is audited with the count
        status, body, _ = await _call(http, svc, "GET", "/api/v1/incidents", token="wrong-again")
        assert status == 401
        status, rows, _ = await _call(http, svc, "GET", "/api/v1/audit?action=login.failed")
        assert rows[0]["after"] == {"reason": "unknown token", "suppressed": 3}, rows[0]

        # every connection busy: a request gets a 503 in bounded time, never hangs
        type(svc.ctx.pool).acquire_timeout_s = 0.3
        held = [await svc.ctx.pool.acquire(timeout=5) for _ in range(8)]
        try:
            url = f"{svc.url}/api/v1/incidents/{ids['cam']}"
            async with asyncio.timeout(5), http.get(url, headers=svc.admin) as resp:
                status, body = resp.status, await resp.json()
            assert status == 503 and "database connection" in body["error"], body
        finally:
            for conn in held:
                await svc.ctx.pool.release(conn)
        status, body, _ = await _call(http, svc, "GET", f"/api/v1/incidents/{ids['cam']}")
        assert status == 200, body


async def test_actions_hold_no_connection_and_match_their_own_step(namespace: Settings) -> None:
    """Many actions waiting for a slow agent leave the pool free; an acknowledgement not
    applied yet blocks a second one; a look-alike step is not taken for the command's."""
    async with ops_service(namespace, apply_wait_s=1.0) as svc, aiohttp.ClientSession() as http:
        ids = await _seed(svc)
        base = f"/api/v1/incidents/{ids['cam']}"
        comments = [
            asyncio.create_task(
                _call(http, svc, "POST", f"/api/v1/incidents/{i}/comment", json={"note": "x"})
            )
            for i in (ids["cam"], ids["node"])
            for _ in range(5)
        ]
        await asyncio.sleep(0.5)
        t0 = asyncio.get_running_loop().time()
        status, body, _ = await _call(http, svc, "GET", "/api/v1/incidents")
        assert status == 200 and asyncio.get_running_loop().time() - t0 < 2.0
        results = await asyncio.gather(*comments)
        assert [r[0] for r in results] == [202] * 10, results

        # a step by the same actor that is not this command's: still 202
        async def look_alike() -> None:
            await asyncio.sleep(0.4)
            async with svc.ctx.pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO incident_events (incident_id, seq, event, status, at, actor, "
                    "note) SELECT $1, max(seq) + 1, 'commented', 'open', now() - interval '1 h', "
                    "'bootstrap-admin', 'other' FROM incident_events WHERE incident_id = $1",
                    ids["cam"],
                )

        fake = asyncio.create_task(look_alike())
        status, body, _ = await _call(http, svc, "POST", base + "/comment", json={"note": "mine"})
        await fake
        assert status == 202, body

        # acknowledged but not applied yet: a second acknowledgement is a 409 naming who
        status, body, _ = await _call(http, svc, "POST", base + "/acknowledge")
        assert status == 202, body
        operator = await _token(http, svc, "op-hai", "operator")
        status, body, _ = await _call(http, svc, "POST", base + "/acknowledge", token=operator)
        assert status == 409 and "bootstrap-admin" in body["error"] and "pending" in body["error"]
        status, body, _ = await _call(
            http, svc, "POST", base + "/comment", token=operator, json={"note": "ok"}
        )
        assert status == 202, body
        status, audit, _ = await _call(
            http,
            svc,
            "GET",
            f"/api/v1/audit?action=incident.acknowledge&target=incident:{ids['cam']}",
        )
        assert [(a["outcome"], a["status"]) for a in audit] == [
            ("refused", 409),
            ("accepted", 202),
        ], audit


async def test_writes_and_their_audit_rows_commit_together(namespace: Settings) -> None:
    """A maintenance window or SLA object is written with its audit row in one transaction
    (an audit that fails takes the write with it); the console answers "no such window" for
    one outside the operator's subtree, as the API does."""
    from urllib.parse import unquote

    from ioc.services.ops import maintenance, sla
    from ioc.services.ops.console import csrf_token

    async def broken(conn: Any, before: Any, after: Any) -> None:
        raise RuntimeError("audit_log unavailable")

    async with ops_service(namespace) as svc, aiohttp.ClientSession() as http:
        body = {
            "scope_kind": "unit",
            "scope": "992",
            "starts_at": (NOW + timedelta(days=1)).isoformat(),
            "ends_at": (NOW + timedelta(days=1, hours=1)).isoformat(),
        }
        status, window, _ = await _call(http, svc, "POST", "/api/v1/maintenance", json=body)
        assert status == 201, window
        status, rows, _ = await _call(
            http,
            svc,
            "GET",
            f"/api/v1/audit?action=maintenance.create&target=window:{window['id']}",
        )
        assert len(rows) == 1 and rows[0]["after"]["id"] == window["id"], rows

        spec = maintenance.WindowIn.model_validate(body)
        with pytest.raises(RuntimeError):
            await maintenance.create_window(svc.ctx, spec, "t", broken)
        with pytest.raises(RuntimeError):
            await maintenance.cancel_window(svc.ctx, window["id"], "t", broken)
        windows = await maintenance.list_windows(svc.ctx, include_cancelled=True)
        assert [(w.id, w.cancelled_at) for w in windows] == [(window["id"], None)]
        obj = sla.SlaObjectIn(
            name="mạng", slo_pct=99.0, scope_kind="unit", scope="99", period="month"
        )
        with pytest.raises(RuntimeError):
            await sla.create_sla(svc.ctx, obj, "t", broken)
        assert await sla.list_slas(svc.ctx) == []

        operator = await _token(http, svc, "op-991-console", "operator", unit_code="991")
        async with http.post(
            f"{svc.url}/console/maintenance/{window['id']}/cancel",
            data={"csrf": csrf_token(operator)},
            headers={"Cookie": f"ioc_token={operator}"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            flash = unquote(resp.cookies["ioc_flash"].value)
        assert f"no maintenance window {window['id']}" in flash, flash
