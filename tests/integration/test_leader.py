"""One leader per shard, one round at a time (ioc.streams.leader's database locks); the
leader SIGKILLed mid-round is a fault test: tests/chaos/test_leader_killed.py."""

from __future__ import annotations

from ioc.config import Settings


async def test_one_leader_per_shard_and_one_round_at_a_time(namespace: Settings) -> None:
    from ioc.db import connect
    from ioc.streams.leader import ShardLeader, lock_key

    dsn = namespace.database_dsn()
    first = ShardLeader(dsn, namespace.db_schema, "99", "evaluator", "a")
    second = ShardLeader(dsn, namespace.db_schema, "99", "evaluator", "b")
    other_shard = ShardLeader(dsn, namespace.db_schema, "15", "evaluator", "c")
    try:
        assert await first.ensure() and first.terms == 1
        assert not await second.ensure() and not second.is_leader
        assert await other_shard.ensure(), "shards are independent"
        assert await first.ensure() and first.terms == 1, "leadership is sticky"
        a, b = await connect(dsn), await connect(dsn)
        try:
            async with a.transaction():
                assert await first.holds_round(a)
                async with b.transaction():
                    assert not await second.holds_round(b), "two rounds at once"
            async with b.transaction():
                assert await second.holds_round(b), "the round lock ends with its transaction"
        finally:
            await a.close()
            await b.close()
        await first.resign()
        assert await second.ensure() and second.terms == 1, "the shard moves at once"
    finally:
        for leader in (first, second, other_shard):
            await leader.resign()
    assert lock_key("s", "99", "evaluator") == lock_key("s", "99", "evaluator")
    assert lock_key("s", "99", "evaluator") != lock_key("t", "99", "evaluator")
