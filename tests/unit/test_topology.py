"""The province model: built-in scenarios match the public figures; bad files say where."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from ioc.contract.topology import (
    AdminUnit,
    Topology,
    TopologyError,
    builtin_scenarios,
    load_scenario,
    load_yaml,
    today,
)
from ioc.simulators.province import builtin_specs, generate, materialise


def test_yen_bai_2022_matches_the_public_figures() -> None:
    topo = load_scenario("yen-bai-2022")
    counts = topo.counts()
    assert topo.levels == ["province", "district", "commune"]
    assert counts["units_province"] == 1
    assert counts["units_district"] == 9
    assert counts["units_commune"] == 173
    assert counts["devices_netnode"] == 408
    assert counts["devices_camera"] > 100
    # telehealth in every district hospital, plus a commune pilot
    hospitals = {
        d.site
        for d in topo.devices_of("telehealth")
        if d.attributes.get("role") == "district_hospital"
    }
    assert len(hospitals) == 9
    assert any(d.attributes.get("role") == "commune_pilot" for d in topo.devices_of("telehealth"))
    kinds = {topo.sites[d.site].kind for d in topo.devices_of("camera")}
    assert {"junction", "town_centre", "highway"} <= kinds


def test_every_device_reaches_the_core_through_netnodes() -> None:
    topo = load_scenario("yen-bai-2022")
    core = next(d.id for d in topo.devices.values() if d.upstream is None)
    for dev in topo.devices.values():
        if dev.id != core:
            assert topo.upstream_chain(dev.id)[-1] == core
    district_node = "nn-138"
    behind = topo.devices_behind(district_node)
    assert any(d.startswith("cam-138") for d in behind)
    assert all(district_node in topo.upstream_chain(d) for d in behind)


def test_generation_is_reproducible_and_seed_dependent() -> None:
    text = builtin_specs()["yen-bai-2022"]
    doc = load_yaml(text, "x")
    assert generate(doc, "x") == generate(load_yaml(text, "x"), "x")
    doc["seed"] = 1
    assert generate(doc, "x") != generate(load_yaml(text, "x"), "x")


def test_every_builtin_scenario_is_generated_from_its_spec() -> None:
    assert sorted(builtin_specs()) == sorted(builtin_scenarios())


@pytest.mark.parametrize("name", sorted(builtin_specs()))
def test_committed_scenarios_match_their_generator_specs(name: str) -> None:
    """The contract's explicit files are what the simulators' generator makes of the specs
    (same seed, same topology); after changing a spec or the generator, regenerate."""
    committed = builtin_scenarios()[name]
    file = f"{name}.json.gz" if committed.startswith("{") else f"{name}.yaml"
    assert committed == materialise(name, "json" if file.endswith(".gz") else "yaml"), (
        f"ioc/contract/scenarios/{file} is stale: run "
        f"`ioc scenario generate {name} --out ioc/contract/scenarios/{file}`"
    )


def test_a_generator_spec_is_not_a_topology(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(builtin_specs()["demo"])
    with pytest.raises(TopologyError, match="ioc scenario generate"):
        load_scenario(str(spec))
    # materialised, the same spec loads, and as the built-in it was copied from
    out = tmp_path / "demo.yaml"
    out.write_text(materialise(str(spec)))
    assert load_scenario(str(out)) == load_scenario("demo")


@pytest.mark.parametrize(
    # the JSON one (national, 100,000 devices) would take minutes through YAML: test_national
    "name",
    sorted(name for name, text in builtin_scenarios().items() if not text.startswith("{")),
)
def test_builtin_scenarios_load_and_export_round_trips(name: str, tmp_path: Path) -> None:
    topo = load_scenario(name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(topo.to_document(), allow_unicode=True, sort_keys=False))
    again = load_scenario(str(path))
    assert again.counts() == topo.counts()
    assert again.devices == topo.devices


def test_two_tier_scenario_has_communes_directly_under_the_province() -> None:
    topo = load_scenario("two-tier-2025")
    assert topo.levels == ["province", "commune"]
    communes = [u for u in topo.units.values() if u.level_name == "commune"]
    assert communes and all(topo.units[u.parent].level == 0 for u in communes if u.parent)


GOOD = """\
scenario: tiny
levels: [province, commune]
units:
  - {code: P, name: Province, level: province, lat: 21.0, lon: 105.0}
  - {code: C1, name: Old commune, level: commune, parent: P, lat: 21.1, lon: 105.1,
     valid_to: 2025-06-30, merged_into: C2}
  - {code: C2, name: New commune, level: commune, parent: P, lat: 21.2, lon: 105.2,
     valid_from: 2025-07-01}
sites:
  - {id: s1, name: Core, kind: provincial_core, unit: P, lat: 21.0, lon: 105.0}
  - {id: s2, name: Office, kind: commune_office, unit: C2, lat: 21.2, lon: 105.2}
devices:
  - {id: core, class: netnode, site: s1}
  - {id: n2, class: netnode, site: s2, upstream: core}
  - {id: cam, class: camera, site: s2, upstream: n2}
"""


def test_an_explicit_file_loads_and_maps_history_onto_today(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(GOOD)
    topo = load_scenario(str(path))
    assert topo.devices_behind("core") == ["cam", "n2"]
    assert topo.current_unit("C1", dt.date(2026, 1, 1)) == "C2"
    assert topo.current_unit("C1", dt.date(2024, 1, 1)) == "C1"
    assert topo.ancestors("C2") == ["C2", "P"]


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        (
            "level: commune, parent: P, lat: 21.2",
            "level: hamlet, parent: P, lat: 21.2",
            6,
            "level 'hamlet' is not one of levels",
        ),
        (
            "{code: C2, name: New commune, level: commune, parent: P,",
            "{code: C2, name: New commune, level: commune, parent: X,",
            6,
            "parent 'X' is not a unit",
        ),
        ("lat: 21.2, lon: 105.2,\n", "lat: 121.2, lon: 105.2,\n", 6, "'lat' = 121.2 is outside"),
        (
            "{id: cam, class: camera, site: s2, upstream: n2}",
            "{id: cam, class: camera, site: s2, upstream: cam}",
            15,
            "not a netnode",
        ),
        ("{id: cam, class: camera,", "{id: cam, class: drone,", 15, "class 'drone'"),
        (
            "{id: n2, class: netnode, site: s2, upstream: core}",
            "{id: n2, class: netnode, site: s9, upstream: core}",
            14,
            "site 's9' is not a site",
        ),
        (
            "{id: s2, name: Office, kind: commune_office,",
            "{id: s1, name: Office, kind: commune_office,",
            11,
            "duplicate site id 's1'",
        ),
        (
            "  - {id: core, class: netnode, site: s1}",
            "  - {id: core, class: netnode, site: s1, colour: red}",
            13,
            "unknown field(s) 'colour'",
        ),
        ("levels: [province, commune]", "levels: province", 1, "'levels' must be a list"),
        ("  - {id: s1, name: Core", "  - {id: s1 name: Core", 10, "invalid YAML"),
        ("valid_from: 2025-07-01}", "valid_from: 2025-13-01}", 6, "must be a date"),
    ],
)
def test_malformed_files_name_file_line_and_problem(
    tmp_path: Path, old: str, new: str, line: int, fragment: str
) -> None:
    assert old in GOOD
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(TopologyError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    assert fragment in message, message
    reported_line = int(message.split(":")[1])
    assert abs(reported_line - line) <= 1, message


def test_unknown_scenario_lists_the_builtins() -> None:
    with pytest.raises(TopologyError, match="yen-bai-2022"):
        load_scenario("atlantis")


def test_upstream_loops_are_rejected(tmp_path: Path) -> None:
    text = GOOD.replace(
        "{id: core, class: netnode, site: s1}", "{id: core, class: netnode, site: s1, upstream: n2}"
    )
    path = tmp_path / "loop.yaml"
    path.write_text(text)
    with pytest.raises(TopologyError, match="loops"):
        load_scenario(str(path))


# --- mergers: history across the 2025 reform -------------------------------------------------

MERGERS = """\
scenario: merged
levels: [province, commune]
units:
  - {code: P, name: Province, level: province, lat: 21.0, lon: 105.0}
  - {code: C1, name: Old commune, level: commune, parent: P, lat: 21.1, lon: 105.1,
     valid_to: 2025-06-30, merged_into: C2}
  - {code: C2, name: New commune, level: commune, parent: P, lat: 21.2, lon: 105.2,
     valid_from: 2025-07-01}
  - {code: C3, name: Older commune, level: commune, parent: P, lat: 21.3, lon: 105.3,
     valid_to: 2010-12-31}
sites:
  - {id: s1, name: Core, kind: provincial_core, unit: P, lat: 21.0, lon: 105.0}
devices:
  - {id: core, class: netnode, site: s1}
"""


def _load(tmp_path: Path, text: str) -> Topology:
    path = tmp_path / "merged.yaml"
    path.write_text(text)
    return load_scenario(str(path))


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        (  # into itself
            "valid_to: 2025-06-30, merged_into: C2}",
            "valid_to: 2025-06-30, merged_into: C1}",
            5,
            "merged_into 'C1' is the unit itself",
        ),
        (  # into a unit that ended itself, without a successor
            "valid_to: 2025-06-30, merged_into: C2}",
            "valid_to: 2025-06-30, merged_into: C3}",
            5,
            "merged_into 'C3' is itself abolished (valid_to 2010-12-31); a merger names a unit "
            "that exists today",
        ),
        (  # a chain: C3 into C1, which was merged into C2: point at C2
            "valid_to: 2010-12-31}",
            "valid_to: 2010-12-31, merged_into: C1}",
            9,
            "merged_into 'C1' is itself abolished (valid_to 2025-06-30); it was merged into "
            "'C2': point at 'C2'",
        ),
        (  # a loop of two
            "valid_from: 2025-07-01}",
            "valid_to: 2025-12-31, merged_into: C1}",
            5,
            "merged_into 'C2' loops back: C1 -> C2 -> C1",
        ),
        (  # a merger says when the unit ended
            "valid_to: 2025-06-30, merged_into: C2}",
            "merged_into: C2}",
            5,
            "merged_into 'C2' without valid_to: give the last day 'C1' existed",
        ),
        (
            "valid_to: 2025-06-30, merged_into: C2}",
            "valid_to: 2025-06-30, merged_into: C9}",
            5,
            "merged_into 'C9' is not a unit of this scenario",
        ),
    ],
)
def test_a_merger_names_a_unit_that_exists_today(
    tmp_path: Path, old: str, new: str, line: int, fragment: str
) -> None:
    assert old in MERGERS
    path = tmp_path / "bad.yaml"
    path.write_text(MERGERS.replace(old, new, 1))
    with pytest.raises(TopologyError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: units["), message
    assert fragment in message, message


def test_abolished_units_and_the_mapping_onto_today(tmp_path: Path) -> None:
    topo = _load(tmp_path, MERGERS)
    assert not topo.units["C1"].abolished(dt.date(2025, 6, 30))  # its last day
    assert topo.units["C1"].abolished(dt.date(2025, 7, 1))
    assert not topo.units["C2"].abolished(dt.date(2000, 1, 1))  # not yet valid: not abolished
    assert topo.current_unit("C1", dt.date(2025, 7, 1)) == "C2"
    assert topo.current_unit("C3", dt.date(2025, 7, 1)) == "C3"  # ended, no successor
    assert topo.current_unit("X9") == "X9"  # unknown codes map onto themselves
    on = dt.date(2026, 1, 1)
    # C1 was merged into C2: hidden; C3 ended without a successor: still offered
    assert [u.code for u in topo.unit_list(on=on)] == ["P", "C2", "C3"]
    assert topo.units["C1"].superseded(on) and not topo.units["C3"].superseded(on)
    assert [u.code for u in topo.unit_list(include_abolished=True, on=on)] == [
        "P",
        "C1",
        "C2",
        "C3",
    ]


def test_units_stored_by_an_older_scenario_cannot_loop_the_mapping() -> None:
    """Units are never deleted from the database, so a loop could meet old rows: the mapping
    stops instead of spinning (the scenario itself refuses loops)."""
    topo = Topology(
        name="x",
        levels=["commune"],
        units={
            code: AdminUnit(code, code, 0, "commune", None, 21.0, 105.0, None, end, into)
            for code, end, into in [
                ("A", dt.date(2020, 1, 1), "B"),
                ("B", dt.date(2020, 1, 1), "A"),
            ]
        },
        sites={},
        devices={},
    ).finalize()
    assert topo.current_unit("A", dt.date(2026, 1, 1)) in {"A", "B"}


def test_validity_is_judged_in_vietnam_time() -> None:
    from zoneinfo import ZoneInfo

    assert today() == dt.datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
