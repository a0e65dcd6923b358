"""LGSP (the provincial data-sharing platform) -> the portal feed's messages.

The one-stop system publishes its dossier log and the payment platform its payment results
through LGSP, which a collector reads in batches, hours late after an outage. A batch is JSON::

    {"MaDonViGui": "000.00.12.H17", "ThoiGianGui": "20261126103000",
     "DanhSach": [ {record}, {record}, ... ]}

and each record is a dossier record (``LoaiBanGhi: "HoSo"``) or a payment record
(``LoaiBanGhi: "ThanhToan"``), with the field names of the national public-service portal's
dossier synchronisation (``MaHoSo``, ``MaTTHC``, ``KenhThucHien``, ``TrangThaiHoSo``,
``NgayHenTra``, ``NgayKetThucXuLy``...) and of the payment platform (``MaGiaoDich``,
``SoTien``, ``TrangThaiThanhToan``, ``MaLoi``...). Times are ``yyyyMMddHHmmss``, Vietnam time.

Mapping of ``TrangThaiHoSo`` (the portal's status codes): ``2`` received; ``3`` (refused) and
``7`` (withdrawn) returned; ``9`` (handled) resolved, on time when ``NgayKetThucXuLy`` is not
after ``NgayHenTra``; any other code a status change; a record flagged ``QuaHan: 1`` is the
dossier going overdue. ``KenhThucHien``: 1 in person, 2 online, 3 postal.
``TrangThaiThanhToan``: 0 attempted, 1 succeeded, 2 failed (``MaLoi``/``MoTaLoi`` the reason).

:class:`LgspAdapter` is the collector's stateful mapper: it knows which portal device (the
receiving unit's desk) each ``MaDonVi`` is, and numbers each device's messages. A record it
cannot map raises :class:`LgspError` with a short reason (the collector dead-letters the
record and goes on with the batch, :meth:`LgspAdapter.batch`); it never lets a bad record
through, since every message is validated against the contract on the way out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from ioc.contract import portal as p
from ioc.contract import schemas as s
from ioc.contract.feeds import Feed

VN: Final = dt.timezone(dt.timedelta(hours=7))
TIME_FORMAT: Final = "%Y%m%d%H%M%S"
RECEIVED: Final = "2"
RETURNED: Final = frozenset({"3", "7"})
RESOLVED: Final = "9"
CHANNELS: Final[Mapping[int, p.Channel]] = {1: "in_person", 2: "online", 3: "postal"}
PAYMENTS: Final[Mapping[str, p.PaymentEvent]] = {"0": "attempted", "1": "succeeded", "2": "failed"}


class LgspError(ValueError):
    """A native record or batch the adapter cannot map; ``reason`` is a short label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def to_ms(text: Any, field: str) -> int:
    """``yyyyMMddHHmmss`` (Vietnam time) -> epoch milliseconds."""
    if not isinstance(text, str):
        raise LgspError("bad_time", f"{field} must be a yyyyMMddHHmmss string, got {text!r}")
    try:
        stamp = dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=VN)
    except ValueError:
        raise LgspError("bad_time", f"{field} {text[:32]!r} is not yyyyMMddHHmmss") from None
    return int(stamp.timestamp() * 1000)


def from_ms(ts_ms: int) -> str:
    """Epoch milliseconds -> ``yyyyMMddHHmmss`` (Vietnam time), as LGSP writes times."""
    return dt.datetime.fromtimestamp(ts_ms / 1000, VN).strftime(TIME_FORMAT)


def _text(doc: Mapping[str, Any], field: str, required: bool = True) -> str | None:
    value = doc.get(field)
    if value is None or value == "":
        if required:
            raise LgspError("missing_field", f"record without {field}")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise LgspError("bad_field", f"{field} must be text, got {type(value).__name__}")
    return value


class LgspAdapter:
    """Maps LGSP records of the units it knows onto portal messages, numbering each device's
    messages from 1 (a collector keeps one for its lifetime, and persists ``seq``)."""

    def __init__(self, units: Mapping[str, str]) -> None:
        self.units = dict(units)
        """``MaDonVi`` (the unit's code on LGSP) -> the portal device id."""
        self.seq: dict[str, int] = {}

    def _device(self, doc: Mapping[str, Any]) -> str:
        code = _text(doc, "MaDonVi")
        assert code is not None
        device = self.units.get(code)
        if device is None:
            raise LgspError("unknown_unit", f"MaDonVi {code[:64]!r} is not a known receiving unit")
        return device

    def _next(self, device: str) -> int:
        self.seq[device] = self.seq.get(device, 0) + 1
        return self.seq[device]

    def record(self, doc: Any) -> p.PortalDossier | p.PortalPayment:
        """One native record -> one validated message (raises :class:`LgspError`)."""
        if not isinstance(doc, Mapping):
            raise LgspError("not_a_record", f"expected a JSON object, got {type(doc).__name__}")
        kind = doc.get("LoaiBanGhi")
        if kind == "HoSo":
            fields = self._dossier(doc)
        elif kind == "ThanhToan":
            fields = self._payment(doc)
        else:
            raise LgspError("unknown_record", f"LoaiBanGhi {str(kind)[:32]!r}")
        device = self._device(doc)
        fields.update(v=s.SCHEMA_VERSION, device_id=device, seq=self.seq.get(device, 0) + 1)
        try:
            message = s.decode(msgspec.json.encode(fields), feed=Feed.PORTAL)
        except s.InvalidMessage as exc:
            raise LgspError("invalid", exc.detail) from None
        assert isinstance(message, p.PortalDossier | p.PortalPayment)
        self._next(device)
        return message

    def batch(self, payload: bytes | Mapping[str, Any]) -> tuple[list[s.Message], list[LgspError]]:
        """A whole LGSP batch: the messages of its good records, in order, and an error per
        bad record (a batch that is not a batch at all raises)."""
        if isinstance(payload, bytes | bytearray):
            try:
                payload = msgspec.json.decode(payload)
            except msgspec.DecodeError:
                raise LgspError("not_json", "the batch is not a JSON document") from None
        records = payload.get("DanhSach") if isinstance(payload, Mapping) else None
        if not isinstance(records, list):
            raise LgspError("not_a_batch", "expected an object with a DanhSach list")
        messages: list[s.Message] = []
        errors: list[LgspError] = []
        for doc in records:
            try:
                messages.append(self.record(doc))
            except LgspError as exc:
                errors.append(exc)
        return messages, errors

    @staticmethod
    def _dossier(doc: Mapping[str, Any]) -> dict[str, Any]:
        status = _text(doc, "TrangThaiHoSo")
        assert status is not None
        ts_ms = to_ms(doc.get("ThoiGianCapNhat"), "ThoiGianCapNhat")
        fields: dict[str, Any] = {
            "kind": "portal.dossier",
            "ts_ms": ts_ms,
            "dossier_id": _text(doc, "MaHoSo"),
            "procedure": _text(doc, "MaTTHC"),
            "status": status,
        }
        due = doc.get("NgayHenTra")
        due_ms = to_ms(due, "NgayHenTra") if due not in (None, "") else None
        if due_ms is not None:
            fields["due_date"] = dt.datetime.fromtimestamp(due_ms / 1000, VN).date().isoformat()
        if doc.get("QuaHan") in (1, True, "1"):
            fields["dossier_event"] = "overdue"
        elif status == RECEIVED:
            channel = doc.get("KenhThucHien")
            if not isinstance(channel, int) or channel not in CHANNELS:
                raise LgspError("bad_field", f"KenhThucHien {channel!r} is not 1, 2 or 3")
            fields["dossier_event"] = "received"
            fields["channel"] = CHANNELS[channel]
        elif status in RETURNED:
            fields["dossier_event"] = "returned"
        elif status == RESOLVED:
            if due_ms is None:
                raise LgspError("missing_field", "a handled dossier (9) without NgayHenTra")
            done = doc.get("NgayKetThucXuLy") or doc.get("ThoiGianCapNhat")
            fields["dossier_event"] = "resolved"
            fields["on_time"] = to_ms(done, "NgayKetThucXuLy") <= due_ms
        else:
            fields["dossier_event"] = "status"
        return fields

    @staticmethod
    def _payment(doc: Mapping[str, Any]) -> dict[str, Any]:
        state = _text(doc, "TrangThaiThanhToan")
        event = PAYMENTS.get(state or "")
        if event is None:
            raise LgspError("bad_field", f"TrangThaiThanhToan {state!r} is not 0, 1 or 2")
        amount = doc.get("SoTien")
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise LgspError("bad_field", f"SoTien must be an integer (VND), got {amount!r}")
        fields: dict[str, Any] = {
            "kind": "portal.payment",
            "ts_ms": to_ms(doc.get("ThoiGian"), "ThoiGian"),
            "payment_id": _text(doc, "MaGiaoDich"),
            "dossier_id": _text(doc, "MaHoSo"),
            "payment_event": event,
            "amount_vnd": amount,
            "gateway": _text(doc, "KenhThanhToan", required=False),
        }
        if event == "failed":
            text = _text(doc, "MoTaLoi", required=False) or _text(doc, "MaLoi", required=False)
            fields["reason"] = text or "unknown"
        return fields
