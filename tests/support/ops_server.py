"""The operations service for tests: bootstrapped namespace, built context, and the app served
by a real uvicorn on a free loopback port (real HTTP: Content-Length, streamed bodies, the
client's address), in the test's own event loop so the asyncpg pool stays on one loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract.topology import Topology
from ioc.services.ops.app import build, close, create_app
from ioc.services.ops.common import OpsContext

ADMIN_TOKEN = "test-admin-token-not-a-secret-0123456789"


@dataclass
class OpsService:
    settings: Settings
    topology: Topology
    ctx: OpsContext
    app: FastAPI
    url: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """``app`` on 127.0.0.1 (a free port) until the block ends; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        await task
        raise RuntimeError("uvicorn did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def ops_service(
    namespace: Settings, scenario: str = "demo", apply_wait_s: float = 5.0
) -> AsyncIterator[OpsService]:
    settings = namespace.model_copy(update={"ops_admin_token": SecretStr(ADMIN_TOKEN)})
    topology = await bootstrap(settings, scenario)
    ctx = await build(settings, topology)
    app = create_app(ctx, apply_wait_s=apply_wait_s)
    try:
        async with serving(app) as url:
            yield OpsService(settings, topology, ctx, app, url)
    finally:
        await close(ctx)
