"""Small helpers shared by every dashboard: datasources, colours, units, panel builders.

Datasource UIDs are fixed and match the provisioning in deploy/ioc/deploy/compose/grafana. Every SQL
query uses Grafana's macros (``$__timeFilter``, ``$__interval``...) and aggregates on the
server; every PromQL query uses metric names from :mod:`ioc.contract.metrics`.

Panel helpers take a size (width in grid columns, height in rows), never a position:
:func:`dashboard` places the panels in order with :class:`Layout`. grafanalib builds the
JSON; :mod:`ioc.dashboards.grafana_json` then rewrites it as Grafana 11-13 saves it.
"""

from __future__ import annotations

from typing import Any

import attr
from grafanalib import core as g

from ioc.contract import feeds
from ioc.contract.history import PANEL_STEP, TIERS, tiered_sql

PROMETHEUS_UID = "ioc-prometheus"
TIMESCALE_UID = "ioc-timescaledb"
PROMETHEUS: dict[str, str] = {"type": "prometheus", "uid": PROMETHEUS_UID}
TIMESCALE: dict[str, str] = {"type": "grafana-postgresql-datasource", "uid": TIMESCALE_UID}

GREEN, AMBER, RED, BLUE, GREY = "green", "#EAB839", "red", "blue", "#808080"
STATE_COLOURS = {
    "up": GREEN,
    "degraded": AMBER,
    "down": RED,
    "unreachable-upstream": "purple",
    "flapping": "orange",
    "unknown": GREY,
}
SEVERITY_COLOURS = {"critical": RED, "warning": AMBER, "info": BLUE}

DASHBOARD_UIDS = {
    "overview": "ioc-overview",
    "cameras": "ioc-cameras",
    "telehealth": "ioc-telehealth",
    "network": "ioc-network",
    "sla": "ioc-sla",
    "pipeline": "ioc-pipeline",
    "feeds": "ioc-feeds",
    "vconf": "ioc-vconf",
    "portal": "ioc-portal",
    "soc": "ioc-soc",
}


TITLES = {
    "overview": "IOC overview",
    "cameras": "Cameras",
    "telehealth": "Telehealth",
    "network": "Network",
    "sla": "Availability / SLA",
    "pipeline": "Pipeline health",
    "feeds": "Feeds",
    "vconf": "Video conference",
    "portal": "Public-service portal",
    "soc": "Security operations",
}


def link(dashboard: str, title: str, **variables: str) -> dict[str, Any]:
    """A data link to another IOC dashboard, keeping the time range."""
    params = "&".join(f"var-{k}={v}" for k, v in variables.items())
    url = f"/d/{DASHBOARD_UIDS[dashboard]}?${{__url_time_range}}"
    return {"title": title, "url": f"{url}&{params}" if params else url}


def prom(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> g.Target:
    target = g.Target(expr=expr, legendFormat=legend, refId=ref, datasource=PROMETHEUS)
    if instant:
        target.instant = True
    return target


@attr.s
class SqlTarget(g.Target):
    """A TimescaleDB (PostgreSQL datasource) query in raw SQL mode."""

    rawSql: str = attr.ib(default="")
    format: str = attr.ib(default="time_series")

    def to_json_data(self) -> dict[str, Any]:
        return {
            "datasource": self.datasource,
            "refId": self.refId,
            "rawQuery": True,
            "editorMode": "code",
            "rawSql": self.rawSql,
            "format": self.format,
        }


def sql(query: str, fmt: str = "time_series", ref: str = "A") -> SqlTarget:
    return SqlTarget(rawSql=" ".join(query.split()), format=fmt, refId=ref, datasource=TIMESCALE)


def rollup_rows(feed: str, where: str, *, unit: bool, series: bool) -> str:
    """A FROM item (the caller gives the alias): a feed's device or unit rollup rows that
    match ``where`` (unqualified columns; it should hold ``$__timeFilter(bucket)``), from the
    tier ``rollup_tier`` picks for the panel's range: 1 minute, 1 hour or 1 day
    (docs/history.md section 4), all with the 1-minute table's columns. ``series``: a time
    series, whose step is the panel's interval; else a table or stat over the whole range."""
    spec = feeds.spec(feed)
    key = ("bucket", "unit_code", "level") if unit else ("bucket", "device_id")
    aggregates = spec.unit_rollup if unit else spec.device_rollup
    table = spec.unit_table if unit else spec.device_table
    return tiered_sql(
        {tier.name: table(tier.name) for tier in TIERS},
        ", ".join([*key, *(a.name for a in aggregates)]),
        where,
        step=PANEL_STEP if series else None,
    )


def unit_device_rows(feed: str) -> str:
    """The rollup rows of the chosen unit's devices over the whole range (tables), at the
    tier the range reads: the unit is chosen inside each branch, so only its devices' rows
    are read, not the whole country's."""
    where = f"$__timeFilter(bucket) AND {in_unit('device_id')}"
    return rollup_rows(feed, where, unit=False, series=False)


def device_rows(feed: str) -> str:
    """The chosen device's rollup rows in the range, at the tier its range reads."""
    return rollup_rows(
        feed, "device_id = '$device' AND $__timeFilter(bucket)", unit=False, series=True
    )


def unit_series(feed: str, columns: str) -> SqlTarget:
    """The chosen unit's rollup of a feed at the tier its range reads, re-bucketed to the
    panel's interval."""
    in_unit = "unit_code = '$unit' AND $__timeFilter(bucket)"
    rows = rollup_rows(feed, in_unit, unit=True, series=True)
    return sql(
        f"SELECT time_bucket('$__interval', bucket) AS time, {columns} "
        f"FROM {rows} r GROUP BY 1 ORDER BY 1"
    )


GRID_WIDTH = 24  # Grafana's grid: 24 columns; heights in rows of 30 px
FULL, THREE_QUARTERS, HALF, THIRD, QUARTER, SIXTH = 24, 18, 12, 8, 6, 4  # widths
Size = tuple[int, int]  # (width in columns, height in rows)


class Layout:
    """Places panels on Grafana's grid in reading order, so dashboards give sizes, not places.

    Each panel goes to the highest place where its width fits, the leftmost of equally high
    ones (the skyline of what is already placed): panels fill a row left to right, the next
    row starts under the lowest part of the one above, and panels beside a tall one stack in
    the columns next to it.
    """

    def __init__(self, width: int = GRID_WIDTH) -> None:
        self.width = width
        self.skyline = [0] * width  # the first free row of each column

    def place(self, w: int, h: int) -> g.GridPos:
        if not (0 < w <= self.width and h > 0):
            raise ValueError(f"panel size {w}x{h} does not fit a {self.width}-column grid")
        y, x = min((max(self.skyline[x : x + w]), x) for x in range(self.width - w + 1))
        self.skyline[x : x + w] = [y + h] * w
        return g.GridPos(h=h, w=w, x=x, y=y)

    def lay_out(self, panels: list[Any]) -> list[Any]:
        """Give every panel its place from the size its helper recorded (its gridPos w, h)."""
        for panel in panels:
            panel.gridPos = self.place(panel.gridPos.w, panel.gridPos.h)
        return panels


def size(s: Size) -> g.GridPos:
    """A panel's size, placed later by :class:`Layout` (in :func:`dashboard`)."""
    w, h = s
    return g.GridPos(h=h, w=w, x=0, y=0)


def thresholds(*steps: tuple[float | None, str]) -> list[g.Threshold]:
    """Threshold steps, the first being the base (written ``value: null`` by grafana_json)."""
    return [
        g.Threshold(colour, i, float(value) if value is not None else 0.0)
        for i, (value, colour) in enumerate(steps)
    ]


def stat(
    title: str,
    target: g.Target,
    unit: str = "short",
    steps: list[Any] | None = None,
    dims: Size = (SIXTH, 4),
    links: list[Any] | None = None,
    decimals: int | None = None,
) -> g.Stat:
    return g.Stat(
        title=title,
        dataSource=target.datasource,
        targets=[target],
        format=unit,
        thresholdType="absolute",
        reduceCalc="lastNotNull",
        decimals=decimals,
        thresholds=steps or thresholds((None, BLUE)),
        links=links or [],
        gridPos=size(dims),
    )


def timeseries(
    title: str,
    targets: list[g.Target],
    unit: str = "short",
    dims: Size = (HALF, 8),
    stacking: bool = False,
    description: str = "",
) -> g.TimeSeries:
    return g.TimeSeries(
        title=title,
        dataSource=targets[0].datasource,
        targets=targets,
        unit=unit,
        description=description,
        stacking={"mode": "normal" if stacking else "none"},
        gridPos=size(dims),
    )


def table(
    title: str,
    target: g.Target,
    dims: Size = (FULL, 8),
    links: list[Any] | None = None,
    description: str = "",
    field_links: dict[str, tuple[str, str]] | None = None,
) -> g.Table:
    """A table; ``field_links`` maps a column to (title, url) data links on its cells
    (``${__value.raw}`` is the cell's value)."""
    overrides = [
        {
            "matcher": {"id": "byName", "options": column},
            "properties": [{"id": "links", "value": [{"title": text, "url": url}]}],
        }
        for column, (text, url) in (field_links or {}).items()
    ]
    return g.Table(
        title=title,
        dataSource=target.datasource,
        targets=[target],
        description=description,
        gridPos=size(dims),
        links=links or [],
        overrides=overrides,
    )


CONSOLE_VARIABLE = "console"
DEFAULT_CONSOLE_URL = "http://127.0.0.1:9490"
"""The operator console's address (``ioc ops serve``; IOC_CONSOLE_URL): a constant variable
that provisioning overrides per deployment."""


def console_variable() -> g.Template:
    return g.Template(
        name=CONSOLE_VARIABLE,
        label="Operator console",
        type="constant",
        query=DEFAULT_CONSOLE_URL,
        default=DEFAULT_CONSOLE_URL,
        hide=2,
    )


def console_incident_link() -> tuple[str, str]:
    """Incident id -> its page in the operator console."""
    return (
        "Open in the operator console",
        f"${{{CONSOLE_VARIABLE}}}/console/incidents/${{__value.raw}}",
    )


def state_timeline(title: str, target: g.Target, dims: Size) -> g.StateTimeline:
    mappings = [
        {
            "type": "value",
            "options": {
                state: {"color": colour, "index": i, "text": state}
                for i, (state, colour) in enumerate(STATE_COLOURS.items())
            },
        }
    ]
    return g.StateTimeline(
        title=title,
        dataSource=target.datasource,
        targets=[target],
        gridPos=size(dims),
        mappings=mappings,
    )


def row(title: str) -> g.RowPanel:
    """A row header across the grid (expanded: the panels after it are its panels)."""
    return g.RowPanel(title=title, gridPos=size((FULL, 1)))


def device_state_timeline(dims: Size = (FULL, 5)) -> g.StateTimeline:
    """The chosen device's state intervals (every domain dashboard has one)."""
    return state_timeline(
        "State of $device",
        sql("""
        SELECT start_ts AS time, state FROM device_state_intervals
        WHERE device_id = '$device' AND start_ts <= $__timeTo()
          AND coalesce(end_ts, now()) >= $__timeFrom()
        ORDER BY start_ts"""),
        dims,
    )


@attr.s
class Geomap(g.Panel):
    """Grafana's geomap panel (grafanalib has none): markers coloured by a field."""

    latitude: str = attr.ib(default="lat")
    longitude: str = attr.ib(default="lon")
    colour_field: str = attr.ib(default="value")
    size_field: str = attr.ib(default="")
    centre: tuple[float, float] = attr.ib(default=(21.7, 104.8))
    zoom: int = attr.ib(default=8)
    steps: list[Any] = attr.ib(default=attr.Factory(list))

    def to_json_data(self) -> Any:
        size = {"field": self.size_field, "min": 4, "max": 16} if self.size_field else {"fixed": 6}
        return self.panel_json(
            {
                "type": "geomap",
                "fieldConfig": {
                    "defaults": {
                        "thresholds": {
                            "mode": "absolute",
                            "steps": [
                                {"color": s.color, "value": None if i == 0 else s.value}
                                for i, s in enumerate(self.steps)
                            ],
                        },
                        "color": {"mode": "thresholds"},
                    },
                    "overrides": [],
                },
                "options": {
                    "view": {
                        "id": "coords",
                        "lat": self.centre[0],
                        "lon": self.centre[1],
                        "zoom": self.zoom,
                    },
                    "controls": {"showZoom": True, "mouseWheelZoom": True},
                    "basemap": {"type": "default", "name": "Basemap"},
                    "layers": [
                        {
                            "type": "markers",
                            "name": "units",
                            "location": {
                                "mode": "coords",
                                "latitude": self.latitude,
                                "longitude": self.longitude,
                            },
                            "config": {
                                "style": {
                                    "color": {"field": self.colour_field},
                                    "size": size,
                                    "opacity": 0.8,
                                    "symbol": {
                                        "fixed": "img/icons/marker/circle.svg",
                                        "mode": "fixed",
                                    },
                                },
                                "showLegend": True,
                            },
                            "tooltip": True,
                        }
                    ],
                },
            }
        )


def geomap(
    title: str,
    target: g.Target,
    colour_field: str,
    steps: list[Any],
    dims: Size = (HALF, 16),
    size_field: str = "",
    links: list[Any] | None = None,
) -> Geomap:
    return Geomap(
        title=title,
        dataSource=target.datasource,
        targets=[target],
        colour_field=colour_field,
        size_field=size_field,
        steps=steps,
        gridPos=size(dims),
        links=links or [],
    )


def sql_variable(
    name: str, label: str, query: str, include_all: bool = False, default: str = ""
) -> g.Template:
    return g.Template(
        name=name,
        label=label,
        query=" ".join(query.split()),
        type="query",
        dataSource=TIMESCALE,
        includeAll=include_all,
        default=default,
        refresh=1,
        sort=1,
    )


ABOLISHED_VARIABLE = "abolished"
ABOLISHED_HIDE, ABOLISHED_SHOW = "hide", "show"
"""The unit picker's toggle: today's units only (the default), or the units abolished in a
merger too (``valid_to`` before today, Vietnam time; e.g. the districts and provinces of
before 1 July 2025), to see their history as it was."""

UNIT_VARIABLE_SQL = f"""
SELECT u.code AS __value,
       repeat('· ', u.level) || u.name || ' (' || u.level_name
         || CASE WHEN u.valid_to < unit_today() THEN ', until ' || u.valid_to ELSE '' END
         || ')' AS __text
FROM admin_units u
WHERE u.merged_into IS NULL OR u.valid_to >= unit_today()
   OR '${ABOLISHED_VARIABLE}' = '{ABOLISHED_SHOW}'
ORDER BY u.level, u.code
"""


def abolished_variable() -> g.Template:
    return g.Template(
        name=ABOLISHED_VARIABLE,
        label="Abolished units",
        type="custom",
        query=f"{ABOLISHED_HIDE},{ABOLISHED_SHOW}",
        default=ABOLISHED_HIDE,
        includeAll=False,
        multi=False,
    )


def unit_variables() -> list[g.Template]:
    """The unit picker: every administrative unit of today at every level (panels aggregate
    below the chosen one), and its toggle for the abolished ones (before it: the picker's
    query reads it)."""
    return [abolished_variable(), sql_variable("unit", "Unit", UNIT_VARIABLE_SQL)]


def device_variable(device_class: str) -> g.Template:
    return sql_variable(
        "device",
        "Device",
        f"""
        SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id
        JOIN unit_ancestors a ON a.unit_code = s.unit_code AND a.ancestor_code = '$unit'
        WHERE d.device_class = '{device_class}' ORDER BY d.id""",
    )


def in_unit(device_column: str = "d.id") -> str:
    """SQL condition: the device is in the chosen unit (at any level below it)."""
    return (
        f"{device_column} IN (SELECT dd.id FROM devices dd JOIN sites ss ON ss.id = "
        f"dd.site_id JOIN unit_ancestors aa ON aa.unit_code = ss.unit_code "
        f"WHERE aa.ancestor_code = '$unit')"
    )


def dashboard(
    uid_key: str,
    title: str,
    panels: list[Any],
    templates: list[Any] | None = None,
    description: str = "",
    refresh: str = "10s",
) -> g.Dashboard:
    return g.Dashboard(
        title=title,
        uid=DASHBOARD_UIDS[uid_key],
        description=description,
        tags=["ioc"],
        timezone="browser",
        refresh=refresh,
        time=g.Time("now-1h", "now"),
        panels=Layout().lay_out(panels),
        templating=g.Templating(list=templates or []),
        links=[
            g.DashboardLink(uri=f"/d/{u}", title=TITLES[t], type="link", keepTime=True)
            for t, u in DASHBOARD_UIDS.items()
            if t != uid_key
        ],
    ).auto_panel_ids()
