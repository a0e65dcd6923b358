"""Every generated dashboard against Grafana's published schema (npm ``@grafana/schema``).

``tsc --strict`` checks each dashboard as one fresh object literal typed as the pinned
package's ``Dashboard``, and each panel's options (and custom field config) as its panel
type's ``Options`` (``FieldConfig``): an unknown key, a missing required one or a wrong type
is an error, and there must be none. Legacy keys that grafanalib writes and Grafana 11-13 no
longer does must fail the same check (the fixture and the variants below), so that a pass
means something.

The first run installs the pinned packages (``npm ci`` in dashboards/ioc/dashboards/schema);
without npm or the registry the test fails and says so: it is never skipped.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ioc.dashboards import grafana_schema as gs
from ioc.dashboards.build import BUILDERS, GENERATED
from ioc.dashboards.grafana_json import saved_model

FIXTURE = gs.SCHEMA_DIR / "fixtures" / "grafanalib-0.7-legacy.json"
PACKAGE = json.loads((gs.SCHEMA_DIR / "package.json").read_text())
LOCK = json.loads((gs.SCHEMA_DIR / "package-lock.json").read_text())

Json = dict[str, Any]


def committed(name: str) -> Json:
    data: Json = json.loads((GENERATED / f"ioc-{name}.json").read_text())
    return data


def first_panel(dash: Json, panel_type: str) -> Json:
    panel: Json = next(p for p in dash["panels"] if p["type"] == panel_type)
    return panel


def _panel_editable(d: Json) -> None:
    d["panels"][0]["editable"] = True


def _panel_color(d: Json) -> None:
    first_panel(d, "table")["color"] = {"mode": "thresholds"}


def _threshold_base_string(d: Json) -> None:
    steps = first_panel(d, "stat")["fieldConfig"]["defaults"]["thresholds"]["steps"]
    steps[0] = {"color": steps[0]["color"], "value": "null"}


def _threshold_index(d: Json) -> None:
    steps = first_panel(d, "stat")["fieldConfig"]["defaults"]["thresholds"]["steps"]
    steps[1]["index"] = 1


def _variable_current_tags(d: Json) -> None:
    d["templating"]["list"][0]["current"] = {"selected": False, "tags": [], "text": "", "value": ""}


def _timepicker_time_options(d: Json) -> None:
    d["timepicker"]["time_options"] = ["5m", "15m", "1h", "6h", "12h", "24h", "2d", "7d", "30d"]


def _dashboard_style(d: Json) -> None:
    d["style"] = "dark"


def _stat_option_unknown(d: Json) -> None:
    first_panel(d, "stat")["options"]["thresholdsMode"] = "absolute"


def _table_legacy_custom(d: Json) -> None:
    first_panel(d, "table")["fieldConfig"]["defaults"]["custom"] = {
        "align": "auto",
        "displayMode": "auto",
        "filterable": False,
    }


def _timeseries_legend_enum(d: Json) -> None:
    first_panel(d, "timeseries")["options"]["legend"]["placement"] = "top"


# variant -> (dashboard it mutates, mutation, text the error must contain)
LEGACY: dict[str, tuple[str, Callable[[Json], None], str]] = {
    "panel-editable": ("overview", _panel_editable, "'\"editable\"' does not exist"),
    "panel-color": ("overview", _panel_color, "'\"color\"' does not exist"),
    "threshold-base-string-null": ("overview", _threshold_base_string, "Type 'string'"),
    "threshold-index": ("overview", _threshold_index, "'\"index\"' does not exist"),
    "variable-current-tags": ("cameras", _variable_current_tags, "'\"tags\"' does not exist"),
    "timepicker-time-options": (
        "overview",
        _timepicker_time_options,
        "'\"time_options\"' does not exist",
    ),
    "dashboard-style": ("overview", _dashboard_style, "'\"style\"' does not exist"),
    "stat-option-unknown": ("overview", _stat_option_unknown, "'\"thresholdsMode\"' does not"),
    "table-custom-legacy": ("overview", _table_legacy_custom, "cellOptions"),
    "legend-placement-enum": ("pipeline", _timeseries_legend_enum, '"top"'),
}


@pytest.fixture(scope="module")
def diagnostics() -> dict[str, list[gs.Diagnostic]]:
    """One tsc run over every dashboard, the fixture, its rewrite and the legacy variants."""
    sources = {f"ioc-{name}": gs.typescript(name, committed(name)) for name in BUILDERS}
    legacy = json.loads(FIXTURE.read_text())
    sources["fixture-legacy"] = gs.typescript("fixture", legacy)
    sources["fixture-rewritten"] = gs.typescript("fixture", saved_model(copy.deepcopy(legacy)))
    for variant, (name, mutate, _) in LEGACY.items():
        data = committed(name)
        mutate(data)
        sources[f"legacy-{variant}"] = gs.typescript(variant, data)
    try:
        found = gs.tsc(sources)
    except gs.SchemaCheckError as exc:  # npm, the registry or node missing: fail, never skip
        pytest.fail(f"cannot run the Grafana schema check: {exc}")
    result = gs.by_file(found)
    stray = set(result) - set(sources)
    assert not stray, [str(d) for f in stray for d in result[f]]  # e.g. errors in grafana.ts
    return result


def test_packages_are_pinned_exactly() -> None:
    for name, version in PACKAGE["devDependencies"].items():
        assert version[0].isdigit(), f"{name} {version}: pin an exact version"
        assert LOCK["packages"][f"node_modules/{name}"]["version"] == version, name


@pytest.mark.parametrize("name", list(BUILDERS))
def test_dashboard_matches_the_published_schema(
    name: str, diagnostics: dict[str, list[gs.Diagnostic]]
) -> None:
    errors = diagnostics.get(f"ioc-{name}", [])
    assert not errors, (
        f"dashboards/ioc/dashboards/generated/ioc-{name}.json: {len(errors)} error(s) "
        "against @grafana/schema "
        f"{PACKAGE['devDependencies']['@grafana/schema']}:\n" + "\n".join(map(str, errors))
    )


def test_legacy_fixture_fails_and_its_rewrite_passes(
    diagnostics: dict[str, list[gs.Diagnostic]],
) -> None:
    # tsc reports an unknown key only in a literal without other errors, so here it names
    # a few (the variants above cover each legacy key on its own)
    messages = "\n".join(d.message for d in diagnostics.get("fixture-legacy", []))
    for expected in ("'\"index\"'", "'\"tags\"'", "Type 'string'", "Type 'null'"):
        assert expected in messages, f"{expected} not reported in:\n{messages}"
    assert not diagnostics.get("fixture-rewritten"), "\n".join(
        map(str, diagnostics["fixture-rewritten"])
    )


@pytest.mark.parametrize("variant", list(LEGACY))
def test_legacy_key_fails(variant: str, diagnostics: dict[str, list[gs.Diagnostic]]) -> None:
    _, _, expected = LEGACY[variant]
    errors = diagnostics.get(f"legacy-{variant}", [])
    assert errors, f"{variant}: tsc accepted it"
    assert any(expected in d.message for d in errors), "\n".join(map(str, errors))


def test_generated_typescript_is_one_literal_per_dashboard_and_per_panel() -> None:
    text = gs.typescript("overview", committed("overview"))
    panels = committed("overview")["panels"]
    assert text.count("export const dashboard: Dashboard = {") == 1
    assert text.count("Options> = {") == len(panels)


def test_schema_dir_keeps_node_modules_out_of_git() -> None:
    ignore = (Path(__file__).resolve().parents[2] / ".gitignore").read_text().splitlines()
    assert "dashboards/ioc/dashboards/schema/node_modules/" in ignore
    assert "dashboards/ioc/dashboards/schema/out/" in ignore
