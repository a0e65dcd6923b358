"""The evaluator's outbox published within a time budget (issue 18, device scale).

A national first round moves 100,000 devices from unknown to up: 100,000 device events in
the outbox. The worker publishes between rounds, so a publish that ran until the outbox was
empty held the rounds off for minutes (one round in 60 s, bench/device_scale.py). With a
budget, each call starts no new batch after it, and the rest goes out, in order, at the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import events as ev
from ioc.contract import tables as t
from ioc.streams.evaluator import PUBLISH_BATCH as BATCH
from ioc.streams.evaluator import Evaluator
from ioc.streams.writer import open_pool

REST = BATCH // 3 + 1
"""What a third call finds: less than a batch."""


async def test_publish_stops_at_its_budget_and_resumes_in_order(namespace: Settings) -> None:
    topology = await bootstrap(namespace, "yen-bai-2022")
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=2)
    try:
        devices = sorted(topology.devices)
        at = dt.datetime.now(dt.UTC)
        total = 2 * BATCH + REST
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                t.DEVICE_EVENTS_OUTBOX,
                records=[
                    (devices[i % len(devices)], "unknown", "up", "", at, at) for i in range(total)
                ],
                columns=["device_id", "prev", "new", "reason", "at_ts", "since_ts"],
            )
        sent: list[int] = []

        async def send(_key: bytes, value: bytes) -> Any:
            event = ev.decode_device_event(value)
            assert isinstance(event, ev.DeviceTransition)
            sent.append(event.id)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        evaluator = Evaluator(topology, pool)
        # a budget already spent after the first batch: one batch per call
        calls: list[int] = []
        while True:
            n = await evaluator.publish(send, budget_s=0.0001)
            if n == 0:
                break
            calls.append(n)
            async with pool.acquire() as conn:
                left = await conn.fetchval(f"SELECT count(*) FROM {t.DEVICE_EVENTS_OUTBOX}")
            assert left == total - sum(calls)  # what was sent is gone, the rest waits
        assert calls == [BATCH, BATCH, REST]
        assert sent == sorted(sent) and len(set(sent)) == total  # in order, each once
        # no budget: everything in one call (the earlier behaviour, and the tests' default)
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                t.DEVICE_EVENTS_OUTBOX,
                records=[(devices[0], "up", "down", "", at, at)] * (BATCH + 1),
                columns=["device_id", "prev", "new", "reason", "at_ts", "since_ts"],
            )
        assert await evaluator.publish(send) == BATCH + 1
    finally:
        await pool.close()


async def test_a_publish_cancelled_mid_way_keeps_the_batches_it_delivered(
    namespace: Settings,
) -> None:
    """The worker cancels a publish after 60 s; on a saturated machine that can be mid-way
    through the outbox. What earlier batches delivered is deleted, so the next call goes on
    from there instead of sending the same rows again."""
    topology = await bootstrap(namespace, "demo")
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=2)
    try:
        device = sorted(topology.devices)[0]
        at = dt.datetime.now(dt.UTC)
        total = 3 * BATCH
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                t.DEVICE_EVENTS_OUTBOX,
                records=[(device, "unknown", "up", "", at, at)] * total,
                columns=["device_id", "prev", "new", "reason", "at_ts", "since_ts"],
            )
        sent: list[int] = []
        stuck_after = BATCH  # the broker stops confirming after the first batch

        async def send(_key: bytes, value: bytes) -> Any:
            event = ev.decode_device_event(value)
            assert isinstance(event, ev.DeviceTransition)
            sent.append(event.id)
            return asyncio.sleep(3600 if len(sent) > stuck_after else 0)

        evaluator = Evaluator(topology, pool)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(evaluator.publish(send), timeout=5)
        async with pool.acquire() as conn:
            left = await conn.fetchval(f"SELECT count(*) FROM {t.DEVICE_EVENTS_OUTBOX}")
        assert left == total - BATCH, "the first batch is delivered, the second rolled back"
        stuck_after = 10 * total  # the broker is back
        assert await evaluator.publish(send) == total - BATCH
        # sent twice: only the cancelled batch (the incident agent drops those by id)
        assert len(sent) == total + BATCH
        assert len(set(sent)) == total
    finally:
        await pool.close()
