"""The incident agent's delivery rules against the real database and broker.

Faust redelivers an event after a crash, and may hand the agent a table that lost its last
update: neither may open an incident twice or publish a step twice under two numbers.
Operators' commands go through the same owner and are refused, with a reason counted, when
the incident is not open.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import events as ev
from ioc.contract import tables as t
from ioc.contract.topics import INCIDENT_EVENTS
from ioc.kafka_clients import aiokafka_common
from ioc.services.incidents import IncidentCommandError, read_incident_events, send_command
from ioc.streams.incidents import IncidentAgent
from ioc.streams.writer import open_pool

CAMERA = "cam-991-001"
NODE = "nn-992"  # has a telehealth station behind it: its outage isolates a site


def _transition(event_id: int, device: str, prev: str, new: str, at_ms: int) -> ev.DeviceTransition:
    return ev.DeviceTransition(
        id=event_id,
        device_id=device,
        prev=prev,
        new=new,
        reason=f"test: {new}",
        at_ms=at_ms,
        since_ms=at_ms,
    )


def _command(
    incident_id: int, action: ev.CommandAction, at_ms: int, **extra: Any
) -> ev.IncidentCommand:
    return ev.IncidentCommand(
        incident_id=incident_id,
        root_device=CAMERA,
        action=action,
        actor="op-linh",
        at_ms=at_ms,
        **extra,
    )


async def test_replays_and_commands_keep_one_incident_and_one_timeline(
    namespace: Settings,
) -> None:
    topology = await bootstrap(namespace, "demo")
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema)
    producer = AIOKafkaProducer(**aiokafka_common(namespace), acks="all")
    await producer.start()
    topic = namespace.topic(INCIDENT_EVENTS.name)

    async def send(key: bytes, value: bytes) -> Any:
        return await producer.send(topic, value, key=key)

    try:
        agent = IncidentAgent(topology, pool, send)
        now = int(time.time() * 1000)
        down = _transition(1, CAMERA, "up", "down", now)
        state = await agent.apply(None, down)
        (record,) = state["open"].values()
        incident_id = record["id"]
        # redelivered with the table updated, and with the table's update lost
        assert await agent.apply(state, down) == state
        adopted = await agent.apply(None, down)
        assert adopted["open"] == state["open"] and adopted["last_id"] == 1
        # operators act through the same owner; the table's value is never changed in place
        # (a retried event must find it as it was)
        before = copy.deepcopy(state)
        acknowledged = await agent.apply(state, _command(incident_id, "acknowledge", now + 1))
        assert state == before and acknowledged != before
        state = acknowledged
        state = await agent.apply(state, _command(incident_id, "acknowledge", now + 2))  # no-op
        state = await agent.apply(
            state, _command(incident_id, "assign", now + 3, assignee="field-team-2")
        )
        state = await agent.apply(
            state, _command(incident_id, "comment", now + 4, note="truck dispatched")
        )
        state = await agent.apply(state, _transition(2, CAMERA, "down", "up", now + 5))
        assert state["open"] == {}
        state = await agent.apply(state, _command(incident_id, "acknowledge", now + 6))
        # a node outage with a station behind it is a site isolation, not a device-down
        state = await agent.apply(state, _transition(3, NODE, "up", "down", now + 7))
        (isolation,) = state["open"].values()

        async with pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT * FROM {t.INCIDENTS} ORDER BY id")
        assert [(r["root_device"], r["kind"], r["status"]) for r in rows] == [
            (CAMERA, t.INCIDENT_DEVICE_DOWN, "resolved"),
            (NODE, t.INCIDENT_SITE_ISOLATED, "open"),
        ]
        camera = rows[0]
        assert camera["acknowledged_by"] == "op-linh"
        assert camera["assigned_to"] == "field-team-2"
        assert list(rows[1]["affected"]) == topology.devices_behind(NODE)

        log = await read_incident_events(namespace)
        steps = [(e.seq, e.event, e.status, e.actor, e.note) for e in log.of(incident_id)]
        assert steps == [
            (1, "opened", "open", "ioc", "test: down"),
            (2, "acknowledged", "acknowledged", "op-linh", ""),
            (3, "assigned", "acknowledged", "op-linh", ""),
            (4, "commented", "acknowledged", "op-linh", "truck dispatched"),
            (5, "resolved", "resolved", "ioc", f"{CAMERA} is up"),
        ], steps
        assert log.of(incident_id)[2].assigned_to == "field-team-2"
        assert [e.event for e in log.of(isolation["id"])] == ["opened"]
        commands = {
            (s.labels["action"], s.labels["result"]): s.value
            for metric in agent.commands.collect()
            for s in metric.samples
            if s.name.endswith("_total")
        }
        assert commands[("acknowledge", "no-op")] >= 1
        assert commands[("acknowledge", "rejected-resolved")] >= 1
        # a command the agent would refuse is refused at the sender, with the reason
        with pytest.raises(IncidentCommandError, match=r"comment refused.*length"):
            await send_command(namespace, topology, incident_id, "comment", "op", "x" * 2000)
        with pytest.raises(IncidentCommandError, match="no incident 999999"):
            await send_command(namespace, topology, 999_999, "acknowledge", "op")
    finally:
        await producer.stop()
        await pool.close()


def test_an_event_the_agent_cannot_read_is_dead_lettered_and_the_stream_goes_on(
    namespace: Settings, tmp_path: Path
) -> None:
    """Bad input on the event stream: a dead letter with its reason, never a stuck agent."""
    import asyncio

    from ioc.contract.topics import DEVICE_EVENTS
    from tests.support.kafka import dlq_by_source
    from tests.support.processes import Worker
    from tests.support.wait import wait_for

    asyncio.run(bootstrap(namespace, "demo"))
    worker = Worker(namespace, "demo", tmp_path / "worker.log").start()

    async def produce(value: bytes) -> None:
        producer = AIOKafkaProducer(**aiokafka_common(namespace), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                namespace.topic(DEVICE_EVENTS.name), value, key=CAMERA.encode()
            )
        finally:
            await producer.stop()

    try:
        asyncio.run(produce(b'{"type": "transition", "id": 0}'))
        letters = wait_for(
            lambda: [
                letter
                for letter in asyncio.run(dlq_by_source(namespace)).values()
                if letter.reason == "invalid-device-event"
            ],
            60,
            what=f"the dead letter ({worker.log_tail()})",
        )
        assert letters[0].topic == namespace.topic(DEVICE_EVENTS.name)
        assert letters[0].value() == b'{"type": "transition", "id": 0}'
        assert worker.alive()
    finally:
        worker.stop()
