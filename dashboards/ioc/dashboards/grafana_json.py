"""grafanalib's dashboard JSON rewritten as Grafana 11-13 itself saves a dashboard.

grafanalib (0.7) still writes keys from Grafana 5-7 that today's Grafana ignores and no
longer writes: threshold base steps with the value ``"null"`` (a string) and an ``index``,
graph-era threshold keys (``op``, ``line``, ``yaxis``), panel ``editable``/``error``/``span``/
``height``, table ``color``/``columns``/``fontSize``/``mappings`` outside ``fieldConfig``,
variable ``current.tags`` and tag queries, timepicker ``time_options``, dashboard ``rows``/
``style``/``hideControls``/``sharedCrosshair``, Prometheus targets' ``query``/``step``/
``intervalFactor``... and ``null`` for every unset option. :func:`saved_model` keeps what
grafanalib built and writes it the way Grafana does (the keys of ``@grafana/schema``, the
required options that Grafana fills in on save, the built-in annotation query), so a
dashboard opened and saved in Grafana does not change.

A key that is neither known here nor known to be legacy raises :class:`ValueError`: a new
grafanalib must not slip new legacy keys into the committed JSON unnoticed (and
tests/unit/test_grafana_schema.py checks the result against the published schema).
"""

from __future__ import annotations

from typing import Any

# The migration that drops timepicker.time_options (Grafana 12.0); Grafana 11 opens newer
# versions as they are, Grafana 12-13 run their later migrations (none applies here).
SCHEMA_VERSION = 41

BUILT_IN_ANNOTATION: dict[str, Any] = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}
DEFAULT_REFRESH_INTERVALS = ["5s", "10s", "30s", "1m", "5m", "15m", "30m", "1h", "2h", "1d"]

DASHBOARD_KEYS = {
    "annotations",
    "description",
    "editable",
    "fiscalYearStartMonth",
    "graphTooltip",
    "links",
    "liveNow",
    "panels",
    "refresh",
    "schemaVersion",
    "tags",
    "templating",
    "time",
    "timepicker",
    "timezone",
    "title",
    "uid",
    "version",
    "weekStart",
}
DASHBOARD_LEGACY = {"__inputs", "gnetId", "hideControls", "id", "rows", "sharedCrosshair", "style"}

PANEL_KEYS = {
    "cacheTimeout",
    "datasource",
    "description",
    "fieldConfig",
    "gridPos",
    "hideTimeOverride",
    "id",
    "interval",
    "libraryPanel",
    "links",
    "maxDataPoints",
    "maxPerRow",
    "options",
    "pluginVersion",
    "queryCachingTTL",
    "repeat",
    "repeatDirection",
    "targets",
    "timeFrom",
    "timeShift",
    "title",
    "transformations",
    "transparent",
    "type",
}
# moved into fieldConfig.defaults when set (old table panel), otherwise dropped
PANEL_TO_FIELD_DEFAULTS = {"color", "mappings"}
PANEL_LEGACY = {
    "columns",
    "editable",
    "error",
    "fontSize",
    "height",
    "minSpan",
    "scroll",
    "showHeader",
    "sort",
    "span",
    "styles",
    "transform",
}
# a row panel: what Grafana saves of one (its panels follow it while it is expanded)
ROW_KEYS = {"collapsed", "datasource", "gridPos", "id", "panels", "repeat", "title", "type"}
# panel keys Grafana leaves out when they hold their default
PANEL_DEFAULTS: dict[str, Any] = {
    "description": "",
    "hideTimeOverride": False,
    "links": [],
    "transformations": [],
    "transparent": False,
}

VARIABLE_KEYS = {
    "allValue",
    "allowCustomValue",
    "current",
    "datasource",
    "description",
    "hide",
    "includeAll",
    "label",
    "multi",
    "name",
    "options",
    "query",
    "refresh",
    "regex",
    "skipUrlSync",
    "sort",
    "type",
}
VARIABLE_LEGACY = {"allFormat", "tags", "tagsQuery", "tagValuesQuery", "useTags"}
INTERVAL_VARIABLE_KEYS = {"auto", "auto_count", "auto_min"}  # kept on interval variables only

# Prometheus target keys from Grafana 5-7 (graph panel era)
PROMETHEUS_LEGACY = {"intervalFactor", "metric", "query", "step", "target"}


def _no_nulls(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _check_keys(where: str, data: dict[str, Any], known: set[str], legacy: set[str]) -> None:
    unknown = set(data) - known - legacy
    if unknown:
        raise ValueError(
            f"{where}: keys {sorted(unknown)} are neither Grafana 11-13 keys nor known legacy "
            "ones; add them to ioc.dashboards.grafana_json"
        )


def thresholds(config: dict[str, Any]) -> dict[str, Any] | None:
    """Threshold steps as ``{color, value}``, the first (base) step with ``value: null``."""
    steps = [
        {"color": step["color"], "value": None if i == 0 else step["value"]}
        for i, step in enumerate(config.get("steps", []))
    ]
    if not steps:
        return None  # Grafana fills in its default steps
    return {"mode": config.get("mode", "absolute"), "steps": steps}


def field_defaults(panel_type: str, defaults: dict[str, Any]) -> dict[str, Any]:
    out = _no_nulls(defaults)
    if "thresholds" in out:
        steps = thresholds(out.pop("thresholds"))
        if steps is not None:
            out["thresholds"] = steps
    custom = _no_nulls(out.pop("custom", {}))
    scale = custom.get("scaleDistribution")
    if isinstance(scale, dict) and scale.get("type") == "linear":
        custom["scaleDistribution"] = {"type": "linear"}  # "log" only means something for log
    if panel_type == "table":
        mode = custom.pop("displayMode", "auto")
        custom.setdefault("cellOptions", {"type": mode})
        custom.setdefault("inspect", False)
    if custom:
        out["custom"] = custom
    return out


def options(panel_type: str, opts: dict[str, Any]) -> dict[str, Any]:
    """The options Grafana writes on save: its panel plugins fill in these defaults."""
    out = _no_nulls(opts)
    if isinstance(out.get("legend"), dict):
        out["legend"] = {"calcs": [], "showLegend": True, **_no_nulls(out["legend"])}
    if isinstance(out.get("tooltip"), dict) and panel_type in {"timeseries", "state-timeline"}:
        out["tooltip"] = {"sort": "none", **_no_nulls(out["tooltip"])}
    if panel_type == "stat":
        out = {
            "percentChangeColorMode": "standard",
            "showPercentChange": False,
            "wideLayout": True,
            **out,
        }
    elif panel_type == "table":
        out = {"cellHeight": "sm", "frameIndex": 0, **out}
    elif panel_type == "geomap":
        out = {"tooltip": {"mode": "details"}, **out}
    return out


def target(data: dict[str, Any]) -> dict[str, Any]:
    out = _no_nulls(data)
    if (out.get("datasource") or {}).get("type") == "prometheus":
        for key in PROMETHEUS_LEGACY:
            out.pop(key, None)
        instant = bool(out.pop("instant", False))
        out.update(editorMode="code", instant=instant, range=not instant)
        for key, default in (("format", "time_series"), ("hide", False), ("interval", "")):
            if out.get(key) == default:
                del out[key]
        if not out.get("legendFormat"):
            out.pop("legendFormat", None)
    return out


def row(data: dict[str, Any]) -> dict[str, Any]:
    title = data.get("title", "?")
    _check_keys(f"row {title!r}", data, PANEL_KEYS | ROW_KEYS, PANEL_LEGACY)
    out = {k: v for k, v in data.items() if k in ROW_KEYS and v is not None}
    out["collapsed"] = bool(out.get("collapsed", False))
    out["panels"] = [panel(p) for p in data.get("panels", [])]
    return out


def panel(data: dict[str, Any]) -> dict[str, Any]:
    title = data.get("title", "?")
    if data.get("type") == "row":
        return row(data)
    _check_keys(f"panel {title!r}", data, PANEL_KEYS | PANEL_TO_FIELD_DEFAULTS, PANEL_LEGACY)
    panel_type = data["type"]
    out = {
        k: v
        for k, v in data.items()
        if k in PANEL_KEYS and v is not None and PANEL_DEFAULTS.get(k, object()) != v
    }
    field_config = dict(out.get("fieldConfig") or {"defaults": {}, "overrides": []})
    defaults = dict(field_config.get("defaults") or {})
    for key in sorted(PANEL_TO_FIELD_DEFAULTS):
        if data.get(key) and defaults.get(key) is None:
            defaults[key] = data[key]
    field_config["defaults"] = field_defaults(panel_type, defaults)
    field_config.setdefault("overrides", [])
    out["fieldConfig"] = field_config
    if "options" in out:
        out["options"] = options(panel_type, out["options"])
    if "targets" in out:
        out["targets"] = [target(t) for t in out["targets"]]
    return out


def variable(data: dict[str, Any]) -> dict[str, Any]:
    name = data.get("name", "?")
    known = VARIABLE_KEYS | (INTERVAL_VARIABLE_KEYS if data.get("type") == "interval" else set())
    _check_keys(f"variable {name!r}", data, known, VARIABLE_LEGACY | INTERVAL_VARIABLE_KEYS)
    out = {k: v for k, v in data.items() if k in known and v is not None}
    current = {k: v for k, v in (out.pop("current", None) or {}).items() if k != "tags"}
    if current.get("text") or current.get("value"):
        out["current"] = current  # nothing chosen: left out, Grafana picks the first option
    out.setdefault("regex", "")
    return out


def timepicker(data: dict[str, Any]) -> dict[str, Any]:
    """Grafana writes only what differs from its defaults (``{}`` for a default picker)."""
    out: dict[str, Any] = {}
    if data.get("hidden"):
        out["hidden"] = True
    if data.get("nowDelay"):
        out["nowDelay"] = data["nowDelay"]
    intervals = data.get("refresh_intervals")
    if intervals and intervals != DEFAULT_REFRESH_INTERVALS:
        out["refresh_intervals"] = intervals
    if data.get("quick_ranges"):
        out["quick_ranges"] = data["quick_ranges"]
    return out


def saved_model(data: dict[str, Any]) -> dict[str, Any]:
    """grafanalib's ``to_json_data()`` (as plain JSON) -> the JSON Grafana 11-13 saves."""
    _check_keys(f"dashboard {data.get('uid')!r}", data, DASHBOARD_KEYS, DASHBOARD_LEGACY)
    out = {k: v for k, v in data.items() if k in DASHBOARD_KEYS and v is not None}
    annotations = [a for a in (data.get("annotations") or {}).get("list", [])]
    if not any(a.get("builtIn") for a in annotations):
        annotations.insert(0, BUILT_IN_ANNOTATION)
    out["annotations"] = {"list": annotations}
    out.setdefault("fiscalYearStartMonth", 0)
    out.setdefault("weekStart", "")
    out["schemaVersion"] = SCHEMA_VERSION
    out["panels"] = [panel(p) for p in data.get("panels", [])]
    out["templating"] = {
        "list": [variable(v) for v in (data.get("templating") or {}).get("list", [])]
    }
    out["timepicker"] = timepicker(data.get("timepicker") or {})
    return out
