"""The portal feed without a stack: its declaration (per-feed lateness and retention, the KPI
DDL), the working-hours silence rule, the simulator and its faults, the generator."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from typing import Any

import msgspec
import pytest

from ioc.contract import feeds, schemas
from ioc.contract import portal as p
from ioc.contract import tables as t
from ioc.contract import workhours as wh
from ioc.contract.feeds import Feed
from ioc.contract.history import Retention
from ioc.contract.thresholds import THRESHOLDS, overridden
from ioc.contract.topology import load_scenario
from ioc.db.feeds import feed_ddl
from ioc.simulators.engine import Simulator
from ioc.simulators.faults import FaultPlan, load_plan, resolve_targets
from ioc.simulators.province import materialise
from ioc.streams.portal_recompute import day_minutes, period_days
from ioc.streams.rollups import retention_days
from ioc.streams.state import QUIET, Facts, raw_state

DAY = 86_400_000
# Thursday 2026-11-26 10:00 Vietnam time
THU_10 = int(dt.datetime(2026, 11, 26, 10, tzinfo=dt.timezone(dt.timedelta(hours=7))).timestamp())
THU_10 *= 1000
HOUR = 3_600_000


def test_the_portal_is_a_builtin_feed_with_its_own_lateness_and_retention() -> None:
    spec = feeds.spec(Feed.PORTAL)
    assert spec.max_lateness_ms == 14 * DAY and spec.raw_retention_days == p.RAW_RETENTION_DAYS
    assert feeds.spec(Feed.CAMERA).max_lateness_ms == schemas.MAX_PAST_MS  # others unchanged
    days = dict(retention_days(Retention(7, 90, 90)))
    assert days["raw_portal"] == p.RAW_RETENTION_DAYS
    assert days["raw_camera"] == days["raw_netnode"] == 7
    assert days["rollup_portal_1m"] == days["unit_rollup_camera_1m"] == 90


def _dossier(ts_ms: int, feed_kind: str = "portal.dossier") -> bytes:
    return msgspec.json.encode(
        {
            "v": 1,
            "kind": feed_kind,
            "device_id": "portal-991",
            "seq": 1,
            "ts_ms": ts_ms,
            "dossier_id": "d1",
            "procedure": "1.004227",
            "dossier_event": "received",
            "channel": "online",
        }
    )


def test_validation_uses_the_feeds_lateness_limit() -> None:
    now = THU_10
    eight_days = schemas.decode(_dossier(now - 8 * DAY), feed=Feed.PORTAL, now_ms=now)
    assert isinstance(eight_days, p.PortalDossier)
    with pytest.raises(schemas.InvalidMessage) as exc:
        schemas.decode(_dossier(now - 15 * DAY), feed=Feed.PORTAL, now_ms=now)
    assert exc.value.reason == schemas.REASON_EVENT_TIME and "now-14d" in exc.value.detail
    camera = msgspec.json.encode(
        {"v": 1, "kind": "camera.heartbeat", "device_id": "cam-1", "seq": 1}
        | {"ts_ms": now - 8 * DAY, "status": "ok", "uptime_s": 5}
    )
    with pytest.raises(schemas.InvalidMessage, match="now-7d"):
        schemas.decode(camera, feed=Feed.CAMERA, now_ms=now)


def test_kpi_ddl_is_part_of_the_feeds_tables() -> None:
    ddl = "\n".join(feed_ddl(feeds.spec(Feed.PORTAL)))
    assert f"CREATE TABLE IF NOT EXISTS {p.KPI_DAILY}" in ddl
    assert f"CREATE OR REPLACE FUNCTION {p.KPI_REFRESH}" in ddl
    for view in p.KPI_VIEWS.values():
        assert f"CREATE OR REPLACE VIEW {view} AS" in ddl
    assert "AT TIME ZONE 'Asia/Ho_Chi_Minh'" in ddl
    assert feeds.spec(Feed.PORTAL).after_rollup == f"SELECT {p.KPI_REFRESH}($1::timestamptz[])"
    # every count of the daily table is a column of the rollups too
    columns = {a.name for a in feeds.spec(Feed.PORTAL).device_rollup}
    assert set(p.COUNTS) <= columns


def test_working_hours() -> None:
    spec = THRESHOLDS.portal_working_hours
    assert wh.is_working(THU_10, spec)
    assert not wh.is_working(THU_10 + 2 * HOUR, spec)  # 12:00, lunch
    assert not wh.is_working(THU_10 + 2 * DAY, spec)  # Saturday
    assert wh.working_ms(THU_10, THU_10 + HOUR, spec) == HOUR
    # Thursday 16:30 -> Friday 08:00: half an hour on Thursday, half an hour on Friday
    assert wh.working_ms(THU_10 + 6 * HOUR + HOUR // 2, THU_10 + DAY - 2 * HOUR, spec) == HOUR
    # Friday 17:00 -> Monday 07:30: nothing
    assert (
        wh.working_ms(THU_10 + DAY + 7 * HOUR, THU_10 + 3 * DAY + 21 * HOUR + HOUR // 2, spec) == 0
    )
    assert wh.working_ms(0, 7 * DAY, wh.ALWAYS) == 7 * DAY
    assert wh.parse("Sat-Mon 08:00-09:00")[0] == frozenset({5, 6, 0})
    for bad in ("weekdays", "Mon-Fri 17:00-08:00", "Mon-Fri 25:00-26:00"):
        with pytest.raises(wh.WorkingHoursError):
            wh.parse(bad)


def test_a_desk_is_down_only_after_silence_in_working_hours() -> None:
    th = THRESHOLDS
    silent = th.portal_silent_ms
    assert raw_state(Feed.PORTAL, None, THU_10, th)[0] == t.STATE_UNKNOWN
    last = Facts(last_ts=THU_10 - 5 * HOUR, seen_ms=THU_10)  # events hours late: fine
    assert raw_state(Feed.PORTAL, last, THU_10 + 5000, th) == (t.STATE_UP, "syncing")
    # quiet, not down: unreachable-upstream when its node is down (test_state.py)
    quiet = raw_state(Feed.PORTAL, last, THU_10 + silent - 1000, th)
    assert quiet[0] == t.STATE_UP and quiet[1].startswith(QUIET)
    state, reason = raw_state(Feed.PORTAL, last, THU_10 + silent + 60_000, th)
    assert state == t.STATE_DOWN and "LGSP sync silent" in reason
    # silent from Friday 16:50 to Monday 07:40: 20 minutes of working hours, not down
    friday = Facts(last_ts=THU_10, seen_ms=THU_10 + DAY + 6 * HOUR + 50 * 60_000)
    monday = THU_10 + 4 * DAY - 2 * HOUR - 20 * 60_000
    assert raw_state(Feed.PORTAL, friday, monday, th)[0] == t.STATE_UP
    always = dataclasses.replace(th, portal_working_hours="always")
    assert raw_state(Feed.PORTAL, friday, monday, always)[0] == t.STATE_DOWN


def test_thresholds_can_be_overridden_for_the_workers() -> None:
    assert overridden("") is THRESHOLDS
    th = overridden('{"portal_silent_ms": 20000, "portal_working_hours": "always"}')
    assert (th.portal_silent_ms, th.portal_working_hours) == (20_000, "always")
    with pytest.raises(ValueError, match="Thresholds"):
        overridden('{"no_such_field": 1}')


def test_periods_for_the_recompute_command() -> None:
    assert period_days("2026Q3") == (dt.date(2026, 7, 1), dt.date(2026, 9, 30))
    assert period_days("2026-q4") == (dt.date(2026, 10, 1), dt.date(2026, 12, 31))
    assert period_days("2026-02") == (dt.date(2026, 2, 1), dt.date(2026, 2, 28))
    assert period_days("2026-11-26") == (dt.date(2026, 11, 26),) * 2
    minutes = day_minutes(dt.date(2026, 7, 1), dt.date(2026, 9, 30))
    assert len(minutes) == 92 and minutes[0].hour == 12
    with pytest.raises(Exception, match="period"):
        period_days("last quarter")


def _run(flags: list[str], seconds: int = 1200) -> tuple[Simulator, list[Any]]:
    topo = load_scenario("demo")
    plan = resolve_targets(load_plan(None, flags), topo)
    sim = Simulator(topo, plan, seed=7, start_ms=THU_10)
    out = sim.advance(THU_10 + seconds * 1000) + sim.finish()
    msgs = [
        schemas.decode(o.value, feed=Feed.PORTAL) for o in out if o.feed == Feed.PORTAL and o.valid
    ]
    return sim, msgs


def test_the_simulator_speaks_lgsp_through_the_adapter() -> None:
    _sim, msgs = _run([])
    desks = {d.id for d in load_scenario("demo").devices_of(Feed.PORTAL)}
    assert {m.device_id for m in msgs} == desks
    for desk in desks:
        seqs = [m.seq for m in msgs if m.device_id == desk]
        assert seqs == list(range(1, len(seqs) + 1))
    kinds = Counter(m.kind for m in msgs)
    assert kinds["portal.dossier"] > 100 and kinds["portal.payment"] > 50
    assert all(THU_10 <= m.ts_ms < THU_10 + 1_200_000 for m in msgs)
    # LGSP's sync delay: a record is delivered after its event time, in the desk's order
    sim = Simulator(load_scenario("demo"), FaultPlan(), seed=7, start_ms=THU_10)
    delivered = 0
    for until in range(THU_10 + 1000, THU_10 + 300_000, 1000):
        for o in sim.advance(until):
            if o.feed == Feed.PORTAL:
                delivered += 1
                assert schemas.decode(o.value).ts_ms <= until - 1000  # at least 1 s late
    assert delivered > 10


def test_portal_faults() -> None:
    _, msgs = _run(
        [
            "payment_gateway_failure:portal-992@0+1200",
            "unit_backlog:portal-991-002@0+1200",
            "lgsp_outage:portal-991@10+60",
        ]
    )
    paid = Counter(
        m.payment_event
        for m in msgs
        if isinstance(m, p.PortalPayment) and m.device_id == "portal-992"
    )
    assert paid["failed"] > 0 and paid["succeeded"] == 0
    behind = [m for m in msgs if isinstance(m, p.PortalDossier) and m.device_id == "portal-991-002"]
    assert any(m.dossier_event == "overdue" for m in behind)
    resolved = [m.on_time for m in behind if m.dossier_event == "resolved"]
    assert resolved and sum(bool(x) for x in resolved) < len(resolved)
    # the outage holds the desk's records and delivers them in one batch at its end
    topo = load_scenario("demo")
    plan = resolve_targets(load_plan(None, ["lgsp_outage:portal-991@120+600"]), topo)
    sim = Simulator(topo, plan, seed=7, start_ms=THU_10)
    before = [o for o in sim.advance(THU_10 + 130_000) if o.device_id == "portal-991"]
    during = [o for o in sim.advance(THU_10 + 719_000) if o.device_id == "portal-991"]
    after = [o for o in sim.advance(THU_10 + 721_000) if o.device_id == "portal-991"]
    assert [o for o in before if o.feed == Feed.PORTAL]
    assert not [o for o in during if o.feed == Feed.PORTAL]
    assert len([o for o in after if o.feed == Feed.PORTAL]) >= 10  # the catch-up batch


def test_portal_fault_targets_must_be_desks() -> None:
    topo = load_scenario("demo")
    with pytest.raises(Exception, match="needs a portal"):
        resolve_targets(load_plan(None, ["unit_backlog:nn-991@0+10"]), topo)


def test_the_generator_places_a_desk_per_unit_office_and_department() -> None:
    topo = load_scenario("yen-bai-2022")
    desks = topo.devices_of(Feed.PORTAL)
    assert len(desks) == 9 + 173 + 20
    assert all(d.upstream and topo.devices[d.upstream].site == d.site for d in desks)
    two_tier = load_scenario("two-tier-2025")
    assert {
        two_tier.units[two_tier.unit_of_device[d.id]].level_name
        for d in two_tier.devices_of(Feed.PORTAL)
    } == {"province", "commune"}
    # the portal's own RNG: generating with or without it leaves the other devices alone
    assert "portal-991" in materialise("demo")
