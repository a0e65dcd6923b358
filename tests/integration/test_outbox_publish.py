"""The evaluator's outbox published within a time budget (issue 18, device scale).

A national first round moves 100,000 devices from unknown to up: 100,000 device events in
the outbox. The worker publishes between rounds, so a publish that ran until the outbox was
empty held the rounds off for minutes (one round in 60 s, bench/device_scale.py). With a
budget, each call starts no new batch after it, and the rest goes out, in order, at the next.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import events as ev
from ioc.contract import tables as t
from ioc.streams.evaluator import Evaluator
from ioc.streams.writer import open_pool

BATCH = 5000
"""Evaluator.publish's batch."""


async def test_publish_stops_at_its_budget_and_resumes_in_order(namespace: Settings) -> None:
    topology = await bootstrap(namespace, "yen-bai-2022")
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=2)
    try:
        devices = sorted(topology.devices)
        at = dt.datetime.now(dt.UTC)
        total = 2 * BATCH + 1234
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
        assert calls == [BATCH, BATCH, 1234]
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
