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
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from ioc.bootstrap import bootstrap, drop_schema
from ioc.config import Settings
from ioc.db import connect
from ioc.deploy.local.stack import DATABASE, Stack
from tests.support.processes import Worker

from .faults import Production, wait_for_alert

pytestmark = pytest.mark.chaos


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


def test_slow_database_is_reported_and_loses_nothing(namespace: Settings, tmp_path: Path) -> None:
    asyncio.run(bootstrap(namespace, "demo"))
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
            production = Production(namespace, 150)
            time.sleep(10)
            proxy.delay = 0.3
            fired_after = wait_for_alert(namespace, "DatabaseWritesSlow", worker, 150)
            proxy.delay = 0.0
            production.finish_and_reconcile(worker, "slow database (300 ms per round trip)")
            print(f"slow database: DatabaseWritesSlow fired after {fired_after:.0f} s of 300 ms")
            assert fired_after >= 0, "DatabaseWritesSlow did not fire"
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
    superuser = db._dsn("postgres", DATABASE)
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
        asyncio.run(bootstrap(namespace, "demo"))
        asyncio.run(sql(f"CREATE TABLESPACE {tablespace} LOCATION '{inside}/data'"))
        asyncio.run(
            sql(
                f"GRANT CREATE ON TABLESPACE {tablespace} TO ioc_app, ioc_admin; "
                f"SELECT attach_tablespace('{tablespace}', '{namespace.db_schema}.raw_camera')"
            )
        )
        worker = Worker(namespace, "demo", tmp_path / "worker.log").start()
        time.sleep(10)
        # The camera feed (about a quarter of the demo's events since the province has six
        # feeds) must fill the 1 MB tablespace as fast as it did with three: 650 ev/s.
        production = Production(namespace, 120, rate=650)
        fired_after = wait_for_alert(namespace, "DatabaseWritesFailing", worker, 200)
        assert "No space left on device" in worker.log_text()
        subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
        production.finish_and_reconcile(worker, "full disk on the raw path (1 MB, then grown)")
        print(f"full disk: DatabaseWritesFailing fired {fired_after:.0f} s into the run")
        assert fired_after >= 0, "DatabaseWritesFailing did not fire"
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
