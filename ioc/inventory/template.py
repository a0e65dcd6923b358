"""The inventory template that ships with the project (docs/inventory-template.csv).

A small network for the ``demo`` scenario's units, with every device class, the attributes
the simulators and the pipeline read (``role``, ``tier``, ``capacity_mbps``, ``lanes``,
``ports_licensed``, ``lgsp_code``, ``subnet``, ``agents[]``, ``sensor``) and Vietnamese names,
so that it imports as it is (``--base demo``) and runs end to end. The workbook form also has
the ``units`` sheet (the demo's units: replace them with the province's) and a ``columns``
sheet saying what each column holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from ioc.contract.topology import load_scenario
from ioc.inventory.build import DEVICE_COLUMNS, UNIT_COLUMNS
from ioc.inventory.sheet import UNITS_SHEET, kind_of, write_csv, write_xlsx

TEMPLATE_UNITS: Final = "demo"
"""The built-in scenario whose units the template's rows are in."""
ATTRIBUTE_COLUMNS: Final = (
    "role",
    "tier",
    "capacity_mbps",
    "lanes",
    "ports_licensed",
    "lgsp_code",
    "subnet",
    "agents[]",
    "sensor",
)
COLUMNS: Final = (*DEVICE_COLUMNS, *ATTRIBUTE_COLUMNS)

_DC: Final = {
    "unit": "99",
    "site_id": "dc-tinh",
    "site_name": "Trung tâm dữ liệu tỉnh",
    "site_kind": "provincial_core",
    "lat": 21.0021,
    "lon": 105.0034,
}
_UBND_991: Final = {
    "unit": "991",
    "site_id": "ubnd-991",
    "site_name": "UBND Thành phố Demo",
    "site_kind": "district_office",
    "lat": 21.0048,
    "lon": 104.9987,
}
_UBND_991_001: Final = {
    "unit": "991-001",
    "site_id": "ubnd-991-001",
    "site_name": "UBND Phường Đại Châu",
    "site_kind": "commune_office",
    "lat": 20.9972,
    "lon": 105.0063,
}
_UBND_992: Final = {
    "unit": "992",
    "site_id": "ubnd-992",
    "site_name": "UBND Huyện Demo",
    "site_kind": "district_office",
    "lat": 21.3012,
    "lon": 104.7021,
}
_UBND_992_002: Final = {
    "unit": "992-002",
    "site_id": "ubnd-992-002",
    "site_name": "UBND Xã Mường Phúc",
    "site_kind": "commune_office",
    "lat": 21.3641,
    "lon": 104.6377,
}


def _row(device_id: str, name: str, cls: str, site: dict[str, Any], **rest: Any) -> dict[str, Any]:
    return {"device_id": device_id, "device_name": name, "class": cls, **site, **rest}


TEMPLATE_ROWS: Final = (
    _row("nn-core", "Router lõi Trung tâm dữ liệu tỉnh", "netnode", _DC,
         address="10.99.0.1", tier="core", capacity_mbps=10000),
    _row("nn-991", "Router UBND Thành phố Demo", "netnode", _UBND_991,
         address="10.99.1.1", upstream="nn-core", tier="district", capacity_mbps=1000),
    _row("nn-991-001", "Router UBND Phường Đại Châu", "netnode", _UBND_991_001,
         address="10.99.11.1", upstream="nn-991", tier="commune", capacity_mbps=100),
    _row("nn-992", "Router UBND Huyện Demo", "netnode", _UBND_992,
         address="10.99.2.1", upstream="nn-core", tier="district", capacity_mbps=1000),
    _row("nn-992-002", "Router UBND Xã Mường Phúc", "netnode", _UBND_992_002,
         address="10.99.22.1", upstream="nn-992", tier="commune", capacity_mbps=100),
    _row("cam-991-001", "Camera ngã tư Đại Châu", "camera",
         {"unit": "991-001", "site_id": "nga-tu-dai-chau", "site_name": "Ngã tư Đại Châu",
          "site_kind": "junction", "lat": 21.0006, "lon": 105.0042},
         address="rtsp://10.99.11.21:554/stream1", upstream="nn-991-001", lanes=4),
    _row("cam-992-002", "Camera trung tâm xã Mường Phúc", "camera",
         {"unit": "992-002", "site_id": "tt-muong-phuc", "site_name": "Trung tâm xã Mường Phúc",
          "site_kind": "town_centre", "lat": 21.3655, "lon": 104.6291},
         address="rtsp://10.99.22.21:554/stream1", upstream="nn-992-002", lanes=2),
    _row("th-991-bv", "Điểm khám chữa bệnh từ xa Bệnh viện đa khoa Thành phố Demo", "telehealth",
         {"unit": "991", "site_id": "bv-991", "site_name": "Bệnh viện đa khoa Thành phố Demo",
          "site_kind": "district_hospital", "lat": 20.9987, "lon": 104.9941},
         address="10.99.1.31", upstream="nn-991", role="district_hospital"),
    _row("th-992-002", "Điểm khám từ xa Trạm y tế xã Mường Phúc", "telehealth",
         {"unit": "992-002", "site_id": "tyt-muong-phuc", "site_name": "Trạm y tế xã Mường Phúc",
          "site_kind": "health_station", "lat": 21.3629, "lon": 104.6402},
         address="10.99.22.31", upstream="nn-992-002", role="commune_pilot"),
    _row("vc-mcu-1", "Máy chủ điều khiển đa điểm (MCU) 1", "vconf", _DC,
         address="https://hop.demo.example", upstream="nn-core", role="mcu", ports_licensed=20),
    _row("vc-booking", "Hệ thống đặt lịch họp trực tuyến", "vconf", _DC,
         address="https://lichhop.demo.example", upstream="nn-core", role="booking"),
    _row("vc-991-001", "Điểm cầu UBND Phường Đại Châu", "vconf", _UBND_991_001,
         address="10.99.11.41", upstream="nn-991-001", role="endpoint"),
    _row("vc-992-002", "Điểm cầu UBND Xã Mường Phúc", "vconf", _UBND_992_002,
         address="10.99.22.41", upstream="nn-992-002", role="endpoint"),
    _row("portal-991", "Bộ phận Một cửa Thành phố Demo", "portal", _UBND_991,
         address="https://dichvucong.demo.example", upstream="nn-991", role="unit",
         lgsp_code="000.991.H99"),
    _row("soc-core", "Cảm biến SOC Trung tâm dữ liệu tỉnh", "soc", _DC,
         address="10.99.0.5", upstream="nn-core", subnet="10.99.0.0/24",
         **{"agents[]": "wz-core-01;wz-core-02"}, sensor="ids-core"),
)  # fmt: skip
"""One row per device; rows at one site repeat its fields (they may be left empty instead)."""


def unit_rows() -> list[dict[str, Any]]:
    """The template's units sheet: the ``demo`` scenario's units."""
    rows = []
    for unit in load_scenario(TEMPLATE_UNITS).units.values():
        rows.append(
            {
                "code": unit.code,
                "name": unit.name,
                "level": unit.level_name,
                "parent": unit.parent,
                "lat": unit.lat,
                "lon": unit.lon,
                "valid_from": unit.valid_from,
                "valid_to": unit.valid_to,
                "merged_into": unit.merged_into,
            }
        )
    return rows


def column_help() -> list[dict[str, Any]]:
    """The workbook's ``columns`` sheet: each column of both sheets and what it holds."""
    rows = [{"sheet": "devices", "column": k, "holds": v} for k, v in DEVICE_COLUMNS.items()]
    rows.append(
        {
            "sheet": "devices",
            "column": "(any other)",
            "holds": "an attribute of the device, e.g. role, tier, lanes; a value that reads "
            "as a number is stored as a number; a column named name[] holds a list separated "
            "by ';'",
        }
    )
    rows += [{"sheet": UNITS_SHEET, "column": k, "holds": v} for k, v in UNIT_COLUMNS.items()]
    return rows


def write_template(path: Path, units: bool = False) -> str:
    """Write the template (.csv: the devices, or the units with ``units``; .xlsx: both sheets
    and the columns' help); what was written, for the user."""
    if kind_of(path) == "csv":
        if units:
            write_csv(path, list(UNIT_COLUMNS), unit_rows())
            return f"the units of scenario {TEMPLATE_UNITS} ({len(unit_rows())} rows)"
        write_csv(path, COLUMNS, TEMPLATE_ROWS)
        return f"{len(TEMPLATE_ROWS)} example devices in the units of scenario {TEMPLATE_UNITS}"
    write_xlsx(
        path,
        {
            "devices": (COLUMNS, TEMPLATE_ROWS),
            UNITS_SHEET: (list(UNIT_COLUMNS), unit_rows()),
            "columns": (["sheet", "column", "holds"], column_help()),
        },
    )
    return (
        f"sheets devices ({len(TEMPLATE_ROWS)} example devices), units (scenario "
        f"{TEMPLATE_UNITS}'s) and columns (what each holds)"
    )
