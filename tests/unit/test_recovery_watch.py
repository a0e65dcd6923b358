"""ioc.streams.recovery_watch: what a long table recovery waits for, from Faust's state."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, NamedTuple

from ioc.streams import recovery_watch


class TP(NamedTuple):
    topic: str
    partition: int


class Consumer:
    def __init__(self, positions: dict[TP, int], ends: dict[TP, int], paused: set[TP]) -> None:
        self.positions, self.ends, self._paused_partitions = positions, ends, paused

    async def position(self, tp: TP) -> int:
        return self.positions[tp]

    def highwater(self, tp: TP) -> int:
        if tp not in self.ends:
            raise KeyError(tp)
        return self.ends[tp]


def app(started_s_ago: float, in_recovery: bool = True) -> Any:
    done, stuck, odd = TP("cl", 0), TP("cl", 1), TP("cl", 2)
    recovery = SimpleNamespace(
        in_recovery=in_recovery,
        _recovery_started_at=time.monotonic() - started_s_ago,
        active_highwaters={done: 9, stuck: 41, odd: 5},
        active_offsets={done: 9, stuck: None, odd: 2},
        _active_events_received_at={odd: time.monotonic() - 12},
    )
    consumer = Consumer({stuck: 42, odd: 3}, {stuck: 42}, {stuck})
    return SimpleNamespace(
        tables=SimpleNamespace(recovery=recovery),
        consumer=consumer,
        flow_control=SimpleNamespace(is_active=lambda: True),
    )


async def test_a_long_recovery_is_described_partition_by_partition() -> None:
    text = await recovery_watch.describe(app(45))
    assert text is not None
    assert text.startswith("table recovery running for 45 s (flow control active): ")
    assert "cl[0]" not in text  # at its highwater: done
    assert (
        "cl[1]: wants offset 41, read to None, consumer at 42, end 42, paused by Faust, "
        "no event yet" in text
    )
    # a failing read is reported, not raised
    assert "cl[2]: wants offset 5, read to 2, consumer at 3, end ? (KeyError), " in text
    assert "not paused by Faust, last event 12 s ago" in text


async def test_short_or_no_recovery_says_nothing() -> None:
    assert await recovery_watch.describe(app(5)) is None
    assert await recovery_watch.describe(app(45, in_recovery=False)) is None
    assert await recovery_watch.describe(SimpleNamespace()) is None
