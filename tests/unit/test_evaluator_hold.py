"""How long a leader holds new outages: until the backlog it may be missing has landed.

A new leader (or one whose event time jumped: a backlog) holds new outages so that devices
whose reports are still in Kafka do not look silent. With word from the feed consumer, the
hold ends once every feed partition has been committed (landed) up to where it ended when
the hold began; without it, after each class's heartbeat timeout, as before. A leader killed
mid-outage held a 40 s camera outage for 15 s plus a second hold after its own rebalance, and
the camera was back before any round judged it (tests/chaos/test_leader_killed.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from ioc.contract.feeds import Feed
from ioc.contract.topology import load_scenario
from ioc.streams.evaluator import Evaluator

TOPO = load_scenario("demo")
T0 = 1_700_000_000_000
CAMERA_TIMEOUT = 15_000


class FakeBacklog:
    """The feed consumer's answers, as a test sets them (pure logic: no broker)."""

    def __init__(self, marks: dict[tuple[str, int], int] | None) -> None:
        self.marks = marks
        self.committed: dict[tuple[str, int], int] = {}
        self.answers = True

    async def backlog_marks(self) -> dict[tuple[str, int], int] | None:
        return dict(self.marks) if self.marks is not None and self.answers else None

    async def backlog_landed(self, marks: dict[tuple[str, int], int]) -> bool | None:
        if not self.answers:
            return None
        return all(self.committed.get(tp, -1) >= end for tp, end in marks.items())


def _evaluator(backlog: FakeBacklog | None) -> Evaluator:
    evaluator = Evaluator(TOPO, cast(Any, None))
    evaluator.backlog = backlog
    assert evaluator.machine.th.heartbeat_timeout_ms[Feed.CAMERA] == CAMERA_TIMEOUT
    return evaluator


def _round(evaluator: Evaluator, at_ms: int) -> frozenset[str]:
    """What one round does about the hold (run_once without the database)."""

    async def go() -> frozenset[str]:
        await evaluator._end_hold_if_landed()
        held = evaluator._catching_up(at_ms, at_ms)
        await evaluator._mark_backlog()
        return held

    return asyncio.run(go())


def test_a_new_term_holds_until_its_backlog_has_landed() -> None:
    backlog = FakeBacklog({("feed.camera", 0): 100, ("feed.camera", 1): 50})
    evaluator = _evaluator(backlog)
    assert Feed.CAMERA in _round(evaluator, T0)
    backlog.marks = {("feed.camera", 0): 900, ("feed.camera", 1): 900}  # later data: not waited
    backlog.committed = {("feed.camera", 0): 100}  # partition 1 not landed yet
    assert Feed.CAMERA in _round(evaluator, T0 + 5_000)
    backlog.committed[("feed.camera", 1)] = 50
    assert _round(evaluator, T0 + 10_000) == frozenset()  # 5 s before the timeout would end it


def test_without_word_from_the_broker_a_hold_lasts_each_class_timeout() -> None:
    backlog = FakeBacklog({("feed.camera", 0): 100})
    backlog.answers = False
    evaluator = _evaluator(backlog)
    assert Feed.CAMERA in _round(evaluator, T0)
    backlog.answers = True  # marks only now: taken late, they still cover the backlog
    backlog.marks = {("feed.camera", 0): 120}
    backlog.committed = {("feed.camera", 0): 119}
    assert Feed.CAMERA in _round(evaluator, T0 + 5_000)
    assert Feed.CAMERA in _round(evaluator, T0 + CAMERA_TIMEOUT - 1)
    assert Feed.CAMERA not in _round(evaluator, T0 + CAMERA_TIMEOUT)


def test_no_feed_consumer_holds_each_class_for_its_timeout() -> None:
    evaluator = _evaluator(None)
    assert Feed.CAMERA in _round(evaluator, T0)
    assert Feed.CAMERA in _round(evaluator, T0 + CAMERA_TIMEOUT - 1)
    assert Feed.CAMERA not in _round(evaluator, T0 + CAMERA_TIMEOUT)


def test_a_backlog_after_a_released_hold_holds_again_with_new_marks() -> None:
    backlog = FakeBacklog({("feed.camera", 0): 10})
    backlog.committed = {("feed.camera", 0): 10}
    evaluator = _evaluator(backlog)
    _round(evaluator, T0)
    assert _round(evaluator, T0 + 5_000) == frozenset()
    # a stall: event time runs 30 s in 5 s of wall clock
    backlog.marks = {("feed.camera", 0): 500}

    async def jump() -> frozenset[str]:
        held = evaluator._catching_up(T0 + 40_000, T0 + 10_000)
        await evaluator._mark_backlog()
        return held

    assert Feed.CAMERA in asyncio.run(jump())
    assert evaluator._marks == {("feed.camera", 0): 500}
    assert Feed.CAMERA in _round(evaluator, T0 + 45_000)
    backlog.committed[("feed.camera", 0)] = 500
    assert _round(evaluator, T0 + 50_000) == frozenset()
