"""A feed declared only in tests/ (tests/support/airquality.py) flows from the
simulator through Kafka and a real ``ioc worker`` into its raw table and rollups, with no
change in streams/, the writer, the migrations or the simulators (docs/adding-a-feed.md)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import feeds
from ioc.contract.feeds import EXTRA_FEEDS_ENV, FeedSpec
from ioc.contract.history import TIER
from ioc.contract.topology import load_scenario
from ioc.simulators.run import SimConfig, run_simulation
from tests.support import airquality as aq
from tests.support.db import query
from tests.support.processes import Worker
from tests.support.reconcile import assert_accounting
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def airquality(monkeypatch: pytest.MonkeyPatch) -> Iterator[FeedSpec]:
    """The feed registered in this process, and named to ``ioc`` child processes (which
    import it from this checkout: the repository root goes on their PYTHONPATH)."""
    monkeypatch.setenv(EXTRA_FEEDS_ENV, aq.SPEC)
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    with feeds.registered(aq.FEED) as spec:
        yield spec


def _count(settings: Settings, sql: str, *args: object) -> int:
    return int(query(settings, sql, *args)[0]["n"])


def test_a_feed_declared_in_tests_flows_from_the_simulator_to_its_rollups(
    namespace: Settings, airquality: FeedSpec, tmp_path: Path
) -> None:
    scenario = str(aq.scenario_with_sensors(load_scenario("demo"), tmp_path / "demo-aq.yaml"))
    sensors = sorted(d.id for d in load_scenario(scenario).devices_of(aq.NAME))
    assert len(sensors) == 4
    asyncio.run(bootstrap(namespace, scenario))

    # bootstrap generated the feed's tables from its declaration
    hypertables = query(
        namespace,
        "SELECT hypertable_name FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = $1 AND hypertable_name LIKE '%airquality%'",
        namespace.db_schema,
    )
    assert {r["hypertable_name"] for r in hypertables} == {
        "raw_airquality",
        *(f"{level}rollup_airquality_{tier}" for level in ("", "unit_") for tier in TIER),
    }
    columns = query(
        namespace,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = 'raw_airquality' ORDER BY ordinal_position",
        namespace.db_schema,
    )
    assert [(c["column_name"], c["data_type"]) for c in columns] == [
        ("ts", "timestamp with time zone"),
        ("device_id", "text"),
        ("seq", "bigint"),
        ("kind", "text"),
        ("status", "text"),
        ("battery_pct", "real"),
        ("pm25_ugm3", "real"),
        ("pm10_ugm3", "real"),
        ("aqi", "integer"),
        ("ingested_at", "timestamp with time zone"),
    ]
    asyncio.run(bootstrap(namespace, scenario))  # idempotent

    rolling = namespace.model_copy(  # the hourly tier within seconds (docs/history.md)
        update={"history_every_s": 1.0, "history_settle_s": 0.0, "history_day_settle_s": 0.0}
    )
    worker = Worker(rolling, scenario, tmp_path / "worker.log").start()
    try:
        worker.wait_serving()
        summary = run_simulation(
            namespace,
            SimConfig(scenario=scenario, mode="rate", rate=300, duration_s=15, progress=False),
        )
        assert summary.errors == 0, summary.first_error
        sent = summary.stats.valid_by_feed[aq.NAME]
        assert sent > 0, summary.stats

        # raw: every reading exactly once, from every sensor
        wait_for(
            lambda: _count(namespace, "SELECT count(*) AS n FROM raw_airquality") >= sent,
            90,
            what=f"{sent} air-quality rows ({worker.log_tail()})",
        )
        raw = query(
            namespace,
            "SELECT count(*) AS n, count(DISTINCT (device_id, seq)) AS d, "
            "array_agg(DISTINCT device_id ORDER BY device_id) AS devices, "
            "count(*) FILTER (WHERE kind = 'airquality.reading') AS readings FROM raw_airquality",
        )[0]
        assert raw["n"] == raw["d"] == sent
        assert list(raw["devices"]) == sensors

        # device rollups: the settled minutes add up to the raw rows
        def rolled_up() -> bool:
            n = _count(namespace, "SELECT coalesce(sum(reports), 0) AS n FROM rollup_airquality_1m")
            return n == sent

        wait_for(rolled_up, 120, what=f"rollup_airquality_1m to count {sent} reports")
        readings = _count(
            namespace, "SELECT coalesce(sum(readings), 0) AS n FROM rollup_airquality_1m"
        )
        assert readings == raw["readings"]
        # unit rollups at every level above the sensors (district, province), and the views
        levels = query(
            namespace,
            "SELECT level, max(sensors) AS sensors FROM unit_rollup_airquality_1m GROUP BY level",
        )
        assert {r["level"]: r["sensors"] for r in levels} == {0: 4, 1: 2}
        # and the hourly tier the shard leader rolls from them: every report counted again
        wait_for(
            lambda: (
                _count(namespace, "SELECT coalesce(sum(reports), 0) AS n FROM rollup_airquality_1h")
                == sent
            ),
            60,
            what=f"rollup_airquality_1h to count {sent} reports",
        )
        assert _count(namespace, "SELECT count(*) AS n FROM unit_rollup_airquality_1h") > 0

        # the worker accounted for every record of the feed, under the feed's label
        assert_accounting(worker)
        written = sum(
            value
            for name, labels, value in worker.scrape()
            if name == "ioc_events_written_total" and labels.get("feed") == aq.NAME
        )
        assert written == sent
        # the state evaluator knows the sensors (generic heartbeat rule)
        wait_for(
            lambda: (
                _count(
                    namespace,
                    "SELECT count(*) AS n FROM device_state WHERE device_id = ANY($1::text[])",
                    sensors,
                )
                == len(sensors)
            ),
            30,
            what="device_state rows for the sensors",
        )
    finally:
        worker.stop()


def test_no_code_outside_tests_names_the_test_feed() -> None:
    """The feed is one declaration and one behaviour, both in tests/support/airquality.py."""
    named = [
        str(path.relative_to(ROOT))
        for folder in ("streams", "simulators", "ioc", "services", "dashboards", "deploy")
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".sql", ".yaml", ".yml", ".json"}
        and "airquality" in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert named == []
