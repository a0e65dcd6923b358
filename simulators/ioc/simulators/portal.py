"""The public-service portal's simulator: each receiving unit's one-stop desk as LGSP carries
it (docs/portal.md, docs/simulators.md).

A :class:`PortalSim` keeps its unit's open dossiers and, at each due report, writes one native
LGSP record (a dossier event, or a payment attempt and its result) and passes it through the
same :class:`ioc.adapters.lgsp.LgspAdapter` a real collector uses. Event time is when the
event happened at the desk; the record is delivered later (:meth:`PortalSim.delivery_delay_ms`,
LGSP's sync delay), and after an outage hours later, behind newer records of other desks.

Rates are compressed for demonstrations (one dossier event per desk every
:data:`DOSSIER_PERIOD_MS`); the shares are the province's: about 45% of dossiers submitted
online, 96.8% resolved on time, about two payments in three succeed (Dak Lak: 6,283 of 9,549).

Faults (:mod:`ioc.simulators.faults`): ``lgsp_outage`` holds everything of a desk for the
outage and delivers it as one catch-up batch at its end (hours late for a long outage);
``payment_gateway_failure`` makes its payments fail; ``unit_backlog`` makes its unit fall
behind (dossiers go overdue, resolutions come late).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ioc.adapters.lgsp import LgspAdapter, from_ms
from ioc.contract import schemas as s
from ioc.contract.feeds import Feed
from ioc.contract.topology import Device
from ioc.simulators.behaviour import Conditions, DeviceSim

DOSSIER_PERIOD_MS: Final = 60_000
PAYMENT_PERIOD_MS: Final = 180_000
DAY_MS: Final = 86_400_000
ONLINE_SHARE: Final = 0.45
ON_TIME_SHARE: Final = 0.968
PAYMENT_SUCCESS: Final = 0.66
SYNC_DELAY_MS: Final = (1_000, 10_000)
"""LGSP's usual delay between the event at the desk and its delivery, per record (so a
desk's records, and a dossier's events, arrive out of order)."""
PROCEDURES: Final = (
    "1.004227",  # birth registration
    "1.001193",  # marriage registration
    "2.000908",  # certification of copies
    "1.003005",  # land-use right certificate
    "1.009994",  # construction permit
    "2.001711",  # household business registration
    "1.000894",  # residence registration
    "1.008838",  # social allowance
)
FAILURES: Final = (
    ("TIMEOUT", "Het thoi gian cho phan hoi tu ngan hang"),
    ("CANCELLED", "Nguoi dung huy giao dich"),
    ("INSUFFICIENT", "Tai khoan khong du so du"),
)
GATEWAY_DOWN: Final = ("GW_UNAVAILABLE", "Loi ket noi cong thanh toan")
ROLE_DEPARTMENT: Final = "department"
ROLE_UNIT: Final = "unit"


@dataclass
class Dossier:
    id: str
    procedure: str
    received_ms: int
    due_ms: int
    overdue: bool = False


def lgsp_code(device: Device) -> str:
    """The desk's unit code on LGSP (``MaDonVi``): the topology attribute, or derived."""
    return str(device.attributes.get("lgsp_code") or f"LGSP.{device.id}")


class PortalSim(DeviceSim):
    device_class = Feed.PORTAL
    periods: ClassVar[Mapping[str, int]] = {
        "portal.dossier": DOSSIER_PERIOD_MS,
        "portal.payment": PAYMENT_PERIOD_MS,
    }

    def __init__(self, device: Device, region: str, seed: int, start_ms: int) -> None:
        super().__init__(device, region, seed, start_ms)
        self.code = lgsp_code(device)
        self.adapter = LgspAdapter({self.code: device.id})
        self.open: list[Dossier] = []
        self.counter = 0
        self.payments = 0
        self.released_ms = 0

    # --- native records (what LGSP carries) ---

    def _event_ms(self, ts_ms: int) -> int:
        return ts_ms

    def delivery_delay_ms(self, message: s.Message) -> int:
        """LGSP's sync delay, drawn per record; a desk's records keep their order (its
        sequence numbers), whatever their delays."""
        release = max(message.ts_ms + self.rng.randint(*SYNC_DELAY_MS), self.released_ms)
        self.released_ms = release
        return release - message.ts_ms

    def _new_dossier(self, ts_ms: int) -> Dossier:
        self.counter += 1
        days = self.rng.choice((3, 5, 7, 10, 15))
        return Dossier(
            id=f"{self.code}-{from_ms(ts_ms)[:8]}-{self.counter:05d}",
            procedure=self.rng.choice(PROCEDURES),
            received_ms=ts_ms,
            due_ms=ts_ms + days * DAY_MS,
        )

    def dossier_record(self, ts_ms: int, cond: Conditions) -> dict[str, Any]:
        """The next native dossier record of this desk (state moves on)."""
        rng = self.rng
        at = self._event_ms(ts_ms)
        backlog = "unit_backlog" in cond.active
        r = rng.random()
        if not self.open or r < (0.35 if backlog else 0.42):
            d = self._new_dossier(at)
            self.open.append(d)
            return self._record(d, at, "2", KenhThucHien=2 if rng.random() < ONLINE_SHARE else 1)
        if backlog and r < 0.6:
            # falling behind: dossiers pass their due date instead of being resolved
            fresh = [d for d in self.open if not d.overdue]
            if fresh:
                d = fresh[0]
                d.overdue = True
                d.due_ms = min(d.due_ms, at - DAY_MS)
                return self._record(d, at, "4", QuaHan=1)
        d = self.open[0] if r >= 0.5 else rng.choice(self.open)
        if r < 0.55:
            return self._record(d, at, rng.choice(("4", "5", "6")))
        self.open.remove(d)
        if r < 0.58:
            return self._record(d, at, rng.choice(("3", "7")))
        on_time = not d.overdue and rng.random() < (0.3 if backlog else ON_TIME_SHARE)
        if not on_time:
            d.due_ms = min(d.due_ms, at - rng.randint(1, 3) * DAY_MS)
        return self._record(d, at, "9", NgayKetThucXuLy=from_ms(at))

    def _record(self, d: Dossier, at_ms: int, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "LoaiBanGhi": "HoSo",
            "MaHoSo": d.id,
            "MaTTHC": d.procedure,
            "MaDonVi": self.code,
            "TrangThaiHoSo": status,
            "ThoiGianCapNhat": from_ms(at_ms),
            "NgayTiepNhan": from_ms(d.received_ms),
            "NgayHenTra": from_ms(d.due_ms),
            **extra,
        }

    def payment_records(self, ts_ms: int, cond: Conditions) -> list[dict[str, Any]]:
        """An online payment: the attempt, then its result a few seconds later."""
        rng = self.rng
        self.payments += 1
        at = self._event_ms(ts_ms)
        dossier = rng.choice(self.open).id if self.open else f"{self.code}-fee"
        base = {
            "LoaiBanGhi": "ThanhToan",
            "MaGiaoDich": f"PG{self.code}{self.payments:06d}",
            "MaHoSo": dossier,
            "MaDonVi": self.code,
            "SoTien": rng.choice((20_000, 30_000, 50_000, 100_000, 200_000)),
            "KenhThanhToan": rng.choice(("PayGov", "VNPT Pay", "Viettel Money")),
        }
        attempted = {**base, "TrangThaiThanhToan": "0", "ThoiGian": from_ms(at)}
        if "payment_gateway_failure" in cond.active:
            code, text = GATEWAY_DOWN
            result = {**base, "TrangThaiThanhToan": "2", "MaLoi": code, "MoTaLoi": text}
        elif rng.random() < PAYMENT_SUCCESS:
            result = {**base, "TrangThaiThanhToan": "1"}
        else:
            code, text = rng.choice(FAILURES)
            result = {**base, "TrangThaiThanhToan": "2", "MaLoi": code, "MoTaLoi": text}
        result["ThoiGian"] = from_ms(at)  # the bank answers within the report's interval
        return [attempted, result]

    # --- DeviceSim ---

    def emit(self, kind: str, ts_ms: int, period_ms: int, cond: Conditions) -> list[s.Message]:
        if kind == "portal.dossier":
            return [self.adapter.record(self.dossier_record(ts_ms, cond))]
        return [self.adapter.record(doc) for doc in self.payment_records(ts_ms, cond)]


OFFICE_KINDS: Final = ("district_office", "commune_office")


def place_devices(
    section: Any,
    seed: int,
    units: list[dict[str, Any]],
    sites: list[dict[str, Any]],
    devices: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The portal desks of a generated province (``portal: {departments: 3}``): one desk per
    district and commune at its office, and one per provincial department (the first
    ``departments`` provincial office sites), each behind its site's network node. Draws only
    from its own ``random.Random((seed, "portal"))``: the other devices stay as they were."""
    if not section:
        return []
    if not isinstance(section, dict):
        raise ValueError("generate: 'portal' must be a mapping (departments)")
    rng = random.Random(f"{seed}/portal")
    node_of = {d["site"]: d["id"] for d in devices if d["class"] == "netnode"}
    top = next(u for u in units if not u.get("parent"))
    office = {site["unit"]: site for site in sites if site["kind"] in OFFICE_KINDS}
    departments = [site for site in sites if site["kind"] == "provincial_office"]
    wanted = int(section.get("departments", 0))
    if wanted > len(departments):
        raise ValueError(
            f"generate: portal.departments {wanted} > {len(departments)} provincial offices"
        )
    out: list[dict[str, Any]] = []

    def desk(dev_id: str, site: dict[str, Any], **attributes: Any) -> None:
        if site["id"] not in node_of:
            return
        out.append(
            {
                "id": dev_id,
                "class": Feed.PORTAL.value,
                "site": site["id"],
                "lat": site["lat"],
                "lon": site["lon"],
                "upstream": node_of[site["id"]],
                "attributes": {**attributes, "procedures": rng.randint(120, 420)},
            }
        )

    for i, site in enumerate(departments[:wanted]):
        suffix = site["id"].removeprefix("site-")
        desk(
            f"portal-{suffix}",
            site,
            role=ROLE_DEPARTMENT,
            lgsp_code=f"000.00.{i + 1:02d}.H{top['code']}",
        )
    for unit in units:
        unit_office = office.get(unit["code"])
        if unit_office is not None:
            desk(
                f"portal-{unit['code']}",
                unit_office,
                role=ROLE_UNIT,
                lgsp_code=f"000.{unit['code']}.H{top['code']}",
            )
    return out
