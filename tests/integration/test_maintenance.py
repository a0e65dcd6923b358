"""Maintenance windows and silences against the real database and Alertmanager.

Windows are created, listed and cancelled with their occurrences; the view
``maintenance_device_windows`` expands each scope kind to the right devices; the silencer
creates Alertmanager silences for acknowledged incidents and for occurrences, and expires them
when the incident resolves or the window is cancelled. Every silence a test creates carries its
schema in its comment (the tag) and is expired at the end, so tests never see each other's.
"""

from __future__ import annotations

import datetime as dt
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
from ioc.services.ops import silencer as silencer_module
from ioc.services.ops.alertmanager import AlertmanagerClient, Matcher
from ioc.services.ops.common import Conflict, Invalid, NotFound, OpsContext, Unavailable
from ioc.services.ops.maintenance import (
    WindowIn,
    cancel_window,
    create_window,
    in_maintenance,
    list_windows,
    unit_subtree,
)
from ioc.services.ops.oncall import Roster
from ioc.services.ops.silencer import Silencer, silence_incident_now, tag
from ioc.streams.writer import open_pool

CAMERA = "cam-991-001"
NODE = "nn-991"  # a network node with devices behind it


@dataclass
class World:
    settings: Settings
    topology: Topology
    pool: asyncpg.Pool
    am: AlertmanagerClient
    ctx: OpsContext

    async def silence(self, silence_id: str) -> dict[str, Any]:
        (found,) = [s for s in await self.am.silences() if s["id"] == silence_id]
        return found

    async def state(self, silence_id: str) -> str:
        return str((await self.silence(silence_id))["status"]["state"])


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


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def one_off(scope_kind: str, scope: str, start: dt.datetime, hours: float) -> WindowIn:
    return WindowIn.model_validate(
        {
            "scope_kind": scope_kind,
            "scope": scope,
            "starts_at": start,
            "ends_at": start + dt.timedelta(hours=hours),
            "note": "thay thiết bị",
        }
    )


async def occurrences(w: World, window_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await w.pool.fetch(
        "SELECT * FROM maintenance_occurrences WHERE window_id = $1 ORDER BY start_ts",
        window_id,
    )
    return rows


async def open_incident(w: World, device: str, kind: str, status: str) -> int:
    """An incident row as the agent writes it (only the agent does in production)."""
    dev = w.topology.devices[device]
    site = w.topology.sites[dev.site]
    incident_id = await w.pool.fetchval(
        f"""INSERT INTO {t.INCIDENTS} (kind, severity, status, title, root_device, device_class,
                  unit_code, site_id, opened_at, acknowledged_at, acknowledged_by, affected)
            VALUES ($1, 'critical', $2, $3, $4, $5, $6, $7, now(), now(), 'op-linh', $8)
            RETURNING id""",
        kind,
        status,
        f"{dev.device_class} {device} is down (test)",
        device,
        dev.device_class,
        site.unit,
        site.id,
        [device],
    )
    return int(incident_id)


async def live_incident_silences(w: World, incident_id: int) -> list[str]:
    rows = await w.pool.fetch(
        "SELECT silence_id FROM incident_silences WHERE incident_id = $1 AND expired_at IS NULL",
        incident_id,
    )
    return sorted(r["silence_id"] for r in rows)


def matchers(silence: dict[str, Any]) -> list[Matcher]:
    return [
        Matcher(m["name"], m["value"], m["isRegex"], m.get("isEqual", True))
        for m in silence["matchers"]
    ]


async def test_create_list_cancel_with_occurrences(world: World) -> None:
    w = world
    start = now() + dt.timedelta(hours=1)
    later = await create_window(w.ctx, one_off("device", CAMERA, start, 2), "op-linh")
    assert later.next_occurrences == [(start, start + dt.timedelta(hours=2))]
    assert [(o["start_ts"], o["end_ts"]) for o in await occurrences(w, later.id)] == [
        (start, start + dt.timedelta(hours=2))
    ]
    assert later.created_by == "op-linh" and later.note == "thay thiết bị"
    assert later.timezone == "Asia/Ho_Chi_Minh"

    nightly = await create_window(
        w.ctx,
        WindowIn(
            scope_kind="unit",
            scope="991",
            starts_at=now(),
            cron="0 2 * * *",
            duration_minutes=60,
        ),
        "op-linh",
    )
    assert nightly.ends_at is None and nightly.cron == "0 2 * * *"
    assert len(nightly.next_occurrences) == 5
    stored = await occurrences(w, nightly.id)
    assert 34 <= len(stored) <= 36  # up to the 35-day horizon
    for o in stored:
        local = o["start_ts"].astimezone(dt.timezone(dt.timedelta(hours=7)))
        assert (local.hour, local.minute) == (2, 0)
        assert o["end_ts"] - o["start_ts"] == dt.timedelta(hours=1)

    running = await create_window(
        w.ctx, one_off("site", "site-991-hosp", now() - dt.timedelta(minutes=10), 1), "op-linh"
    )
    listed = {x.id for x in await list_windows(w.ctx)}
    assert listed == {later.id, nightly.id, running.id}
    assert {x.id for x in await list_windows(w.ctx, active_at=now())} == {running.id}
    assert await in_maintenance(w.pool, "th-991-hosp-1", now())

    # bad input: refused with a reason, nothing written
    with pytest.raises(Invalid, match="no unit '9999'"):
        await create_window(w.ctx, one_off("unit", "9999", start, 1), "op-linh")
    with pytest.raises(Invalid, match="never fires"):
        await create_window(
            w.ctx,
            WindowIn(
                scope_kind="domain",
                scope="network",
                starts_at=start,
                cron="0 0 31 2 *",
                duration_minutes=30,
            ),
            "op-linh",
        )
    assert await w.pool.fetchval("SELECT count(*) FROM maintenance_windows") == 3

    # cancelling: a future one loses its occurrence, a running one ends now
    before, after = await cancel_window(w.ctx, later.id, "op-quang")
    assert before.cancelled_at is None and after.cancelled_by == "op-quang"
    assert after.next_occurrences == [] and await occurrences(w, later.id) == []
    _, stopped = await cancel_window(w.ctx, running.id, "op-quang")
    (o,) = await occurrences(w, running.id)
    assert stopped.cancelled_at is not None and o["end_ts"] == stopped.cancelled_at
    assert await in_maintenance(w.pool, "th-991-hosp-1", now() - dt.timedelta(minutes=5))
    assert not await in_maintenance(w.pool, "th-991-hosp-1", now() + dt.timedelta(seconds=1))
    with pytest.raises(Conflict, match="cancelled already"):
        await cancel_window(w.ctx, running.id, "op-quang")
    with pytest.raises(NotFound):
        await cancel_window(w.ctx, 999_999, "op-quang")
    assert {x.id for x in await list_windows(w.ctx)} == {nightly.id}
    assert len(await list_windows(w.ctx, include_cancelled=True)) == 3


async def test_the_view_covers_the_devices_of_each_scope_kind(world: World) -> None:
    """Each scope kind's devices, and every device behind one of them (the upstream chain
    passes through it: planned work on a node makes what is behind it unreachable)."""
    w = world
    topo = w.topology

    def and_behind(devices: set[str]) -> set[str]:
        return {d for d in topo.devices if d in devices or set(topo.upstream_chain(d)) & devices}

    behind_node = {d for d in topo.devices if NODE in topo.upstream_chain(d)}
    assert any(topo.devices[d].upstream != NODE for d in behind_node), "two hops or more"
    start = now() + dt.timedelta(hours=3)
    expected = {
        ("device", NODE): {NODE} | behind_node,
        ("site", "site-991-hosp"): {
            d.id for d in topo.devices.values() if d.site == "site-991-hosp"
        },
        ("unit", "991"): {
            d.id
            for d in topo.devices.values()
            if topo.unit_of_device[d.id] in unit_subtree(topo, "991")
        },
        ("domain", "network"): {d.id for d in topo.devices.values() if d.device_class == "netnode"},
        ("domain", "camera"): {d.id for d in topo.devices.values() if d.device_class == "camera"},
    }
    for i, ((kind, scope), scoped) in enumerate(expected.items()):
        devices = and_behind(scoped)
        assert devices, (kind, scope)
        at = start + dt.timedelta(hours=2 * i)
        win = await create_window(w.ctx, one_off(kind, scope, at, 1), "op-linh")
        rows = await w.pool.fetch(
            "SELECT device_id, start_ts, end_ts FROM maintenance_device_windows "
            "WHERE window_id = $1",
            win.id,
        )
        assert {r["device_id"] for r in rows} == devices, (kind, scope)
        assert {(r["start_ts"], r["end_ts"]) for r in rows} == {(at, at + dt.timedelta(hours=1))}
        inside = at + dt.timedelta(minutes=30)
        for device in topo.devices:
            assert await in_maintenance(w.pool, device, inside) == (device in devices)
        assert not await in_maintenance(w.pool, next(iter(devices)), at + dt.timedelta(hours=1))


async def test_silencer_silences_acknowledged_incidents_until_they_resolve(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    silencer = Silencer(w.ctx)
    acked = await open_incident(w, CAMERA, t.INCIDENT_DEVICE_DOWN, "acknowledged")
    opened = await open_incident(w, "cam-991-002", t.INCIDENT_DEVICE_DOWN, "open")
    await silencer.reconcile_once()
    (first,) = await live_incident_silences(w, acked)
    assert await live_incident_silences(w, opened) == []  # not acknowledged: pages go on
    silence = await w.silence(first)
    assert silence["status"]["state"] == "active"
    assert matchers(silence) == [Matcher("device_id", CAMERA)]
    assert tag(w.settings.db_schema, "incident", acked) in silence["comment"]
    assert silence["createdBy"] == "op-linh"

    # idempotent: another round, or the API's call, finds the work done
    await silencer.reconcile_once()
    assert await silence_incident_now(w.ctx, acked) == [first]
    assert await live_incident_silences(w, acked) == [first]

    # removed by hand in Alertmanager: the next round puts a new one in its place
    await w.am.expire_silence(first)
    await silencer.reconcile_once()
    (second,) = await live_incident_silences(w, acked)
    assert second != first and await w.state(second) == "active"

    # a site isolated: the node, the devices behind it, the node's own alerts
    isolated = await open_incident(w, NODE, t.INCIDENT_SITE_ISOLATED, "acknowledged")
    ids = await silence_incident_now(w.ctx, isolated)
    assert sorted(ids) == await live_incident_silences(w, isolated)
    assert sorted([str(matchers(await w.silence(s))[0]) for s in ids]) == [
        f'device_id="{NODE}"',
        f'node_id="{NODE}"',
        f'upstream_node="{NODE}"',
    ]

    # resolution ends the silences
    await w.pool.execute(
        "UPDATE incidents SET status = 'resolved', resolved_at = now() WHERE id = ANY($1)",
        [acked, isolated],
    )
    await silencer.reconcile_once()
    assert await live_incident_silences(w, acked) == []
    assert await live_incident_silences(w, isolated) == []
    for s in [second, *ids]:
        assert await w.state(s) == "expired"
    assert await silence_incident_now(w.ctx, acked) == []
    with pytest.raises(NotFound):
        await silence_incident_now(w.ctx, 999_999)

    # a silence of ours that no row holds (a crash between Alertmanager and the database)
    stray = await w.am.create_silence(
        [Matcher("device_id", CAMERA)],
        now(),
        now() + dt.timedelta(hours=1),
        "op-linh",
        f"left over {tag(w.settings.db_schema, 'incident', acked)}",
    )
    await silencer.reconcile_once()
    assert await w.state(stray) == "active"  # too young: its row may be on its way
    monkeypatch.setattr(silencer_module, "GRACE", dt.timedelta(0))
    await silencer.reconcile_once()
    assert await w.state(stray) == "expired"


async def test_silencer_silences_maintenance_on_time_and_cancel_ends_it(world: World) -> None:
    w = world
    silencer = Silencer(w.ctx)
    start = now() + dt.timedelta(minutes=30)
    ahead = await create_window(w.ctx, one_off("device", NODE, start, 1), "op-linh")
    running = await create_window(
        w.ctx, one_off("unit", "991", now() - dt.timedelta(minutes=1), 1), "op-quang"
    )
    far = await create_window(
        w.ctx, one_off("domain", "camera", now() + dt.timedelta(days=3), 1), "op-linh"
    )
    await silencer.reconcile_once()

    (o,) = await occurrences(w, ahead.id)
    assert len(o["silence_ids"]) == 3
    pending = [await w.silence(s) for s in o["silence_ids"]]
    assert sorted(str(matchers(s)[0]) for s in pending) == [
        f'device_id="{NODE}"',
        f'node_id="{NODE}"',
        'upstream_node=~"nn\\-991|nn\\-991\\-001|nn\\-991\\-002"',
    ]
    for s in pending:
        assert s["status"]["state"] == "pending"
        assert dt.datetime.fromisoformat(s["startsAt"]) == start
        assert dt.datetime.fromisoformat(s["endsAt"]) == start + dt.timedelta(hours=1)
        assert tag(w.settings.db_schema, "maintenance", ahead.id) in s["comment"]

    (r,) = await occurrences(w, running.id)
    (unit_silence,) = r["silence_ids"]
    active = await w.silence(unit_silence)
    assert active["status"]["state"] == "active"  # Alertmanager took the escaped regex
    assert matchers(active) == [Matcher("unit", r"991|991\-001|991\-002", isRegex=True)]
    assert (await occurrences(w, far.id))[0]["silence_ids"] == []  # more than a day ahead

    # another round changes nothing
    await silencer.reconcile_once()
    assert (await occurrences(w, ahead.id))[0]["silence_ids"] == o["silence_ids"]

    # cancelling expires them: pending ones never start, the running one stops now
    await cancel_window(w.ctx, ahead.id, "op-quang")
    await cancel_window(w.ctx, running.id, "op-quang")
    for s in [*o["silence_ids"], unit_silence]:
        assert await w.state(s) == "expired"
    await silencer.reconcile_once()
    assert await occurrences(w, ahead.id) == []


async def test_silencer_materialises_recurrences_and_survives_alertmanager_away(
    world: World,
) -> None:
    w = world
    nightly = await create_window(
        w.ctx,
        WindowIn(
            scope_kind="site",
            scope="site-991-hosp",
            starts_at=now(),
            cron="0 2 * * *",
            duration_minutes=30,
            ends_at=now() + dt.timedelta(days=60),
        ),
        "op-linh",
    )
    full = [o["start_ts"] for o in await occurrences(w, nightly.id)]
    await w.pool.execute(
        "DELETE FROM maintenance_occurrences WHERE window_id = $1 AND start_ts > $2",
        nightly.id,
        full[3],
    )
    away = OpsContext(
        settings=w.settings,
        topology=w.topology,
        pool=w.pool,
        alertmanager=AlertmanagerClient("http://127.0.0.1:9", timeout_s=1),
        dispatcher=cast(Dispatcher, None),
        roster=cast(Roster, None),
    )
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            await away.alertmanager.silences()
        await Silencer(away).reconcile_once()  # logged, not raised
    finally:
        await away.alertmanager.close()
    await Silencer(w.ctx).reconcile_once()
    assert [o["start_ts"] for o in await occurrences(w, nightly.id)] == full
    silenced = [o for o in await occurrences(w, nightly.id) if o["silence_ids"]]
    assert 1 <= len(silenced) <= 2  # the occurrences starting within a day
