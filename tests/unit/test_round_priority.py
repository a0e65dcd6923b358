"""The shard leader's round goes before the worker's next feed batch (ioc.streams.priority):
a batch waits while a round runs, for at most ``longest_s``, and the wait is counted."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from ioc.contract import metrics as m
from ioc.streams.priority import RoundPriority


def _paused() -> float:
    return REGISTRY.get_sample_value(f"{m.FEED_PAUSED_FOR_ROUND_SECONDS.name}_total") or 0.0


async def test_no_round_no_wait() -> None:
    priority = RoundPriority(longest_s=5)
    before = _paused()
    started = time.perf_counter()
    await priority.wait()
    assert time.perf_counter() - started < 0.05
    assert _paused() == before


async def test_a_batch_waits_for_the_running_round() -> None:
    priority = RoundPriority(longest_s=5)
    order: list[str] = []

    async def round_() -> None:
        with priority.running():
            await asyncio.sleep(0.2)
            order.append("round done")

    async def batch() -> None:
        await asyncio.sleep(0.01)  # the round has started
        await priority.wait()
        order.append("batch")

    before = _paused()
    await asyncio.gather(round_(), batch())
    assert order == ["round done", "batch"]
    assert 0.1 < _paused() - before < 1.0


async def test_a_stuck_round_holds_a_batch_at_most_longest_s() -> None:
    priority = RoundPriority(longest_s=0.2)
    with priority.running():
        started = time.perf_counter()
        await priority.wait()
        waited = time.perf_counter() - started
    assert 0.15 < waited < 1.0
    started = time.perf_counter()
    await priority.wait()  # the round is over: no wait
    assert time.perf_counter() - started < 0.05
