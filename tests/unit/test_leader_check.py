"""The shard leader keeps its lock through a slow answer and gives it up when the session is
gone (pure logic: a fake lock session; the lock itself: tests/integration/test_leader.py)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import asyncpg
import pytest

from ioc.streams import leader as leader_module
from ioc.streams.leader import UNANSWERED_GRACE_S, ShardLeader


class FakeSession:
    """The lock session as the check sees it: answers, times out, or is gone."""

    def __init__(self) -> None:
        self.failure: BaseException | None = None
        self.closed = False
        self.terminated = False

    async def fetchval(self, _sql: str, timeout: float | None = None) -> int:
        if self.failure is not None:
            raise self.failure
        return 1

    def is_closed(self) -> bool:
        return self.closed

    def terminate(self) -> None:
        self.terminated = self.closed = True


def leading(session: FakeSession) -> ShardLeader:
    shard = ShardLeader("postgresql://unused", "ioc", "99", worker="w1")
    shard._conn = cast(Any, session)
    return shard


def test_an_unanswered_check_keeps_the_lock_until_the_grace_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A busy event loop misses the answer's deadline: that is no lost session (the
    national run lost its leader every few minutes that way)."""
    clock = [1000.0]
    monkeypatch.setattr("ioc.streams.leader.time.monotonic", lambda: clock[0])
    session = FakeSession()
    shard = leading(session)
    session.failure = TimeoutError()
    assert asyncio.run(shard.ensure()) and shard.is_leader
    clock[0] += UNANSWERED_GRACE_S - 1
    assert asyncio.run(shard.ensure()) and shard.is_leader
    session.failure = None  # answered again: the grace starts over next time
    assert asyncio.run(shard.ensure())
    session.failure = TimeoutError()
    clock[0] += 10
    assert asyncio.run(shard.ensure()) and shard.is_leader
    # asyncpg refuses the next query while it cancels the one that timed out
    session.failure = asyncpg.InterfaceError("another operation is in progress")
    assert asyncio.run(shard.ensure()) and shard.is_leader
    clock[0] += UNANSWERED_GRACE_S
    monkeypatch.setattr(leader_module, "connect", _refused)
    assert not asyncio.run(shard.ensure())
    assert not shard.is_leader and session.terminated


@pytest.mark.parametrize("closed", [False, True])
def test_a_failed_session_gives_the_lock_up_at_once(
    monkeypatch: pytest.MonkeyPatch, closed: bool
) -> None:
    session = FakeSession()
    shard = leading(session)
    session.closed = closed
    session.failure = (
        asyncpg.InterfaceError("connection is closed")
        if closed
        else ConnectionResetError("reset by peer")
    )
    monkeypatch.setattr(leader_module, "connect", _refused)
    assert not asyncio.run(shard.ensure())
    assert not shard.is_leader and session.terminated


async def _refused(*_args: object, **_kwargs: object) -> None:
    raise OSError("no database")
