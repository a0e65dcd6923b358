"""Offsets are committed in order, only for rounds that landed (pure logic, no Kafka)."""

from __future__ import annotations

import asyncio

from ioc.config import Settings
from ioc.streams.consumer import FeedConsumer, Offsets, _InFlight


def make() -> tuple[FeedConsumer, list[Offsets]]:
    async def ready() -> None:  # never called here
        raise AssertionError

    consumer = FeedConsumer(Settings(), ready)  # type: ignore[arg-type]
    committed: list[Offsets] = []

    async def commit(offsets: Offsets) -> None:
        if offsets:
            committed.append(dict(offsets))

    consumer._commit = commit  # type: ignore[method-assign]
    return consumer, committed


def test_a_round_that_lands_early_waits_for_the_rounds_before_it() -> None:
    async def scenario() -> list[Offsets]:
        consumer, committed = make()
        gates = [asyncio.Event() for _ in range(3)]

        async def write(i: int) -> None:
            await gates[i].wait()

        for i in range(3):
            task = asyncio.ensure_future(write(i))
            consumer._in_flight.append(_InFlight(task, {("t", 0): 10 * (i + 1)}))
        gates[2].set()  # the last round lands first
        await asyncio.sleep(0)
        await consumer._finish(3)
        assert committed == []  # nothing before round 0 landed
        gates[0].set()
        await asyncio.sleep(0)
        await consumer._finish(3)
        assert committed == [{("t", 0): 10}]  # round 1 still open: round 2 must wait
        gates[1].set()
        await consumer._finish(0)
        return committed

    assert asyncio.run(scenario()) == [{("t", 0): 10}, {("t", 0): 30}]


def test_a_failed_or_cancelled_round_is_never_committed() -> None:
    async def scenario() -> list[Offsets]:
        consumer, committed = make()

        async def never() -> None:
            await asyncio.Event().wait()

        task = asyncio.ensure_future(never())
        consumer._in_flight.append(_InFlight(task, {("t", 0): 5}))
        await asyncio.sleep(0)
        task.cancel()  # a stop mid-batch
        await asyncio.sleep(0)
        assert consumer._take_landed() == {}
        return committed

    assert asyncio.run(scenario()) == []
