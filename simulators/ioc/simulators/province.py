"""Reproducible province generator: expands a generator spec's ``generate:`` section.

The contract's built-in scenarios (``ioc/contract/scenarios/*.yaml``) are explicit topologies
that this module materialised from the generator specs beside it
(``simulators/ioc/simulators/scenarios/``);
``ioc scenario generate NAME --out ioc/contract/scenarios/NAME.yaml`` rewrites one after its
spec changed, and tests/unit/test_topology.py checks that every committed file still matches
its spec. Workers never need this module: they load the explicit topology from the contract.

Sized from public figures (../shared/CONTEXT.md): e.g. Yen Bai in 2022 had 9 district-level
units, 173 communes and a specialised data network of 408 sites. The same seed always gives
the same topology: every random choice comes from one ``random.Random(seed)`` consumed in a
fixed order.

Network dependency follows how the specialised network is built: commune offices and
district agencies hang off their district's node, district nodes and provincial offices off
the provincial core; cameras and telehealth stations depend on the node of their commune (or
district / province for hospitals). A node outage therefore explains everything behind it.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import random
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ioc.contract.topology import load_yaml, parse_topology
from ioc.errors import IocError
from ioc.simulators import portal, soc, vconf

_SYLLABLES = (
    "An",
    "Bình",
    "Cát",
    "Đại",
    "Đông",
    "Hòa",
    "Hưng",
    "Khánh",
    "Lâm",
    "Long",
    "Minh",
    "Nam",
    "Phúc",
    "Quang",
    "Sơn",
    "Tân",
    "Thanh",
    "Thịnh",
    "Trung",
    "Tuy",
    "Văn",
    "Việt",
    "Vĩnh",
    "Xuân",
    "Yên",
    "Hồng",
    "Phú",
    "Mỹ",
    "Cường",
    "Thượng",
    "Lương",
    "Nghĩa",
    "Châu",
    "Khai",
    "Lạc",
    "Hà",
    "Động",
    "Lợi",
    "Thái",
    "Kiên",
    "Mường",
    "Púng",
    "Nậm",
    "Khao",
    "Chế",
    "Tạ",
)
_OFFICES = (
    "Department of Information and Communications",
    "Department of Health",
    "Department of Transport",
    "Department of Education and Training",
    "Provincial Police",
    "Department of Finance",
    "Department of Planning and Investment",
    "Department of Home Affairs",
    "Department of Justice",
    "Department of Agriculture",
    "Department of Natural Resources and Environment",
    "Department of Construction",
    "Department of Industry and Trade",
    "Department of Labour",
    "Department of Culture",
    "Department of Science and Technology",
    "Provincial Inspectorate",
    "Ethnic Affairs",
    "Provincial Party Committee Office",
    "People's Council Office",
    "Tax Department",
    "Social Insurance",
    "Treasury",
    "Statistics Office",
    "Military Command",
    "Fire Police",
    "Customs",
    "State Bank Branch",
    "Radio and Television",
    "Public Administration Centre",
    "Provincial Court",
    "Procuracy",
)


class GenerateError(IocError):
    pass


def _need(spec: dict[str, Any], key: str, source: str, kind: type | tuple[type, ...]) -> Any:
    value = spec.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, kind):
        line = getattr(spec, "line", 0)
        raise GenerateError(
            f"{source}:{line}: generate: '{key}' is required ({getattr(kind, '__name__', kind)})"
        )
    return value


class _Builder:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.units: list[dict[str, Any]] = []
        self.sites: list[dict[str, Any]] = []
        self.devices: list[dict[str, Any]] = []

    def near(self, lat: float, lon: float, radius_deg: float) -> tuple[float, float]:
        angle = self.rng.uniform(0, 2 * math.pi)
        dist = radius_deg * math.sqrt(self.rng.random())
        return round(lat + dist * math.sin(angle), 5), round(lon + dist * math.cos(angle), 5)

    def site(self, site_id: str, name: str, kind: str, unit: str, lat: float, lon: float) -> str:
        self.sites.append(
            {"id": site_id, "name": name, "kind": kind, "unit": unit, "lat": lat, "lon": lon}
        )
        return site_id

    def device(
        self,
        dev_id: str,
        cls: str,
        site: str,
        upstream: str | None,
        lat: float,
        lon: float,
        **attributes: Any,
    ) -> str:
        doc: dict[str, Any] = {"id": dev_id, "class": cls, "site": site, "lat": lat, "lon": lon}
        if upstream:
            doc["upstream"] = upstream
        if attributes:
            doc["attributes"] = attributes
        self.devices.append(doc)
        return dev_id

    def names(self, count: int) -> list[str]:
        chosen: list[str] = []
        seen: set[str] = set()
        while len(chosen) < count:
            name = f"{self.rng.choice(_SYLLABLES)} {self.rng.choice(_SYLLABLES)}"
            if name not in seen and name.split()[0] != name.split()[1]:
                seen.add(name)
                chosen.append(name)
        return chosen


def generate(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """Expand ``doc['generate']`` into an explicit scenario document."""
    spec = doc["generate"]
    if not isinstance(spec, dict):
        raise GenerateError(f"{source}: 'generate' must be a mapping")
    if "national" in spec:
        return _generate_national(doc, spec["national"], source)
    seed = doc.get("seed", 0)
    rng = random.Random(seed)
    b = _Builder(rng)
    levels = spec.get("levels", ["province", "district", "commune"])
    three_tier = len(levels) == 3
    if len(levels) not in (2, 3):
        raise GenerateError(f"{source}: generate supports 2 or 3 levels, got {levels}")
    prov = _need(spec, "province", source, dict)
    p_code, p_lat, p_lon = str(prov["code"]), float(prov["lat"]), float(prov["lon"])
    validity = {k: spec[k] for k in ("valid_from", "valid_to") if k in spec}
    b.units.append(
        {
            "code": p_code,
            "name": prov["name"],
            "level": levels[0],
            "lat": p_lat,
            "lon": p_lon,
            **validity,
        }
    )
    capacity = spec.get("capacity_mbps", {"core": 10000, "district": 1000, "commune": 100})

    core_site = b.site(
        f"site-{p_code}-core",
        f"{prov['name']} provincial data centre",
        "provincial_core",
        p_code,
        p_lat,
        p_lon,
    )
    core = b.device(
        f"nn-{p_code}-core",
        "netnode",
        core_site,
        None,
        p_lat,
        p_lon,
        tier="core",
        capacity_mbps=capacity["core"],
    )
    net = spec.get("network", {})
    for i in range(int(net.get("provincial_offices", 0))):
        lat, lon = b.near(p_lat, p_lon, 0.03)
        name = _OFFICES[i % len(_OFFICES)]
        site = b.site(f"site-{p_code}-po{i + 1:02d}", name, "provincial_office", p_code, lat, lon)
        b.device(
            f"nn-{p_code}-po{i + 1:02d}",
            "netnode",
            site,
            core,
            lat,
            lon,
            tier="provincial_office",
            capacity_mbps=capacity["district"],
        )

    health = spec.get("telehealth", {})
    hosp_lat, hosp_lon = b.near(p_lat, p_lon, 0.02)
    hosp = b.site(
        f"site-{p_code}-hosp",
        f"{prov['name']} provincial general hospital",
        "hospital",
        p_code,
        hosp_lat,
        hosp_lon,
    )
    for i in range(int(health.get("provincial_hospital_stations", 0))):
        b.device(
            f"th-{p_code}-hosp-{i + 1}",
            "telehealth",
            hosp,
            core,
            hosp_lat,
            hosp_lon,
            role="provincial_hospital",
        )

    districts = (
        spec.get("districts")
        if three_tier
        else [
            {
                "code": p_code,
                "name": prov["name"],
                "lat": p_lat,
                "lon": p_lon,
                "communes": _need(spec, "communes", source, int),
                "cameras": int(spec.get("cameras", 0)),
                "agencies": 0,
                "radius_deg": float(spec.get("radius_deg", 0.35)),
                "spread_cameras": bool(spec.get("spread_cameras", False)),
            }
        ]
    )
    if not isinstance(districts, list) or not districts:
        raise GenerateError(f"{source}: generate: 'districts' must be a non-empty list")
    agencies_total = int(net.get("district_agencies", 0))
    communes_total = sum(int(d["communes"]) for d in districts)
    pilot_total = int(health.get("commune_pilot_stations", 0))
    commune_nodes: list[tuple[str, str, float, float]] = []  # (node, unit, lat, lon)
    highway = (
        set(spec.get("cameras", {}).get("highway_districts", []))
        if isinstance(spec.get("cameras"), dict)
        else set()
    )
    highway_per = (
        int(spec.get("cameras", {}).get("highway_per_district", 0))
        if isinstance(spec.get("cameras"), dict)
        else 0
    )

    for d_index, dist in enumerate(districts):
        d_code = str(dist["code"])
        d_lat, d_lon = float(dist["lat"]), float(dist["lon"])
        radius = float(dist.get("radius_deg", 0.12))
        if three_tier:
            b.units.append(
                {
                    "code": d_code,
                    "name": dist["name"],
                    "level": levels[1],
                    "parent": p_code,
                    "lat": d_lat,
                    "lon": d_lon,
                    **validity,
                }
            )
            d_site = b.site(
                f"site-{d_code}-office",
                f"{dist['name']} People's Committee",
                "district_office",
                d_code,
                d_lat,
                d_lon,
            )
            d_node = b.device(
                f"nn-{d_code}",
                "netnode",
                d_site,
                core,
                d_lat,
                d_lon,
                tier="district",
                capacity_mbps=capacity["district"],
            )
            # District agencies: the remainder of the network sites, spread by commune count.
            share = round(agencies_total * int(dist["communes"]) / communes_total)
            if d_index == len(districts) - 1:
                share = agencies_total - sum(
                    1 for dev in b.devices if dev["id"].startswith("nn-") and "-ag" in dev["id"]
                )
            for a in range(share):
                lat, lon = b.near(d_lat, d_lon, 0.02)
                site = b.site(
                    f"site-{d_code}-ag{a + 1:02d}",
                    f"{dist['name']} agency {a + 1}",
                    "district_agency",
                    d_code,
                    lat,
                    lon,
                )
                b.device(
                    f"nn-{d_code}-ag{a + 1:02d}",
                    "netnode",
                    site,
                    d_node,
                    lat,
                    lon,
                    tier="district_agency",
                    capacity_mbps=capacity["commune"],
                )
            hlat, hlon = b.near(d_lat, d_lon, 0.01)
            d_hosp = b.site(
                f"site-{d_code}-hosp",
                f"{dist['name']} district hospital",
                "district_hospital",
                d_code,
                hlat,
                hlon,
            )
            for s in range(int(health.get("district_hospital_stations", 0))):
                b.device(
                    f"th-{d_code}-hosp-{s + 1}",
                    "telehealth",
                    d_hosp,
                    d_node,
                    hlat,
                    hlon,
                    role="district_hospital",
                )
        else:
            d_node = core
        urban = bool(dist.get("urban", False))
        names = b.names(int(dist["communes"]))
        district_communes: list[tuple[str, str, float, float]] = []
        for c in range(int(dist["communes"])):
            c_code = f"{d_code}-{c + 1:03d}"
            prefix = "Phường" if urban or (c == 0 and three_tier) else "Xã"
            lat, lon = (d_lat, d_lon) if c == 0 else b.near(d_lat, d_lon, radius)
            b.units.append(
                {
                    "code": c_code,
                    "name": f"{prefix} {names[c]}",
                    "level": levels[-1],
                    "parent": d_code if three_tier else p_code,
                    "lat": lat,
                    "lon": lon,
                    **validity,
                }
            )
            site = b.site(
                f"site-{c_code}-office",
                f"{prefix} {names[c]} People's Committee",
                "commune_office",
                c_code,
                lat,
                lon,
            )
            node = b.device(
                f"nn-{c_code}",
                "netnode",
                site,
                d_node,
                lat,
                lon,
                tier="commune",
                capacity_mbps=capacity["commune"],
            )
            district_communes.append((node, c_code, lat, lon))
        commune_nodes += district_communes

        # Cameras: half at the district town (first commune), the rest at junctions and
        # town centres of other communes; urban districts spread over every ward.
        n_cams = int(dist.get("cameras", 0))
        spread = urban or bool(dist.get("spread_cameras", False))
        for k in range(n_cams):
            if spread or k % 2 == 1:
                node, c_code, clat, clon = rng.choice(district_communes)
            else:
                node, c_code, clat, clon = district_communes[0]
            kind = "junction" if rng.random() < 0.6 else "town_centre"
            lat, lon = b.near(clat, clon, 0.01)
            site = b.site(
                f"site-{d_code}-cam{k + 1:03d}",
                f"{kind.replace('_', ' ')} {k + 1}",
                kind,
                c_code,
                lat,
                lon,
            )
            b.device(
                f"cam-{d_code}-{k + 1:03d}",
                "camera",
                site,
                node,
                lat,
                lon,
                site_kind=kind,
                lanes=rng.choice((2, 2, 4, 4, 6)),
            )
        if d_code in highway:
            for k in range(highway_per):
                node, c_code, clat, clon = rng.choice(district_communes)
                lat, lon = b.near(clat, clon, 0.02)
                site = b.site(
                    f"site-{d_code}-hw{k + 1:02d}",
                    f"expressway km {rng.randint(80, 260)}",
                    "highway",
                    c_code,
                    lat,
                    lon,
                )
                b.device(
                    f"cam-{d_code}-hw{k + 1:02d}",
                    "camera",
                    site,
                    node,
                    lat,
                    lon,
                    site_kind="highway",
                    lanes=4,
                )

    # Commune telehealth pilot: a deterministic sample of commune health stations.
    for node, c_code, clat, clon in sorted(
        rng.sample(commune_nodes, min(pilot_total, len(commune_nodes)))
    ):
        lat, lon = b.near(clat, clon, 0.005)
        site = b.site(
            f"site-{c_code}-tram", "commune health station", "health_station", c_code, lat, lon
        )
        b.device(f"th-{c_code}", "telehealth", site, node, lat, lon, role="commune_pilot")

    # Video-conference bridges and points (own RNG: the devices above stay as they were).
    try:
        b.devices += vconf.place_devices(spec.get("vconf"), seed, b.units, b.sites, b.devices)
    except ValueError as exc:
        raise GenerateError(f"{source}: {exc}") from None
    # SOC sensors at network-node sites (own RNG, likewise).
    try:
        b.devices += soc.place_devices(spec.get("soc"), seed, b.units, b.sites, b.devices)
    except ValueError as exc:
        raise GenerateError(f"{source}: {exc}") from None
    # Public-service portal desks at unit offices and departments (own RNG, likewise).
    try:
        b.devices += portal.place_devices(spec.get("portal"), seed, b.units, b.sites, b.devices)
    except ValueError as exc:
        raise GenerateError(f"{source}: {exc}") from None

    return {
        "scenario": doc.get("scenario"),
        "description": doc.get("description", ""),
        "seed": seed,
        "levels": levels,
        "units": b.units,
        "sites": b.sites,
        "devices": b.devices,
    }


def _generate_national(doc: dict[str, Any], nat: Any, source: str) -> dict[str, Any]:
    """Many provinces in one scenario: each province is a two-tier province generated as
    above (its own seed), and every pre-reform province merged into it stays as an abolished
    unit (``old-NN``, ``valid_to`` the day before the reform, ``merged_into`` today's)."""
    if not isinstance(nat, dict):
        raise GenerateError(f"{source}: generate: 'national' must be a mapping")
    seed = doc.get("seed", 0)
    per: dict[str, Any] = nat.get("per_province") or {}
    provinces = _need(nat, "provinces", source, list)
    valid_from = str(_need(nat, "valid_from", source, (str, dt.date)))
    existed_from = nat.get("existed_from")
    try:
        reform = dt.date.fromisoformat(valid_from)
    except ValueError:
        raise GenerateError(f"{source}: generate: national.valid_from {valid_from!r}") from None
    ended = (reform - dt.timedelta(days=1)).isoformat()
    before = {"valid_from": str(existed_from)} if existed_from else {}
    telehealth = per.get("telehealth") or {}
    soc_spec = dict(per.get("soc") or {})
    soc_share = float(soc_spec.pop("commune_share", 0.0))
    out: dict[str, list[dict[str, Any]]] = {"units": [], "sites": [], "devices": []}
    codes: set[str] = set()
    for i, prov in enumerate(provinces):
        where = f"{source}: generate: national.provinces[{i}]"
        if not isinstance(prov, dict):
            raise GenerateError(f"{where}: must be a mapping")
        code = str(_need(prov, "code", where, (str, int)))
        if code in codes:
            raise GenerateError(f"{where}: duplicate province code {code!r}")
        codes.add(code)
        communes = int(_need(prov, "communes", where, int))
        spec = {
            "levels": ["province", "commune"],
            "valid_from": valid_from,
            "province": {k: prov[k] for k in ("code", "name", "lat", "lon")},
            "communes": communes,
            "cameras": round(
                float(prov.get("population_m", 0)) * per.get("cameras_per_million", 0)
            ),
            "spread_cameras": True,
            "radius_deg": per.get("radius_deg", 0.35),
            "network": per.get("network") or {},
            "vconf": per.get("vconf"),
            "soc": {**soc_spec, "communes": round(communes * soc_share)} if soc_spec else None,
            "portal": per.get("portal"),
            "telehealth": {
                "provincial_hospital_stations": telehealth.get("provincial_hospital_stations", 0),
                "commune_pilot_stations": round(
                    communes * float(telehealth.get("commune_pilot_share", 0.0))
                ),
            },
        }
        one = generate({"seed": seed * 100 + i, "generate": spec}, where)
        merged = prov.get("merged_from") or []
        if not merged and before:
            one["units"][0] |= before  # not merged: the same province since before the reform
        for key in out:
            out[key] += one[key]
        for old in merged:
            out["units"].append(
                {
                    "code": f"old-{old['code']}",
                    "name": old["name"],
                    "level": "province",
                    "lat": old["lat"],
                    "lon": old["lon"],
                    **before,
                    "valid_to": ended,
                    "merged_into": code,
                }
            )
    return {
        "scenario": doc.get("scenario"),
        "description": doc.get("description", ""),
        "seed": seed,
        "levels": ["province", "commune"],
        **out,
    }


# --- generator specs and the explicit files they materialise into ---


def builtin_specs() -> dict[str, str]:
    """Built-in generator spec name -> its YAML text (``simulators/ioc/simulators/scenarios``)."""
    folder = resources.files("ioc.simulators").joinpath("scenarios")
    return {
        entry.name.removesuffix(".yaml"): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    }


def _read_spec(name_or_path: str) -> tuple[str, str, str]:
    """(text, source, how to name it in the generated file's header)."""
    specs = builtin_specs()
    if name_or_path in specs:
        return (
            specs[name_or_path],
            f"<built-in generator spec {name_or_path}>",
            f"simulators/ioc/simulators/scenarios/{name_or_path}.yaml",
        )
    path = Path(name_or_path)
    if not path.exists():
        raise GenerateError(
            f"generator spec {name_or_path!r} is neither a built-in "
            f"({', '.join(sorted(specs))}) nor an existing file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GenerateError(f"{path}: cannot read: {exc}") from None
    return text, str(path), str(path)


def _flow(item: Any) -> str:
    """A mapping or list on one line (``{id: x, class: camera, ...}``): one diff line each."""
    text: str = yaml.safe_dump(
        item, default_flow_style=True, allow_unicode=True, sort_keys=False, width=1 << 30
    )
    return text.strip()


def materialise(name_or_path: str, fmt: str = "yaml") -> str:
    """The explicit scenario generated from a spec (a built-in name or a file), as YAML or,
    for the large ones, JSON (``fmt="json"``, loaded in a second where YAML takes a minute).

    The result is validated (it parses as a topology) and byte-for-byte reproducible: a
    header, the spec's own leading comments, then one line per unit, site and device.
    """
    text, source, shown = _read_spec(name_or_path)
    doc = load_yaml(text, source)
    if not isinstance(doc, dict) or "generate" not in doc:
        raise GenerateError(f"{source}: not a generator spec (no 'generate:' section)")
    generated = generate(doc, source)
    parse_topology(generated, source)  # fail here, not in the workers
    comments = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comments.append(line)
    header = [
        f"# GENERATED from {shown} (seed {generated['seed']}) "
        "by simulators/ioc/simulators/province.py.",
        f"# Do not edit: edit the spec, then `ioc scenario generate {name_or_path} --out FILE`.",
        *(["#", *comments] if comments else []),
    ]
    top = {key: generated[key] for key in ("scenario", "description", "seed")}
    if fmt == "json":
        return _as_json(header, top, generated)
    body = yaml.safe_dump(top, allow_unicode=True, sort_keys=False, width=1 << 30)
    lines = [*header, body.rstrip("\n"), f"levels: {_flow(generated['levels'])}"]
    for key in ("units", "sites", "devices"):
        lines.append(f"{key}:")
        lines.extend(f"  - {_flow(item)}" for item in generated[key])
    return "\n".join(lines) + "\n"


def _as_json(header: list[str], top: dict[str, Any], generated: dict[str, Any]) -> str:
    """The JSON form: the header as ``generated`` (JSON has no comments), one item a line."""

    def one(item: Any) -> str:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":"))

    head = {"generated": [line.removeprefix("#").strip() for line in header], **top}
    lines = ["{" + one(head)[1:-1] + ",", f'"levels":{one(generated["levels"])},']
    keys = ("units", "sites", "devices")
    for n, key in enumerate(keys):
        items = generated[key]
        lines.append(f'"{key}":[')
        lines.extend(
            one(item) + ("," if i < len(items) - 1 else "") for i, item in enumerate(items)
        )
        lines.append("]" + ("," if n < len(keys) - 1 else "}"))
    return "\n".join(lines) + "\n"


def write_scenario(text: str, out: Path) -> None:
    """Write a materialised scenario; ``*.gz`` gzipped reproducibly (no name, no time in the
    header), so a regenerated file only differs when its content does."""
    data = text.encode("utf-8")
    if out.suffix == ".gz":
        with (
            out.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        ):
            gz.write(data)
    else:
        out.write_bytes(data)
