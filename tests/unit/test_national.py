"""The national scenario: 34 provinces after the 2025 reform, the 63 before it, ~100,000 devices.

Loaded once per module: it takes seconds (JSON, not YAML; tests/unit/test_topology.py checks
that the committed file is what its generator spec makes)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from ioc.contract.topology import Topology, TopologyError, builtin_scenarios, load_scenario
from ioc.simulators.faults import FaultPlan
from ioc.simulators.vconf import Schedule

REFORM = dt.date(2025, 7, 1)


@pytest.fixture(scope="module")
def national() -> Topology:
    return load_scenario("national")


def test_34_provinces_and_3321_communes_today(national: Topology) -> None:
    today = [c for c, u in national.units.items() if u.level == 0 and not u.abolished()]
    assert len(today) == 34
    assert national.top_units() == sorted(today)
    communes = [u for u in national.units.values() if u.level_name == "commune"]
    assert len(communes) == 3321
    assert all(u.valid_from == REFORM and u.parent in today for u in communes)
    # Ho Chi Minh City has the most communes and wards, Lai Chau the fewest
    per_province = Counter(u.parent for u in communes)
    assert per_province.most_common(1) == [("79", 168)]
    assert min(per_province.values()) == per_province["12"] == 38


def test_the_63_pre_reform_provinces_map_onto_today(national: Topology) -> None:
    merged = {c: u for c, u in national.units.items() if u.merged_into is not None}
    unchanged = [
        c
        for c, u in national.units.items()
        if u.level == 0
        and u.merged_into is None
        and u.valid_from is not None
        and u.valid_from < REFORM
    ]
    assert len(merged) == 52 and len(unchanged) == 11
    assert len(merged) + len(unchanged) == 63
    for code, unit in merged.items():
        assert code.startswith("old-") and unit.level == 0
        assert unit.valid_to == REFORM - dt.timedelta(days=1)
        assert unit.merged_into is not None
        assert not national.units[unit.merged_into].abolished()
    # the mergers the context names: Yen Bai into Lao Cai, Bac Giang into Bac Ninh, Thai Binh
    # into Hung Yen, Phu Yen into Dak Lak (today's codes are the seats' pre-reform codes)
    by_name = {u.name: c for c, u in national.units.items() if u.level == 0 and not u.abolished()}
    for old, new in (
        ("Yên Bái", "Lào Cai"),
        ("Bắc Giang", "Bắc Ninh"),
        ("Thái Bình", "Hưng Yên"),
        ("Phú Yên", "Đắk Lắk"),
    ):
        code = next(c for c, u in merged.items() if u.name == old)
        assert national.current_unit(code) == by_name[new]
    assert national.current_unit("old-15") == "15"  # Yen Bai's code went to today's Lao Cai


def test_about_100000_devices_all_in_todays_units(national: Topology) -> None:
    assert 95_000 <= len(national.devices) <= 105_000
    classes = Counter(d.device_class for d in national.devices.values())
    assert set(classes) == {"camera", "netnode", "telehealth", "vconf", "portal", "soc"}
    for device_id in national.devices:
        assert not national.units[national.unit_of_device[device_id]].abolished()
    # ids carry their province: no two provinces' devices can collide
    for device in national.devices.values():
        province = national.ancestors(national.unit_of_device[device.id])[-1]
        assert province in device.id


def test_every_device_reaches_its_own_provinces_core(national: Topology) -> None:
    cores = {d.id for d in national.devices.values() if d.upstream is None}
    assert cores == {f"nn-{code}-core" for code in national.top_units()}
    for device in national.devices.values():
        chain = national.upstream_chain(device.id)
        province = national.ancestors(national.unit_of_device[device.id])[-1]
        assert (chain[-1] if chain else device.id) == f"nn-{province}-core"


def test_the_json_form_loads_from_a_file_and_bad_json_says_where(tmp_path: Path) -> None:
    text = builtin_scenarios()["demo"]
    demo = load_scenario("demo")
    doc = {
        "scenario": "demo-json",
        "levels": demo.levels,
        **{k: v for k, v in demo.to_document().items() if k in ("units", "sites", "devices")},
    }
    path = tmp_path / "demo.json.gz"
    path.write_bytes(gzip.compress(json.dumps(doc, default=str).encode()))
    assert load_scenario(str(path)).devices == demo.devices
    bad = tmp_path / "bad.json"
    bad.write_text('{"scenario": "x",\n"levels": [,\n')
    with pytest.raises(TopologyError, match=r"bad\.json:2: invalid JSON"):
        load_scenario(str(bad))
    assert text.startswith("#")  # the small built-ins stay YAML


def test_every_province_holds_its_weekly_meeting_on_its_own_bridge(national: Topology) -> None:
    monday = dt.datetime(2026, 11, 23, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    midnight_ms = int(monday.timestamp() * 1000)
    schedule = Schedule(national, FaultPlan(), national.seed, midnight_ms)
    weekly = [m for m in schedule._of_day(midnight_ms) if m.meeting_id.startswith("weekly-")]
    assert sorted(m.scope_unit for m in weekly) == national.top_units()
    for meeting in weekly:
        bridge = meeting.bridge
        assert national.ancestors(national.unit_of_device[bridge])[-1] == meeting.scope_unit
