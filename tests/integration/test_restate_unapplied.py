"""A transition the incident agent never applied is restated by the leader, once per grace.

Faust acks, and so commits, a message its stream skipped while a rebalance suspended the flow:
in CI the survivor of a killed leader committed past a camera's "down" without applying it,
and the camera's outage opened no incident (tests/chaos/test_leader_killed.py). The agent
records per device the last transition it applied; the leader publishes again the current
state of a device whose last transition is still unapplied after the grace period and that
matters to incidents, and the agent converges on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg
import msgspec

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import events as ev
from ioc.contract import tables as t
from ioc.contract.thresholds import THRESHOLDS
from ioc.streams.evaluator import Evaluator
from ioc.streams.incidents import IncidentAgent
from ioc.streams.writer import open_pool

LOST = "cam-991-001"
"""Down, its transition never applied: restated."""
APPLIED = "cam-991-002"
"""Down, its transition applied: left alone."""
RECENT = "cam-992-001"
"""Down a moment ago: within the grace, the agent may still be on it."""
QUEUED = "cam-992-002"
"""Down, its transition still in the outbox: it will be published anyway."""
UP_LOST = "th-992-hosp-1"
"""Up again, its "up" never applied, so the incident it roots is still open: restated."""
UP_QUIET = "nn-991"
"""Up, never applied (unknown to up is not news) and rooting nothing: left alone."""
GIVEN_UP = "cam-991-003"
"""Down, its transition dead-lettered by the agent: counted as applied, not restated."""


def _delivered() -> asyncio.Future[None]:
    """What a producer's send gives once the broker has the message."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


async def _age(conn: asyncpg.Connection, column: str, age_s: float) -> None:
    """Every device's ``column`` set ``age_s`` back: the grace has passed since."""
    await conn.execute(
        f"UPDATE {t.DEVICE_STATE} SET {column} = now() - $1::interval",
        dt.timedelta(seconds=age_s),
    )


async def _incidents(pool: asyncpg.Pool) -> set[tuple[str, str]]:
    rows = await pool.fetch(f"SELECT root_device, status FROM {t.INCIDENTS}")
    return {(r["root_device"], r["status"]) for r in rows}


async def _state(
    conn: asyncpg.Connection,
    device: str,
    state: str,
    age_s: float,
    applied: bool,
) -> None:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)
    await conn.execute(
        f"""INSERT INTO {t.DEVICE_STATE} (device_id, state, reason, since, updated_at, applied_at)
            VALUES ($1, $2, 'test', $3, $3, $4)""",
        device,
        state,
        since,
        since if applied else None,
    )


async def test_the_leader_restates_what_the_agent_never_applied(namespace: Settings) -> None:
    topology = await bootstrap(namespace, "demo")
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=2)
    try:
        grace_s = THRESHOLDS.restate_unapplied_ms / 1000
        old = grace_s * 3
        async with pool.acquire() as conn:
            await _state(conn, LOST, t.STATE_DOWN, old, applied=False)
            await _state(conn, APPLIED, t.STATE_DOWN, old, applied=True)
            await _state(conn, RECENT, t.STATE_DOWN, grace_s / 4, applied=False)
            await _state(conn, QUEUED, t.STATE_DOWN, old, applied=False)
            await _state(conn, UP_LOST, t.STATE_UP, old, applied=False)
            await _state(conn, UP_QUIET, t.STATE_UP, old, applied=False)
            now = dt.datetime.now(dt.UTC)
            await conn.execute(
                f"""INSERT INTO {t.DEVICE_EVENTS_OUTBOX}
                    (device_id, prev, new, reason, at_ts, since_ts)
                    VALUES ($1, 'up', 'down', 'test', $2, $2)""",
                QUEUED,
                now,
            )
            await conn.execute(
                f"""INSERT INTO {t.INCIDENTS} (kind, severity, title, root_device,
                      device_class, unit_code, site_id, opened_at, affected, details)
                    VALUES ('device-down', 'warning', 'test', $1, 'telehealth', $2, $3, $4,
                      ARRAY[$1], '{{}}'::jsonb)""",
                UP_LOST,
                topology.unit_of_device[UP_LOST],
                topology.devices[UP_LOST].site,
                now,
            )
        evaluator = Evaluator(topology, pool)
        async with pool.acquire() as conn, conn.transaction():
            assert sorted(await evaluator.restate(conn)) == sorted([LOST, UP_LOST])

        # published and applied: the agent opens the lost outage's incident, resolves the
        # one whose "up" was lost, and records both as applied (and the queued transition)
        events: list[ev.DeviceTransition] = []

        async def collect(_key: bytes, value: bytes) -> Any:
            event = ev.decode_device_event(value)
            assert isinstance(event, ev.DeviceTransition)
            events.append(event)
            return _delivered()

        assert await evaluator.publish(collect) == 3
        assert {(e.device_id, e.prev, e.new) for e in events} == {
            (QUEUED, t.STATE_UP, t.STATE_DOWN),
            (LOST, t.STATE_DOWN, t.STATE_DOWN),
            (UP_LOST, t.STATE_UP, t.STATE_UP),
        }

        # published a grace ago and still not applied: the queued transition is restated
        # now, the two restated a moment ago are not again within the grace period
        async with pool.acquire() as conn:
            await _age(conn, "published_at", old)
        async with pool.acquire() as conn, conn.transaction():
            assert await evaluator.restate(conn) == [QUEUED], "once per grace period"

        async def publish_steps(_key: bytes, _value: bytes) -> Any:
            return _delivered()

        agent = IncidentAgent(topology, pool, publish_steps)
        for event in events:
            await agent.apply(None, event)
        assert await _incidents(pool) == {
            (LOST, "open"),
            (QUEUED, "open"),
            (UP_LOST, "resolved"),
        }

        # an operator resolves the restated outage's incident while the camera stays down;
        # a restatement sent meanwhile (the leader saw it unapplied a moment before) is
        # dropped, not applied again: it would reopen what the operator closed
        (lost_id,) = [
            r["id"]
            for r in await pool.fetch(
                f"SELECT id FROM {t.INCIDENTS} WHERE root_device = $1 AND status = 'open'", LOST
            )
        ]
        restated = next(e for e in events if e.device_id == LOST)
        await agent.apply(
            None,
            ev.IncidentCommand(
                incident_id=lost_id,
                root_device=LOST,
                action="resolve",
                actor="op-linh",
                at_ms=restated.at_ms + 1,
            ),
        )
        await agent.apply(None, msgspec.structs.replace(restated, id=restated.id + 100))
        assert (LOST, "open") not in await _incidents(pool)

        # a transition the agent gave up on (dead-lettered) is not restated either
        async with pool.acquire() as conn:
            await _state(conn, GIVEN_UP, t.STATE_DOWN, old, applied=False)
            since = await conn.fetchval(
                f"SELECT since FROM {t.DEVICE_STATE} WHERE device_id = $1", GIVEN_UP
            )
        await agent.give_up(
            ev.DeviceTransition(
                id=restated.id + 200,
                device_id=GIVEN_UP,
                prev=t.STATE_UP,
                new=t.STATE_DOWN,
                at_ms=int(since.timestamp() * 1000),
                since_ms=int(since.timestamp() * 1000),
            )
        )
        # all applied now: nothing left to restate, even once the grace has passed again
        async with pool.acquire() as conn:
            await _age(conn, "published_at", old)
            await _age(conn, "restated_at", old)
        async with pool.acquire() as conn, conn.transaction():
            assert await evaluator.restate(conn) == []
    finally:
        await pool.close()
