"""Inventory rows -> a topology, every bad row reported with its number.

The devices sheet has one row per device; a site is on as many rows as it has devices, and
its fields (unit, name, kind, coordinates) may be left empty on all but one of them, but where
two rows give one they must agree. Each device gets its site's coordinates. The province's
administrative units come from elsewhere (:class:`Units`: a base scenario, a units sheet or
the previous version), because they change by decree, not with the equipment.

Checked, each with the row it is on: ids (the contract's device id: what every message
carries), duplicates, device class, site kind, unit (known, and not ended by a merger),
numbers, coordinates inside the province, the poll address, upstream (a device of the
inventory and a network node) and dependency cycles. The result is then loaded the way every
scenario is (:func:`ioc.contract.topology.parse_topology`), so what passes here also runs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from ioc.contract import feeds
from ioc.contract.topology import (
    SITE_KINDS,
    AdminUnit,
    Device,
    Site,
    Topology,
    merger_problem,
    parse_topology,
)
from ioc.inventory import InventoryError, Problems
from ioc.inventory.sheet import Row, Sheet, cell_text

MARGIN_DEG: Final = 0.3
"""How far (in degrees, ~33 km) a site may lie outside the box around its province's unit
centres: those are the units' offices, and a province's edge runs well beyond the outermost
commune office. ``--bbox`` replaces the box when the province declares its own."""

ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
"""The contract's ``DeviceId`` (ioc.contract.schemas): a device id longer or with other
characters would be dead-lettered in every message. Site ids and unit codes follow it too: they
sit beside device ids in incidents, alert labels and the operations API."""
ID_RULE: Final = "1-64 characters of A-Z a-z 0-9 . _ : -"

ATTRIBUTE_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]{0,62}(\[\])?$")
LIST_SEPARATOR: Final = ";"
_INT = re.compile(r"^-?(0|[1-9][0-9]{0,17})$")
_FLOAT = re.compile(r"^-?(0|[1-9][0-9]*)\.[0-9]+$")
_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)

DEVICE_COLUMNS: Final[Mapping[str, str]] = {
    "device_id": f"required, unique: the device's id ({ID_RULE})",
    "device_name": "the device's name as staff know it (Vietnamese as typed); attribute 'name'",
    "class": "required: " + ", ".join(feeds.Feed),
    "unit": "code of the administrative unit the site is in (once per site at least)",
    "site_id": f"required: the site's id ({ID_RULE}); a site may be on many rows",
    "site_name": "the site's name (default: its id)",
    "site_kind": "once per site at least: " + ", ".join(SITE_KINDS),
    "address": "IP address, host name (optionally :port) or URL the collectors poll; "
    "attribute 'address'",
    "upstream": "device_id of the network node (class netnode) the device reaches the core "
    "through; empty for the core",
    "lat": "the site's latitude, decimal degrees (WGS 84), inside the province",
    "lon": "the site's longitude, decimal degrees (WGS 84), inside the province",
}
"""The devices sheet's own columns and what each holds. Any other column is an attribute of
the device (``name[]``: a list separated by ``;``)."""
REQUIRED_DEVICE_COLUMNS: Final = (
    "device_id",
    "class",
    "unit",
    "site_id",
    "site_kind",
    "lat",
    "lon",
)
_MISLEADING: Final = {"name": "device_name or site_name", "id": "device_id", "site": "site_id"}

UNIT_COLUMNS: Final[Mapping[str, str]] = {
    "code": f"required, unique: the unit's code ({ID_RULE})",
    "name": "required: its name (Vietnamese as typed)",
    "level": "required: its tier, e.g. province, district, commune (top tier first)",
    "parent": "code of the unit above it; empty for the province",
    "lat": "required: latitude of its office, decimal degrees",
    "lon": "required: longitude of its office, decimal degrees",
    "valid_from": "first day it exists (YYYY-MM-DD), empty: always",
    "valid_to": "last day it exists (YYYY-MM-DD), empty: still exists",
    "merged_into": "code of the unit it was merged into when it ended",
}
REQUIRED_UNIT_COLUMNS: Final = ("code", "name", "level", "lat", "lon")


@dataclass(frozen=True)
class BBox:
    """Where the province's sites may be."""

    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float
    how: str
    """Where the box comes from, for messages."""

    def contains(self, lat: float, lon: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon

    def describe(self) -> str:
        return (
            f"lat {self.min_lat:.2f}..{self.max_lat:.2f}, lon {self.min_lon:.2f}.."
            f"{self.max_lon:.2f} ({self.how})"
        )

    @classmethod
    def around(cls, units: Mapping[str, AdminUnit], margin: float = MARGIN_DEG) -> BBox:
        lats = [u.lat for u in units.values()]
        lons = [u.lon for u in units.values()]
        return cls(
            max(min(lats) - margin, -90.0),
            max(min(lons) - margin, -180.0),
            min(max(lats) + margin, 90.0),
            min(max(lons) + margin, 180.0),
            f"its units' extent widened by {margin}°",
        )

    @classmethod
    def parse(cls, text: str) -> BBox:
        """``--bbox MIN_LAT,MIN_LON,MAX_LAT,MAX_LON``."""
        try:
            s, w, n, e = (float(part) for part in text.split(","))
        except ValueError:
            raise InventoryError(
                f"--bbox {text!r}: expected MIN_LAT,MIN_LON,MAX_LAT,MAX_LON in degrees"
            ) from None
        if not (-90 <= s < n <= 90 and -180 <= w < e <= 180):
            raise InventoryError(f"--bbox {text!r}: not a box (south < north, west < east)")
        return cls(s, w, n, e, "--bbox")


@dataclass(frozen=True)
class Units:
    """The administrative units an inventory is checked against, and where they came from."""

    source: str
    levels: list[str]
    units: dict[str, AdminUnit]

    @property
    def province(self) -> str:
        """The top units' names (one province, or several in a national scenario)."""
        return ", ".join(u.name for u in self.units.values() if u.parent is None)

    @classmethod
    def of(cls, topology: Topology, source: str) -> Units:
        return cls(source, list(topology.levels), dict(topology.units))


# --- cells ---


def _number(text: str) -> float | None:
    """A decimal number; a decimal comma (what a comma-decimal locale's Excel writes) too."""
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _attribute_value(text: str) -> Any:
    """Text that reads as an integer or a decimal is stored as a number (a YAML scenario's
    ``lanes: 2``); everything else as the text given."""
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def address_problem(text: str) -> str | None:
    """Why ``text`` is not something a collector can poll (None: it is)."""
    if any(c.isspace() for c in text):
        return "contains a space"
    if "://" in text:
        parts = urllib.parse.urlsplit(text)
        try:
            parts.port  # noqa: B018  # raises on a bad port
        except ValueError:
            return "has a bad port"
        return None if parts.scheme and parts.hostname else "is not a URL with a host"
    try:
        ipaddress.ip_address(text.strip("[]"))
        return None
    except ValueError:
        pass
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        return f"has a bad port {port!r}"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    return None if _HOST.match(host) else "is not an IP address, host name or URL"


class _Cells:
    """One row's cells by column name, with the row's problems."""

    def __init__(self, sheet: Sheet, row: Row, names: Mapping[int, str], out: Problems) -> None:
        self.sheet = sheet
        self.row = row
        self.out = out
        self.cells: dict[str, str] = {}
        for index, value in enumerate(row.values):
            name = names.get(index)
            if name is None:
                if value:
                    self.fail(f"a value ({value!r}) in column {index + 1}, which has no header")
                continue
            if "\x00" in value:
                self.fail(f"{name} contains a NUL character")
                value = value.replace("\x00", "")
            self.cells[name] = value

    def fail(self, problem: str) -> None:
        self.out.add(self.sheet.source, self.row.number, problem)

    def get(self, name: str) -> str:
        return self.cells.get(name, "")

    def required(self, name: str) -> str | None:
        value = self.get(name)
        if not value:
            self.fail(f"{name} is empty")
            return None
        return value

    def ident(self, name: str, required: bool = True) -> str | None:
        value = self.required(name) if required else (self.get(name) or None)
        if value is not None and not ID_PATTERN.match(value):
            self.fail(f"{name} {value!r} is not {ID_RULE}")
            return None
        return value

    def number(self, name: str, low: float, high: float) -> float | None:
        text = self.get(name)
        value = _number(text)
        if not text:
            self.fail(f"{name} is empty")
        elif value is None:
            self.fail(f"{name} {text!r} is not a number")
        elif not low <= value <= high:
            self.fail(f"{name} {text} is outside {low:g}..{high:g}")
            return None
        return value

    def date(self, name: str) -> dt.date | None:
        text = self.get(name)
        if not text:
            return None
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            self.fail(f"{name} {text!r} is not a date YYYY-MM-DD")
            return None


def _header(
    sheet: Sheet, known: Mapping[str, str], required: tuple[str, ...], attributes: bool
) -> dict[int, str]:
    """Column index -> name; raises with every header problem (rows mean nothing without)."""
    out = Problems()
    names: dict[int, str] = {}
    first: dict[str, int] = {}
    for index, name in enumerate(sheet.columns):
        if not name:
            continue
        key = name.removesuffix("[]")
        if key in first:
            out.add(
                sheet.source,
                1,
                f"column {name!r} appears twice (columns {first[key]} and {index + 1})",
            )
            continue
        first[key] = index + 1
        if name in known:
            names[index] = name
        elif not attributes:
            out.add(sheet.source, 1, f"unknown column {name!r}; the columns are {', '.join(known)}")
        elif key in _MISLEADING:
            out.add(sheet.source, 1, f"column {name!r} is ambiguous: use {_MISLEADING[key]}")
        elif ATTRIBUTE_PATTERN.match(name):
            names[index] = name
        else:
            out.add(
                sheet.source,
                1,
                f"column {name!r} is not one of {', '.join(known)}, nor an attribute name "
                "(a-z, 0-9 and _, starting with a letter; name[] for a list)",
            )
    missing = [name for name in required if name not in first]
    if missing:
        out.add(sheet.source, 1, f"missing column(s) {', '.join(missing)}")
    out.raise_if_any(sheet.source)
    return names


# --- units ---


def units_from_sheet(sheet: Sheet) -> Units:
    """A units sheet (code, name, level, parent, lat, lon, valid_from, valid_to, merged_into):
    tiers are ordered by depth below the top units."""
    names = _header(sheet, UNIT_COLUMNS, REQUIRED_UNIT_COLUMNS, attributes=False)
    out = Problems()
    rows: dict[str, tuple[_Cells, str, str | None]] = {}  # code -> cells, level, parent
    values: dict[str, dict[str, Any]] = {}
    for row in sheet.rows:
        c = _Cells(sheet, row, names, out)
        code = c.ident("code")
        name, level = c.required("name"), c.required("level")
        parent = c.ident("parent", required=False)
        lat, lon = c.number("lat", -90, 90), c.number("lon", -180, 180)
        valid_from, valid_to = c.date("valid_from"), c.date("valid_to")
        merged_into = c.ident("merged_into", required=False)
        if valid_from and valid_to and valid_from > valid_to:
            c.fail(f"valid_from {valid_from} is after valid_to {valid_to}")
        if code is None or name is None or level is None or lat is None or lon is None:
            continue
        if code in rows:
            c.fail(f"unit code {code!r} is already on row {rows[code][0].row.number}")
            continue
        rows[code] = (c, level, parent)
        values[code] = {
            "name": name,
            "lat": lat,
            "lon": lon,
            "valid_from": valid_from,
            "valid_to": valid_to,
            "merged_into": merged_into,
        }
    depth: dict[str, int] = {}
    for code, (c, _, parent) in rows.items():
        chain, cursor = [code], parent
        while cursor is not None and cursor in rows and cursor not in chain:
            chain.append(cursor)
            cursor = rows[cursor][2]
        if cursor is not None and cursor in chain:
            c.fail(f"parent chain loops: {' -> '.join([*chain, cursor])}")
        elif cursor is not None:
            c.fail(f"parent {cursor!r} is not a unit of this sheet")
        else:
            depth[code] = len(chain) - 1
        merged = values[code]["merged_into"]
        if merged is not None and merged not in rows:
            c.fail(f"merged_into {merged!r} is not a unit of this sheet")
    tier: dict[int, tuple[str, int]] = {}  # depth -> (level name, row that set it)
    for code, d in sorted(depth.items(), key=lambda item: rows[item[0]][0].row.number):
        c, level, _ = rows[code]
        seen = tier.setdefault(d, (level, c.row.number))
        other = next((n for n, (lv, _) in tier.items() if lv == level and n != d), None)
        if seen[0] != level:
            c.fail(f"level {level!r} at tier {d + 1}, where row {seen[1]} has {seen[0]!r}")
        elif other is not None:
            c.fail(
                f"level {level!r} at tier {d + 1}, but at tier {other + 1} on row {tier[other][1]}"
            )
    out.raise_if_any(sheet.source)
    if not rows:
        raise InventoryError(f"{sheet.source}: no units")
    levels = [tier[d][0] for d in sorted(tier)]
    units = {
        code: AdminUnit(
            code=code,
            name=v["name"],
            level=depth[code],
            level_name=levels[depth[code]],
            parent=rows[code][2],
            lat=v["lat"],
            lon=v["lon"],
            valid_from=v["valid_from"],
            valid_to=v["valid_to"],
            merged_into=v["merged_into"],
        )
        for code, v in values.items()
    }
    for code in units:  # mergers name a unit that exists today (the scenario's own rule)
        problem = merger_problem(code, units, of="sheet")
        if problem is not None:
            rows[code][0].fail(problem)
    out.raise_if_any(sheet.source)
    return Units(sheet.source, levels, units)


# --- devices ---


@dataclass
class _SiteRows:
    """What the rows of one site say about it; each field with the row that first gave it."""

    id: str
    first_row: int
    fields: dict[str, tuple[Any, int, str]] = field(default_factory=dict)
    """field -> (value, the row that first gave it, the value as messages show it)"""
    refused: set[str] = field(default_factory=set)
    """Fields some row gave but wrongly (reported there, not again as missing)."""

    def give(self, cells: _Cells, key: str, value: Any, shown: str) -> None:
        if key not in self.fields:
            self.fields[key] = (value, cells.row.number, shown)
            return
        before, row, was = self.fields[key]
        if before != value:
            cells.fail(f"site {self.id!r} has {key} {shown} here but {was} on row {row}")


@dataclass(frozen=True)
class _DeviceRow:
    """A device's row; ``cls`` or ``site`` None when the row has a problem there (reported)."""

    row: int
    id: str
    cls: str | None
    site: str | None
    upstream: str | None
    attributes: dict[str, Any]


def build_topology(
    sheet: Sheet,
    units: Units,
    *,
    name: str,
    seed: int = 0,
    description: str | None = None,
    bbox: BBox | None = None,
    on: dt.date | None = None,
) -> Topology:
    """The topology of a devices sheet against ``units``; raises :class:`InventoryError` with
    every bad row. ``on`` (default today) is the day the inventory describes: its devices
    must be at units that exist then."""
    names = _header(sheet, DEVICE_COLUMNS, REQUIRED_DEVICE_COLUMNS, attributes=True)
    box = bbox or BBox.around(units.units)
    day = on or dt.date.today()
    out = Problems()
    devices: dict[str, _DeviceRow] = {}
    sites: dict[str, _SiteRows] = {}
    classes = feeds.device_classes()
    for row in sheet.rows:
        c = _Cells(sheet, row, names, out)
        dev_id = c.ident("device_id")
        cls = c.required("class")
        if cls is not None and cls.lower() not in classes:
            c.fail(f"class {cls!r} is not one of {', '.join(classes)}")
            cls = None
        site_id = c.ident("site_id")
        upstream = c.ident("upstream", required=False)
        attributes = _attributes(c, names)
        if site_id is not None:
            site = sites.setdefault(site_id, _SiteRows(site_id, row.number))
            _site_fields(c, site, units, box, day)
        if dev_id is not None and dev_id in devices:
            c.fail(f"device_id {dev_id!r} is already on row {devices[dev_id].row}")
        elif dev_id is not None:
            devices[dev_id] = _DeviceRow(
                row.number, dev_id, cls and cls.lower(), site_id, upstream, attributes
            )
    for site in sites.values():
        for key, column in (("unit", "unit"), ("kind", "site_kind"), ("coordinates", "lat, lon")):
            if key not in site.fields and key not in site.refused:
                out.add(
                    sheet.source,
                    site.first_row,
                    f"site {site.id!r} has no {key} ({column}) on any of its rows",
                )
    _check_upstreams(sheet.source, devices, out)
    out.raise_if_any(sheet.source)
    if not devices:
        raise InventoryError(f"{sheet.source}: no devices (only a header)")
    return _topology(sheet.source, units, sites, devices, name, seed, description)


def _attributes(c: _Cells, names: Mapping[int, str]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if c.get("device_name"):
        attributes["name"] = c.get("device_name")
    address = c.get("address")
    if address:
        problem = address_problem(address)
        if problem:
            c.fail(f"address {address!r} {problem}")
        else:
            attributes["address"] = address
    for column in names.values():
        if column in DEVICE_COLUMNS or not c.get(column):
            continue
        if column.endswith("[]"):
            items = [item.strip() for item in c.get(column).split(LIST_SEPARATOR)]
            attributes[column[:-2]] = [_attribute_value(item) for item in items if item]
        else:
            attributes[column] = _attribute_value(c.get(column))
    return attributes


def _site_fields(c: _Cells, site: _SiteRows, units: Units, box: BBox, day: dt.date) -> None:
    unit_code = c.get("unit")
    if unit_code:
        unit = units.units.get(unit_code)
        if unit is None:
            c.fail(f"unit {unit_code!r} is not a unit of {units.province} ({units.source})")
            site.refused.add("unit")
        elif unit.valid_to is not None and unit.valid_to < day:
            what = f"unit {unit_code!r} ({unit.name}) ended on {unit.valid_to}"
            if unit.merged_into:
                c.fail(
                    f"{what}, merged into {unit.merged_into!r}: use that, or --on an earlier day"
                )
            else:
                c.fail(f"{what}: an inventory of an earlier day needs --on YYYY-MM-DD")
            site.refused.add("unit")
        elif unit.valid_from is not None and unit.valid_from > day:
            c.fail(
                f"unit {unit_code!r} ({unit.name}) exists from {unit.valid_from}: "
                "an inventory of that day or later needs --on YYYY-MM-DD"
            )
            site.refused.add("unit")
        else:
            site.give(c, "unit", unit_code, repr(unit_code))
    if c.get("site_name"):
        site.give(c, "name", c.get("site_name"), repr(c.get("site_name")))
    kind = c.get("site_kind")
    if kind:
        if kind.lower() not in SITE_KINDS:
            c.fail(f"site_kind {kind!r} is not one of {', '.join(SITE_KINDS)}")
            site.refused.add("kind")
        else:
            site.give(c, "kind", kind.lower(), repr(kind.lower()))
    lat_text, lon_text = c.get("lat"), c.get("lon")
    if not lat_text and not lon_text:
        return
    site.refused.add("coordinates")  # given: reported below if wrong, not as missing
    if not lat_text or not lon_text:
        c.fail(f"lat and lon go together: {'lat' if not lat_text else 'lon'} is empty")
        return
    lat, lon = c.number("lat", -90, 90), c.number("lon", -180, 180)
    if lat is None or lon is None:
        return
    if not box.contains(lat, lon):
        shown = f"{cell_text(lat)}, {cell_text(lon)}"
        c.fail(f"coordinates {shown} are outside {units.province}: {box.describe()}")
        return
    site.give(c, "coordinates", (lat, lon), f"{cell_text(lat)}, {cell_text(lon)}")


def _check_upstreams(source: str, devices: Mapping[str, _DeviceRow], out: Problems) -> None:
    """Upstreams are network nodes of this inventory, and following them ends."""
    edges: dict[str, str] = {}
    for dev in devices.values():
        if dev.upstream is None:
            continue
        up = devices.get(dev.upstream)
        if up is None:
            out.add(
                source, dev.row, f"upstream {dev.upstream!r} is not a device_id of this inventory"
            )
        elif up.cls is None:
            pass  # its class is wrong, said on its row
        elif up.cls != feeds.Feed.NETNODE:
            out.add(
                source,
                dev.row,
                f"upstream {dev.upstream!r} is a {up.cls} (row {up.row}), not a network node "
                f"({feeds.Feed.NETNODE})",
            )
        else:
            edges[dev.id] = dev.upstream
    for cycle in _cycles(edges):
        rows = [devices[d].row for d in cycle]
        start = rows.index(min(rows))
        ordered = cycle[start:] + cycle[:start]
        path = " -> ".join(f"{d} (row {devices[d].row})" for d in ordered)
        out.add(source, min(rows), f"dependency cycle: {path} -> {ordered[0]}")


def _cycles(edges: Mapping[str, str]) -> Iterator[list[str]]:
    """Each cycle of a graph whose nodes have at most one successor, once."""
    done: set[str] = set()
    for start in edges:
        path: list[str] = []
        on_path: dict[str, int] = {}
        node: str | None = start
        while node is not None and node not in done and node not in on_path:
            on_path[node] = len(path)
            path.append(node)
            node = edges.get(node)
        if node is not None and node in on_path:
            yield path[on_path[node] :]
        done.update(path)


def _topology(
    source: str,
    units: Units,
    site_rows: Mapping[str, _SiteRows],
    rows: Mapping[str, _DeviceRow],
    name: str,
    seed: int,
    description: str | None,
) -> Topology:
    sites: dict[str, Site] = {}
    for s in site_rows.values():
        lat, lon = s.fields["coordinates"][0]
        site_name = s.fields.get("name", (s.id, 0))[0]
        sites[s.id] = Site(s.id, site_name, s.fields["kind"][0], s.fields["unit"][0], lat, lon)
    devices: dict[str, Device] = {}
    for d in rows.values():
        assert d.cls is not None and d.site is not None  # a row without has a problem
        site = sites[d.site]
        devices[d.id] = Device(d.id, d.cls, d.site, site.lat, site.lon, d.upstream, d.attributes)
    if description is None:
        description = f"{units.province}: device inventory imported with `ioc inventory import`"
    topology = Topology(
        name, list(units.levels), dict(units.units), sites, devices, seed, description
    )
    # through the scenario loader's checks, as every command will read it: what passes runs
    return parse_topology(topology.to_document(), source)


# libyaml's emitter when PyYAML has it: a province of a thousand devices takes the pure-Python
# one several seconds (the loader makes the same choice, ioc.contract.topology)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def scenario_yaml(topology: Topology) -> str:
    """The explicit scenario form (as `ioc scenario export` writes it)."""
    text: str = yaml.dump(
        topology.to_document(), Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=120
    )
    return text
