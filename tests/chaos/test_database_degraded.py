"""Chaos: a slow database and a full disk on the raw path are reported, not hidden.

- Slow database: every database round trip of the worker goes through a proxy that delays
  the server's answers by 300 ms. The worker keeps writing (slowly), the DatabaseWritesSlow
  alert fires, and once the latency goes everything lands exactly once.
- Full disk: the namespace's raw camera chunks live on a 1 MB tmpfs tablespace. When it is
  full, PostgreSQL refuses the inserts ("No space left on device"); the worker retries
  without committing offsets, DatabaseWritesFailing fires; after the filesystem is grown,
  the backlog lands exactly once and every invalid message is in the DLQ.

Run with `make chaos` (root is needed to mount the tmpfs).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ioc.config import Settings
from ioc.db import connect
from ioc.deploy.local.stack import Stack
from ioc.simulators.run import SimConfig, run_simulation
from ioc.streams.cli import prepare

from ..integration.workers import Worker, drop_schema, landed, reconcile, wait_for

pytestmark = pytest.mark.chaos


def firing(settings: Settings, alertname: str) -> bool:
    q = urllib.parse.urlencode(
        {"query": f'count(ALERTS{{alertname="{alertname}", alertstate="firing"}})'}
    )
    with urllib.request.urlopen(f"{settings.prometheus_url}/api/v1/query?{q}", timeout=10) as r:
        return bool(json.loads(r.read())["data"]["result"])


class LatencyProxy:
    """TCP proxy to PostgreSQL that holds every server->client chunk for ``delay`` seconds."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delayed: bool) -> None:
            try:
                while data := await src.read(65536):
                    if delayed and self.delay:
                        await asyncio.sleep(self.delay)
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))


def produce(settings: Settings, result: dict[str, Any], duration_s: float) -> threading.Thread:
    def run() -> None:
        result["summary"] = run_simulation(
            settings,
            SimConfig(
                scenario="demo",
                mode="rate",
                rate=400,
                duration_s=duration_s,
                progress=False,
                fault_flags=["malformed:0.01"],
            ),
        )

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_slow_database_is_reported_and_loses_nothing(namespace: Settings, tmp_path: Path) -> None:
    asyncio.run(prepare(namespace, "demo"))
    with LatencyProxy(namespace.postgres_port) as proxy:
        direct = namespace.database_dsn()
        slow = namespace.model_copy(
            update={
                "db_dsn": SecretStr(
                    direct.replace(f":{namespace.postgres_port}/", f":{proxy.port}/")
                )
            }
        )
        worker = Worker(slow, "demo", tmp_path / "worker.log").start()
        try:
            time.sleep(10)
            result: dict[str, Any] = {}
            thread = produce(namespace, result, 150)
            time.sleep(10)
            proxy.delay = 0.3
            started = time.monotonic()
            reported = False
            while time.monotonic() - started < 150 and not reported:
                assert worker.alive(), f"worker died with a slow database:\n{worker.log()}"
                reported = firing(namespace, "DatabaseWritesSlow")
                time.sleep(5)
            slow_for = time.monotonic() - started
            proxy.delay = 0.0
            thread.join()
            valid = sum(result["summary"].stats.valid_by_feed.values())
            wait_for(lambda: landed(namespace) >= valid, 180, interval=2, what="backlog drained")
            print(f"slow database: DatabaseWritesSlow firing after {slow_for:.0f} s of 300 ms")
            reconcile(namespace, result["summary"], "slow database (300 ms per round trip)")
            assert reported, "DatabaseWritesSlow did not fire"
            assert worker.alive()
        finally:
            worker.stop()


def test_full_disk_on_the_raw_path_is_reported_and_loses_nothing(
    namespace: Settings, tmp_path: Path
) -> None:
    db = Stack(namespace).timescaledb
    mount = db.rootfs / "var" / "lib" / f"ioc-full-{namespace.db_schema}"
    inside = f"/var/lib/{mount.name}"
    tablespace = f"full_{namespace.db_schema}"
    creds = json.loads(db.credentials_path.read_text())
    superuser = (
        f"postgresql://{creds['superuser']}:{creds['superuser_password']}@127.0.0.1:"
        f"{namespace.postgres_port}/{creds['database']}"
    )
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    uid, gid = db._ids()
    (mount / "data").mkdir()
    os.chown(mount / "data", uid, gid)

    async def sql(statement: str) -> None:
        conn = await connect(superuser)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    worker: Worker | None = None
    try:
        asyncio.run(prepare(namespace, "demo"))
        asyncio.run(sql(f"CREATE TABLESPACE {tablespace} LOCATION '{inside}/data'"))
        asyncio.run(
            sql(
                f"GRANT CREATE ON TABLESPACE {tablespace} TO ioc_app, ioc_admin; "
                f"SELECT attach_tablespace('{tablespace}', '{namespace.db_schema}.raw_camera')"
            )
        )
        worker = Worker(namespace, "demo", tmp_path / "worker.log").start()
        time.sleep(10)
        result: dict[str, Any] = {}
        thread = produce(namespace, result, 120)
        started = time.monotonic()
        reported = False
        while time.monotonic() - started < 150 and not reported:
            assert worker.alive(), f"worker died on a full disk:\n{worker.log()}"
            reported = firing(namespace, "DatabaseWritesFailing")
            time.sleep(5)
        full_for = time.monotonic() - started
        assert "No space left on device" in worker.log_path.read_text(errors="replace")
        subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
        thread.join()
        valid = sum(result["summary"].stats.valid_by_feed.values())
        wait_for(lambda: landed(namespace) >= valid, 180, interval=2, what="backlog drained")
        print(f"full disk: DatabaseWritesFailing firing {full_for:.0f} s into the run")
        reconcile(namespace, result["summary"], "full disk on the raw path (1 MB, then grown)")
        assert reported, "DatabaseWritesFailing did not fire"
        assert worker.alive()
    finally:
        if worker is not None:
            worker.stop()
        asyncio.run(drop_schema(namespace))
        try:
            asyncio.run(sql(f"DROP TABLESPACE IF EXISTS {tablespace}"))
        finally:
            subprocess.run(["umount", str(mount)], check=False)
            mount.rmdir()
