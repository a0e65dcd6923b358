"""Inventory import: the template imports into a scenario that loads; every kind of bad row is
refused with its row number, from CSV and XLSX alike; dry run, history and re-import."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ioc.cli import main
from ioc.contract.topology import load_scenario
from ioc.inventory import MAX_PROBLEMS, InventoryError
from ioc.inventory.build import (
    BBox,
    Units,
    address_problem,
    build_topology,
    units_from_sheet,
)
from ioc.inventory.history import CHANGELOG, history_dir, versions
from ioc.inventory.sheet import Sheet, cell_text, csv_text, read_sheet, write_csv, write_xlsx
from ioc.inventory.template import COLUMNS, TEMPLATE_ROWS, write_template

ROOT = Path(__file__).resolve().parents[2]
UNIT_HEADER = ["code", "name", "level", "parent", "lat", "lon", "valid_from", "valid_to"]


def _rows() -> list[dict[str, Any]]:
    return [dict(row) for row in TEMPLATE_ROWS]


def _write(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> Path:
    if path.suffix == ".csv":
        write_csv(path, columns, rows)
    else:
        write_xlsx(path, {"devices": (columns, rows)})
    return path


def _ioc(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _import_demo(
    capsys: pytest.CaptureFixture[str], source: Path, tmp_path: Path
) -> tuple[int, str, str]:
    """``ioc inventory import SOURCE --base demo --out tmp_path/x.yaml``."""
    return _ioc(
        capsys,
        "inventory",
        "import",
        str(source),
        "--base",
        "demo",
        "--out",
        str(tmp_path / "x.yaml"),
    )


def read(path: Path) -> Sheet:
    sheet = read_sheet(path)
    assert sheet is not None
    return sheet


def demo_units() -> Units:
    return Units.of(load_scenario("demo"), "scenario demo")


def _problems(err: str) -> list[str]:
    return [line for line in err.splitlines() if not line.startswith("ioc: error:")]


# --- the template ---


def test_the_template_imports_against_the_demo_units_and_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template, out = tmp_path / "template.csv", tmp_path / "prov.yaml"
    assert _ioc(capsys, "inventory", "template", "--out", str(template))[0] == 0
    code, stdout, err = _ioc(
        capsys, "inventory", "import", str(template), "--base", "demo", "--out", str(out)
    )
    assert code == 0, err
    assert "wrote" in stdout and "v0001" in stdout
    topo = load_scenario(str(out))
    assert topo.name == "prov"
    assert list(topo.devices) == [row["device_id"] for row in TEMPLATE_ROWS]
    assert topo.units == load_scenario("demo").units
    assert {d.device_class for d in topo.devices.values()} == {
        "netnode", "camera", "telehealth", "vconf", "portal", "soc",
    }  # fmt: skip
    cam = topo.devices["cam-991-001"]
    assert cam.attributes == {
        "name": "Camera ngã tư Đại Châu",
        "address": "rtsp://10.99.11.21:554/stream1",
        "lanes": 4,
    }
    assert (cam.lat, cam.lon) == (21.0006, 105.0042)
    assert topo.sites[cam.site].name == "Ngã tư Đại Châu"
    assert topo.upstream_chain("cam-991-001") == ["nn-991-001", "nn-991", "nn-core"]
    soc = topo.devices["soc-core"].attributes
    assert soc["agents"] == ["wz-core-01", "wz-core-02"] and soc["subnet"] == "10.99.0.0/24"
    assert topo.devices["nn-core"].attributes["capacity_mbps"] == 10000
    assert topo.devices["portal-991"].attributes["lgsp_code"] == "000.991.H99"
    assert topo.devices_behind("nn-992") == sorted(
        ["nn-992-002", "cam-992-002", "th-992-002", "vc-992-002"]
    )


def test_the_workbook_template_imports_to_the_same_topology(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The .xlsx carries its own units sheet (the demo's); CSV and XLSX give one topology."""
    book, text = tmp_path / "t.xlsx", tmp_path / "t.csv"
    write_template(book)
    write_template(text)
    for source, out, extra in ((book, "a.yaml", []), (text, "b.yaml", ["--base", "demo"])):
        argv = ["inventory", "import", str(source), "--out", str(tmp_path / out), "--name", "p"]
        code, _, err = _ioc(capsys, *argv, *extra)
        assert code == 0, err
    a, b = load_scenario(str(tmp_path / "a.yaml")), load_scenario(str(tmp_path / "b.yaml"))
    assert a.to_document() == b.to_document()
    assert read_sheet(book, "columns") is not None  # the help sheet is there, and ignored


def test_the_committed_template_is_what_the_command_writes(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    write_template(out)
    committed = ROOT / "docs" / "inventory-template.csv"
    assert committed.read_bytes() == out.read_bytes(), (
        "docs/inventory-template.csv is stale: run "
        "`ioc inventory template --out docs/inventory-template.csv`"
    )
    assert committed.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8


def test_template_names_are_nfc_and_a_decomposed_name_is_normalised(tmp_path: Path) -> None:
    rows = _rows()
    for row in rows:
        for key in ("device_name", "site_name"):
            assert unicodedata.is_normalized("NFC", row[key])
    decomposed = unicodedata.normalize("NFD", "Điểm cầu Mường Phúc")
    assert decomposed != "Điểm cầu Mường Phúc"
    rows[12]["device_name"] = decomposed
    topo = build_topology(read(_write(tmp_path / "x.csv", rows)), demo_units(), name="x")
    assert topo.devices["vc-992-002"].attributes["name"] == "Điểm cầu Mường Phúc"


@pytest.mark.parametrize("name", ["demo", "two-tier-2025", "yen-bai-2022"])
def test_every_builtin_scenario_written_as_an_inventory_imports_back(
    name: str, tmp_path: Path
) -> None:
    """Real-shaped provinces pass the checks (ids, extent, upstreams) and come back whole. The
    cameras' simulator attribute ``site_kind`` is left out: in a sheet that is the site's."""
    topo = load_scenario(name)
    lists = {
        k for d in topo.devices.values() for k, v in d.attributes.items() if isinstance(v, list)
    }
    rows = []
    for d in topo.devices.values():
        s = topo.sites[d.site]
        row: dict[str, Any] = {
            "device_id": d.id, "class": d.device_class, "unit": s.unit, "site_id": s.id,
            "site_name": s.name, "site_kind": s.kind, "upstream": d.upstream, "lat": s.lat,
            "lon": s.lon,
        }  # fmt: skip
        for key, value in d.attributes.items():
            if key in lists:
                row[f"{key}[]"] = ";".join(map(str, value))
            elif key != "site_kind":
                row[key] = value
        rows.append(row)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    # a historical scenario (yen-bai-2022: units until 2025-06-30) is an inventory of its day
    ended = [u.valid_to for u in topo.units.values() if u.valid_to is not None]
    got = build_topology(
        read(_write(tmp_path / "inv.csv", rows, columns)),
        Units.of(topo, name),
        name=name,
        on=min(ended, default=None),
    )
    assert list(got.devices) == list(topo.devices)
    for d in topo.devices.values():
        g = got.devices[d.id]
        assert (g.device_class, g.site, g.upstream, g.lat, g.lon) == (
            d.device_class, d.site, d.upstream, d.lat, d.lon,
        )  # fmt: skip
        assert g.attributes == {k: v for k, v in d.attributes.items() if k != "site_kind"}
    used = {row["site_id"] for row in rows}  # the demo has a site without devices
    assert got.sites == {k: v for k, v in topo.sites.items() if k in used}


# --- bad rows ---


def _bad_rows() -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """The template with one bad row per kind of problem, and (row, problem) expected."""
    rows = _rows()  # rows 2..16
    good = rows[5]  # cam-991-001

    def cam(device_id: str, **changes: Any) -> dict[str, Any]:
        return {**good, "device_id": device_id, "site_id": f"s-{device_id}", **changes}

    rows += [
        cam("cam-a", unit="991-999"),  # row 17
        cam("cam-991-001"),  # 18
        cam("cam-b", upstream="cam-991-001"),  # 19
        cam("cam-c", upstream="nn-nowhere"),  # 20
        {**rows[0], "device_id": "nn-x", "upstream": "nn-y", "site_id": "s-x"},  # 21
        {**rows[0], "device_id": "nn-y", "upstream": "nn-x", "site_id": "s-y"},  # 22
        cam("cam-d", lat=22.4),  # 23: Lao Cai, outside the demo province
        cam("cam-e", **{"class": "cctv"}),  # 24
        cam("cam-f", site_kind="parking"),  # 25
        cam("cam-g", lat="21.0x"),  # 26
        cam("cam g", site_id="s-g"),  # 27
        cam("cam-h", site_id="dc-tinh"),  # 28: the data centre's site, other fields
        cam("cam-i", lon=""),  # 29
        cam("cam-j", address="not an address"),  # 30
        cam("cam-k", site_kind="", site_id="s-nokind"),  # 31
        {},  # 32: blank, skipped (numbers go on)
        cam("cam-l", upstream="nn-991-001", lanes="6"),  # 33: fine
        cam("cam-m", unit=""),  # 34
        cam("x" * 65, site_id="s-long"),  # 35
    ]
    expected = [
        (17, "unit '991-999' is not a unit of Demo (scenario demo)"),
        (18, "device_id 'cam-991-001' is already on row 7"),
        (19, "upstream 'cam-991-001' is a camera (row 7), not a network node (netnode)"),
        (20, "upstream 'nn-nowhere' is not a device_id of this inventory"),
        (21, "dependency cycle: nn-x (row 21) -> nn-y (row 22) -> nn-x"),
        (23, "coordinates 22.4, 105.0042 are outside Demo: lat 20.70..21.66"),
        (24, "class 'cctv' is not one of camera, telehealth, netnode, vconf, portal, soc"),
        (25, "site_kind 'parking' is not one of provincial_core"),
        (26, "lat '21.0x' is not a number"),
        (27, "device_id 'cam g' is not 1-64 characters of A-Z a-z 0-9 . _ : -"),
        (28, "site 'dc-tinh' has unit '991-001' here but '99' on row 2"),
        (
            28,
            "site 'dc-tinh' has name 'Ngã tư Đại Châu' here but 'Trung tâm dữ liệu tỉnh' on row 2",
        ),
        (28, "site 'dc-tinh' has kind 'junction' here but 'provincial_core' on row 2"),
        (
            28,
            "site 'dc-tinh' has coordinates 21.0006, 105.0042 here but 21.0021, 105.0034 on row 2",
        ),
        (29, "lat and lon go together: lon is empty"),
        (30, "address 'not an address' contains a space"),
        (31, "site 's-nokind' has no kind (site_kind) on any of its rows"),
        (34, "site 's-cam-m' has no unit (unit) on any of its rows"),
        (35, "device_id 'xxxxxxxx"),
    ]
    return rows, expected


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_every_kind_of_bad_row_is_refused_with_its_row_number(
    suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows, expected = _bad_rows()
    source = _write(tmp_path / f"inventory{suffix}", rows)
    out = tmp_path / "prov.yaml"
    code, _, err = _ioc(
        capsys, "inventory", "import", str(source), "--base", "demo", "--out", str(out)
    )
    assert code == 2
    problems = _problems(err)
    for row, problem in expected:
        assert any(line.startswith(f"{source}:{row}: {problem}") for line in problems), (
            f"row {row}: {problem!r} not in:\n" + "\n".join(problems)
        )
    assert len(problems) == len(expected), "\n".join(problems)  # each reported once, no more
    assert err.splitlines()[-1] == (
        f"ioc: error: {source}: {len(expected)} problem(s) on 16 row(s); nothing imported"
    )
    assert not out.exists() and not history_dir(out).exists()


def test_a_unit_that_ended_in_a_merger_is_refused_with_its_successor(tmp_path: Path) -> None:
    units = tmp_path / "units.csv"
    write_csv(
        units,
        [*UNIT_HEADER, "merged_into"],
        [
            {"code": "15", "name": "Yên Bái", "level": "province", "lat": 21.7, "lon": 104.9},
            {"code": "15-001", "name": "Xã A", "level": "commune", "parent": "15", "lat": 21.7,
             "lon": 104.9, "valid_to": "2025-06-30", "merged_into": "15-002"},
            {"code": "15-002", "name": "Xã B", "level": "commune", "parent": "15", "lat": 21.71,
             "lon": 104.91, "valid_from": "2025-07-01"},
        ],
    )  # fmt: skip
    rows = [
        {"device_id": "nn-1", "class": "netnode", "unit": "15-001", "site_id": "s1",
         "site_kind": "commune_office", "lat": 21.7, "lon": 104.9},
        {"device_id": "nn-2", "class": "netnode", "unit": "15-002", "site_id": "s2",
         "site_kind": "commune_office", "lat": 21.71, "lon": 104.91},
    ]  # fmt: skip
    source = _write(tmp_path / "inv.csv", rows)
    with pytest.raises(InventoryError) as caught:
        build_topology(read(source), units_from_sheet(read(units)), name="x")
    assert caught.value.problems == [
        f"{source}:2: unit '15-001' (Xã A) ended on 2025-06-30, merged into '15-002': use that, "
        "or --on an earlier day"
    ]
    topo = build_topology(read(_write(source, rows[1:])), units_from_sheet(read(units)), name="x")
    assert topo.levels == ["province", "commune"] and len(topo.units) == 3
    # an inventory of a day before the merger: the old commune, not yet the new one
    with pytest.raises(InventoryError) as caught:
        build_topology(
            read(_write(source, rows)),
            units_from_sheet(read(units)),
            name="x",
            on=dt.date(2025, 1, 1),
        )
    assert caught.value.problems == [
        f"{source}:3: unit '15-002' (Xã B) exists from 2025-07-01: an inventory of that day or "
        "later needs --on YYYY-MM-DD"
    ]


def test_on_must_be_a_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path / "inv.csv", _rows())
    argv = ["inventory", "import", str(source), "--base", "demo", "--out", str(tmp_path / "x")]
    code, _, err = _ioc(capsys, *argv, "--on", "2025-02-30")
    assert (code, err.strip()) == (2, "ioc: error: --on '2025-02-30': expected a date YYYY-MM-DD")


@pytest.mark.parametrize(
    ("columns", "problem"),
    [
        (["device_id", "class", "site_id"], "missing column(s) unit, site_kind, lat, lon"),
        ([*COLUMNS, "Name"], "column 'name' is ambiguous: use device_name or site_name"),
        ([*COLUMNS, "số serial"], "column 'số_serial' is not one of device_id"),
        ([*COLUMNS, "Role"], "column 'role' appears twice (columns 12 and 21)"),
    ],
)
def test_header_problems_are_on_row_1(
    columns: list[str], problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path / "inv.csv", _rows(), columns)
    code, _, err = _import_demo(capsys, source, tmp_path)
    assert code == 2
    assert any(line.startswith(f"{source}:1: {problem}") for line in _problems(err)), err


def test_a_value_under_no_header_is_not_dropped(tmp_path: Path) -> None:
    source = tmp_path / "inv.csv"
    text = csv_text(COLUMNS, _rows()[:1]).replace("\n", ",,extra\n", 2).split("\n", 1)
    source.write_text(text[0].removesuffix(",,extra") + "\n" + text[1], encoding="utf-8")
    with pytest.raises(InventoryError) as caught:
        build_topology(read(source), demo_units(), name="x")
    assert caught.value.problems == [
        f"{source}:2: a value ('extra') in column {len(COLUMNS) + 2}, which has no header"
    ]


def test_units_sheet_problems_name_their_rows(tmp_path: Path) -> None:
    units = tmp_path / "units.csv"
    write_csv(
        units,
        UNIT_HEADER,
        [
            {"code": "15", "name": "Yên Bái", "level": "province", "lat": 21.7, "lon": 104.9},
            {"code": "15", "name": "again", "level": "province", "lat": 21.7, "lon": 104.9},
            {"code": "151", "name": "Huyện", "level": "district", "parent": "15", "lat": 21.7,
             "lon": 104.9},
            {"code": "151-1", "name": "Xã", "level": "district", "parent": "151", "lat": 21.7,
             "lon": 104.9},
            {"code": "152", "name": "Huyện 2", "level": "district", "parent": "99", "lat": 21.7,
             "lon": 104.9},
            {"code": "153", "name": "Huyện 3", "level": "district", "parent": "15", "lat": 91,
             "lon": 104.9, "valid_from": "2025-13-01"},
        ],
    )  # fmt: skip
    with pytest.raises(InventoryError) as caught:
        units_from_sheet(read(units))
    assert caught.value.problems == [
        f"{units}:3: unit code '15' is already on row 2",
        f"{units}:5: level 'district' at tier 3, but at tier 2 on row 4",
        f"{units}:6: parent '99' is not a unit of this sheet",
        f"{units}:7: lat 91 is outside -90..90",
        f"{units}:7: valid_from '2025-13-01' is not a date YYYY-MM-DD",
    ]


def test_problems_are_capped_with_a_count_of_the_rest(tmp_path: Path) -> None:
    rows = [
        {**_rows()[5], "device_id": f"c-{i}", "unit": "nowhere", "upstream": ""} for i in range(250)
    ]
    with pytest.raises(InventoryError) as caught:
        build_topology(read(_write(tmp_path / "inv.csv", rows)), demo_units(), name="x")
    assert len(caught.value.problems) == MAX_PROBLEMS + 1
    assert caught.value.problems[-1] == "... and 50 more problems"
    assert "250 problem(s) on 250 row(s)" in str(caught.value)


# --- file formats ---


def test_excel_csv_with_bom_semicolons_and_decimal_commas_reads_the_same(
    tmp_path: Path,
) -> None:
    """What Excel writes in a locale whose decimal mark is a comma (Vietnamese among them)."""
    plain = build_topology(read(_write(tmp_path / "a.csv", _rows())), demo_units(), name="x")
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in _rows():
        cells = {c: cell_text(row.get(c)) for c in COLUMNS}
        cells["lat"], cells["lon"] = cells["lat"].replace(".", ","), cells["lon"].replace(".", ",")
        writer.writerow([cells[c] for c in COLUMNS])
    assert "21,0021;105,0034" in buffer.getvalue()
    source = tmp_path / "b.csv"
    source.write_text(buffer.getvalue(), encoding="utf-8-sig", newline="")
    assert build_topology(read(source), demo_units(), name="x").to_document() == (
        plain.to_document()
    )


def test_a_file_that_is_not_utf8_says_how_to_save_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "inv.csv"
    source.write_bytes(csv_text(COLUMNS, _rows()).encode("utf-16"))
    code, _, err = _import_demo(capsys, source, tmp_path)
    assert code == 2
    assert err.strip().splitlines() == [
        f"ioc: error: {source}: not UTF-8 text (byte 0): save it from Excel as "
        "'CSV UTF-8 (Comma delimited)' or import the .xlsx"
    ]


def test_merged_cells_and_other_formats_are_refused(tmp_path: Path) -> None:
    import openpyxl

    book = _write(tmp_path / "inv.xlsx", _rows())
    wb = openpyxl.load_workbook(book)
    wb["devices"].merge_cells("D2:D4")
    wb.save(book)
    with pytest.raises(InventoryError, match=r"merged cells \(D2:D4\): unmerge them"):
        read_sheet(book)
    (tmp_path / "inv.xls").write_bytes(b"\xd0\xcf")
    with pytest.raises(InventoryError, match=r"old \.xls workbook: save it as \.xlsx"):
        read_sheet(tmp_path / "inv.xls")
    (tmp_path / "broken.xlsx").write_bytes(b"not a zip")
    with pytest.raises(InventoryError, match=r"cannot read it as an \.xlsx workbook"):
        read_sheet(tmp_path / "broken.xlsx")


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("10.0.0.1", None),
        ("10.0.0.1:161", None),
        ("fe80::1", None),
        ("router-1.tinh.example", None),
        ("rtsp://10.0.0.2:554/stream1", None),
        ("https://hop.demo.example", None),
        ("10.0.0.1:99999", "has a bad port '99999'"),
        ("http://", "is not a URL with a host"),
        ("a b", "contains a space"),
        ("router_1!", "is not an IP address, host name or URL"),
    ],
)
def test_poll_addresses(address: str, problem: str | None) -> None:
    assert address_problem(address) == problem


def test_a_declared_box_replaces_the_units_extent(tmp_path: Path) -> None:
    source = _write(tmp_path / "inv.csv", _rows())
    box = BBox.parse("21.2,104.0,21.5,105.5")
    with pytest.raises(InventoryError) as caught:
        build_topology(read(source), demo_units(), name="x", bbox=box)
    assert caught.value.problems[0].endswith("lat 21.20..21.50, lon 104.00..105.50 (--bbox)")
    with pytest.raises(InventoryError, match="not a box"):
        BBox.parse("22,105,21,104")


# --- versions ---


def _import(capsys: pytest.CaptureFixture[str], source: Path, out: Path, *extra: str) -> str:
    code, stdout, err = _ioc(capsys, "inventory", "import", str(source), "--out", str(out), *extra)
    assert code == 0, err
    return stdout


def _edited() -> list[dict[str, Any]]:
    rows = [r for r in _rows() if r["device_id"] != "th-992-002"]
    rows[5] = {**rows[5], "upstream": "nn-991", "address": "rtsp://10.99.11.22:554/s1"}
    rows.append({**rows[5], "device_id": "cam-991-002", "site_id": "s-new", "site_name": "Chợ"})
    return rows


def test_dry_run_shows_the_changes_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prov.yaml"
    _import(capsys, _write(tmp_path / "v1.csv", _rows()), out, "--base", "demo")
    before = out.read_text(encoding="utf-8")
    stdout = _import(capsys, _write(tmp_path / "v2.csv", _edited()), out, "--dry-run")
    lines = stdout.splitlines()
    assert lines[0] == f"dry run: {tmp_path / 'v2.csv'} -> {out} would be v0002 (now: v0001)"
    assert "devices: 15 -> 15 (+1 added, -1 removed, ~1 changed)" in lines
    assert "  + cam-991-002" in lines and "  - th-992-002" in lines
    assert (
        "  ~ cam-991-001: upstream: nn-991-001 -> nn-991; "
        "attributes.address: rtsp://10.99.11.21:554/stream1 -> rtsp://10.99.11.22:554/s1"
    ) in lines
    assert "sites: 9 -> 9 (+1 added, -1 removed, ~0 changed)" in lines
    assert "units: 7 -> 7 (+0 added, -0 removed, ~0 changed)" in lines
    assert lines[-1] == "nothing written (dry run)"
    assert out.read_text(encoding="utf-8") == before
    assert versions(history_dir(out)) == [1]


def test_each_import_is_a_version_with_a_changelog_and_an_unchanged_one_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prov.yaml"
    v1 = _write(tmp_path / "v1.csv", _rows())
    _import(capsys, v1, out, "--base", "demo")
    # the units now come from the current version: no --base needed
    assert "nothing changed" in _import(capsys, v1, out)
    assert versions(history_dir(out)) == [1]
    v2 = _write(tmp_path / "v2.xlsx", _edited())
    assert "wrote" in _import(capsys, v2, out)
    history = history_dir(out)
    assert versions(history) == [1, 2]
    assert (history / "v0002.yaml").read_text(encoding="utf-8") == out.read_text(encoding="utf-8")
    assert load_scenario(str(history / "v0001.yaml")).devices.keys() == {
        r["device_id"] for r in TEMPLATE_ROWS
    }
    entries = [json.loads(line) for line in (history / CHANGELOG).read_text().splitlines()]
    assert [e["version"] for e in entries] == [1, 2]
    import hashlib

    assert entries[1]["sha256"] == hashlib.sha256(v2.read_bytes()).hexdigest()
    assert entries[1]["source"] == str(v2)
    assert entries[1]["devices"] == {
        "added": ["cam-991-002"],
        "removed": ["th-992-002"],
        "changed": ["cam-991-001"],
    }
    assert entries[1]["counts"]["devices"] == 15
    code, stdout, _ = _ioc(capsys, "inventory", "history", str(out))
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].startswith("v0001  ") and "devices +15 -0 ~0" in lines[0]
    assert lines[1].startswith("v0002  ") and "devices +1 -1 ~1, sites +1 -1 ~0" in lines[1]
    assert lines[2] == f"{out} is v0002"


def test_without_units_the_import_says_where_to_get_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path / "inv.csv", _rows())
    code, _, err = _ioc(
        capsys, "inventory", "import", str(source), "--out", str(tmp_path / "x.yaml")
    )
    assert code == 2
    assert "no units to check it against: give --base SCENARIO (e.g. demo) or --units" in err


def test_units_from_a_units_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    units = tmp_path / "units.csv"
    assert _ioc(capsys, "inventory", "template", "--units", "--out", str(units))[0] == 0
    source = _write(tmp_path / "inv.csv", _rows())
    out = tmp_path / "prov.yaml"
    _import(capsys, source, out, "--units", str(units))
    assert load_scenario(str(out)).units == load_scenario("demo").units


def test_a_units_sheet_whose_merger_names_an_abolished_unit_is_refused(tmp_path: Path) -> None:
    units = tmp_path / "units.csv"
    write_csv(
        units,
        [*UNIT_HEADER, "merged_into"],
        [
            {"code": "15", "name": "Yên Bái", "level": "province", "lat": 21.7, "lon": 104.9},
            {"code": "15-001", "name": "Xã A", "level": "commune", "parent": "15", "lat": 21.7,
             "lon": 104.9, "valid_to": "2025-06-30", "merged_into": "15-002"},
            {"code": "15-002", "name": "Xã B", "level": "commune", "parent": "15", "lat": 21.71,
             "lon": 104.91, "valid_to": "2025-06-30"},
            {"code": "15-003", "name": "Xã C", "level": "commune", "parent": "15", "lat": 21.72,
             "lon": 104.92, "valid_to": "2025-06-30", "merged_into": "15-003"},
        ],
    )  # fmt: skip
    with pytest.raises(InventoryError) as caught:
        units_from_sheet(read(units))
    assert caught.value.problems == [
        f"{units}:3: merged_into '15-002' is itself abolished (valid_to 2025-06-30); "
        "a merger names a unit that exists today",
        f"{units}:5: merged_into '15-003' is the unit itself",
    ]
