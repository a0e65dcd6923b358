"""The LGSP adapter: real-looking native records in, validated portal messages out, and a
clear error (for the collector's dead letters) for anything it cannot map."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest

from ioc.adapters.lgsp import LgspAdapter, LgspError, from_ms, to_ms
from ioc.contract import portal as p

CODE = "000.00.12.H17"
DESK = "portal-17-po12"
VN = dt.timezone(dt.timedelta(hours=7))


def adapter() -> LgspAdapter:
    return LgspAdapter({CODE: DESK})


def dossier(**fields: Any) -> dict[str, Any]:
    return {
        "LoaiBanGhi": "HoSo",
        "MaHoSo": "000.00.12.H17-261126-0001",
        "MaTTHC": "1.004227",
        "MaDonVi": CODE,
        "KenhThucHien": 2,
        "TrangThaiHoSo": "2",
        "ThoiGianCapNhat": "20261126083000",
        "NgayTiepNhan": "20261126083000",
        "NgayHenTra": "20261203170000",
        **fields,
    }


def payment(**fields: Any) -> dict[str, Any]:
    return {
        "LoaiBanGhi": "ThanhToan",
        "MaGiaoDich": "PG00000001",
        "MaHoSo": "000.00.12.H17-261126-0001",
        "MaDonVi": CODE,
        "SoTien": 50_000,
        "KenhThanhToan": "PayGov",
        "TrangThaiThanhToan": "0",
        "ThoiGian": "20261126084512",
        **fields,
    }


def test_times_are_vietnam_time() -> None:
    ms = to_ms("20261126083000", "x")
    assert dt.datetime.fromtimestamp(ms / 1000, dt.UTC) == dt.datetime(
        2026, 11, 26, 1, 30, tzinfo=dt.UTC
    )
    assert from_ms(ms) == "20261126083000"


def test_a_received_dossier() -> None:
    m = adapter().record(dossier())
    assert isinstance(m, p.PortalDossier)
    assert (m.device_id, m.seq, m.dossier_event, m.channel) == (DESK, 1, "received", "online")
    assert (m.procedure, m.status, m.due_date) == ("1.004227", "2", "2026-12-03")
    assert m.ts_ms == to_ms("20261126083000", "x")


@pytest.mark.parametrize(
    ("fields", "event", "on_time"),
    [
        ({"TrangThaiHoSo": "4"}, "status", None),
        ({"TrangThaiHoSo": "4", "QuaHan": 1}, "overdue", None),
        ({"TrangThaiHoSo": "3"}, "returned", None),
        ({"TrangThaiHoSo": "7"}, "returned", None),
        ({"TrangThaiHoSo": "9", "NgayKetThucXuLy": "20261202100000"}, "resolved", True),
        ({"TrangThaiHoSo": "9", "NgayKetThucXuLy": "20261205100000"}, "resolved", False),
    ],
)
def test_dossier_statuses(fields: dict[str, Any], event: str, on_time: bool | None) -> None:
    m = adapter().record(dossier(**fields))
    assert isinstance(m, p.PortalDossier)
    assert (m.dossier_event, m.on_time) == (event, on_time)


def test_payments_and_their_reasons() -> None:
    a = adapter()
    tried = a.record(payment())
    ok = a.record(payment(TrangThaiThanhToan="1"))
    failed = a.record(payment(TrangThaiThanhToan="2", MaLoi="TIMEOUT", MoTaLoi="Het thoi gian"))
    assert isinstance(tried, p.PortalPayment) and isinstance(failed, p.PortalPayment)
    assert [m.seq for m in (tried, ok, failed)] == [1, 2, 3]
    assert (tried.payment_event, tried.amount_vnd, tried.gateway) == ("attempted", 50_000, "PayGov")
    assert (failed.payment_event, failed.reason) == ("failed", "Het thoi gian")


def test_sequence_numbers_per_device_skip_bad_records() -> None:
    a = LgspAdapter({CODE: DESK, "000.11.H17": "portal-11"})
    assert a.record(dossier()).seq == 1
    with pytest.raises(LgspError):
        a.record(dossier(TrangThaiHoSo=None))
    assert a.record(dossier(MaDonVi="000.11.H17")).seq == 1
    assert a.record(dossier()).seq == 2


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("not a record", "not_a_record"),
        ({"LoaiBanGhi": "BaoCao"}, "unknown_record"),
        (dossier(MaDonVi="999.99.H00"), "unknown_unit"),
        (dossier(MaHoSo=None), "missing_field"),
        (dossier(ThoiGianCapNhat="26/11/2026 08:30"), "bad_time"),
        (dossier(ThoiGianCapNhat=20261126083000), "bad_time"),
        (dossier(KenhThucHien=9), "bad_field"),
        (dossier(TrangThaiHoSo="9", NgayHenTra=None), "missing_field"),
        (dossier(MaTTHC="x" * 500), "invalid"),
        (dossier(MaHoSo="bad\x00id"), "invalid"),
        (payment(TrangThaiThanhToan="5"), "bad_field"),
        (payment(SoTien="50000"), "bad_field"),
        (payment(SoTien=-1), "invalid"),
        (payment(KenhThanhToan=["PayGov"]), "bad_field"),
    ],
)
def test_bad_native_input_is_a_clear_error(record: Any, reason: str) -> None:
    with pytest.raises(LgspError) as exc:
        adapter().record(record)
    assert exc.value.reason == reason, exc.value


def test_a_batch_keeps_its_good_records_and_explains_the_bad_ones() -> None:
    batch = {
        "MaDonViGui": CODE,
        "ThoiGianGui": "20261126103000",
        "DanhSach": [dossier(), {"LoaiBanGhi": "?"}, payment()],
    }
    messages, errors = adapter().batch(msgspec.json.encode(batch))
    assert [m.kind for m in messages] == ["portal.dossier", "portal.payment"]
    assert [e.reason for e in errors] == ["unknown_record"]
    with pytest.raises(LgspError, match="not_json"):
        adapter().batch(b"{not json")
    with pytest.raises(LgspError, match="not_a_batch"):
        adapter().batch({"DanhSach": "x"})
