"""Generated dashboards: fresh, consistent with provisioning, and only known names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ioc.alerting.rules import RECORDINGS
from ioc.contract.metrics import ALL_METRICS
from ioc.dashboards.build import BUILDERS, GENERATED, render

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "deploy" / "compose" / "grafana" / "provisioning"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GENERATED / f"ioc-{name}.json").read_text())
    return data


def targets(dash: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, t) for panel in dash["panels"] for t in panel.get("targets", [])]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_committed_json_is_up_to_date(name: str) -> None:
    assert (GENERATED / f"ioc-{name}.json").read_text() == render(name), (
        f"dashboards/generated/ioc-{name}.json is stale: run `ioc dashboards build`"
    )


def test_uids_and_panel_ids_are_unique() -> None:
    uids = [load(n)["uid"] for n in BUILDERS]
    assert len(uids) == len(set(uids))
    for name in BUILDERS:
        ids = [p["id"] for p in load(name)["panels"]]
        assert len(ids) == len(set(ids)), name


def test_every_datasource_is_provisioned_with_that_uid() -> None:
    provisioned = {
        d["uid"]: d["type"]
        for d in yaml.safe_load((PROVISIONING / "datasources" / "ioc.yml").read_text())[
            "datasources"
        ]
    }
    for name in BUILDERS:
        dash = load(name)
        refs = [t["datasource"] for _, t in targets(dash)]
        refs += [p["datasource"] for p in dash["panels"] if p.get("datasource")]
        refs += [v["datasource"] for v in dash["templating"]["list"]]
        for ref in refs:
            assert provisioned.get(ref["uid"]) == ref["type"], (name, ref)


def test_every_variable_used_is_defined() -> None:
    builtin = {
        "__interval",
        "__rate_interval",
        "__timeFilter",
        "__timeFrom",
        "__timeTo",
        "__url_time_range",
    }
    for name in BUILDERS:
        dash = load(name)
        defined = {v["name"] for v in dash["templating"]["list"]}
        for panel, target in targets(dash):
            text = target.get("rawSql") or target.get("expr") or ""
            used = set(re.findall(r"\$(\w+)", text)) | set(re.findall(r"\$\{(\w+)", text))
            used |= set(re.findall(r"\$(\w+)", panel.get("title", "")))
            assert used - builtin <= defined, (name, panel["title"], used - builtin - defined)


def test_prometheus_queries_only_use_contract_metrics() -> None:
    known = {s.series for s in ALL_METRICS}
    known |= {
        f"{s.name}_{suffix}"
        for s in ALL_METRICS
        if s.type == "histogram"
        for suffix in ("bucket", "sum", "count")
    }
    recorded = {r.record for r in RECORDINGS}  # recording rules (ioc.alerting.rules)
    for name in BUILDERS:
        for _panel, target in targets(load(name)):
            expr = target.get("expr", "")
            for series in re.findall(r"\b([a-z_]*:[a-z_]+:[a-z0-9_]+)", expr):
                assert series in recorded, (name, series)
                expr = expr.replace(series, "")
            for metric in re.findall(r"\b(ioc_[a-z_]+)", expr):
                assert metric in known, (name, metric)


def test_overview_has_a_map_and_links_to_the_domains() -> None:
    dash = load("overview")
    assert any(p["type"] == "geomap" for p in dash["panels"])
    urls = json.dumps(dash)
    for uid in ("ioc-cameras", "ioc-telehealth", "ioc-network"):
        assert f"/d/{uid}" in urls
