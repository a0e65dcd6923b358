"""Silences of an acknowledged incident follow its correlated members, against the real
database and Alertmanager.

The SOC feed correlates devices into one incident (``affected`` grows, ``details.correlated``
says why): a sensor joins its node's ``degraded`` incident, a node joins its sensor's
``security-alert`` incident. The members' alerts are silenced with the incident, also when
they join (or leave) after the acknowledgement: the silencer's next round replaces the
incident's silences, the new ones created before the old ones are expired. Every silence
carries the test's schema in its comment and is expired at the end.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import pytest

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import tables as t
from ioc.contract.topology import Topology
from ioc.services.channels import Dispatcher
from ioc.services.ops.alertmanager import AlertmanagerClient, Matcher, silence_matchers
from ioc.services.ops.common import OpsContext
from ioc.services.ops.oncall import Roster
from ioc.services.ops.silencer import Silencer, silence_incident_now, tag
from ioc.streams.writer import open_pool

NODE = "nn-991-001"  # a commune node
SENSOR = "soc-991-001"  # the SOC sensor of its site, behind it
NODE2 = "nn-992-001"
SENSOR2 = "soc-992-001"


@dataclass
class World:
    settings: Settings
    topology: Topology
    pool: asyncpg.Pool
    am: AlertmanagerClient
    ctx: OpsContext

    async def listed(self) -> dict[str, dict[str, Any]]:
        return {str(s["id"]): s for s in await self.am.silences()}


@pytest.fixture
async def world(namespace: Settings) -> AsyncIterator[World]:
    topology = await bootstrap(namespace, "demo")
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=4)
    am = AlertmanagerClient(namespace.alertmanager_url)
    ctx = OpsContext(
        settings=namespace,
        topology=topology,
        pool=pool,
        alertmanager=am,
        dispatcher=cast(Dispatcher, None),
        roster=cast(Roster, None),
    )
    try:
        yield World(namespace, topology, pool, am, ctx)
    finally:
        mark = f"[ioc:{namespace.db_schema}:"
        for s in await am.silences():
            if mark in str(s.get("comment")) and s["status"]["state"] != "expired":
                await am.expire_silence(s["id"])
        await am.close()
        await pool.close()


async def open_incident(w: World, device: str, kind: str) -> int:
    """An acknowledged incident row as the agent writes it (only the agent does)."""
    dev = w.topology.devices[device]
    site = w.topology.sites[dev.site]
    incident_id = await w.pool.fetchval(
        f"""INSERT INTO {t.INCIDENTS} (kind, severity, status, title, root_device, device_class,
                  unit_code, site_id, opened_at, acknowledged_at, acknowledged_by, affected)
            VALUES ($1, 'critical', 'acknowledged', $2, $3, $4, $5, $6, now(), now(),
                    'op-linh', $7)
            RETURNING id""",
        kind,
        f"{dev.device_class} {device} ({kind}, test)",
        device,
        dev.device_class,
        site.unit,
        site.id,
        [device],
    )
    return int(incident_id)


async def join(w: World, incident_id: int, member: str) -> None:
    """What the agent's Correlator does when a device joins an incident."""
    await w.pool.execute(
        f"""UPDATE {t.INCIDENTS} SET
              affected = ARRAY(SELECT DISTINCT x FROM unnest(affected || $2::text[]) x
                               ORDER BY x),
              details = jsonb_set(details, '{{correlated}}',
                  coalesce(details->'correlated', '[]'::jsonb) || $3::jsonb)
            WHERE id = $1""",
        incident_id,
        [member],
        json.dumps([{"device": member, "reason": "critical-ddos", "at_ms": 0}]),
    )


async def leave(w: World, incident_id: int, member: str) -> None:
    await w.pool.execute(
        f"UPDATE {t.INCIDENTS} SET affected = array_remove(affected, $2) WHERE id = $1",
        incident_id,
        member,
    )


async def live_rows(w: World, incident_id: int) -> list[str]:
    rows = await w.pool.fetch(
        "SELECT silence_id FROM incident_silences WHERE incident_id = $1 AND expired_at IS NULL",
        incident_id,
    )
    return sorted(r["silence_id"] for r in rows)


async def covered(w: World, incident_id: int) -> set[frozenset[Matcher]]:
    """The matcher sets of the incident's live silences, as Alertmanager holds them; each
    row's silence is live there and ours."""
    listed = await w.listed()
    ids = await live_rows(w, incident_id)
    for sid in ids:
        assert listed[sid]["status"]["state"] == "active", sid
        assert tag(w.settings.db_schema, "incident", incident_id) in listed[sid]["comment"]
    return {silence_matchers(listed[sid]) for sid in ids}


def sets(*matchers: Matcher) -> set[frozenset[Matcher]]:
    return {frozenset({m}) for m in matchers}


def when(silence: dict[str, Any], field: str) -> dt.datetime:
    return dt.datetime.fromisoformat(str(silence[field]))


async def test_a_member_joining_after_the_acknowledgement_is_silenced(world: World) -> None:
    w = world
    silencer = Silencer(w.ctx)
    link = await open_incident(w, NODE, t.INCIDENT_DEGRADED)
    first = sorted(await silence_incident_now(w.ctx, link))  # the API, on acknowledgement
    assert first == await live_rows(w, link)
    assert await covered(w, link) == sets(Matcher("device_id", NODE), Matcher("node_id", NODE))

    # nothing changed: a round keeps them
    await silencer.reconcile_once()
    assert await live_rows(w, link) == first

    # the site's SOC sensor joins the acknowledged incident: the next round covers it
    await join(w, link, SENSOR)
    await silencer.reconcile_once()
    second = await live_rows(w, link)
    assert second and not set(second) & set(first)
    assert await covered(w, link) == sets(
        Matcher("device_id", NODE), Matcher("node_id", NODE), Matcher("device_id", SENSOR)
    )
    listed = await w.listed()
    for sid in first:  # replaced: expired in Alertmanager, the rows closed
        assert listed[sid]["status"]["state"] == "expired", sid
    expired_rows = await w.pool.fetch(
        "SELECT silence_id, expired_at FROM incident_silences WHERE incident_id = $1 "
        "AND silence_id = ANY($2::text[])",
        link,
        first,
    )
    assert len(expired_rows) == len(first) and all(r["expired_at"] for r in expired_rows)
    # the new ones existed before the old ones ended: no moment without a silence
    assert max(when(listed[s], "startsAt") for s in second) <= min(
        when(listed[s], "endsAt") for s in first
    )

    # stable: the next round and the API's call keep them
    await silencer.reconcile_once()
    assert await live_rows(w, link) == second
    assert sorted(await silence_incident_now(w.ctx, link)) == second

    # the member leaves: its silence goes, the root's stay silenced throughout
    await leave(w, link, SENSOR)
    await silencer.reconcile_once()
    third = await live_rows(w, link)
    assert third and not set(third) & set(second)
    assert await covered(w, link) == sets(Matcher("device_id", NODE), Matcher("node_id", NODE))
    listed = await w.listed()
    assert all(listed[s]["status"]["state"] == "expired" for s in second)

    # resolution still ends them all
    await w.pool.execute(
        "UPDATE incidents SET status = 'resolved', resolved_at = now() WHERE id = $1", link
    )
    await silencer.reconcile_once()
    assert await live_rows(w, link) == []
    listed = await w.listed()
    assert all(listed[s]["status"]["state"] == "expired" for s in third)


async def test_a_node_joining_a_security_alert_is_silenced_by_node_and_device(
    world: World,
) -> None:
    w = world
    silencer = Silencer(w.ctx)
    attack = await open_incident(w, SENSOR2, t.INCIDENT_SECURITY)
    await silencer.reconcile_once()  # the silencer alone (Alertmanager was away at ack time)
    assert await covered(w, attack) == sets(Matcher("device_id", SENSOR2))
    before = await live_rows(w, attack)

    await join(w, attack, NODE2)
    await silencer.reconcile_once()
    assert await covered(w, attack) == sets(
        Matcher("device_id", SENSOR2), Matcher("device_id", NODE2), Matcher("node_id", NODE2)
    )
    listed = await w.listed()
    assert all(listed[s]["status"]["state"] == "expired" for s in before)

    # a site-isolated incident's affected devices add nothing: upstream_node covers them
    isolated = await open_incident(w, NODE, t.INCIDENT_SITE_ISOLATED)
    await join(w, isolated, SENSOR)
    await silencer.reconcile_once()
    assert await covered(w, isolated) == sets(
        Matcher("node_id", NODE), Matcher("upstream_node", NODE), Matcher("device_id", NODE)
    )
    held = await live_rows(w, isolated)
    await silencer.reconcile_once()
    assert await live_rows(w, isolated) == held
