"""Generated dashboards: fresh, consistent with provisioning, and only known names."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from ioc.alerting.rules import RECORDINGS
from ioc.contract.metrics import ALL_METRICS
from ioc.dashboards.build import BUILDERS, GENERATED, render
from ioc.dashboards.cameras import INCIDENT_KIND
from ioc.dashboards.grafana_json import saved_model
from ioc.dashboards.panels import Layout

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "deploy" / "ioc" / "deploy" / "compose" / "grafana" / "provisioning"
DASHBOARDS = ROOT / "dashboards" / "ioc" / "dashboards"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GENERATED / f"ioc-{name}.json").read_text())
    return data


def targets(dash: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, t) for panel in dash["panels"] for t in panel.get("targets", [])]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_committed_json_is_up_to_date(name: str) -> None:
    assert (GENERATED / f"ioc-{name}.json").read_text() == render(name), (
        f"dashboards/ioc/dashboards/generated/ioc-{name}.json is stale: run `ioc dashboards build`"
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
        refs += [v["datasource"] for v in dash["templating"]["list"] if "datasource" in v]
        for ref in refs:
            assert provisioned.get(ref["uid"]) == ref["type"], (name, ref)


def test_every_variable_used_is_defined() -> None:
    builtin = {
        "__interval",
        "__interval_ms",
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


def test_layout_places_panels_by_size_in_reading_order() -> None:
    layout = Layout()
    # a tall map on the left, two rows of stats beside it, a table under them, then full width
    sizes = [(12, 16), (4, 4), (4, 4), (4, 4), (4, 4), (4, 4), (4, 4), (12, 8), (24, 10)]
    places = [(pos.x, pos.y) for pos in (layout.place(w, h) for w, h in sizes)]
    assert places == [
        (0, 0),
        (12, 0),
        (16, 0),
        (20, 0),
        (12, 4),
        (16, 4),
        (20, 4),
        (12, 8),
        (0, 16),
    ]
    with pytest.raises(ValueError, match="does not fit"):
        layout.place(25, 4)


def test_dashboards_give_sizes_never_grid_positions() -> None:
    for name in BUILDERS:  # one module per dashboard: dashboards/<name>.py
        module = DASHBOARDS / f"{name}.py"
        text = module.read_text()
        assert "gridPos" not in text and "GridPos" not in text, module.name


@pytest.mark.parametrize("name", list(BUILDERS))
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in load(name)["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, (name, panel["title"])
        taken |= cells


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


@pytest.mark.parametrize("name", list(BUILDERS))
def test_committed_json_has_no_legacy_keys(name: str) -> None:
    """What Grafana 11-13 no longer writes (tests/unit/test_grafana_schema.py checks the rest)."""
    dash = load(name)
    assert "time_options" not in dash["timepicker"]
    assert not {"rows", "style", "hideControls", "sharedCrosshair", "gnetId"} & set(dash)
    for panel in dash["panels"]:
        assert not {"editable", "error", "span", "height", "color", "columns"} & set(panel)
    for variable in dash["templating"]["list"]:
        assert "tags" not in variable.get("current", {})
        assert not {"tags", "tagsQuery", "tagValuesQuery", "useTags"} & set(variable)
    for path, node in walk(dash):
        assert node is not None or path.endswith("].value"), path  # only a base step is null
        if path.endswith(".thresholds"):
            steps = node["steps"]
            assert steps[0]["value"] is None, path
            assert all(set(s) == {"color", "value"} for s in steps), path
            assert all(isinstance(s["value"], int | float) for s in steps[1:]), path


@pytest.mark.parametrize("name", list(BUILDERS))
def test_saved_model_is_stable(name: str) -> None:
    """Rewriting what it wrote changes nothing (as Grafana re-saving its own JSON)."""
    assert saved_model(copy.deepcopy(load(name))) == load(name)


def test_saved_model_refuses_unknown_keys() -> None:
    dash = load("overview")
    dash["panels"][0]["someFutureLegacyKey"] = 1
    with pytest.raises(ValueError, match="someFutureLegacyKey"):
        saved_model(dash)


def test_unit_pickers_list_todays_units_unless_asked_for_the_abolished() -> None:
    """Every dashboard with a unit picker has the toggle before it (its query reads it), off
    by default; the picker hides units merged into another before today (Vietnam time)."""
    pickers = 0
    for name in BUILDERS:
        variables = load(name)["templating"]["list"]
        names = [v["name"] for v in variables]
        if "unit" not in names:
            continue
        pickers += 1
        toggle = variables[names.index("abolished")]
        assert names.index("abolished") < names.index("unit"), name
        assert toggle["type"] == "custom" and toggle["query"].split(",")[0] == "hide", name
        assert toggle["current"]["value"] == "hide", name
        query = variables[names.index("unit")]["query"]
        assert (
            "WHERE u.merged_into IS NULL OR u.valid_to >= unit_today() OR '$abolished' = 'show'"
            in query
        ), name
    assert pickers >= 8


def test_traffic_incidents_read_what_their_partial_index_holds() -> None:
    """The "Traffic incidents" table filters raw_camera on the incident kind, and migration
    0017's partial index holds exactly the rows of that kind: if the two drifted apart the
    index would silently stop serving the panel (3-4 s a query at national scale)."""
    migration = resources.files("ioc.db").joinpath("migrations/0017_traffic_incident_index.sql")
    assert f"ON raw_camera (ts DESC) WHERE kind = '{INCIDENT_KIND}'" in migration.read_text()
    [(_panel, target)] = [
        (panel, t) for panel, t in targets(load("cameras")) if panel["title"] == "Traffic incidents"
    ]
    assert f"c.kind = '{INCIDENT_KIND}'" in target["rawSql"]
