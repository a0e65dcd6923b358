"""Pages that mean one thing each, in the generated rules: flapping pages, consequences are
inhibited by their root cause, the worker alert compares desired with actual, and a
resolution Alertmanager dropped is recorded by the pager's reconciler."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from ioc.alerting import rules
from ioc.alerting.alertmanager import alertmanager_document
from ioc.alerting.promtool import render
from ioc.contract import feeds
from ioc.contract import tables as t
from ioc.contract.thresholds import THRESHOLDS
from ioc.services import resolutions


def test_every_device_class_has_a_flapping_alert_with_its_incident_severity() -> None:
    flapping = [a for a in rules.ALERTS if a.name == rules.FLAPPING]
    classes = {str(spec.cls) for spec in feeds.specs()}
    assert {a.example.labels["device_class"] for a in flapping} == classes
    for alert in flapping:
        cls = alert.example.labels["device_class"]
        assert alert.severity == THRESHOLDS.incident_severity.get(
            (t.INCIDENT_FLAPPING, cls), alert.severity
        )
        assert alert.domain == feeds.domain_of(cls)
        assert alert.runbook == "docs/runbooks/device-flapping.md"


def test_outage_alerts_have_no_for_on_top_of_the_state_machine_confirmation() -> None:
    """The state machine confirms an outage (heartbeat timeout, node_down_confirm_ms): a
    ``for:`` on top would only spend the page latency budget."""
    for cls, name in (
        *rules.DOWN_ALERTS.items(),
        ("netnode", "SiteIsolated"),
        ("", rules.FLAPPING),
    ):
        if cls != "portal":  # a desk is down after 30 min of working hours: no page budget
            assert THRESHOLDS.alerts[name].for_s == 0, name


def test_unit_level_consequences_are_inhibited_by_isolated_and_flapping_nodes() -> None:
    doc = alertmanager_document("http://pager", "/token")
    inhibit = doc["inhibit_rules"]
    for source in ("SiteIsolated", rules.FLAPPING):
        for scope in ("region", "province"):
            assert any(
                r["source_matchers"] == [f'alertname="{source}"']
                and r["equal"] == [scope]
                and all(c in r["target_matchers"][0] for c in rules.CONSEQUENCES)
                for r in inhibit
            ), (source, scope)
    # the consequences carry the labels the inhibition compares
    by_name = {a.name: a for a in rules.ALERTS}
    assert by_name["CameraOnlineRatioLow"].example.labels["region"] == "132"
    assert "region" in by_name["TelehealthSessionsDropping"].example.labels
    site = by_name["SiteIsolated"].example.labels
    assert {"region", "province"} <= set(site)


def test_stream_worker_down_compares_desired_with_up() -> None:
    expr = next(a.expr for a in rules.ALERTS if a.name == "StreamWorkerDown")
    assert "ioc_stream_workers_desired" in expr
    assert "count(" in expr and "vector(0)" in expr  # none up: all missing


class FakePool:
    """The pages table as the reconciler queries it: firing pages without a resolution."""

    def __init__(self, firing: list[dict[str, Any]]) -> None:
        self.firing = firing
        self.inserted: list[tuple[Any, ...]] = []

    async def fetch(self, _sql: str, *_args: Any) -> list[dict[str, Any]]:
        done = {(i[0], i[9]) for i in self.inserted}
        return [r for r in self.firing if (r["fingerprint"], r["starts_at"]) not in done]

    async def fetchrow(self, _sql: str, *args: Any) -> dict[str, Any]:
        self.inserted.append(args)
        return {"id": 100 + len(self.inserted)}


class FakePager:
    def __init__(self, pool: FakePool) -> None:
        self.pool = pool
        self.instance = 7


def _page(fingerprint: str, starts: dt.datetime, newest: dt.datetime | None = None) -> Any:
    return {
        "id": 1,
        "fingerprint": fingerprint,
        "alertname": "CameraOnlineRatioLow",
        "severity": "warning",
        "domain": "camera",
        "unit": "132",
        "site": None,
        "device_id": None,
        "summary": "low",
        "description": "",
        "starts_at": starts,
        "labels": '{"alertname": "CameraOnlineRatioLow"}',
        "incident_id": None,
        "newest": newest or starts,
    }


def test_a_page_whose_alert_left_alertmanager_is_resolved_after_absent_s() -> None:
    starts = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    pool = FakePool([_page("aaa", starts), _page("bbb", starts)])
    rec = resolutions.Reconciler(cast(Any, FakePager(pool)), [])

    async def scenario() -> list[list[dict[str, Any]]]:
        out = []
        out.append(await rec.once(active={"bbb"}, now=0.0))  # aaa absent from now
        out.append(await rec.once(active={"bbb"}, now=resolutions.ABSENT_S - 1))
        out.append(await rec.once(active={"bbb"}, now=resolutions.ABSENT_S))
        out.append(await rec.once(active=None, now=10 * resolutions.ABSENT_S))  # AM away
        return out

    first, early, due, away = asyncio.run(scenario())
    assert first == [] and early == [] and away == []
    assert [p["status"] for p in due] == ["resolved"]
    assert [args[0] for args in pool.inserted] == ["aaa"]  # bbb is still held: not resolved
    assert pool.inserted[0][11] == resolutions.RECEIVER


def test_an_alert_back_in_alertmanager_is_not_resolved_and_an_old_episode_is() -> None:
    old, new = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    pool = FakePool([_page("aaa", old, newest=new), _page("aaa", new, newest=new)])
    rec = resolutions.Reconciler(cast(Any, FakePager(pool)), [])
    resolved = asyncio.run(rec.once(active={"aaa"}, now=0.0))
    # the same alert fired again since: its first episode ended, the current one is held
    assert [args[9] for args in pool.inserted] == [old]
    assert len(resolved) == 1


def _worker_case(name: str, series: dict[str, str], fires: str | None) -> dict[str, Any]:
    """StreamWorkerDown over 5 minutes of ``series``: firing with value ``fires`` from its
    ``for:`` boundary (and not one evaluation before), or never."""
    for_s = THRESHOLDS.alerts["StreamWorkerDown"].for_s
    step = THRESHOLDS.evaluation_interval_s
    cases: list[dict[str, Any]] = [
        {"eval_time": "5m", "alertname": "StreamWorkerDown", "exp_alerts": []},
    ]
    if fires is not None:
        labels = {"severity": "critical", "domain": "pipeline"}
        alert = next(a for a in rules.ALERTS if a.name == "StreamWorkerDown")
        annotations = {
            key: render(text, {}, {"{{ $value }}": fires})
            for key, text in alert.rule()["annotations"].items()
        }
        cases = [
            {"eval_time": f"{for_s - step}s", "alertname": "StreamWorkerDown", "exp_alerts": []},
            {
                "eval_time": f"{for_s}s",
                "alertname": "StreamWorkerDown",
                "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}],
            },
        ]
    return {
        "name": name,
        "interval": f"{step}s",
        "input_series": [{"series": k, "values": v} for k, v in series.items()],
        "alert_rule_test": cases,
    }


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")
def test_stream_worker_down_resolves_by_itself_and_pages_when_every_worker_is_killed(
    tmp_path: Path,
) -> None:
    up = 'up{job="ioc",service="worker",instance="127.0.0.1:%d"}'
    desired = 'ioc_stream_workers_desired{instance="127.0.0.1:%d"}'
    doc = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": f"{THRESHOLDS.evaluation_interval_s}s",
        "tests": [
            _worker_case(
                "killed and replaced: its stale target is down, not missing",
                {up % 1: "0x80", up % 2: "1x80", desired % 2: "1x80"},
                None,
            ),
            _worker_case(
                "scaled in from 3 to 2: the third target is stale",
                {up % 1: "1x80", up % 2: "1x80", up % 3: "0x80", desired % 1: "2x80"},
                None,
            ),
            _worker_case(
                "one of two missing", {up % 1: "1x80", up % 2: "0x80", desired % 1: "2x80"}, "1"
            ),
            _worker_case("every worker killed", {up % 1: "0x80", up % 2: "0x80"}, "2"),
        ],
    }
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules.rules_document()))
    (tmp_path / "test.yml").write_text(yaml.safe_dump(doc))
    done = subprocess.run(
        ["promtool", "test", "rules", "test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
