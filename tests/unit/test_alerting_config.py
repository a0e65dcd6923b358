"""Generated alert rules and Alertmanager config: fresh, valid, tested, documented."""

from __future__ import annotations

import re
import shutil
import string
import subprocess
from pathlib import Path

import pytest

from ioc.contract.metrics import ALL_METRICS
from ioc.dashboards import alerts

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")
needs_amtool = pytest.mark.skipif(shutil.which("amtool") is None, reason="no amtool")


def test_committed_files_are_up_to_date(tmp_path: Path) -> None:
    (tmp_path / "compose" / "alertmanager").mkdir(parents=True)
    for path in alerts.build_all(tmp_path):
        committed = DEPLOY / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), (
            f"{committed} is stale: run `ioc alerts build`"
        )


def test_every_alert_is_documented_and_labelled() -> None:
    names = [a.name for a in alerts.ALERTS]
    assert len(names) == len(set(names))
    for alert in alerts.ALERTS:
        rule = alert.rule()
        assert rule["labels"]["severity"] in ("critical", "warning", "info", "none")
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        assert (ROOT / alert.runbook).exists(), alert.runbook


def test_rules_only_use_metrics_of_the_contract() -> None:
    known = {spec.series for spec in ALL_METRICS} | {"up"}
    known |= {spec.bucket_series for spec in ALL_METRICS if spec.type == "histogram"}
    for alert in alerts.ALERTS:
        used = set(re.findall(r"\b(ioc_[a-z_]+|up)\b", alert.expr))
        assert used <= known, (alert.name, used - known)


@needs_promtool
def test_promtool_checks_and_unit_tests_pass() -> None:
    check = subprocess.run(
        ["promtool", "check", "rules", str(DEPLOY / "prometheus" / "ioc-alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        ["promtool", "test", "rules", "ioc-alerts.test.yml"],
        cwd=DEPLOY / "prometheus" / "tests",
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    tested = {case["name"].split(" ")[0] for case in alerts.tests_document("x")["tests"]}
    assert {a.name for a in alerts.ALERTS} <= tested


def _rendered(tmp_path: Path) -> Path:
    token = tmp_path / "token"
    token.write_text("t")
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        string.Template((DEPLOY / "alertmanager" / "alertmanager.yml").read_text()).substitute(
            pager_url="http://127.0.0.1:9480/alertmanager/webhook", token_file=str(token)
        )
    )
    return config


@needs_amtool
def test_amtool_accepts_the_config(tmp_path: Path) -> None:
    result = subprocess.run(
        ["amtool", "check-config", str(_rendered(tmp_path))], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=SiteIsolated", "severity=critical", "domain=network"], "pager"),
        (["alertname=CameraDown", "severity=warning", "domain=camera"], "pager"),
        (["alertname=DataStale", "severity=critical", "domain=pipeline"], "pager"),
        (["alertname=Watchdog", "severity=none", "domain=meta"], "watchdog"),
        (["alertname=Something", "severity=info"], "null"),
    ],
)
def test_routing(tmp_path: Path, labels: list[str], receiver: str) -> None:
    result = subprocess.run(
        [
            "amtool",
            "config",
            "routes",
            "test",
            f"--config.file={_rendered(tmp_path)}",
            f"--verify.receivers={receiver}",
            *labels,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
