"""The operations service for tests: bootstrapped namespace, built context, and the app served
by a real uvicorn on a free loopback port (real HTTP: Content-Length, streamed bodies, the
client's address), in the test's own event loop so the asyncpg pool stays on one loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

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


Step = tuple[str, str, str, str, datetime]
"""One ``incident_events`` row: (event, status, actor, note, at)."""


async def store_incident(
    svc: OpsService,
    root: str,
    kind: str,
    severity: str,
    status: str,
    title: str,
    opened: datetime,
    *,
    affected: list[str] | None = None,
    acknowledged_by: str | None = None,
    resolved: datetime | None = None,
    steps: Sequence[Step] | None = None,
) -> int:
    """An incident and its history stored as the incident agent writes them (acknowledged 5
    minutes after ``opened`` when ``acknowledged_by``); returns its id. ``steps`` are its
    ``incident_events`` rows; by default: opened, acknowledged and commented on when
    ``acknowledged_by``, resolved when ``resolved``."""
    topo = svc.topology
    device = topo.devices[root]
    acknowledged = opened + timedelta(minutes=5) if acknowledged_by else None
    if steps is None:
        steps = [("opened", "open", "ioc", "down", opened)]
        if acknowledged_by and acknowledged:
            steps.append(("acknowledged", "acknowledged", acknowledged_by, "", acknowledged))
            note_at = acknowledged + timedelta(minutes=1)
            steps.append(("commented", "acknowledged", acknowledged_by, "đã cử đội", note_at))
        if resolved:
            steps.append(("resolved", "resolved", "ioc", "up", resolved))
    async with svc.ctx.pool.acquire() as conn:
        incident_id: int = await conn.fetchval(
            "INSERT INTO incidents (kind, severity, status, title, root_device, device_class, "
            "unit_code, site_id, opened_at, acknowledged_at, acknowledged_by, resolved_at, "
            "affected) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
            "RETURNING id",
            kind,
            severity,
            status,
            title,
            root,
            device.device_class,
            topo.unit_of_device[root],
            device.site,
            opened,
            acknowledged,
            acknowledged_by,
            resolved,
            affected or [root],
        )
        await conn.executemany(
            "INSERT INTO incident_events (incident_id, seq, event, status, at, actor, note, "
            "published) VALUES ($1, $2, $3, $4, $5, $6, $7, true)",
            [
                (incident_id, n, event, st, at, actor, note)
                for n, (event, st, actor, note, at) in enumerate(steps, 1)
            ],
        )
    return incident_id
