"""What a test namespace's Kafka topics hold."""

from __future__ import annotations

from collections import Counter

from ioc.config import Settings
from ioc.contract import deadletter as dl
from ioc.streams.deadletter_cli import read_dead_letters


async def dlq_by_source(settings: Settings) -> dict[str, dl.DeadLetter]:
    """Dead letters by source record (topic/partition/offset), read to the topic's end the
    way `ioc deadletter` reads it: a replayed batch repeats its keys, so the newest one per
    source stands (as compaction leaves it)."""
    scan = await read_dead_letters(settings, lambda _letter: True)
    assert scan.undecodable == 0, f"{scan.undecodable} records are not dead letters"
    for key, letter in scan.selected.items():
        assert key == letter.source, (key, letter.source)
    return scan.selected


async def dlq_count(settings: Settings) -> Counter[str]:
    """Dead letters by reason, one per source message."""
    return Counter(letter.reason for letter in (await dlq_by_source(settings)).values())
