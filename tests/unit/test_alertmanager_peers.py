"""The operations service's silence client falls over between the Alertmanager peers."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ioc.services.ops.alertmanager import AlertmanagerClient, Matcher
from ioc.services.ops.common import Unavailable


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


async def test_a_silence_goes_to_the_peer_that_answers() -> None:
    created: list[object] = []

    async def post(request: web.Request) -> web.Response:
        created.append(await request.json())
        return web.json_response({"silenceID": "s-1"})

    app = web.Application()
    app.router.add_post("/api/v2/silences", post)
    server = TestServer(app)
    await server.start_server()
    down, up = _closed_port_url(), str(server.make_url("")).rstrip("/")
    client = AlertmanagerClient([down, up], timeout_s=2)
    try:
        now = dt.datetime.now(dt.UTC)
        matchers = [Matcher("device", "cam-1")]
        assert await client.create_silence(matchers, now, now, "test", "peer down") == "s-1"
        assert client.base_url == up  # the peer that answered is asked first from now on
        assert len(created) == 1
    finally:
        await client.close()
        await server.close()


async def test_no_peer_answering_is_unavailable_naming_each() -> None:
    first, second = _closed_port_url(), _closed_port_url()
    client = AlertmanagerClient([first, second], timeout_s=1)
    try:
        with pytest.raises(Unavailable, match="unreachable at") as raised:
            await client.silences()
        assert first in str(raised.value) and second in str(raised.value)
    finally:
        await client.close()
