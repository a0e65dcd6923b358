"""The province model: administrative units, sites, devices and what each device depends on.

A scenario is a YAML file. It either lists the topology explicitly::

    scenario: my-province
    levels: [province, commune]          # any number of tiers, top first
    units:
      - {code: "15", name: Yen Bai, level: province, lat: 21.70, lon: 104.87}
      - {code: "15-001", name: Xa A, level: commune, parent: "15", lat: 21.6, lon: 104.8,
         valid_from: 2025-07-01}
    sites:
      - {id: s-001, name: Xa A office, kind: commune_office, unit: "15-001", lat: ..., lon: ...}
    devices:
      - {id: node-001, class: netnode, site: s-001, upstream: node-core}
      - {id: cam-001, class: camera, site: s-001, upstream: node-001}

The built-in scenarios (``ioc/contract/scenarios``) are such explicit files, generated
reproducibly from a seed by the simulators' province generator (:mod:`ioc.simulators.province`,
``ioc scenario generate``) and committed: the contract holds the topology itself, never the
generator, so the workers depend on data, not on the simulators. A generator spec (a file with
a ``generate:`` section) is not a topology: loading one says how to materialise it. Errors name
the file, the line and the problem (:class:`TopologyError`).

A scenario too large for YAML to load quickly (``national``: 34 provinces, ~100,000
devices) is the same document as JSON, one unit, site or device per line, gzipped
(``NAME.json.gz``): libyaml takes about a minute over it, ``json`` under a second.

``valid_from``/``valid_to`` and ``merged_into`` let history recorded against old units be
re-mapped onto today's (:meth:`Topology.current_unit`).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn
from zoneinfo import ZoneInfo

import yaml

from ioc.contract import feeds
from ioc.errors import IocError

SITE_KINDS = (
    "provincial_core",
    "provincial_office",
    "district_office",
    "district_agency",
    "commune_office",
    "junction",
    "town_centre",
    "highway",
    "hospital",
    "district_hospital",
    "health_station",
)

UNIT_DATES_TZ: Final = "Asia/Ho_Chi_Minh"
"""Units' ``valid_from``/``valid_to`` are days in Vietnam time (the database's
``current_unit`` and ``unit_lineage`` use the same zone)."""


def today() -> dt.date:
    """Today in Vietnam time: the day units' validity is judged on by default."""
    return dt.datetime.now(ZoneInfo(UNIT_DATES_TZ)).date()


class TopologyError(IocError):
    """A scenario file is malformed; the message is ``file:line: problem``."""


@dataclass(frozen=True)
class AdminUnit:
    code: str
    name: str
    level: int
    level_name: str
    parent: str | None
    lat: float
    lon: float
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    merged_into: str | None = None

    def abolished(self, on: dt.date | None = None) -> bool:
        """Ended before ``on`` (default today): ``valid_to`` is the last day it existed.
        Unit pickers hide the :meth:`superseded` ones unless asked."""
        return self.valid_to is not None and self.valid_to < (on or today())

    def superseded(self, on: dt.date | None = None) -> bool:
        """Abolished in a merger: ended before ``on`` and merged into a unit of this scenario,
        under which its history is found. Unit pickers hide these (and what lies below them)
        unless asked; a unit that ended without a successor (a scenario of a past year, such
        as yen-bai-2022) stays listed, or a picker would offer nothing."""
        return self.merged_into is not None and self.abolished(on)


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    kind: str
    unit: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Device:
    id: str
    device_class: str
    site: str
    lat: float
    lon: float
    upstream: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Topology:
    name: str
    levels: list[str]
    units: dict[str, AdminUnit]
    sites: dict[str, Site]
    devices: dict[str, Device]
    seed: int = 0
    description: str = ""

    # --- derived indexes (built once by finalize) ---
    children: dict[str | None, list[str]] = field(default_factory=dict, repr=False)
    behind: dict[str, list[str]] = field(default_factory=dict, repr=False)
    unit_of_device: dict[str, str] = field(default_factory=dict, repr=False)

    def finalize(self) -> Topology:
        children: dict[str | None, list[str]] = defaultdict(list)
        for unit in self.units.values():
            children[unit.parent].append(unit.code)
        self.children = dict(children)
        direct: dict[str, list[str]] = defaultdict(list)
        for dev in self.devices.values():
            if dev.upstream:
                direct[dev.upstream].append(dev.id)
        behind: dict[str, list[str]] = {}
        for node in (d.id for d in self.devices.values() if d.device_class == feeds.Feed.NETNODE):
            out: list[str] = []
            stack = list(direct.get(node, ()))
            while stack:
                dev_id = stack.pop()
                out.append(dev_id)
                stack.extend(direct.get(dev_id, ()))
            behind[node] = sorted(out)
        self.behind = behind
        self.unit_of_device = {d.id: self.sites[d.site].unit for d in self.devices.values()}
        return self

    def ancestors(self, unit_code: str) -> list[str]:
        """The unit and every unit above it, nearest first."""
        out = []
        code: str | None = unit_code
        while code is not None:
            out.append(code)
            code = self.units[code].parent
        return out

    def region_of(self, device_id: str) -> str:
        """The unit one level below the top (district; commune in two tiers): the bounded
        ``unit`` label of province-wide metrics."""
        chain = self.ancestors(self.unit_of_device[device_id])
        return chain[-2] if len(chain) >= 2 else chain[-1]

    def province_of(self, device_id: str) -> str:
        """The top-level unit (province) a device is under."""
        return self.ancestors(self.unit_of_device[device_id])[-1]

    def root_units(self) -> list[str]:
        """Every unit without a parent, abolished ones included (unit pickers walk from
        these; :meth:`top_units` is today's provinces)."""
        return sorted(code for code, unit in self.units.items() if unit.parent is None)

    def top_units(self) -> list[str]:
        """The top-level units (the province; several in a national scenario): the shards
        of per-province singleton work. A province merged into another is not one: its
        history belongs to its successor and it has no devices."""
        return sorted(
            code
            for code, unit in self.units.items()
            if unit.parent is None and unit.merged_into is None
        )

    def devices_of(self, device_class: str) -> list[Device]:
        return [d for d in self.devices.values() if d.device_class == device_class]

    def devices_behind(self, node_id: str) -> list[str]:
        """Every device that reaches the core through ``node_id`` (transitively)."""
        return self.behind.get(node_id, [])

    def upstream_chain(self, device_id: str) -> list[str]:
        chain = []
        up = self.devices[device_id].upstream
        while up is not None:
            chain.append(up)
            up = self.devices[up].upstream
        return chain

    def current_unit(self, code: str, on: dt.date | None = None) -> str:
        """Map a (possibly historical) unit code onto the unit valid on ``on`` (default
        today), following ``merged_into`` from every unit that had ended by then; the
        database's ``current_unit(code)`` and view ``unit_lineage`` do the same in SQL."""
        on = on or today()
        seen = set()
        while code in self.units and code not in seen:
            seen.add(code)
            unit = self.units[code]
            if not unit.abolished(on):
                return code
            if unit.merged_into is None:
                return code
            code = unit.merged_into
        return code

    def unit_list(
        self, include_abolished: bool = False, on: dt.date | None = None
    ) -> list[AdminUnit]:
        """The units a picker offers, top tier first, by code: all but those superseded by a
        merger on ``on`` (and what lies below them), and those too when asked."""
        return sorted(
            (u for u in self.units.values() if include_abolished or not self._superseded(u, on)),
            key=lambda u: (u.level, u.code),
        )

    def _superseded(self, unit: AdminUnit, on: dt.date | None) -> bool:
        """``unit`` or a unit above it was merged into another by ``on``."""
        code: str | None = unit.code
        while code is not None:
            if self.units[code].superseded(on):
                return True
            code = self.units[code].parent
        return False

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = {f"units_{name}": 0 for name in self.levels}
        for unit in self.units.values():
            result[f"units_{unit.level_name}"] += 1
        result["sites"] = len(self.sites)
        for cls in feeds.device_classes():
            result[f"devices_{cls}"] = len(self.devices_of(cls))
        return result

    def to_document(self) -> dict[str, Any]:
        """The explicit YAML form (what `ioc scenario export` writes)."""

        def unit_doc(u: AdminUnit) -> dict[str, Any]:
            doc: dict[str, Any] = {
                "code": u.code,
                "name": u.name,
                "level": u.level_name,
                "lat": u.lat,
                "lon": u.lon,
            }
            if u.parent:
                doc["parent"] = u.parent
            for key in ("valid_from", "valid_to", "merged_into"):
                if getattr(u, key) is not None:
                    doc[key] = getattr(u, key)
            return doc

        def device_doc(d: Device) -> dict[str, Any]:
            doc: dict[str, Any] = {
                "id": d.id,
                "class": d.device_class,
                "site": d.site,
                "lat": d.lat,
                "lon": d.lon,
            }
            if d.upstream:
                doc["upstream"] = d.upstream
            if d.attributes:
                doc["attributes"] = d.attributes
            return doc

        return {
            "scenario": self.name,
            "description": self.description,
            "seed": self.seed,
            "levels": self.levels,
            "units": [unit_doc(u) for u in self.units.values()],
            "sites": [
                {
                    "id": s.id,
                    "name": s.name,
                    "kind": s.kind,
                    "unit": s.unit,
                    "lat": s.lat,
                    "lon": s.lon,
                }
                for s in self.sites.values()
            ],
            "devices": [device_doc(d) for d in self.devices.values()],
        }


# --- YAML loading with line numbers ---


class _LineDict(dict[str, Any]):
    line = 0


# libyaml's parser when PyYAML has it: a built-in scenario is ~1,400 lines (Yen Bai: 600 sites,
# 600 devices), which the pure-Python parser takes a second over; marks (lines) are the same.
if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader  # the same constructor API
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    result = _LineDict(loader.construct_pairs(node))
    result.line = node.start_mark.line + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Dates stay text here and are parsed by _Reader.date, which can say where a bad one is.
_LineLoader.add_constructor(
    "tag:yaml.org,2002:timestamp",
    lambda loader, node: loader.construct_scalar(node),  # type: ignore[arg-type]
)


class _Reader:
    """Checks one mapping's fields, reporting ``file:line: where: problem``."""

    def __init__(self, source: str, doc: Any, where: str) -> None:
        self.source = source
        self.where = where
        self.line = getattr(doc, "line", 0)
        if not isinstance(doc, dict):
            self.fail(f"expected a mapping, got {type(doc).__name__}")
        self.doc: dict[str, Any] = doc

    def fail(self, problem: str) -> NoReturn:
        raise TopologyError(f"{self.source}:{self.line}: {self.where}: {problem}")

    def text(self, key: str, required: bool = True) -> str | None:
        value = self.doc.get(key)
        if value is None:
            if required:
                self.fail(f"missing '{key}'")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(f"'{key}' must be text, got {type(value).__name__}")
        text = str(value).strip()
        if required and not text:
            self.fail(f"'{key}' is empty")
        return text

    def number(self, key: str, low: float, high: float) -> float:
        value = self.doc.get(key)
        if value is None:
            self.fail(f"missing '{key}'")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"'{key}' must be a number, got {value!r}")
        if not low <= float(value) <= high:
            self.fail(f"'{key}' = {value} is outside [{low}, {high}]")
        return float(value)

    def date(self, key: str) -> dt.date | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"'{key}' must be a date YYYY-MM-DD, got {value!r}")
        return None

    def unknown(self, allowed: set[str]) -> None:
        extra = sorted(set(self.doc) - allowed)
        if extra:
            self.fail(
                f"unknown field(s) {', '.join(map(repr, extra))}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )


def _items(source: str, doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list) or not value:
        line = getattr(doc, "line", 0)
        raise TopologyError(f"{source}:{line}: '{key}' must be a non-empty list")
    return value


def merger_problem(code: str, units: Mapping[str, AdminUnit], of: str = "scenario") -> str | None:
    """What is wrong with unit ``code``'s ``merged_into``, or None.

    A merger names the unit that exists today: not the unit itself, and not a unit that has
    ended (has a ``valid_to``) itself, so history maps onto today's unit in one step and no
    chain or loop of mergers can form (the database's ``current_unit`` and
    :meth:`Topology.current_unit` still follow one, for units stored by an older scenario).
    A unit merged into another says when it ended (``valid_to``)."""
    unit = units[code]
    target = unit.merged_into
    if target is None:
        return None
    if target == code:
        return f"merged_into {target!r} is the unit itself"
    if target not in units:
        return f"merged_into {target!r} is not a unit of this {of}"
    if unit.valid_to is None:
        return f"merged_into {target!r} without valid_to: give the last day {code!r} existed"
    merged = units[target]
    if merged.valid_to is None:
        return None
    chain = [code, target]
    cursor = merged.merged_into
    while cursor is not None and cursor not in chain and cursor in units:
        chain.append(cursor)
        cursor = units[cursor].merged_into
    if cursor is not None and cursor in chain:
        return f"merged_into {target!r} loops back: {' -> '.join([*chain, cursor])}"
    successor = ""
    if merged.merged_into is not None:
        successor = f"; it was merged into {merged.merged_into!r}"
        if units[chain[-1]].valid_to is None:
            successor += f": point at {chain[-1]!r}"
    return (
        f"merged_into {target!r} is itself abolished (valid_to {merged.valid_to}){successor}; "
        "a merger names a unit that exists today"
    )


def parse_topology(doc: Any, source: str) -> Topology:
    """Build and validate a topology from a parsed scenario document."""
    if not isinstance(doc, dict):
        raise TopologyError(f"{source}:1: a scenario must be a mapping at the top level")
    if "generate" in doc:
        line = getattr(doc, "line", 1)
        raise TopologyError(
            f"{source}:{line}: a generator spec ('generate:'), not a topology: materialise it "
            f"with `ioc scenario generate {source} --out FILE` and use FILE"
        )
    top = _Reader(source, doc, "scenario")
    # "generated": where a JSON scenario came from (JSON has no comments for the header)
    top.unknown(
        {"scenario", "description", "seed", "levels", "units", "sites", "devices", "generated"}
    )
    name = top.text("scenario")
    levels: list[str] = doc.get("levels")  # type: ignore[assignment]  # checked below
    if (
        not isinstance(levels, list)
        or not levels
        or not all(isinstance(x, str) and x for x in levels)
        or len(set(levels)) != len(levels)
    ):
        top.fail(
            "'levels' must be a list of distinct tier names, top first, "
            "e.g. [province, district, commune]"
        )
    seed = doc.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        top.fail(f"'seed' must be an integer, got {seed!r}")

    units: dict[str, AdminUnit] = {}
    for i, item in enumerate(_items(source, doc, "units")):
        r = _Reader(source, item, f"units[{i}]")
        r.unknown(
            {
                "code",
                "name",
                "level",
                "parent",
                "lat",
                "lon",
                "valid_from",
                "valid_to",
                "merged_into",
            }
        )
        code = r.text("code")
        assert code is not None
        if code in units:
            r.fail(f"duplicate unit code {code!r}")
        level_name = r.text("level")
        if level_name not in levels:
            r.fail(f"level {level_name!r} is not one of levels {levels}")
        assert level_name is not None
        level = levels.index(level_name)
        parent = r.text("parent", required=False)
        if level == 0 and parent:
            r.fail(f"a {level_name} (top tier) has no parent")
        if level > 0 and not parent:
            r.fail(f"a {level_name} needs a parent {levels[level - 1]}")
        valid_from, valid_to = r.date("valid_from"), r.date("valid_to")
        if valid_from and valid_to and valid_from > valid_to:
            r.fail(f"valid_from {valid_from} is after valid_to {valid_to}")
        units[code] = AdminUnit(
            code=code,
            name=r.text("name") or "",
            level=level,
            level_name=level_name,
            parent=parent,
            lat=r.number("lat", -90, 90),
            lon=r.number("lon", -180, 180),
            valid_from=valid_from,
            valid_to=valid_to,
            merged_into=r.text("merged_into", required=False),
        )
    for i, item in enumerate(doc["units"]):
        unit = units[str(item["code"]).strip()]
        r = _Reader(source, item, f"units[{i}]")
        if unit.parent is not None:
            parent_unit = units.get(unit.parent)
            if parent_unit is None:
                r.fail(f"parent {unit.parent!r} is not a unit of this scenario")
            elif parent_unit.level != unit.level - 1:
                r.fail(
                    f"parent {unit.parent!r} is a {parent_unit.level_name}, "
                    f"expected a {levels[unit.level - 1]}"
                )
        problem = merger_problem(unit.code, units)
        if problem is not None:
            r.fail(problem)

    sites: dict[str, Site] = {}
    for i, item in enumerate(_items(source, doc, "sites")):
        r = _Reader(source, item, f"sites[{i}]")
        r.unknown({"id", "name", "kind", "unit", "lat", "lon"})
        site_id = r.text("id")
        assert site_id is not None
        if site_id in sites:
            r.fail(f"duplicate site id {site_id!r}")
        kind = r.text("kind")
        if kind not in SITE_KINDS:
            r.fail(f"kind {kind!r} is not one of {', '.join(SITE_KINDS)}")
        unit_code = r.text("unit")
        if unit_code not in units:
            r.fail(f"unit {unit_code!r} is not a unit of this scenario")
        assert kind is not None and unit_code is not None
        sites[site_id] = Site(
            site_id,
            r.text("name") or site_id,
            kind,
            unit_code,
            r.number("lat", -90, 90),
            r.number("lon", -180, 180),
        )

    devices: dict[str, Device] = {}
    raw_devices = _items(source, doc, "devices")
    for i, item in enumerate(raw_devices):
        r = _Reader(source, item, f"devices[{i}]")
        r.unknown({"id", "class", "site", "upstream", "lat", "lon", "attributes"})
        dev_id = r.text("id")
        assert dev_id is not None
        if dev_id in devices:
            r.fail(f"duplicate device id {dev_id!r}")
        cls = r.text("class")
        if cls not in feeds.device_classes():
            r.fail(f"class {cls!r} is not one of {', '.join(feeds.device_classes())}")
        site_id = r.text("site")
        if site_id not in sites:
            r.fail(f"site {site_id!r} is not a site of this scenario")
        assert cls is not None and site_id is not None
        site = sites[site_id]
        attributes = item.get("attributes") or {}
        if not isinstance(attributes, dict):
            r.fail("'attributes' must be a mapping")
        lat = r.number("lat", -90, 90) if "lat" in item else site.lat
        lon = r.number("lon", -180, 180) if "lon" in item else site.lon
        devices[dev_id] = Device(
            dev_id, cls, site_id, lat, lon, r.text("upstream", required=False), dict(attributes)
        )
    for i, item in enumerate(raw_devices):
        dev = devices[str(item["id"]).strip()]
        if dev.upstream is None:
            continue
        r = _Reader(source, item, f"devices[{i}]")
        up = devices.get(dev.upstream)
        if up is None:
            r.fail(f"upstream {dev.upstream!r} is not a device of this scenario")
        elif up.device_class != feeds.Feed.NETNODE:
            r.fail(f"upstream {dev.upstream!r} is a {up.device_class}, not a netnode")
        seen = {dev.id}
        cursor: Device | None = up
        while cursor is not None and cursor.upstream is not None:
            if cursor.id in seen:
                r.fail(f"upstream chain of {dev.id!r} loops through {cursor.id!r}")
            seen.add(cursor.id)
            cursor = devices.get(cursor.upstream)
    assert name is not None
    return Topology(
        name=name,
        levels=list(levels),
        units=units,
        sites=sites,
        devices=devices,
        seed=seed,
        description=str(doc.get("description") or ""),
    ).finalize()


def _builtin_files() -> dict[str, Traversable]:
    """Built-in scenario name -> its file (``NAME.yaml`` or ``NAME.json.gz``), unread."""
    folder = resources.files("ioc.contract").joinpath("scenarios")
    return {
        entry.name.removesuffix(".yaml").removesuffix(".json.gz"): entry
        for entry in folder.iterdir()
        if entry.name.endswith((".yaml", ".json.gz"))
    }


def _read_builtin(entry: Traversable) -> str:
    if entry.name.endswith(".gz"):
        return gzip.decompress(entry.read_bytes()).decode("utf-8")
    return entry.read_text(encoding="utf-8")


def builtin_scenarios() -> dict[str, str]:
    """Built-in scenario name -> its text (YAML, or JSON for ``NAME.json.gz``)."""
    return {name: _read_builtin(entry) for name, entry in _builtin_files().items()}


def load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 0
        raise TopologyError(f"{source}:{line}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise TopologyError(f"{source}: invalid YAML: {exc}") from None


def load_document(text: str, source: str) -> Any:
    """A scenario's text as a document: JSON when it is a JSON object (the large generated
    scenarios), YAML otherwise (with line numbers for errors)."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", 0)
            raise TopologyError(f"{source}:{line}: invalid JSON: {exc}") from None
    return load_yaml(text, source)


def load_scenario(name_or_path: str) -> Topology:
    """A built-in scenario by name, or a scenario file (YAML, JSON, ``.gz``) by path."""
    builtins = _builtin_files()  # read only the one asked for: national is 25 MB of JSON
    if name_or_path in builtins:
        source = f"<built-in scenario {name_or_path}>"
        text = _read_builtin(builtins[name_or_path])
        return parse_topology(load_document(text, source), source)
    path = Path(name_or_path)
    if not path.exists():
        raise TopologyError(
            f"scenario {name_or_path!r} is neither a built-in ({', '.join(sorted(builtins))}) "
            "nor an existing file"
        )
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise TopologyError(f"{path}: cannot read: {exc}") from None
    return parse_topology(load_document(text, str(path)), str(path))
