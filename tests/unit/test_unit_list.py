"""The operations service's unit list: today's units by default, the abolished on request,
each with today's unit its history rolls into, within the caller's scope."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ioc.contract.topology import Topology, load_scenario
from ioc.services.ops.auth import Principal
from ioc.services.ops.console import _unit_options
from ioc.services.ops.units import list_units

SCENARIO = """\
scenario: merged
levels: [province, commune]
units:
  - {code: "10", name: Lao Cai, level: province, lat: 22.4, lon: 104.0}
  - {code: "15", name: Yen Bai, level: province, lat: 21.7, lon: 104.9,
     valid_to: 2025-06-30, merged_into: "10"}
  - {code: 15-001, name: Xa A, level: commune, parent: "15", lat: 21.7, lon: 104.9,
     valid_to: 2025-06-30, merged_into: 10-001}
  - {code: 10-001, name: Xa B, level: commune, parent: "10", lat: 21.7, lon: 104.9,
     valid_from: 2025-07-01}
  - {code: 10-002, name: Xa C, level: commune, parent: "10", lat: 22.4, lon: 104.0}
sites:
  - {id: s1, name: Core, kind: provincial_core, unit: "10", lat: 22.4, lon: 104.0}
devices:
  - {id: core, class: netnode, site: s1}
"""
AFTER = dt.date(2026, 1, 1)
ADMIN = Principal(token_id=None, name="admin", role="admin")


def _topology(tmp_path: Path) -> Topology:
    path = tmp_path / "merged.yaml"
    path.write_text(SCENARIO)
    return load_scenario(str(path))


def test_todays_units_by_default_and_the_abolished_on_request(tmp_path: Path) -> None:
    topo = _topology(tmp_path)
    today = list_units(topo, ADMIN, on=AFTER)
    assert [u.code for u in today] == ["10", "10-001", "10-002"]
    assert all(not u.abolished and u.current == u.code for u in today)
    every = {u.code: u for u in list_units(topo, ADMIN, include_abolished=True, on=AFTER)}
    assert list(every) == ["10", "15", "10-001", "10-002", "15-001"]
    assert every["15"].abolished and every["15"].current == "10"
    assert every["15-001"].current == "10-001"
    assert every["15-001"].valid_to == dt.date(2025, 6, 30)
    assert every["15-001"].merged_into == "10-001"
    # before the reform, Yen Bai was today's
    before = list_units(topo, ADMIN, on=dt.date(2025, 6, 30))
    assert "15" in [u.code for u in before]


def test_a_limited_token_lists_its_subtree_only(tmp_path: Path) -> None:
    topo = _topology(tmp_path)
    lao_cai = Principal(token_id=1, name="lc", role="viewer", unit_code="10")
    assert [u.code for u in list_units(topo, lao_cai, include_abolished=True, on=AFTER)] == [
        "10",
        "10-001",
        "10-002",
    ]
    yen_bai = Principal(token_id=2, name="yb", role="viewer", unit_code="15")
    assert list_units(topo, yen_bai, on=AFTER) == []
    assert [u.code for u in list_units(topo, yen_bai, include_abolished=True, on=AFTER)] == [
        "15",
        "15-001",
    ]


def test_the_consoles_pickers_hide_abolished_units(tmp_path: Path) -> None:
    topo = _topology(tmp_path)  # judged today: the reform is behind us on this machine
    assert [code for code, _ in _unit_options(topo, None)] == ["10", "10-001", "10-002"]
    shown = dict(_unit_options(topo, None, include_abolished=True))
    assert list(shown) == ["10", "10-001", "10-002", "15", "15-001"]
    assert shown["15"] == "Yen Bai (15, ≤2025-06-30)"
