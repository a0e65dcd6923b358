"""Escalation against the real database and broker: a critical incident nobody acknowledged
is paged to level 2 after the configured minutes, once (two instances, repeated passes), never
when acknowledged or under maintenance, and the step reaches the incident's timeline."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import events as ev
from ioc.contract import tables as t
from ioc.contract.topics import INCIDENT_EVENTS
from ioc.contract.topology import Topology
from ioc.kafka_clients import aiokafka_common
from ioc.services.channels import Contact, Delivery, Dispatcher, Page
from ioc.services.ops.alertmanager import AlertmanagerClient
from ioc.services.ops.common import OpsContext
from ioc.services.ops.escalation import ALERTNAME, Escalator
from ioc.services.ops.oncall import parse_roster
from ioc.streams.incidents import IncidentAgent
from ioc.streams.writer import open_pool
from tests.support.kafka import device_events

ROSTER = """
people:
  - {id: linh, name: Nguyễn Thị Linh, phone: "+84900000011"}
  - {id: quang, name: Trần Văn Quang, email: quang@example.test}
  - {id: tam, name: Lê Minh Tâm, telegram_chat_id: "777"}
teams:
  - id: ioc
    name: Tổ trực IOC
    domain: "*"
    unit: "99"
    lead: quang
    shifts:
      - {days: daily, start: "00:00", end: "24:00", people: [linh]}
duty_manager:
  shifts:
    - {days: daily, start: "00:00", end: "24:00", people: [tam]}
escalation:
  - {level: 1, after_minutes: 0, page: [on_call]}
  - {level: 2, after_minutes: 10, page: [on_call, lead]}
  - {level: 3, after_minutes: 30, page: [duty_manager]}
"""

STATION = "th-991-hosp-1"
OTHER_STATION = "th-992-hosp-1"
CAMERA = "cam-991-001"
COMMUNE_STATION = "th-991-001"


class FakeDispatcher(Dispatcher):
    """Records what would have been sent."""

    def __init__(self) -> None:
        super().__init__([])
        self.calls: list[tuple[Page, list[Contact]]] = []

    async def deliver(self, page: Page, recipients: list[Contact]) -> list[Delivery]:
        self.calls.append((page, recipients))
        return [Delivery(channel="fake", recipient=c.name, result="ok") for c in recipients]


@dataclass
class World:
    settings: Settings
    topology: Topology
    pool: asyncpg.Pool
    dispatcher: FakeDispatcher
    ctx: OpsContext


@pytest.fixture
async def world(namespace: Settings) -> AsyncIterator[World]:
    topology = await bootstrap(namespace, "demo")
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=4)
    dispatcher = FakeDispatcher()
    alertmanager = AlertmanagerClient("http://127.0.0.1:9")  # not used by the escalator
    ctx = OpsContext(
        settings=namespace,
        topology=topology,
        pool=pool,
        alertmanager=alertmanager,
        dispatcher=dispatcher,
        roster=parse_roster(ROSTER, "roster.yaml"),
    )
    try:
        yield World(namespace, topology, pool, dispatcher, ctx)
    finally:
        await alertmanager.close()
        await pool.close()


async def open_incident(
    w: World,
    device: str,
    opened_at: dt.datetime,
    *,
    severity: str = "critical",
    status: str = "open",
) -> int:
    dev = w.topology.devices[device]
    incident_id: int = await w.pool.fetchval(
        f"""INSERT INTO {t.INCIDENTS} (kind, severity, status, title, root_device, device_class,
              unit_code, site_id, opened_at, affected)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id""",
        t.INCIDENT_DEVICE_DOWN,
        severity,
        status,
        f"{dev.device_class} {device} is down (test)",
        device,
        dev.device_class,
        w.topology.unit_of_device[device],
        dev.site,
        opened_at,
        [device],
    )
    return incident_id


async def escalate_commands(settings: Settings) -> list[ev.IncidentCommand]:
    """The ``escalate`` commands on the device-events topic, from its beginning."""
    return [
        e
        for e in await device_events(settings)
        if isinstance(e, ev.IncidentCommand) and e.action == "escalate"
    ]


async def test_an_ignored_critical_incident_escalates_once_per_level(world: World) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    incident = await open_incident(world, STATION, now - dt.timedelta(minutes=12))
    fresh = await open_incident(world, OTHER_STATION, now - dt.timedelta(minutes=5))
    escalator = Escalator(world.ctx)

    assert await escalator.check_once(now) == [(incident, 2)]
    ((page, people),) = world.dispatcher.calls
    assert [p.name for p in people] == ["Nguyễn Thị Linh", "Trần Văn Quang"]
    assert page.incident_id == incident and page.status == "firing"
    assert page.severity == "critical" and page.lang == "vi"
    assert page.title.startswith("Leo thang cấp 2: ")
    assert page.console_url is not None and page.console_url.endswith(
        f"/console/incidents/{incident}"
    )

    # repeated passes, a restarted service and a second instance: the level is paged once
    assert await escalator.check_once(now + dt.timedelta(seconds=5)) == []
    second = Escalator(world.ctx)
    assert await second.check_once(now + dt.timedelta(minutes=1)) == []
    assert len(world.dispatcher.calls) == 1

    rows = await world.pool.fetch("SELECT * FROM escalations ORDER BY incident_id, level")
    assert [(r["incident_id"], r["level"], list(r["targets"])) for r in rows] == [
        (incident, 2, ["Nguyễn Thị Linh", "Trần Văn Quang"])
    ]
    page_row = await world.pool.fetchrow("SELECT * FROM pages WHERE incident_id = $1", incident)
    assert page_row is not None
    assert page_row["fingerprint"] == f"escalation:{incident}:2"
    assert (page_row["status"], page_row["alertname"]) == ("firing", ALERTNAME)
    assert (page_row["severity"], page_row["domain"], page_row["device_id"]) == (
        "critical",
        "telehealth",
        STATION,
    )
    assert (page_row["unit"], page_row["site"]) == ("991", world.topology.devices[STATION].site)
    assert page_row["id"] == page.page_id
    assert "Trần Văn Quang" in page_row["deliveries"]

    # the fresh one reaches level 2 in its turn; the first goes on to level 3 (duty manager)
    # 20 minutes (30 - 10) after its level 2 was paged
    assert await escalator.check_once(now + dt.timedelta(minutes=19)) == [(fresh, 2)]
    later = now + dt.timedelta(minutes=20)
    assert await escalator.check_once(later) == [(incident, 3)]
    assert len(world.dispatcher.calls) == 3
    assert await escalator.check_once(later + dt.timedelta(minutes=5)) == []

    # the steps are on the incident stream, as commands from the escalator
    commands = await escalate_commands(world.settings)
    notes = sorted((c.incident_id, c.note) for c in commands)
    assert notes == sorted(
        [
            (incident, "level 2: Nguyễn Thị Linh, Trần Văn Quang"),
            (incident, "level 3: Lê Minh Tâm"),
            (fresh, "level 2: Nguyễn Thị Linh, Trần Văn Quang"),
        ]
    )
    assert {c.actor for c in commands} == {"escalation"}
    assert {c.root_device for c in commands if c.incident_id == incident} == {STATION}

    # ...which the incident agent writes on the timeline as an `escalated` step
    producer = AIOKafkaProducer(**aiokafka_common(world.settings), acks="all")
    await producer.start()
    try:
        topic = world.settings.topic(INCIDENT_EVENTS.name)

        async def send(key: bytes, value: bytes) -> Any:
            return await producer.send(topic, value, key=key)

        agent = IncidentAgent(world.topology, world.pool, send)
        state: dict[str, Any] | None = None
        for command in sorted(commands, key=lambda c: c.note):
            if command.incident_id == incident:
                state = await agent.apply(state, command)
    finally:
        await producer.stop()
    steps = await world.pool.fetch(
        "SELECT event, status, actor, note FROM incident_events WHERE incident_id = $1 "
        "ORDER BY seq",
        incident,
    )
    assert [tuple(s) for s in steps if s["event"] == "escalated"] == [
        ("escalated", "open", "escalation", "level 2: Nguyễn Thị Linh, Trần Văn Quang"),
        ("escalated", "open", "escalation", "level 3: Lê Minh Tâm"),
    ]
    assert (
        await world.pool.fetchval(f"SELECT status FROM {t.INCIDENTS} WHERE id = $1", incident)
        == "open"
    )


async def test_two_instances_at_once_page_a_level_once(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    incident = await open_incident(world, STATION, now - dt.timedelta(minutes=11))
    first, second = Escalator(world.ctx), Escalator(world.ctx)
    results = await asyncio.gather(first.check_once(now), second.check_once(now))
    assert sorted(results[0] + results[1]) == [(incident, 2)]
    assert len(world.dispatcher.calls) == 1


async def test_acknowledged_resolved_warning_and_maintenance_are_not_escalated(
    world: World,
) -> None:
    now = dt.datetime.now(dt.UTC)
    long_ago = now - dt.timedelta(hours=2)
    await open_incident(world, STATION, long_ago, status="acknowledged")
    await open_incident(world, OTHER_STATION, long_ago, status="resolved")
    await open_incident(world, CAMERA, long_ago, severity="warning")
    # a node under a maintenance window scoped to its site
    node = "nn-992"
    in_maintenance = await open_incident(world, node, long_ago)
    window = await world.pool.fetchval(
        """INSERT INTO maintenance_windows (scope_kind, scope, start_ts, end_ts, note)
           VALUES ('site', $1, $2, $3, 'thay UPS') RETURNING id""",
        world.topology.devices[node].site,
        now - dt.timedelta(hours=3),
        now + dt.timedelta(hours=1),
    )
    await world.pool.execute(
        "INSERT INTO maintenance_occurrences (window_id, start_ts, end_ts) VALUES ($1, $2, $3)",
        window,
        now - dt.timedelta(hours=3),
        now + dt.timedelta(hours=1),
    )
    escalator = Escalator(world.ctx)
    assert await escalator.check_once(now) == []
    assert world.dispatcher.calls == []
    assert await world.pool.fetchval("SELECT count(*) FROM escalations") == 0
    # when the window is over, the node's outage is counted from the window's end: not every
    # level at once, but level 2 ten minutes later, level 3 twenty minutes after that
    end = now + dt.timedelta(hours=1)
    assert await escalator.check_once(end + dt.timedelta(minutes=1)) == []
    assert await escalator.check_once(end + dt.timedelta(minutes=10)) == [(in_maintenance, 2)]
    assert await escalator.check_once(end + dt.timedelta(minutes=29)) == []
    assert await escalator.check_once(end + dt.timedelta(minutes=30)) == [(in_maintenance, 3)]
    # acknowledging between passes stops the next level
    fresh = await open_incident(world, COMMUNE_STATION, now - dt.timedelta(minutes=10))
    await world.pool.execute(
        f"UPDATE {t.INCIDENTS} SET status = 'acknowledged' WHERE id = $1", fresh
    )
    assert await escalator.check_once(now + dt.timedelta(minutes=40)) == []


async def test_after_a_long_pause_levels_still_go_up_one_at_a_time(world: World) -> None:
    """The escalator was down for an hour: the incident is paged to level 2 now and to level
    3 twenty minutes later, not to both in one pass."""
    now = dt.datetime.now(dt.UTC)
    incident = await open_incident(world, STATION, now - dt.timedelta(hours=1))
    escalator = Escalator(world.ctx)
    assert await escalator.check_once(now) == [(incident, 2)]
    assert await escalator.check_once(now + dt.timedelta(seconds=5)) == []
    assert await escalator.check_once(now + dt.timedelta(minutes=19)) == []
    assert await escalator.check_once(now + dt.timedelta(minutes=20)) == [(incident, 3)]
    assert [p.title[:17] for p, _ in world.dispatcher.calls] == [
        "Leo thang cấp 2: ",
        "Leo thang cấp 3: ",
    ]


class SlowDispatcher(FakeDispatcher):
    """A channel that takes its time, on a connection that drops meanwhile."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__()
        self.pool = pool
        self.claims_seen: list[int] = []
        self.active = self.most_active = 0

    async def deliver(self, page: Page, recipients: list[Contact]) -> list[Delivery]:
        # the claim is committed before anything goes out: another connection sees it
        self.claims_seen.append(
            await self.pool.fetchval(
                "SELECT count(*) FROM escalations WHERE incident_id = $1", page.incident_id
            )
        )
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        await asyncio.sleep(0.3)
        self.active -= 1
        return await super().deliver(page, recipients)


async def test_a_claim_is_committed_before_the_page_goes_out(world: World) -> None:
    """A slow delivery holds no transaction open (a dropped connection cannot roll a sent
    page's claim back and page it again), and the pages of one pass go out side by side."""
    now = dt.datetime.now(dt.UTC)
    first = await open_incident(world, STATION, now - dt.timedelta(minutes=11))
    second = await open_incident(world, OTHER_STATION, now - dt.timedelta(minutes=11))
    slow = SlowDispatcher(world.pool)
    escalator = Escalator(dataclasses.replace(world.ctx, dispatcher=slow))
    assert sorted(await escalator.check_once(now)) == sorted([(first, 2), (second, 2)])
    assert slow.most_active == 2  # side by side, not one after the other
    assert slow.claims_seen == [1, 1]
    rows = await world.pool.fetch(
        "SELECT incident_id, deliveries FROM pages WHERE alertname = $1 ORDER BY incident_id",
        ALERTNAME,
    )
    assert [r["incident_id"] for r in rows] == sorted([first, second])
    assert all("Trần Văn Quang" in r["deliveries"] for r in rows)


async def test_with_the_broker_away_the_page_goes_out_and_the_step_follows(
    world: World,
) -> None:
    now = dt.datetime.now(dt.UTC)
    incident = await open_incident(world, STATION, now - dt.timedelta(minutes=11))
    away = world.settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    escalator = Escalator(
        dataclasses.replace(world.ctx, settings=away)  # the same context, Kafka unreachable
    )
    assert await escalator.check_once(now) == [(incident, 2)]
    assert len(world.dispatcher.calls) == 1
    assert await escalate_commands(world.settings) == []
    # the broker is back: the waiting command goes out on the next pass, the page is not
    # sent again
    escalator.ctx = world.ctx
    assert await escalator.check_once(now + dt.timedelta(seconds=5)) == []
    assert len(world.dispatcher.calls) == 1
    (command,) = await escalate_commands(world.settings)
    assert (command.incident_id, command.note) == (
        incident,
        "level 2: Nguyễn Thị Linh, Trần Văn Quang",
    )


async def test_run_survives_a_database_that_is_away(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    dead = await open_pool(world.settings.database_dsn(), world.settings.db_schema, size=1)
    await dead.close()
    escalator = Escalator(dataclasses.replace(world.ctx, pool=dead), interval_s=0.01)
    task = asyncio.create_task(escalator.run())
    with caplog.at_level(logging.WARNING, logger="ioc.services.ops.escalation"):
        await asyncio.sleep(0.5)
        assert not task.done()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    failures = [r for r in caplog.records if "escalation pass failed" in r.getMessage()]
    assert len(failures) >= 2
