"""Loopback stand-ins for the paging gateways (the real ones cannot be reached from here).

Each implements the provider's documented HTTP API closely enough for the channel to be
tested against it: the same path, headers, body fields and answers, including the failure
answers a channel must handle (5xx, 429 with Retry-After / Telegram's ``retry_after``, the
provider's own error codes). Messages are recorded with their arrival time.

- eSMS.vn: ``POST /MainService.svc/json/SendMultipleMessage_V4_post_json/``, JSON
  ``ApiKey, SecretKey, Phone, Content, SmsType, Brandname`` -> ``{"CodeResult": "100",
  "SMSID": ...}``; a wrong key answers ``CodeResult`` "101".
- Zalo OA v3: ``POST /v3.0/oa/message/cs``, header ``access_token``, JSON
  ``{"recipient": {"user_id"}, "message": {"text"}}`` -> ``{"error": 0, "message":
  "Success", "data": {...}}``; a wrong token answers error -216.
- Telegram Bot API: ``POST /bot<token>/sendMessage``, JSON ``chat_id, text`` ->
  ``{"ok": true, "result": {...}}``; a wrong token answers 401 ``{"ok": false}``; 429 answers
  ``{"ok": false, "error_code": 429, "parameters": {"retry_after": N}}``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Fault:
    """The next ``count`` requests fail: with ``status`` (5xx), or 429 asking to wait
    ``retry_after`` seconds, or 200 with the provider's error ``code``."""

    count: int
    status: int = 500
    retry_after: int | None = None
    code: str | int | None = None


@dataclass
class FakeGateway:
    """One fake provider: its recorded messages, requests and injected faults."""

    kind: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    arrivals: list[float] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    server: TestServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def fail(
        self,
        count: int,
        status: int = 500,
        retry_after: int | None = None,
        code: str | int | None = None,
    ) -> None:
        self.faults.append(Fault(count, status, retry_after, code))

    def _fault(self) -> Fault | None:
        self.requests += 1
        while self.faults and self.faults[0].count <= 0:
            self.faults.pop(0)
        if not self.faults:
            return None
        self.faults[0].count -= 1
        return self.faults[0]

    def _record(self, message: dict[str, Any]) -> None:
        self.arrivals.append(time.monotonic())
        self.messages.append(message)

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


async def _json(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _http_fault(fault: Fault) -> web.Response:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    return web.json_response({"error": "injected"}, status=fault.status, headers=headers)


async def esms(api_key: str, secret_key: str) -> FakeGateway:
    gw = FakeGateway("sms")

    async def send(request: web.Request) -> web.Response:
        fault = gw._fault()
        if fault is not None and fault.code is None:
            return _http_fault(fault)
        body = await _json(request)
        if body is None:
            return web.json_response({"CodeResult": "99", "ErrorMessage": "Invalid JSON"})
        if fault is not None:
            return web.json_response({"CodeResult": str(fault.code), "ErrorMessage": "injected"})
        if body.get("ApiKey") != api_key or body.get("SecretKey") != secret_key:
            return web.json_response({"CodeResult": "101", "ErrorMessage": "Authorize Failed"})
        missing = [k for k in ("Phone", "Content", "SmsType") if not body.get(k)]
        if missing or (str(body.get("SmsType")) == "2" and not body.get("Brandname")):
            return web.json_response(
                {"CodeResult": "104", "ErrorMessage": f"Invalid: {missing or 'Brandname'}"}
            )
        gw._record(body)
        return web.json_response(
            {"CodeResult": "100", "CountRegenerate": 0, "SMSID": str(uuid.uuid4())}
        )

    app = web.Application()
    app.router.add_post("/MainService.svc/json/SendMultipleMessage_V4_post_json/", send)
    gw.server = TestServer(app)
    await gw.server.start_server()
    return gw


async def zalo(access_token: str) -> FakeGateway:
    gw = FakeGateway("zalo")

    async def send(request: web.Request) -> web.Response:
        fault = gw._fault()
        if fault is not None and fault.code is None:
            return _http_fault(fault)
        if fault is not None:
            return web.json_response({"error": int(fault.code or -1), "message": "injected"})
        if request.headers.get("access_token") != access_token:
            return web.json_response({"error": -216, "message": "Access token is invalid"})
        body = await _json(request)
        user = (body or {}).get("recipient", {}).get("user_id")
        text = (body or {}).get("message", {}).get("text")
        if not user or not text:
            return web.json_response({"error": -201, "message": "Parameters are invalid"})
        gw._record(body or {})
        return web.json_response(
            {
                "error": 0,
                "message": "Success",
                "data": {"message_id": uuid.uuid4().hex, "user_id": user},
            }
        )

    app = web.Application()
    app.router.add_post("/v3.0/oa/message/cs", send)
    gw.server = TestServer(app)
    await gw.server.start_server()
    return gw


async def telegram(token: str) -> FakeGateway:
    gw = FakeGateway("telegram")

    async def send(request: web.Request) -> web.Response:
        fault = gw._fault()
        if fault is not None and fault.status == 429:
            after = fault.retry_after or 1
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {after}",
                    "parameters": {"retry_after": after},
                },
                status=429,
            )
        if fault is not None:
            return web.json_response(
                {"ok": False, "error_code": fault.status, "description": "Internal Server Error"},
                status=fault.status,
            )
        if request.match_info["token"] != token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        body = await _json(request)
        if not body or not body.get("chat_id") or not body.get("text"):
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message text is empty",
                },
                status=400,
            )
        gw._record(body)
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "message_id": len(gw.messages),
                    "chat": {"id": body["chat_id"]},
                    "date": int(time.time()),
                    "text": body["text"],
                },
            }
        )

    app = web.Application()
    app.router.add_post("/bot{token}/sendMessage", send)
    gw.server = TestServer(app)
    await gw.server.start_server()
    return gw


async def webhook() -> FakeGateway:
    """A generic webhook receiver (the JSON body recorded as it came)."""
    gw = FakeGateway("webhook")

    async def hook(request: web.Request) -> web.Response:
        fault = gw._fault()
        if fault is not None:
            return _http_fault(fault)
        gw._record(await _json(request) or {})
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    gw.server = TestServer(app)
    await gw.server.start_server()
    return gw
