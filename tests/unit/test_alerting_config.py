"""Generated alert/recording rules, Alertmanager and scrape configs: fresh, valid, tested."""

from __future__ import annotations

import json
import re
import shutil
import string
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from ioc.alerting import promtool, rules, scrape
from ioc.alerting.build import build_all
from ioc.config import Settings
from ioc.contract.metrics import ALL_METRICS
from ioc.observability import register_target

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "ioc" / "deploy"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")
needs_amtool = pytest.mark.skipif(shutil.which("amtool") is None, reason="no amtool")


def test_committed_files_are_up_to_date(tmp_path: Path) -> None:
    written = build_all(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} >= {
        "prometheus/ioc-alerts.yml",
        "prometheus/tests/ioc-alerts.test.yml",
        "alertmanager/alertmanager.yml",
        "compose/alertmanager/alertmanager.yml",
        "local/prometheus/prometheus.yml",
        "compose/prometheus/prometheus.yml",
    }
    for path in written:
        committed = DEPLOY / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), (
            f"{committed} is stale: run `ioc alerts build`"
        )


def test_every_alert_is_documented_and_labelled() -> None:
    # one rule per device class for the generated ones (DeviceFlapping, FeedDeviceDown)
    names = [(a.name, a.expr) for a in rules.ALERTS]
    assert len(names) == len(set(names))
    for alert in rules.ALERTS:
        rule = alert.rule()
        assert rule["labels"]["severity"] in ("critical", "warning", "info", "none")
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        assert (ROOT / alert.runbook).exists(), alert.runbook


def test_every_runbook_quotes_its_rule_as_generated() -> None:
    """A runbook's **Rule:** line is what an on-call engineer reads at 3 a.m.: it must be the
    expression Prometheus evaluates, not the one from before a threshold or recording rule
    changed."""
    for alert in rules.ALERTS:
        text = (ROOT / alert.runbook).read_text()
        quoted = re.search(r"\*\*Rule:\*\* `([^`]*)`", text)
        if quoted is None:
            continue
        assert quoted[1] == alert.expr, f"{alert.runbook}: Rule line is stale"


def test_rules_only_use_metrics_of_the_contract() -> None:
    known = {spec.series for spec in ALL_METRICS} | {"up"}
    known |= {spec.bucket_series for spec in ALL_METRICS if spec.type == "histogram"}
    recorded = {r.record for r in rules.RECORDINGS}
    for expr in [a.expr for a in rules.ALERTS] + [r.expr for r in rules.RECORDINGS]:
        for name in recorded:  # recorded series are known once their rule is
            expr = expr.replace(name, "")
        used = set(re.findall(r"\b(ioc_[a-z_]+|up)\b", expr))
        assert used <= known, (expr, used - known)


def test_recording_rules_follow_level_metric_operations() -> None:
    contract = {spec.name for spec in ALL_METRICS}
    for rec in rules.RECORDINGS:
        level, metric, operations = rec.record.split(":")
        assert re.fullmatch(r"[a-z_]+", level) and re.fullmatch(r"[a-z0-9_]+", operations)
        assert any(metric.startswith(name) for name in contract), rec.record
    groups = {g["name"]: g for g in rules.rules_document()["groups"]}
    assert all("record" in r for r in groups[rules.RECORDING_GROUP]["rules"])
    assert all("alert" in r for r in groups[rules.ALERT_GROUP]["rules"])


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
    tested = {case["name"].split(" ")[0] for case in promtool.tests_document("x")["tests"]}
    assert {a.name for a in rules.ALERTS} <= tested
    assert {r.selector for r in rules.RECORDINGS} <= tested


def _rendered(tmp_path: Path) -> Path:
    token = tmp_path / "token"
    token.write_text("t")
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        string.Template((DEPLOY / "alertmanager" / "alertmanager.yml").read_text()).substitute(
            pager_url="http://127.0.0.1:9480/alertmanager/webhook",
            pager_peer_url="http://127.0.0.1:9482/alertmanager/webhook",
            token_file=str(token),
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


# --- scrape configs: the alerts' target selectors match what every deployment scrapes ---

SELECTOR = re.compile(r"\{([^{}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
TARGET_LABELS = {"job", "service"}


def _matches(labels: dict[str, str], name: str, op: str, value: str) -> bool:
    got = labels.get(name, "")
    if op == "=":
        return got == value
    if op == "!=":
        return got != value
    hit = re.fullmatch(value, got) is not None
    return hit if op == "=~" else not hit


def _relabelled(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str]:
    """Prometheus' ``replace`` relabelling (the only action the generated configs use), then
    the ``__meta_`` labels dropped, as Prometheus does after relabelling."""
    labels = dict(labels)
    for rule in rules:
        assert rule.get("action", "replace") == "replace", rule
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if match:
            labels[rule["target_label"]] = match.expand(
                re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
            )
    return {k: v for k, v in labels.items() if not k.startswith("__")}


def _scraped_targets(config: dict[str, Any], file_sd_dir: Path) -> list[dict[str, str]]:
    """The label sets of every target a config scrapes (file_sd: the files in file_sd_dir;
    dns_sd: one target per name, as Docker's DNS answers with every replica of a service)."""
    found = []
    for job in config["scrape_configs"]:
        groups = list(job.get("static_configs", []))
        for sd in job.get("file_sd_configs", []):
            for pattern in sd["files"]:
                assert Path(pattern).parent == file_sd_dir, pattern
                for path in sorted(file_sd_dir.glob(Path(pattern).name)):
                    groups += json.loads(path.read_text())
        for dns in job.get("dns_sd_configs", []):
            assert dns["type"] == "A", dns
            groups += [
                {"targets": [f"{name}:{dns['port']}"], "labels": {"__meta_dns_name": name}}
                for name in dns["names"]
            ]
        for group in groups:
            for target in group["targets"]:
                labels = {"job": job["job_name"], "instance": target, **group.get("labels", {})}
                found.append(_relabelled(labels, job.get("relabel_configs", [])))
    return found


def _shipped_configs(tmp_path: Path) -> dict[str, list[dict[str, str]]]:
    """Local (rendered the way `ioc stack up` does, every process kind registered the way
    `ioc worker`/`ioc simulate`/`ioc pager` do) and compose."""
    settings = Settings(stack_dir=tmp_path / "stack")
    targets = settings.stack_dir / "prometheus" / "targets"
    targets.parent.mkdir(parents=True)
    for i, kind in enumerate(scrape.SERVICES):
        assert register_target(settings, kind, 9900 + i) is not None
    local = string.Template(
        (DEPLOY / "local" / "prometheus" / "prometheus.yml").read_text()
    ).substitute(
        alertmanager_port=19094,
        alertmanager_peer_port=19150,
        prometheus_port=19090,
        rules_dir=tmp_path / "rules",
        targets_dir=targets,
    )
    compose = (DEPLOY / "compose" / "prometheus" / "prometheus.yml").read_text()
    return {
        "local": _scraped_targets(yaml.safe_load(local), targets),
        "compose": _scraped_targets(yaml.safe_load(compose), Path("/nonexistent")),
    }


def test_every_target_selector_of_the_rules_matches_a_target_in_every_config(
    tmp_path: Path,
) -> None:
    configs = _shipped_configs(tmp_path)
    exprs = [(a.name, a.expr) for a in rules.ALERTS] + [
        (r.record, r.expr) for r in rules.RECORDINGS
    ]
    checked = 0
    for name, expr in exprs:
        for selector in SELECTOR.findall(expr):
            matchers = [m for m in MATCHER.findall(selector) if m[0] in TARGET_LABELS]
            if not matchers:
                continue
            checked += 1
            for deployment, targets in configs.items():
                assert any(all(_matches(t, *m) for m in matchers) for t in targets), (
                    f"{name}: {{{selector}}} matches no target scraped by the {deployment} "
                    f"Prometheus: {targets}"
                )
    assert checked, "no rule selects targets: the parser is broken"


def test_every_process_kind_is_scraped_with_its_service_label(tmp_path: Path) -> None:
    for deployment, targets in _shipped_configs(tmp_path).items():
        kinds = {t.get("service") for t in targets if t["job"] == scrape.IOC_JOB}
        wanted = scrape.SERVICES if deployment == "local" else tuple(scrape.COMPOSE_SERVICES)
        assert kinds == set(wanted), deployment


def test_processes_register_with_a_declared_service_label() -> None:
    """What `serve_metrics(settings, KIND, ...)` is called with is a kind scrape.py knows."""
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ].values()
    used = set()
    for folder in set(folders):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r'serve_metrics\(\s*\w+,\s*"(\w+)"', path.read_text()))
    assert used == set(scrape.SERVICES), used


@needs_promtool
def test_promtool_accepts_the_scrape_configs(tmp_path: Path) -> None:
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text(
        string.Template(
            (DEPLOY / "local" / "prometheus" / "prometheus.yml").read_text()
        ).substitute(
            alertmanager_port=19094,
            alertmanager_peer_port=19150,
            prometheus_port=19090,
            rules_dir=DEPLOY / "prometheus",
            targets_dir=tmp_path,
        )
    )
    for config in (rendered, DEPLOY / "compose" / "prometheus" / "prometheus.yml"):
        check = subprocess.run(
            ["promtool", "check", "config", "--syntax-only", str(config)],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr
