"""The hourly and daily tiers (docs/history.md): what the declarations say about combining
columns over time, the SQL that rolls, marks and picks a tier, and the retention settings.
Pure logic only; the rolls themselves run in the integration tests and bench/history.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from importlib import resources

import pytest

from ioc.config import load_settings
from ioc.contract import feeds
from ioc.contract import history as h
from ioc.contract.feeds import Aggregate, Feed, FeedError, infer_over_time
from ioc.errors import ConfigError
from ioc.streams.history import mark_sql, over_time_sql, plan, roll_sql
from ioc.streams.rollups import retention_days
from tests.support import airquality as aq

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 26, 3, 30, tzinfo=UTC)  # 10:30 in Vietnam
DAY = dt.timedelta(days=1)
GOAL = {"1m": dt.timedelta(days=2), "1h": dt.timedelta(days=90), "1d": dt.timedelta(days=400)}
"""The retention the design aims at (docs/history.md)."""


def _migration(name: str) -> str:
    return resources.files("ioc.db").joinpath(f"migrations/{name}").read_text()


# --- how a column combines over time ---------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "rule"),
    [
        ("sat_int4(count(*))", "sum"),
        ("sat_int4(count(*) FILTER (WHERE kind = 'camera.heartbeat'))", "sum"),
        ("sat_int8(sum(in_errors + out_errors))", "sum"),
        ("sat_real(avg(fps))", "avg"),
        ("min(fps)", "min"),
        ("max(loss_pct)", "max"),
        ("sat_real(max(CASE WHEN in_bps < 1e-300 THEN 0 ELSE 1 END))", "max"),
        ("sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY rtt_ms))", "max"),
        ("sat_int4(count(DISTINCT src_ip))", None),  # neither a sum nor a max of minutes
        ("sat_int8(greatest(max(c) - min(c), 0))", None),  # a counter's rise: declare it
        ("max(a) + min(b)", None),
        ("42", None),
    ],
)
def test_device_columns_say_how_they_combine_over_time(expr: str, rule: str | None) -> None:
    assert infer_over_time(expr) == rule


@pytest.mark.parametrize(
    ("expr", "rule"),
    [
        ("sat_int4(count(*))", "max"),  # the unit's devices
        ("sat_int4(count(r.device_id))", "avg"),  # devices reporting: a gauge
        ("sat_int4(count(*) FILTER (WHERE r.probes_ok > 0))", "avg"),
        ("sat_int8(coalesce(sum(r.vehicles), 0))", "sum"),  # a sum of device counts
        ("sat_int4(coalesce(sum(r.sessions_active), 0))", "max"),  # a sum of device maxima
        ("coalesce(sum(r.in_bps_avg), 0)", "avg"),  # a sum of device means
        ("sat_int4(sum(r.unknown_column))", None),
        ("sat_int4(sum(r.vehicles + 1))", None),
        ("sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY r.rtt_ms_p95))", "max"),
        ("max(r.level_max)", "max"),
    ],
)
def test_unit_columns_follow_the_device_columns_they_add_up(expr: str, rule: str | None) -> None:
    device = {"vehicles": "sum", "sessions_active": "max", "in_bps_avg": "avg"}
    assert infer_over_time(expr, unit=True, device_rules=device) == rule


def test_every_builtin_column_combines_over_time_as_its_meaning_says() -> None:
    rules = {f.name: (f.device_over_time(), f.unit_over_time()) for f in feeds.specs()}
    camera, camera_units = rules[Feed.CAMERA]
    assert camera["reports"] == camera["vehicles"] == "sum"
    assert (camera["fps_min"], camera["occupancy_pct_max"], camera["fps_avg"]) == (
        "min",
        "max",
        "avg",
    )
    assert camera_units["cameras"] == "max" and camera_units["cameras_reporting"] == "avg"
    telehealth, telehealth_units = rules[Feed.TELEHEALTH]
    assert telehealth["rtt_ms_p95"] == telehealth_units["rtt_ms_p95"] == "max"
    assert telehealth_units["sessions_active"] == "max"  # peak concurrent sessions
    assert rules[Feed.NETNODE][1]["nodes_reachable"] == "avg"
    vconf, vconf_units = rules[Feed.VCONF]
    assert vconf["conferences_failed"] == vconf_units["conferences_failed"] == "sum"  # declared
    soc, soc_units = rules[Feed.SOC]
    assert soc["sources"] == soc_units["sources"] == "max"  # declared
    portal_units = rules[Feed.PORTAL][1]
    assert portal_units["resolved_on_time"] == "sum" and portal_units["desks"] == "max"


def test_a_feed_whose_column_does_not_say_is_refused() -> None:
    distinct = Aggregate("visitors", "integer", "sat_int4(count(DISTINCT pm25_ugm3))")
    unclear = dataclasses.replace(aq.FEED, device_rollup=(*aq.FEED.device_rollup, distinct))
    with pytest.raises(FeedError, match=r"visitors.*declare over_time"):
        feeds.register(unclear)
    declared = dataclasses.replace(distinct, over_time="max")
    with feeds.registered(
        dataclasses.replace(aq.FEED, device_rollup=(*aq.FEED.device_rollup, declared))
    ) as spec:
        assert spec.device_over_time()["visitors"] == "max"
    for bad in (
        Aggregate("minutes", "integer", "sat_int4(count(*))"),
        Aggregate("small", "smallint", "max(aqi)"),
    ):
        wrong = dataclasses.replace(aq.FEED, device_rollup=(*aq.FEED.device_rollup, bad))
        with pytest.raises(FeedError, match="must not be one of"):
            feeds.register(wrong)
    with pytest.raises(FeedError, match="over_time 'median'"):
        Aggregate("x", "real", "avg(x)", over_time="median")
    assert aq.NAME not in feeds.names()


# --- the rolls ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rule", "weighted", "sql"),
    [
        ("integer", "sum", False, "sat_int4(sum(c))"),
        ("bigint", "sum", True, "sat_int8(sum(c))"),
        ("real", "sum", False, "sat_real(sum(c::float8))"),
        ("double precision", "sum", False, "sum(c)"),
        ("real", "max", True, "max(c)"),
        ("integer", "min", False, "min(c)"),
        ("real", "avg", False, "sat_real(avg(c::float8))"),
        ("integer", "avg", False, "sat_int4(avg(c))"),
        (
            "real",
            "avg",
            True,
            "sat_real(sum(c::float8 * minutes) / "
            "nullif(sum(minutes) FILTER (WHERE c IS NOT NULL), 0))",
        ),
        (
            "integer",
            "avg",
            True,
            "sat_int4((sum(c::float8 * minutes) / "
            "nullif(sum(minutes) FILTER (WHERE c IS NOT NULL), 0))::numeric)",
        ),
    ],
)
def test_columns_combine_saturating_at_their_type(
    kind: str, rule: str, weighted: bool, sql: str
) -> None:
    assert over_time_sql(Aggregate("c", kind, "x"), rule, weighted) == sql


def test_an_hour_rolls_from_the_minutes_of_each_device() -> None:
    sql = roll_sql(Feed.TELEHEALTH, h.HOUR, unit=False)
    assert sql.startswith(
        "INSERT INTO rollup_telehealth_1h (bucket, device_id, minutes, reports, heartbeats, "
    )
    assert "SELECT $1::timestamptz, device_id, count(*)::integer, sat_int4(sum(reports))" in sql
    assert "max(rtt_ms_p95)" in sql and "sat_real(avg(rtt_ms_avg::float8))" in sql
    assert "FROM rollup_telehealth_1m WHERE bucket >= $1::timestamptz AND bucket < " in sql
    assert "$1::timestamptz + interval '1 hour' GROUP BY device_id" in sql
    assert "ON CONFLICT (device_id, bucket) DO UPDATE SET minutes = EXCLUDED.minutes," in sql
    assert re.findall(r"\$\d", sql) == ["$1"] * 3


def test_a_day_rolls_from_the_hours_of_each_unit_weighing_them_by_their_minutes() -> None:
    sql = roll_sql(Feed.NETNODE, h.DAY, unit=True)
    assert sql.startswith("INSERT INTO unit_rollup_netnode_1d (bucket, unit_code, level, minutes,")
    assert "unit_code, max(level), sum(minutes)::integer, max(nodes), " in sql
    assert "FROM unit_rollup_netnode_1h WHERE" in sql and "interval '1 day'" in sql
    assert "sum(rtt_ms_avg::float8 * minutes)" in sql
    assert "sat_int8(sum(errors))" in sql
    assert "GROUP BY unit_code ON CONFLICT (unit_code, bucket) DO UPDATE SET level = " in sql
    with pytest.raises(ValueError, match="from raw"):
        roll_sql(Feed.NETNODE, h.MINUTE, unit=True)


def test_a_registered_feed_gets_its_rolls() -> None:
    with feeds.registered(aq.FEED):
        sql = roll_sql(aq.NAME, h.HOUR, unit=True)
        assert "INSERT INTO unit_rollup_airquality_1h" in sql
        assert "max(sensors)" in sql and "max(aqi_max)" in sql


def test_marks_name_the_bucket_of_their_tier_and_never_lose_a_change() -> None:
    hour, day = mark_sql(h.HOUR), mark_sql(h.DAY)
    assert "SELECT DISTINCT x.feed, '1h', time_bucket(interval '1 hour', x.at)" in hour
    assert "time_bucket(interval '1 day', x.at, TIMESTAMPTZ '2000-01-03 00:00:00+07:00')" in day
    for sql in (hour, day):
        assert "ORDER BY 1, 3" in sql  # key order: concurrent markers cannot deadlock
        assert sql.endswith("DO UPDATE SET version = history_dirty.version + 1")


def test_buckets_are_utc_hours_and_vietnam_days() -> None:
    at = dt.datetime(2026, 11, 26, 16, 59, 30, tzinfo=UTC)  # 23:59:30 in Vietnam
    assert h.MINUTE.bucket_of(at) == dt.datetime(2026, 11, 26, 16, 59, tzinfo=UTC)
    assert h.HOUR.bucket_of(at) == dt.datetime(2026, 11, 26, 16, tzinfo=UTC)
    assert h.DAY.bucket_of(at) == dt.datetime(2026, 11, 25, 17, tzinfo=UTC)
    assert h.DAY.bucket_of(at + dt.timedelta(seconds=30)) == dt.datetime(
        2026, 11, 26, 17, tzinfo=UTC
    )


def test_an_old_hour_is_refilled_from_raw_and_an_older_one_left_alone() -> None:
    goal = h.Retention(raw_days=7, minute_days=2, hour_days=90, day_days=400)
    camera, portal = feeds.spec(Feed.CAMERA), feeds.spec(Feed.PORTAL)
    recent = h.HOUR.bucket_of(NOW - dt.timedelta(hours=5))
    assert plan(camera, h.HOUR, recent, NOW, goal) == "roll"
    at_the_edge = h.HOUR.bucket_of(NOW - 2 * DAY + dt.timedelta(minutes=30))
    assert plan(camera, h.HOUR, at_the_edge, NOW, goal) == "refill"
    late = h.HOUR.bucket_of(NOW - 5 * DAY)  # a collector's spool replayed after 5 days
    assert plan(camera, h.HOUR, late, NOW, goal) == "refill"
    assert plan(camera, h.HOUR, h.HOUR.bucket_of(NOW - 8 * DAY), NOW, goal) == "skip"
    assert plan(portal, h.HOUR, h.HOUR.bucket_of(NOW - 13 * DAY), NOW, goal) == "refill"
    assert plan(camera, h.DAY, h.DAY.bucket_of(NOW - 13 * DAY), NOW, goal) == "roll"
    assert plan(camera, h.DAY, h.DAY.bucket_of(NOW - 91 * DAY), NOW, goal) == "skip"


# --- which tier a panel reads -----------------------------------------------------------------

MINUTE_STEP = dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("days", "step", "kept", "tier"),
    [
        # time series: Grafana's $__interval for a ~1500 px panel
        (1, dt.timedelta(minutes=1), GOAL, "1m"),
        (7, dt.timedelta(minutes=10), GOAL, "1h"),  # 1m no longer reaches back 7 days
        (30, dt.timedelta(minutes=30), GOAL, "1h"),
        (90, dt.timedelta(hours=2), GOAL, "1h"),
        (90, dt.timedelta(days=1), GOAL, "1d"),  # a panel with a daily interval
        # tables and stats over the whole range: a 24th of it
        (1, None, GOAL, "1h"),
        (7, None, GOAL, "1h"),
        (30, None, GOAL, "1d"),
        (90, None, GOAL, "1d"),
        # while the 1-minute tier is still kept 90 days (the rollout's first step)
        (7, dt.timedelta(minutes=5), {**GOAL, "1m": dt.timedelta(days=90)}, "1m"),
        (90, dt.timedelta(minutes=1), {**GOAL, "1m": dt.timedelta(days=90)}, "1h"),  # <= 1500
        # no retention known: every tier holds everything
        (1, dt.timedelta(seconds=30), {}, "1m"),
    ],
)
def test_a_range_reads_the_coarsest_tier_its_step_allows_among_those_that_reach_back(
    days: int, step: dt.timedelta | None, kept: dict[str, dt.timedelta], tier: str
) -> None:
    assert h.choose_tier(kept, NOW - days * DAY, NOW, NOW, step) == tier


def test_a_range_beyond_every_tier_reads_the_longest_kept_one() -> None:
    year_ago = NOW - 500 * DAY
    assert h.choose_tier(GOAL, year_ago, year_ago + DAY, NOW, MINUTE_STEP) == "1d"
    # a day last month: the hourly tier still holds it, the 1-minute one not
    last_month = NOW - 30 * DAY
    assert h.choose_tier(GOAL, last_month, last_month + DAY, NOW, MINUTE_STEP) == "1h"
    assert h.choose_tier(GOAL, NOW, NOW, NOW, None) == "1m"  # an empty range


def test_the_sql_tier_function_is_the_same_rule_and_comes_with_migration_0014() -> None:
    sql = h.TIER_FUNCTION_SQL
    assert f"s / {h.TABLE_BUCKETS}" in sql and f"s / {h.MAX_POINTS}" in sql
    assert "kept IS NULL OR t0 >= now() - kept - interval '1 hour'" in sql  # REACH_SLACK
    assert "ORDER BY kept DESC NULLS FIRST LIMIT 1" in sql  # none reaches t0: longest kept
    assert "ORDER BY width <= w DESC, CASE WHEN width <= w THEN width END DESC NULLS LAST" in sql
    assert "SECURITY DEFINER" in sql  # province viewers may not read rollup_tiers
    migration = _migration("0014_history_rollups.sql")
    assert sql + ";" in migration
    seeded = dict(re.findall(r"\('(1[mhd])', interval '[^']+', interval '(\d+) days'\)", migration))
    assert seeded == {
        "1m": str(h.MINUTE_DAYS),
        "1h": str(h.HOUR_DAYS),
        "1d": str(h.DAY_DAYS),
    }


def test_a_tiered_panel_source_has_one_branch_per_tier_each_gated_on_the_choice() -> None:
    tables = {t.name: feeds.spec(Feed.CAMERA).unit_table(t.name) for t in h.TIERS}
    sql = h.tiered_sql(tables, "bucket, vehicles", "unit_code = '$unit' AND $__timeFilter(bucket)")
    branches = sql.strip("()").split(" UNION ALL ")
    assert len(branches) == 3
    for tier, branch in zip(("1m", "1h", "1d"), branches, strict=True):
        assert branch.startswith(f"SELECT bucket, vehicles FROM unit_rollup_camera_{tier} WHERE ")
        assert (
            f"rollup_tier($__timeFrom()::timestamptz, $__timeTo()::timestamptz, "
            f"make_interval(secs => $__interval_ms / 1000.0)) = '{tier}'"
        ) in branch
    table = h.tiered_sql(tables, "*", "true", step=None)
    assert "$__timeTo()::timestamptz, NULL) = '1d'" in table


# --- retention -----------------------------------------------------------------------------


def test_every_tier_has_its_retention_and_coarser_tiers_are_kept_longer() -> None:
    days = dict(retention_days(h.Retention(7, 2, 90, 400)))
    assert days["raw_camera"] == 7 and days["raw_portal"] == 400  # the portal's own
    assert days["rollup_camera_1m"] == days["unit_rollup_soc_1m"] == 2
    assert days["rollup_netnode_1h"] == days["unit_rollup_vconf_1h"] == 90
    assert days["rollup_telehealth_1d"] == days["unit_rollup_portal_1d"] == 400
    assert len(days) == 7 * len(feeds.specs())
    with pytest.raises(ValueError, match="grow with the tier"):
        h.Retention(minute_days=30, hour_days=7)
    assert h.Retention().tier_days() == {"1m": 2, "1h": 90, "1d": 400}


def test_the_environment_sets_each_tier_and_refuses_a_hole(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("IOC_ROLLUP_1M_RETENTION_DAYS", "3")
    clean_env.setenv("IOC_ROLLUP_1D_RETENTION_DAYS", "366")
    assert load_settings().retention() == h.Retention(7, 3, 90, 366)
    clean_env.setenv("IOC_ROLLUP_1H_RETENTION_DAYS", "1")
    with pytest.raises(ConfigError, match="grow with the tier"):
        load_settings()


def test_migration_0014_replaces_the_views_of_every_feed_with_tables() -> None:
    migration = _migration("0014_history_rollups.sql")
    assert "relname ~ '^unit_rollup_[a-z][a-z0-9_]*_1[hd]$'" in migration
    assert "EXECUTE format('DROP VIEW %I CASCADE', v)" in migration
    for table in ("history_dirty", "rollup_tiers"):
        assert f"CREATE TABLE {table} (" in migration
    created = set(re.findall(r"CREATE TABLE ((?:unit_)?rollup_\w+_1[hd]) \(", migration))
    assert created == {
        f"{level}rollup_{feed}_{tier}"
        for level in ("", "unit_")
        for feed in ("camera", "telehealth", "netnode")
        for tier in ("1h", "1d")
    }
