"""Chaos: a full disk on the raw path is reported, not hidden.

(A slow database, 300 ms on every round trip, is tests/chaos/test_network_faults.py's delay
test, which slows the broker and the database together and asserts DatabaseWritesSlow.)

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
import time
from pathlib import Path

import pytest

from ioc.bootstrap import bootstrap, drop_schema
from ioc.config import Settings
from ioc.db import connect
from ioc.deploy.local.stack import DATABASE, Stack
from tests.support.processes import Worker

from .faults import Production, wait_for_alert

pytestmark = pytest.mark.chaos


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
