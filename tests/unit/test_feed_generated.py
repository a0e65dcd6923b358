"""Dashboard panels and the down alert of a feed come from its declaration alone.

The test-only air-quality feed (tests/support/airquality.py) is registered in-process: the
Feeds dashboard gets its row and the alert rules its ``FeedDeviceDown``, with promtool tests,
and nothing under dashboards/ or ioc/alerting/ names it. With only the built-in feeds
registered, the shipped rules have no generated alert: the hand-written ones cover them.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ioc.alerting import promtool, rules
from ioc.alerting.build import build_all
from ioc.contract import feeds
from ioc.contract import tables as t
from ioc.contract.builtin_feeds import BUILTIN_FEEDS
from ioc.contract.thresholds import CRITICAL, Thresholds
from ioc.dashboards.build import dashboard_json
from tests.support import airquality as aq

ROOT = Path(__file__).resolve().parents[2]


def _rows(dash: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Row title -> the panels under it (rows are expanded: their panels follow them)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for panel in dash["panels"]:
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        else:
            current.append(panel)
    return rows


def _queries(panels: list[dict[str, Any]]) -> list[str]:
    return [t.get("rawSql") or t.get("expr", "") for p in panels for t in p.get("targets", [])]


def _row_of(dash: dict[str, Any], spec: feeds.FeedSpec) -> list[dict[str, Any]]:
    found = [panels for title, panels in _rows(dash).items() if title.startswith(spec.title)]
    assert len(found) == 1, list(_rows(dash))
    return found[0]


def test_every_builtin_feed_has_its_row_on_the_feeds_dashboard() -> None:
    dash = dashboard_json("feeds")
    assert len(_rows(dash)) == len(BUILTIN_FEEDS)
    for spec in BUILTIN_FEEDS:
        queries = _queries(_row_of(dash, spec))
        assert any(f'feed="{spec.name}"' in q for q in queries)
        assert any(f'device_class="{spec.cls}"' in q for q in queries)
        assert all(spec.unit_rollup_table in q for q in queries if "SELECT" in q)


def test_a_registered_feed_gets_its_row_from_its_declaration() -> None:
    assert "airquality" not in str(dashboard_json("feeds"))
    with feeds.registered(aq.FEED):
        dash = dashboard_json("feeds")
    panels = _row_of(dash, aq.FEED)
    queries = _queries(panels)
    assert f'sum(rate(ioc_events_written_total{{feed="{aq.NAME}"}}[$__rate_interval]))' in queries
    assert any(f'ioc_devices{{device_class="{aq.FEED.cls}"}}' in q for q in queries)
    sql = [q for q in queries if "SELECT" in q]
    for tier in ("1m", "1h", "1d"):  # each tier's branch, the unit chosen inside it
        assert all(
            f"FROM unit_rollup_airquality_{tier} WHERE rollup_tier(" in q
            and f"= '{tier}' AND (unit_code = '$unit'" in q
            for q in sql
        )
    assert any("avg(sensors_reporting) AS reporting" in q for q in sql)
    assert any("avg(sensors - sensors_reporting) AS silent" in q for q in sql)
    # one series per other numeric column of the unit rollup
    for column, how in (("pm25_avg", "avg"), ("aqi_max", "max")):
        assert any(f"{how}({column}) AS {column}" in q for q in sql), column
    titles = [p["title"] for p in panels]
    assert len(titles) == 2 + 1 + 2, titles
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_a_feed_without_fleet_columns_still_gets_its_row() -> None:
    bare = dataclasses.replace(
        aq.FEED, unit_rollup=tuple(a for a in aq.FEED.unit_rollup if "count" not in a.expr)
    )
    assert bare.fleet_columns() is None
    with feeds.registered(bare):
        titles = [p["title"] for p in _row_of(dashboard_json("feeds"), bare)]
    assert not any("reporting" in title for title in titles)
    assert len(titles) == 2 + 2


def test_builtin_classes_have_hand_written_down_alerts_only() -> None:
    names = {a.name for a in rules.ALERTS}
    assert set(rules.DOWN_ALERTS.values()) <= names
    assert rules.FEED_DEVICE_DOWN not in names
    assert {s.cls for s in BUILTIN_FEEDS} == set(rules.DOWN_ALERTS)
    for cls, name in rules.DOWN_ALERTS.items():
        alert = next(a for a in rules.ALERTS if a.name == name)
        assert f'device_class="{cls}"' in alert.expr


def test_a_registered_feed_gets_its_down_alert_from_its_declaration() -> None:
    with feeds.registered(aq.FEED):
        generated = [a for a in rules.alerts() if a.name == rules.FEED_DEVICE_DOWN]
        cases = promtool.tests_document("x")["tests"]
    assert len(generated) == 1
    alert = generated[0]
    assert alert.expr == (
        "max without (instance, job, pid, service) "
        f'(ioc_device_down{{device_class="{aq.FEED.cls}"}}) > 0'
    )
    assert alert.for_s == aq.FEED.down_alert_for_s
    assert alert.severity == aq.FEED.incident_severity[t.INCIDENT_DEVICE_DOWN]
    rule = alert.rule()
    assert rule["labels"] == {"severity": alert.severity, "domain": aq.NAME, "feed": aq.NAME}
    assert rule["annotations"]["runbook_url"] == "docs/runbooks/feed-device-down.md"
    assert (ROOT / alert.runbook).exists()
    assert "Air quality device {{ $labels.device_id }}" in rule["annotations"]["summary"]
    case = next(c for c in cases if c["name"].startswith(f"{rules.FEED_DEVICE_DOWN} "))
    fires = case["alert_rule_test"][0]
    assert fires["eval_time"] == f"{alert.for_s}s"
    assert fires["exp_alerts"][0]["exp_labels"]["feed"] == aq.NAME
    assert case["alert_rule_test"][1]["exp_alerts"] == []  # not one evaluation earlier
    quiet = cases[-1]["alert_rule_test"]
    assert {"eval_time": "30m", "alertname": rules.FEED_DEVICE_DOWN, "exp_alerts": []} in quiet
    # gone again with the feed
    assert rules.FEED_DEVICE_DOWN not in {a.name for a in rules.alerts()}


def test_the_down_alert_follows_the_declaration_and_the_incident_severity() -> None:
    spec = dataclasses.replace(aq.FEED, down_alert_for_s=45)
    with feeds.registered(spec):
        th = Thresholds(incident_severity={(t.INCIDENT_DEVICE_DOWN, spec.cls): CRITICAL})
        alert = next(a for a in rules.alerts(th) if a.name == rules.FEED_DEVICE_DOWN)
    assert (alert.for_s, alert.severity) == (45, "critical")


def test_nothing_under_dashboards_or_alerting_names_the_test_feed() -> None:
    for folder in ("dashboards", "ioc/alerting"):
        for path in (ROOT / folder).glob("*.py"):
            assert "airquality" not in path.read_text().lower(), path


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")
def test_promtool_tests_pass_with_the_registered_feed(tmp_path: Path) -> None:
    with feeds.registered(aq.FEED):
        build_all(tmp_path)
    rules_file = tmp_path / "prometheus" / "ioc-alerts.yml"
    assert rules.FEED_DEVICE_DOWN in rules_file.read_text()
    check = subprocess.run(
        ["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        ["promtool", "test", "rules", "ioc-alerts.test.yml"],
        cwd=tmp_path / "prometheus" / "tests",
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr
