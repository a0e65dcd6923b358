"""One config of thresholds: the rules, the dashboards and the state machine read it, and none
of them repeats one of its numbers as a literal.

The proof is to build everything from a config in which every value is changed to an unusual
one (:data:`SENTINEL`) and check that the change shows up everywhere: each field changes the
outputs on its own, every number the outputs compare against is a sentinel value, and the state
machine's boundaries move with the config.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from ioc.alerting import promtool, rules
from ioc.alerting.build import build_all, dump
from ioc.contract import tables as t
from ioc.contract.thresholds import (
    CRITICAL,
    INFO,
    NONE,
    THRESHOLDS,
    WARNING,
    AlertPolicy,
    Thresholds,
)
from ioc.dashboards.build import BUILDERS, dashboard_json
from ioc.streams.state import Facts, raw_state

ROOT = Path(__file__).resolve().parents[2]
OTHER_SEVERITY = {CRITICAL: WARNING, WARNING: CRITICAL, INFO: WARNING, NONE: INFO}

# Fields the workers' state machine reads (checked by behaviour and source, not by outputs).
STATE_FIELDS = {
    "heartbeat_timeout_ms",
    "quality_max_age_ms",
    "camera_min_fps",
    "telehealth_max_loss_pct",
    "telehealth_max_jitter_ms",
    "link_max_loss_pct",
    "link_max_rtt_ms",
    "flap_count",
    "flap_window_ms",
    "flap_quiet_ms",
    "confirm_upstream_ms",
    "node_down_confirm_ms",
    "catch_up_slack_ms",
    "restate_unapplied_ms",
    "incident_severity",
    # the workers' portal KPI gauges: how many dossiers / payments make a ratio
    "portal_ontime_min_resolved",
    "portal_payment_min_attempts",
}

SENTINEL_VALUES: dict[str, Any] = {
    # state machine
    "heartbeat_timeout_ms": MappingProxyType(
        {"camera": 17_000, "telehealth": 19_000, "netnode": 21_000}
    ),
    "quality_max_age_ms": 31_000,
    "camera_min_fps": 7.5,
    "telehealth_max_loss_pct": 6.5,
    "telehealth_max_jitter_ms": 71.0,
    "link_max_loss_pct": 4.5,
    "link_max_rtt_ms": 275.0,
    "flap_count": 4,
    "flap_window_ms": 11 * 60_000,
    "flap_quiet_ms": 7 * 60_000,
    "confirm_upstream_ms": 13_000,
    "node_down_confirm_ms": 11_000,
    "catch_up_slack_ms": 6_000,
    "restate_unapplied_ms": 21_000,
    "incident_severity": MappingProxyType(
        {k: OTHER_SEVERITY[v] for k, v in THRESHOLDS.incident_severity.items()}
    ),
    # alert rules
    "scrape_interval_s": 11,
    "evaluation_interval_s": 7,
    "camera_online_ratio_min": 0.77,
    "sessions_dropped_max": 4,
    "sessions_dropped_window_s": 660,
    "consumer_lag_max_messages": 12_345,
    "consumer_lag_trend_window_s": 420,
    "data_stale_s": 37,
    "partition_stalled_s": 73,
    "dlq_ratio_max": 0.023,
    "dlq_rate_window_s": 540,
    "write_errors_window_s": 180,
    "db_write_quantile": 0.97,
    "db_write_max_s": 1.7,
    "db_write_window_s": 240,
    "dependency_probe_timeout_s": 3.5,
    "kafka_rtt_max_s": 0.31,
    "alerts": MappingProxyType(
        {
            name: AlertPolicy(p.for_s + 7, OTHER_SEVERITY[p.severity])
            for name, p in THRESHOLDS.alerts.items()
        }
    ),
    # video conference (readiness window, licence)
    "vconf_readiness_before_s": 17 * 60,
    "vconf_readiness_after_s": 31 * 60,
    "vconf_ports_use_max": 0.97,
    # public-service portal
    "portal_silent_ms": 47 * 60_000,
    "portal_working_hours": "Mon-Sat 07:00-11:00,13:00-17:30",
    "portal_ontime_min": 0.87,
    "portal_ontime_days": 9,
    "portal_ontime_min_resolved": 23,
    "portal_payment_success_min": 0.27,
    "portal_payment_window_s": 2700,
    "portal_payment_min_attempts": 13,
    "portal_ontime_target": 0.955,
    # security operations (how long a sensor's critical / DDoS / scan alert holds)
    "soc_alert_hold_ms": 7 * 60_000,
    # dashboards
    "online_ratio_target": 0.93,
    "network_reachable_low": 0.87,
    "network_reachable_target": 0.985,
    "freshness_warn_s": 13,
    "freshness_bad_s": 71,
    "consumer_lag_bad_messages": 123_457,
    "sessions_dropped_hour_bad": 17,
    "db_write_median_quantile": 0.45,
    "availability_warn_pct": 98.7,
    "availability_target_pct": 99.85,
}
SENTINEL = dataclasses.replace(THRESHOLDS, **SENTINEL_VALUES)
OUTPUT_FIELDS = [f.name for f in dataclasses.fields(Thresholds) if f.name not in STATE_FIELDS]


def test_every_field_has_a_sentinel_unlike_its_default() -> None:
    assert set(SENTINEL_VALUES) == {f.name for f in dataclasses.fields(Thresholds)}
    for name, value in SENTINEL_VALUES.items():
        assert value != getattr(THRESHOLDS, name), name


def outputs(th: Thresholds) -> dict[str, str]:
    """Everything generated from the config: rules, their tests, scrape configs, dashboards."""
    out = {
        "rules": dump(rules.rules_document(th)),
        "tests": dump(promtool.tests_document("x", th)),
    }
    out.update({f"dashboard {name}": json.dumps(dashboard_json(name, th)) for name in BUILDERS})
    from ioc.alerting import scrape

    out["local"] = scrape.dump("", scrape.local(), th)
    out["compose"] = scrape.dump("", scrape.compose(), th)
    return out


@functools.cache
def default_outputs() -> dict[str, str]:
    return outputs(THRESHOLDS)


@pytest.mark.parametrize("field", OUTPUT_FIELDS)
def test_each_field_changes_the_generated_files(field: str) -> None:
    before = default_outputs()
    after = outputs(dataclasses.replace(THRESHOLDS, **{field: SENTINEL_VALUES[field]}))
    assert before != after, f"changing {field} changes nothing that is generated"


def _numbers(value: float) -> set[float]:
    return {round(float(value), 9), round(float(value) * 100, 9)}


def test_alert_rules_take_every_number_from_the_config() -> None:
    doc = rules.rules_document(SENTINEL)
    owned = set()
    for name in OUTPUT_FIELDS:
        value = SENTINEL_VALUES[name]
        if isinstance(value, int | float):
            owned |= _numbers(value)
    windows = {
        rules.window(SENTINEL_VALUES[f])
        for f in OUTPUT_FIELDS
        if f.endswith("_window_s") and isinstance(SENTINEL_VALUES[f], int)
    }
    for group in doc["groups"]:
        assert group["interval"] == f"{SENTINEL.evaluation_interval_s}s"
        for rule in group["rules"]:
            expr = rule["expr"]
            # every comparison is against a config value, or a boolean gauge/target test
            for number in re.findall(r"(?:>=|<=|==|!=|>|<)\s*([0-9.]+)", expr):
                assert float(number) == 0 or round(float(number), 9) in owned, (rule, number)
            for number in re.findall(r"histogram_quantile\(([0-9.]+)", expr):
                assert round(float(number), 9) in owned, (rule, number)
            for rng in re.findall(r"\[([0-9a-z]+)\]", expr):
                assert rng in windows, (rule, rng)
            for matcher in re.findall(r'quantile="([^"]+)"', expr):
                assert round(float(matcher), 9) in owned, (rule, matcher)
            if "alert" in rule:
                policy = SENTINEL.alerts[rule["alert"]]
                assert rule["labels"]["severity"] == policy.severity
                assert rule.get("for", "0s") == f"{policy.for_s}s"


def test_alert_texts_repeat_no_default_number() -> None:
    """Descriptions quote thresholds; built from the sentinel, they quote none of the defaults."""
    texts = " ".join(
        f"{a.summary} {a.description}" for a in rules.alerts(SENTINEL) if a.name != "Watchdog"
    )
    th = THRESHOLDS
    for stale in (
        rules.percent(th.camera_online_ratio_min),
        rules.percent(th.dlq_ratio_max),
        f"{th.consumer_lag_max_messages:,}",
        rules.duration_text(th.data_stale_s),
        rules.duration_text(th.sessions_dropped_window_s),
        rules.duration_text(th.db_write_max_s),
        rules.duration_text(th.db_write_window_s),
        rules.count_text(th.sessions_dropped_max),
        rules.quantile_name(th.db_write_quantile),
    ):
        assert stale not in texts, stale


def _threshold_steps(panel: dict[str, Any]) -> list[float]:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    steps = steps or panel.get("thresholds", [])
    return [s["value"] for s in steps[1:] if isinstance(s.get("value"), int | float)]


def test_dashboard_thresholds_take_every_number_from_the_config() -> None:
    owned: set[float] = set()
    for name in OUTPUT_FIELDS:
        value = SENTINEL_VALUES[name]
        if isinstance(value, int | float):
            owned |= _numbers(value)
    checked = 0
    for name in BUILDERS:
        default, sentinel = dashboard_json(name), dashboard_json(name, SENTINEL)
        for before, after in zip(default["panels"], sentinel["panels"], strict=True):
            for value in _threshold_steps(after):
                checked += 1
                # 1: "any at all" (an error, a worker); everything else is the config's
                assert value == 1 or round(value, 9) in owned, (name, after["title"], value)
            if re.search(r"\d+ s\b", before.get("description") or ""):
                assert before["description"] != after["description"], after["title"]
    assert checked > 10


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")
def test_promtool_tests_still_pass_with_other_thresholds(tmp_path: Path) -> None:
    """The examples follow the thresholds: every `for:` boundary is still where it fires."""
    # promtool steps by the evaluation interval: keep every boundary on one of its steps
    aligned = dataclasses.replace(
        SENTINEL,
        evaluation_interval_s=THRESHOLDS.evaluation_interval_s,
        alerts={
            name: AlertPolicy(
                THRESHOLDS.alerts[name].for_s + THRESHOLDS.evaluation_interval_s, p.severity
            )
            for name, p in SENTINEL.alerts.items()
        },
    )
    build_all(tmp_path, aligned)
    rules_file = tmp_path / "prometheus" / "ioc-alerts.yml"
    check = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        ["promtool", "test", "rules", "ioc-alerts.test.yml"],
        cwd=tmp_path / "prometheus" / "tests",
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_scrape_configs_take_their_intervals_from_the_config() -> None:
    from ioc.alerting import scrape

    for config in (scrape.local(), scrape.compose()):
        doc = yaml.safe_load(scrape.dump("", config, SENTINEL))
        assert doc["global"]["scrape_interval"] == f"{SENTINEL.scrape_interval_s}s"
        assert doc["global"]["evaluation_interval"] == f"{SENTINEL.evaluation_interval_s}s"


# --- the state machine ---

STATE_SOURCES = (
    "streams/ioc/streams/state.py",
    "streams/ioc/streams/evaluator.py",
    "streams/ioc/streams/incidents.py",
    "streams/ioc/streams/portal.py",
)


def test_state_machine_repeats_no_number_of_the_config() -> None:
    owned = {
        float(v)
        for name in STATE_FIELDS
        for v in (
            getattr(THRESHOLDS, name).values()
            if isinstance(getattr(THRESHOLDS, name), MappingProxyType)
            else [getattr(THRESHOLDS, name)]
        )
        if isinstance(v, int | float)
    }
    for source in STATE_SOURCES:
        tree = ast.parse((ROOT / source).read_text())
        indices = {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, int | float)
                and not isinstance(node.value, bool)
                and id(node) not in indices
            ):
                assert float(node.value) not in owned, (
                    f"{source}:{node.lineno}: {node.value} is owned by ioc.contract.thresholds"
                )


def test_every_state_field_is_read_by_the_workers() -> None:
    text = "\n".join((ROOT / source).read_text() for source in STATE_SOURCES)
    for name in STATE_FIELDS:
        assert re.search(rf"\.{name}\b", text), f"{name} is read by no state rule"


NOW = 1_700_000_000_000


@pytest.mark.parametrize(
    ("device_class", "facts"),
    [
        # silent for 16 s: past the default heartbeat timeout (15 s), within the sentinel's
        ("camera", Facts(last_ts=NOW - 16_000)),
        ("netnode", Facts(last_ts=NOW, probe_ts=NOW - 16_000, probe_reachable=True)),
        # quality between the default threshold and the sentinel's
        ("camera", Facts(last_ts=NOW, quality_ts=NOW, fps=6.0)),
        ("camera", Facts(last_ts=NOW, quality_ts=NOW - 30_500, frozen=True)),
        ("telehealth", Facts(last_ts=NOW, quality_ts=NOW, sessions_active=1, loss_pct=6.0)),
        ("telehealth", Facts(last_ts=NOW, quality_ts=NOW, sessions_active=1, jitter_ms=65.0)),
        ("netnode", Facts(probe_ts=NOW, probe_reachable=True, loss_pct=4.8)),
        ("netnode", Facts(probe_ts=NOW, probe_reachable=True, rtt_ms=260.0)),
    ],
)
def test_state_boundaries_move_with_the_config(device_class: str, facts: Facts) -> None:
    default = raw_state(device_class, facts, NOW, THRESHOLDS)[0]
    sentinel = raw_state(device_class, facts, NOW, SENTINEL)[0]
    assert default != sentinel, (default, sentinel)


def test_down_alerts_page_with_the_severity_of_their_incident() -> None:
    """Same concept, one severity: a device-down alert pages like the incident it mirrors."""
    for th in (THRESHOLDS, SENTINEL):
        incident = th.incident_severity
        for alert, key in {
            "CameraDown": (t.INCIDENT_DEVICE_DOWN, "camera"),
            "TelehealthStationDown": (t.INCIDENT_DEVICE_DOWN, "telehealth"),
            "NetworkNodeDown": (t.INCIDENT_DEVICE_DOWN, "netnode"),
            "SiteIsolated": (t.INCIDENT_SITE_ISOLATED, "netnode"),
        }.items():
            assert th.alerts[alert].severity == incident[key], alert
