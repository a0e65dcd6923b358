"""The feed registry: one declaration per feed, everything per feed derived from it."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from ioc.contract import feeds, raw, schemas, tables, thresholds, topics
from ioc.contract.builtin_feeds import BUILTIN_FEEDS
from ioc.contract.feeds import Feed, FeedError
from ioc.contract.topology import TopologyError, load_scenario
from ioc.db.feeds import (
    device_rollup_columns,
    feed_ddl,
    feed_tables,
    raw_table_columns,
    tier_columns,
    unit_rollup_columns,
)
from ioc.simulators.behaviour import sim_class
from ioc.simulators.engine import Simulator
from ioc.simulators.faults import FaultPlan
from ioc.streams.rollups import device_rollup_sql, unit_rollup_sql
from ioc.streams.rows import Batch, raw_row
from tests.support import airquality as aq

NOW = 1_700_000_000_000


def test_the_builtin_feeds_are_the_enum_and_keep_their_names() -> None:
    names = ["camera", "telehealth", "netnode", "vconf", "portal", "soc"]
    assert [f.name for f in BUILTIN_FEEDS] == list(Feed) == names
    assert feeds.names()[: len(names)] == tuple(Feed)
    assert tuple(Feed) == schemas.FEEDS
    assert {name: f"raw_{name}" for name in names} == tables.RAW
    assert tables.ROLLUP_UNIT_1D["netnode"] == "unit_rollup_netnode_1d"
    assert tables.ROLLUP_DEVICE_1H["camera"] == "rollup_camera_1h"
    assert {k: v for k, v in topics.FEED_TOPICS.items() if k in names[:3]} == {
        "camera": topics.CAMERA,
        "telehealth": topics.TELEHEALTH,
        "netnode": topics.NETNODE,
    }
    assert [topics.FEED_TOPICS[f.name] for f in BUILTIN_FEEDS] == [f.topic for f in BUILTIN_FEEDS]
    assert f"{Feed.CAMERA}" == "camera" and Feed("netnode") is Feed.NETNODE


# --- the declarations reproduce the hand-written migrations ------------------------------


def _migration_tables(*files: str) -> dict[str, list[str]]:
    """``CREATE TABLE`` column definitions of the migrations, normalised."""
    found: dict[str, list[str]] = {}
    for file in files or ("0002_telemetry.sql",):
        text = resources.files("ioc.db").joinpath(f"migrations/{file}").read_text()
        for name, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", text, re.S):
            lines = [re.sub(r"\s+", " ", line.strip().rstrip(",")) for line in body.splitlines()]
            found[name] = [line for line in lines if line and not line.startswith("PRIMARY KEY")]
    return found


@pytest.mark.parametrize(
    "spec", [f for f in BUILTIN_FEEDS if f.tables_from_migrations], ids=lambda f: f.name
)
def test_generated_ddl_matches_the_migrations_of_the_builtin_feeds(spec: feeds.FeedSpec) -> None:
    migrated = _migration_tables("0002_telemetry.sql", "0014_history_rollups.sql")
    assert raw_table_columns(spec) == migrated[spec.raw_table]
    assert device_rollup_columns(spec) == migrated[spec.device_rollup_table]
    assert unit_rollup_columns(spec) == migrated[spec.unit_rollup_table]
    for tier in ("1h", "1d"):  # the hourly and daily tiers, migration 0014
        assert tier_columns(spec, tier, unit=False) == migrated[spec.device_table(tier)]
        assert tier_columns(spec, tier, unit=True) == migrated[spec.unit_table(tier)]
    assert spec.tables_from_migrations


def test_generated_ddl_is_idempotent_and_keys_raw_rows_by_time_first() -> None:
    statements = feed_ddl(aq.FEED)
    assert all(
        s.startswith(("CREATE TABLE IF NOT EXISTS", "CREATE OR REPLACE VIEW"))
        or "if_not_exists => true" in s
        for s in statements
    )
    assert "PRIMARY KEY (ts, device_id, seq)" in statements[0]
    assert "create_default_indexes => false" in statements[1]
    # every tier, per device and per unit; no views over the 1-minute rollups any more
    created = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", " ".join(statements))
    assert sorted(created) == sorted(feed_tables(aq.FEED))
    assert feed_tables(aq.FEED) == [
        "raw_airquality",
        "rollup_airquality_1m",
        "rollup_airquality_1h",
        "rollup_airquality_1d",
        "unit_rollup_airquality_1m",
        "unit_rollup_airquality_1h",
        "unit_rollup_airquality_1d",
    ]
    assert not any("VIEW unit_rollup_" in s for s in statements)


def test_rollup_sql_comes_from_the_declaration() -> None:
    sql = device_rollup_sql(Feed.TELEHEALTH)
    assert sql.startswith("INSERT INTO rollup_telehealth_1m (bucket, device_id, reports, ")
    assert "FROM raw_telehealth WHERE" in sql
    assert "WHERE d.device_class = 'netnode'" in unit_rollup_sql(Feed.NETNODE)


# --- a feed registered later --------------------------------------------------------------


def test_registering_a_feed_fills_every_derived_table_and_unregistering_empties_them() -> None:
    with feeds.registered(aq.FEED):
        assert feeds.names() == (*Feed, "airquality")
        assert schemas.FEED_OF_KIND[aq.AirQualityReading] == "airquality"
        assert schemas.DEVICE_CLASS_OF_FEED["airquality"] == "airquality"
        assert topics.FEED_TOPICS["airquality"] is aq.FEED.topic
        assert aq.FEED.topic in topics.all_topics()
        assert tables.RAW["airquality"] == "raw_airquality"
        assert raw.RAW_COLUMNS["airquality"] == (
            *raw.KEY_COLUMNS,
            "status",
            "battery_pct",
            "pm25_ugm3",
            "pm10_ugm3",
            "aqi",
        )
        assert thresholds.THRESHOLDS.heartbeat_timeout_ms["airquality"] == 30_000
        key = (tables.INCIDENT_DEVICE_DOWN, "airquality")
        assert thresholds.THRESHOLDS.incident_severity[key] == thresholds.WARNING
        assert "airquality" in feeds.device_classes()
        doc = (
            b'{"v":1,"kind":"airquality.reading","device_id":"aq-1","seq":1,'
            b'"ts_ms":1700000000000,"pm25_ugm3":12.5,"pm10_ugm3":20.0,"aqi":50}'
        )
        message = schemas.decode(doc, feed="airquality", key=b"aq-1")
        assert isinstance(message, aq.AirQualityReading) and message.feed == "airquality"
        with pytest.raises(schemas.InvalidMessage) as wrong:
            schemas.decode(doc, feed=Feed.CAMERA)
        assert wrong.value.reason == schemas.REASON_WRONG_FEED
        row = raw_row(message)
        assert row[3:] == ("airquality.reading", None, None, 12.5, 20.0, 50)
        batch = Batch.build("airquality", [message], "airquality")
        assert batch.minutes == {NOW - NOW % 60_000}
    assert "airquality" not in feeds.names()
    for derived in (schemas.MESSAGE_TYPES, topics.FEED_TOPICS, tables.RAW, raw.RAW_COLUMNS):
        assert "airquality" not in derived
    assert aq.AirQualityReading not in schemas.FEED_OF_KIND
    assert "airquality" not in thresholds.THRESHOLDS.heartbeat_timeout_ms
    with pytest.raises(schemas.InvalidMessage):
        schemas.decode(b'{"v":1,"kind":"airquality.reading"}')


def test_a_declaration_that_clashes_is_refused() -> None:
    with pytest.raises(FeedError, match="registered already"):
        feeds.register(BUILTIN_FEEDS[0])
    clash = feeds.FeedSpec(
        name="camera2",
        title="x",
        messages=aq.FEED.messages,
        topic=aq.FEED.topic,
        device_rollup=aq.FEED.device_rollup,
        unit_rollup=aq.FEED.unit_rollup,
    )
    with pytest.raises(FeedError, match="must start with"):
        feeds.register(clash)
    with pytest.raises(FeedError, match="built in"):
        feeds.unregister(Feed.CAMERA)
    with pytest.raises(FeedError, match="cannot load"):
        feeds.load_extra_feeds("tests.support.no_such_module:FEED")
    assert feeds.names() == tuple(Feed)


def test_extra_feeds_load_by_name() -> None:
    try:
        assert feeds.load_extra_feeds(f" {aq.SPEC} ,") == [aq.FEED]
        assert feeds.load_extra_feeds(aq.SPEC) == [aq.FEED]  # already there: kept
    finally:
        feeds.unregister(aq.NAME)


def test_the_simulator_runs_a_registered_feed_from_its_behaviour(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="airquality"):
        aq.scenario_with_sensors(load_scenario("demo"), tmp_path / "s.yaml")
        load_scenario(str(tmp_path / "s.yaml"))
    with feeds.registered(aq.FEED):
        topology = load_scenario(str(tmp_path / "s.yaml"))
        assert sim_class(aq.NAME) is aq.AirQualitySim
        sim = Simulator(topology, FaultPlan([]), seed=1, start_ms=NOW)
        out = sim.advance(NOW + 60_000)
        mine = [o for o in out if o.feed == aq.NAME]
        assert {o.device_id for o in mine} == {d.id for d in topology.devices_of(aq.NAME)}
        assert {o.label for o in mine} == {"airquality.heartbeat", "airquality.reading"}
        assert all(schemas.decode(o.value, feed=aq.NAME) for o in mine)
