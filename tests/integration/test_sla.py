"""SLA reports against an independent computation from the same state intervals, and the
Grafana SLA dashboard's query giving the same figure as the report for the same range."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract.feeds import domain_of
from ioc.contract.topology import Topology
from ioc.dashboards.build import GENERATED
from ioc.db import connect, create_pool
from ioc.deploy.local.stack import Stack
from ioc.services.ops.common import VN_TZ, Conflict, Invalid, NotFound, OpsContext
from ioc.services.ops.sla import (
    ExcludedDowntime,
    ScheduleRange,
    SlaObjectIn,
    UpstreamAs,
    create_sla,
    delete_sla,
    get_sla,
    list_slas,
    parse_period,
    render_csv,
    render_html,
    render_pdf,
    sla_report,
)
from tests.support.dashboards import expand_sql, resolve_variables

PERIOD = "2026-10"
UNIT = "991"
T0, T1 = parse_period(PERIOD)
Span = tuple[dt.datetime, dt.datetime]


# --- an independent computation, written plainly --------------------------------------------


def merge(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s, e in sorted(x for x in spans if x[1] > x[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def intersect(a: list[Span], b: list[Span]) -> list[Span]:
    return merge([(max(s1, s2), min(e1, e2)) for s1, e1 in a for s2, e2 in b])


def seconds(spans: list[Span]) -> float:
    return sum((e - s).total_seconds() for s, e in merge(spans))


def in_subtree(topo: Topology, unit: str, device_id: str) -> bool:
    return unit in topo.ancestors(topo.unit_of_device[device_id])


def maintenance_of(topo: Topology, windows: list[dict[str, Any]], device_id: str) -> list[Span]:
    """A window covers the devices of its scope and every device behind one of them."""
    spans: list[Span] = []
    for w in windows:
        kind, scope = w["scope_kind"], w["scope"]
        applies = any(
            (kind == "device" and scope == d)
            or (kind == "site" and scope == topo.devices[d].site)
            or (kind == "domain" and scope == domain_of(topo.devices[d].device_class))
            or (kind == "unit" and in_subtree(topo, scope, d))
            for d in [device_id, *topo.upstream_chain(device_id)]
        )
        if applies:
            for s, e in w["occurrences"]:
                if w["cancelled_at"] is not None:
                    e = min(e, w["cancelled_at"])
                spans.append((s, e))
    return merge(spans)


def expected(
    topo: Topology,
    intervals: list[tuple[str, str, dt.datetime, dt.datetime | None]],
    windows: list[dict[str, Any]],
    unit: str,
    upstream_as: str,
    counted: list[Span] | None = None,
    device_class: str | None = None,
) -> dict[str, float]:
    """Measured and unavailable device-seconds of the unit's subtree over the period."""
    counted = counted if counted is not None else [(T0, T1)]
    bad = {"down", "flapping"} | ({"unreachable-upstream"} if upstream_as == "device" else set())
    measured = unavailable = 0.0
    for device_id, state, start, end in intervals:
        if state == "unknown" or not in_subtree(topo, unit, device_id):
            continue
        if device_class and topo.devices[device_id].device_class != device_class:
            continue
        inside = intersect([(start, end or T1)], counted)
        maint = intersect(inside, maintenance_of(topo, windows, device_id))
        secs = seconds(inside) - seconds(maint)
        measured += secs
        if state in bad:
            unavailable += secs
    return {"measured": measured, "unavailable": unavailable}


def pct(figures: dict[str, float]) -> float:
    return 100.0 * (1.0 - figures["unavailable"] / figures["measured"])


# --- fixtures -------------------------------------------------------------------------------


def random_intervals(
    topo: Topology, seed: int
) -> list[tuple[str, str, dt.datetime, dt.datetime | None]]:
    """Contiguous intervals per device from before the period to past it (some left open)."""
    rnd = random.Random(seed)
    states = ["up"] * 6 + [
        "degraded",
        "down",
        "down",
        "flapping",
        "unreachable-upstream",
        "unknown",
    ]
    out: list[tuple[str, str, dt.datetime, dt.datetime | None]] = []
    for device_id in sorted(topo.devices):
        t = T0 - dt.timedelta(hours=rnd.uniform(1, 30))
        while t < T1 + dt.timedelta(hours=5):
            state = rnd.choice(states)
            length = dt.timedelta(minutes=rnd.uniform(5, 60 if state != "up" else 3000))
            end: dt.datetime | None = t + length
            if end is not None and end > T1 and rnd.random() < 0.3:
                end = None  # still in this state now
            out.append((device_id, state, t, end))
            if end is None:
                break
            t = end
    return out


def vn(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 10, day, hour, minute, tzinfo=VN_TZ)


WINDOWS: list[dict[str, Any]] = [
    # overlapping windows on one device: subtracted once
    {"scope_kind": "device", "scope": "cam-991-001", "cancelled_at": None,
     "occurrences": [(vn(3, 1), vn(3, 9)), (vn(10, 1), vn(10, 5))]},
    {"scope_kind": "site", "scope": "site-991-cam001", "cancelled_at": None,
     "occurrences": [(vn(3, 6), vn(3, 14))]},
    # a commune, every Sunday night (a recurring window's occurrences)
    {"scope_kind": "unit", "scope": "991-002", "cancelled_at": None,
     "occurrences": [(vn(d, 1), vn(d, 4)) for d in (4, 11, 18, 25)]},
    # the network domain, cancelled half-way through its second occurrence
    {"scope_kind": "domain", "scope": "network", "cancelled_at": vn(20, 2),
     "occurrences": [(vn(13, 0), vn(13, 6)), (vn(20, 0), vn(20, 6)), (vn(27, 0), vn(27, 6))]},
    # starts before the period
    {"scope_kind": "unit", "scope": "991", "cancelled_at": None,
     "occurrences": [(T0 - dt.timedelta(hours=3), T0 + dt.timedelta(hours=2))]},
]  # fmt: skip


async def seed(settings: Settings, intervals: list[Any]) -> None:
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        await conn.executemany(
            "INSERT INTO device_state_intervals (device_id, state, start_ts, end_ts) "
            "VALUES ($1, $2, $3, $4)",
            intervals,
        )
        for w in WINDOWS:
            occ = w["occurrences"]
            wid = await conn.fetchval(
                "INSERT INTO maintenance_windows (scope_kind, scope, start_ts, end_ts, note, "
                "cancelled_at, cancelled_by) VALUES ($1, $2, $3, $4, 'bảo trì định kỳ', $5, $6) "
                "RETURNING id",
                w["scope_kind"],
                w["scope"],
                occ[0][0],
                occ[-1][1],
                w["cancelled_at"],
                "test" if w["cancelled_at"] else None,
            )
            await conn.executemany(
                "INSERT INTO maintenance_occurrences (window_id, start_ts, end_ts) "
                "VALUES ($1, $2, $3)",
                [(wid, s, e) for s, e in occ],
            )
    finally:
        await conn.close()


@pytest.fixture
async def ops(namespace: Settings) -> AsyncIterator[tuple[OpsContext, list[Any]]]:
    topology = await bootstrap(namespace, "demo")
    intervals = random_intervals(topology, seed=14)
    await seed(namespace, intervals)
    pool = await create_pool(
        namespace.database_dsn(),
        server_settings={"search_path": f"{namespace.db_schema},public"},
    )
    ctx = OpsContext(
        settings=namespace,
        topology=topology,
        pool=pool,
        alertmanager=cast(Any, None),
        dispatcher=cast(Any, None),
        roster=cast(Any, None),
    )
    try:
        yield ctx, intervals
    finally:
        await pool.close()


async def dashboard_figure(
    settings: Settings, panel_title: str, unit: str, sla_id: int, t0: dt.datetime, t1: dt.datetime
) -> Any:
    """A panel's query as Grafana runs it, as Grafana's read-only role."""
    dash = json.loads((GENERATED / "ioc-sla.json").read_text())
    (panel,) = [p for p in dash["panels"] if p["title"] == panel_title]
    sql = expand_sql(panel["targets"][0]["rawSql"], t0, t1, {"unit": unit, "sla": str(sla_id)})
    conn = await connect(Stack(settings).timescaledb.connection_info()["grafana_dsn"])
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        return await conn.fetchval(sql)
    finally:
        await conn.close()


# --- tests ----------------------------------------------------------------------------------


async def test_report_equals_an_independent_computation(
    ops: tuple[OpsContext, list[Any]],
) -> None:
    ctx, intervals = ops
    topo = ctx.topology
    modes: list[UpstreamAs] = ["upstream", "device"]
    for upstream_as in modes:
        report = await sla_report(ctx, UNIT, PERIOD, upstream_as=upstream_as)
        want = expected(topo, intervals, WINDOWS, UNIT, upstream_as)
        assert report.overall.measured_s == pytest.approx(want["measured"], rel=1e-9)
        assert report.overall.unavailable_s == pytest.approx(want["unavailable"], rel=1e-9)
        assert report.overall.availability_pct is not None
        assert abs(report.overall.availability_pct - pct(want)) < 0.0001
        assert report.sla is None and report.slo_met is None
        # each unit directly below, and the district's own devices
        by_key = {u.key: u for u in report.units}
        assert set(by_key) == {"991-001", "991-002", "991"}
        for child in ("991-001", "991-002"):
            got = by_key[child].availability_pct
            assert got is not None
            assert abs(got - pct(expected(topo, intervals, WINDOWS, child, upstream_as))) < 1e-4
        assert sum(u.devices for u in report.units) == report.overall.devices
        for cls in report.classes:
            want_cls = expected(topo, intervals, WINDOWS, UNIT, upstream_as, device_class=cls.key)
            assert cls.availability_pct is not None
            assert abs(cls.availability_pct - pct(want_cls)) < 1e-4
    # unreachable-upstream against the device can only lower availability
    up = await sla_report(ctx, UNIT, PERIOD, upstream_as="upstream")
    dev = await sla_report(ctx, UNIT, PERIOD, upstream_as="device")
    assert up.overall.upstream_s > 0
    assert dev.overall.unavailable_s == pytest.approx(
        up.overall.unavailable_s + up.overall.upstream_s
    )


async def test_overlapping_maintenance_is_subtracted_once(
    ops: tuple[OpsContext, list[Any]],
) -> None:
    ctx, _ = ops
    conn = await ctx.pool.acquire()
    try:
        row = await conn.fetchrow(
            "SELECT multirange_seconds(m) AS s FROM device_maintenance($1, $2) "
            "WHERE device_id = 'cam-991-001'",
            T0,
            T1,
        )
    finally:
        await ctx.pool.release(conn)
    assert row is not None
    # windows: 3rd 01-09 and 06-14 (one span of 13 h), 10th 01-05 (4 h), the district's first
    # 2 h of the month, and the network domain's (the camera is behind network nodes): 13th
    # 00-06, 20th 00-02 (cancelled then: the 27th's never came)
    assert row["s"] == pytest.approx((13 + 4 + 2 + 6 + 2) * 3600)


async def test_maintenance_on_a_node_covers_the_devices_behind_it(
    ops: tuple[OpsContext, list[Any]],
) -> None:
    """Planned work on a network node two hops up: the camera behind it is unreachable during
    the work, which is not down time even when unreachable-upstream counts against it."""
    ctx, _ = ops
    camera, node = "cam-991-001", "nn-991"
    assert ctx.topology.upstream_chain(camera)[1] == node
    day = T1 + dt.timedelta(days=7)  # after the seeded month, in the past
    hour = dt.timedelta(hours=1)
    conn = await connect(ctx.settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {ctx.settings.db_schema}, public")
        await conn.execute(
            "DELETE FROM device_state_intervals WHERE device_id = $1 "
            "AND (end_ts IS NULL OR end_ts > $2)",
            camera,
            day,
        )
        await conn.executemany(
            "INSERT INTO device_state_intervals (device_id, state, start_ts, end_ts) "
            "VALUES ($1, $2, $3, $4)",
            [
                (camera, "unreachable-upstream", day, day + 6 * hour),
                (camera, "up", day + 6 * hour, day + 24 * hour),
            ],
        )
        wid = await conn.fetchval(
            "INSERT INTO maintenance_windows (scope_kind, scope, start_ts, end_ts) "
            "VALUES ('device', $1, $2, $3) RETURNING id",
            node,
            day,
            day + 4 * hour,
        )
        await conn.execute(
            "INSERT INTO maintenance_occurrences (window_id, start_ts, end_ts) VALUES ($1, $2, $3)",
            wid,
            day,
            day + 4 * hour,
        )
    finally:
        await conn.close()
    row = await ctx.pool.fetchrow(
        "SELECT * FROM device_availability($1, $2, 'device') WHERE device_id = $3",
        day,
        day + 24 * hour,
        camera,
    )
    assert row is not None
    assert (row["measured_s"], row["unavailable_s"], row["maintenance_s"]) == (
        20 * 3600,
        2 * 3600,
        4 * 3600,
    )


async def test_outages_worst_devices_and_maintenance(ops: tuple[OpsContext, list[Any]]) -> None:
    ctx, intervals = ops
    report = await sla_report(ctx, UNIT, PERIOD)
    assert report.outages, "the seeded intervals have down time"
    minutes = [o.minutes for o in report.outages]
    assert minutes == sorted(minutes, reverse=True)
    for o in report.outages:
        assert o.state in ("down", "flapping")
        assert T0 <= o.start < o.end <= T1
        assert o.in_maintenance == (o.maintenance_minutes > 0)
        assert ctx.topology.unit_of_device[o.device_id] == o.unit_code
    want = sum(
        1
        for d, s, a, b in intervals
        if s in ("down", "flapping")
        and a < T1
        and (b is None or b > T0)
        and in_subtree(ctx.topology, UNIT, d)
    )
    assert report.outages_total == want
    assert len(report.worst) <= 20
    worst = [d.availability_pct for d in report.worst]
    assert worst == sorted(worst, key=lambda v: v or 0.0)
    # every seeded window covers a device of the district
    scopes = {m.scope for m in report.maintenance}
    assert scopes == {"cam-991-001", "site-991-cam001", "991-002", "network", "991"}


async def test_a_device_down_all_month_heads_the_worst_list(
    ops: tuple[OpsContext, list[Any]],
) -> None:
    """0 % is the worst availability there is: it once sorted as 100 % (``pct or 100.0``)."""
    ctx, _ = ops
    device = next(
        d
        for d in sorted(ctx.topology.devices)
        if in_subtree(ctx.topology, UNIT, d) and ctx.topology.devices[d].device_class == "camera"
    )
    conn = await connect(ctx.settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {ctx.settings.db_schema}, public")
        await conn.execute("DELETE FROM device_state_intervals WHERE device_id = $1", device)
        await conn.execute(
            "INSERT INTO device_state_intervals (device_id, state, start_ts, end_ts) "
            "VALUES ($1, 'down', $2, NULL)",
            device,
            T0 - dt.timedelta(days=1),
        )
    finally:
        await conn.close()
    report = await sla_report(ctx, UNIT, PERIOD)
    first = report.worst[0]
    assert (first.key, first.availability_pct) == (device, 0.0), report.worst[:3]


async def test_sla_object_schedule_and_excluded_downtime(
    ops: tuple[OpsContext, list[Any]],
) -> None:
    ctx, intervals = ops
    obj = SlaObjectIn(
        name="Camera giờ hành chính",
        slo_pct=99.5,
        scope_kind="device_class",
        scope="camera",
        period="month",
        schedule=[
            ScheduleRange(days=[1, 2, 3, 4, 5], start="08:00", end="17:30"),
            ScheduleRange(days=[6], start="20:00", end="24:00"),
        ],
        excluded=[ExcludedDowntime(start=vn(15, 0), end=vn(16, 12), reason="bão")],
        upstream_as="device",
    )
    sla = await create_sla(ctx, obj, actor="tester")
    assert sla.id and sla.created_by == "tester"
    assert await get_sla(ctx, sla.id) == sla
    assert [s.name for s in await list_slas(ctx)] == [obj.name]
    with pytest.raises(Conflict):
        await create_sla(ctx, obj, actor="tester")
    with pytest.raises(NotFound, match="no unit 'nowhere'"):
        nowhere = obj.model_copy(update={"scope_kind": "unit", "scope": "nowhere", "name": "x"})
        await create_sla(ctx, nowhere, actor="t")

    counted: list[Span] = []
    day = T0.astimezone(VN_TZ).date()
    while day < T1.astimezone(VN_TZ).date():
        base = dt.datetime.combine(day, dt.time(), VN_TZ)
        if day.isoweekday() <= 5:
            counted.append((base + dt.timedelta(hours=8), base + dt.timedelta(hours=17.5)))
        if day.isoweekday() == 6:
            counted.append((base + dt.timedelta(hours=20), base + dt.timedelta(hours=24)))
        day += dt.timedelta(days=1)
    excluded = [(vn(15, 0), vn(16, 12))]
    counted = [
        piece
        for s, e in counted
        for piece in ([(s, e)] if not intersect([(s, e)], excluded) else
                      [(s, min(e, excluded[0][0])), (max(s, excluded[0][1]), e)])
        if piece[1] > piece[0]
    ]  # fmt: skip
    want = expected(
        ctx.topology, intervals, WINDOWS, UNIT, "device", counted=counted, device_class="camera"
    )
    report = await sla_report(ctx, UNIT, PERIOD, sla_id=sla.id)
    assert report.sla == sla and report.upstream_as == "device"
    assert {c.key for c in report.classes} == {"camera"}
    assert report.overall.measured_s == pytest.approx(want["measured"], rel=1e-9)
    assert report.overall.availability_pct is not None
    assert abs(report.overall.availability_pct - pct(want)) < 0.0001
    assert report.slo_met == (pct(want) >= 99.5)

    figure = await dashboard_figure(
        ctx.settings, "Availability of the unit (all its devices)", UNIT, sla.id, T0, T1
    )
    assert abs(float(figure) - report.overall.availability_pct) < 0.0001

    assert await delete_sla(ctx, sla.id, actor="tester") == sla
    with pytest.raises(NotFound):
        await get_sla(ctx, sla.id)


async def test_an_sla_object_applies_only_when_asked_for(
    ops: tuple[OpsContext, list[Any]],
) -> None:
    """The unit's SLA object is not applied behind the caller's back (the dashboard's
    default is no SLA object), and an explicit ``upstream_as`` is never overridden."""
    ctx, _ = ops
    conn = await connect(ctx.settings.admin_dsn())
    try:
        sla_id = await conn.fetchval(
            f"""INSERT INTO {ctx.settings.db_schema}.sla_objects (name, slo_pct, scope_kind,
                  scope, period, upstream_as, created_by)
                VALUES ('Huyện 991', 99.9, 'unit', $1, 'month', 'device', 'test') RETURNING id""",
            UNIT,
        )
    finally:
        await conn.close()
    plain = await sla_report(ctx, UNIT, PERIOD)
    assert plain.sla is None and plain.slo_pct is None and plain.upstream_as == "upstream"
    figure = await dashboard_figure(
        ctx.settings, "Availability of the unit (all its devices)", UNIT, 0, T0, T1
    )
    assert plain.overall.availability_pct is not None
    assert abs(float(figure) - plain.overall.availability_pct) < 0.0001

    for asked in (
        await sla_report(ctx, UNIT, PERIOD, auto_sla=True),
        await sla_report(ctx, UNIT, PERIOD, sla_id=sla_id),
    ):
        assert asked.sla is not None and asked.sla.id == sla_id
        assert asked.slo_pct == pytest.approx(99.9) and asked.upstream_as == "device"
    explicit = await sla_report(ctx, UNIT, PERIOD, sla_id=sla_id, upstream_as="upstream")
    assert explicit.sla is not None and explicit.upstream_as == "upstream"
    assert explicit.overall.unavailable_s == pytest.approx(plain.overall.unavailable_s)


async def test_dashboard_reconciles_with_the_report(ops: tuple[OpsContext, list[Any]]) -> None:
    ctx, _ = ops
    for unit in ("99", UNIT, "992-001"):
        report = await sla_report(ctx, unit, PERIOD)
        assert report.overall.availability_pct is not None
        figure = await dashboard_figure(
            ctx.settings, "Availability of the unit (all its devices)", unit, 0, T0, T1
        )
        assert abs(float(figure) - report.overall.availability_pct) < 0.0001, unit
        devices = await dashboard_figure(ctx.settings, "Devices measured", unit, 0, T0, T1)
        assert devices == report.overall.devices


async def test_bad_input(ops: tuple[OpsContext, list[Any]]) -> None:
    ctx, _ = ops
    with pytest.raises(NotFound, match="no unit 'xyz'"):
        await sla_report(ctx, "xyz", PERIOD)
    with pytest.raises(Invalid, match="month 13"):
        await sla_report(ctx, UNIT, "2026-13")
    with pytest.raises(Invalid, match="domain 'power'"):
        await sla_report(ctx, UNIT, PERIOD, domain="power")
    with pytest.raises(NotFound, match="no SLA object 999"):
        await sla_report(ctx, UNIT, PERIOD, sla_id=999)
    future = await sla_report(ctx, UNIT, "2027")
    assert future.overall.availability_pct is None and future.overall.measured_s == 0


async def test_renderings(ops: tuple[OpsContext, list[Any]]) -> None:
    ctx, _ = ops
    report = await sla_report(ctx, UNIT, PERIOD)
    text = render_csv(report)
    assert text.startswith("unit,unit_name,period,")
    assert f"{report.overall.availability_pct:.3f}" in text.splitlines()[1]
    page = render_html(report, "vi")
    assert page.count("<svg") == 3
    assert "Khả dụng theo đơn vị" in page and "Thiết bị kém khả dụng nhất" in page
    assert "Dòng thời gian sự cố" in page
    english = render_html(report.model_copy(update={"lang": "en"}), "en")
    assert "Availability per unit" in english and "Khả dụng" not in english
    pdf = render_pdf(report, "vi")
    assert pdf.startswith(b"%PDF") and len(pdf) > 5000
    assert render_pdf(report, "en").startswith(b"%PDF")


async def test_every_sla_panel_runs_on_the_seeded_month(
    ops: tuple[OpsContext, list[Any]],
) -> None:
    """Each panel and variable of the SLA dashboard, as Grafana's read-only role, has rows."""
    ctx, _ = ops
    dash = json.loads((GENERATED / "ioc-sla.json").read_text())
    conn = await connect(Stack(ctx.settings).timescaledb.connection_info()["grafana_dsn"])
    try:
        await conn.execute(f"SET search_path TO {ctx.settings.db_schema}, public")
        variables = await resolve_variables(conn, dash, T0, T1)
        for panel in dash["panels"]:
            values = {**variables, "unit": UNIT, "sla": "0"}
            sql = expand_sql(panel["targets"][0]["rawSql"], T0, T1, values)
            assert await conn.fetch(sql), panel["title"]
    finally:
        await conn.close()
