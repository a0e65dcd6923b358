"""One incident event -> a CAP 1.2 ``<alert>`` or an NGSI-LD ``Alert`` entity (keyValues).

Both formats describe a step of one incident. Every step of ``ioc.incidents.v1`` becomes its
own CAP message (identifier ``ioc-<province>-<incident>-<seq>``): ``opened`` is an ``Alert``,
every later step an ``Update`` that references the opening message, and ``resolved`` an
``Update`` with ``responseType`` ``AllClear`` and urgency ``Past``. CAP's ``Cancel`` means the
earlier message was withdrawn (sent in error), not that the condition is over, so it is not
used. The NGSI-LD entity is one per incident (``urn:ngsi-ld:Alert:<province>:<incident>``),
its state as of the step: a broker upserts it.

Operators' names and free-text notes never leave the province: the steps carry the status,
not who did what or what they wrote.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from ioc.contract import tables as t
from ioc.contract.events import IncidentEvent
from ioc.contract.topology import Device, Topology
from ioc.errors import IocError

CAP_NS: Final = "urn:oasis:names:tc:emergency:cap:1.2"
VN_OFFSET: Final = timezone(timedelta(hours=7))
"""CAP's dateTime has no fractional seconds and no ``Z``: times are written in Vietnam time
(+07:00), what the operators read."""

NGSI_LD_CONTEXT: Final = (
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Alert/master/context.jsonld",
)
"""The contexts of the Smart Data Models' own Alert examples."""

CAP_RESTRICTION: Final = "operations centres (provincial IOC, national monitoring centre)"


class ExchangeError(IocError):
    """An incident cannot be exported; the message names the incident and the problem."""


@dataclass(frozen=True)
class Opened:
    """What the later messages of an incident refer to: its opening step."""

    incident_id: int
    seq: int
    at_ms: int


# --- the mappings' tables (one place; docs/exchange.md shows them) -----------------------------

KIND_EVENT: Final[dict[str, tuple[str, str]]] = {
    t.INCIDENT_DEVICE_DOWN: ("Thiết bị mất kết nối", "Device down"),
    t.INCIDENT_SITE_ISOLATED: ("Điểm mạng bị cô lập", "Site isolated"),
    t.INCIDENT_FLAPPING: ("Thiết bị chập chờn", "Device flapping"),
    t.INCIDENT_DEGRADED: ("Thiết bị suy giảm chất lượng", "Device degraded"),
    t.INCIDENT_SECURITY: ("Cảnh báo an toàn thông tin", "Information security alert"),
}
"""CAP ``event`` per incident kind (Vietnamese, English)."""

CLASS_NAME_VI: Final[dict[str, str]] = {
    "camera": "camera giám sát",
    "telehealth": "điểm khám chữa bệnh từ xa",
    "netnode": "nút mạng truyền số liệu chuyên dùng",
    "vconf": "điểm cầu truyền hình trực tuyến",
    "portal": "quầy một cửa (cổng dịch vụ công)",
    "soc": "cảm biến giám sát an toàn thông tin",
}

CAP_CATEGORIES: Final[dict[str, tuple[str, ...]]] = {
    "camera": ("Infra", "Security"),
    "telehealth": ("Infra", "Health"),
    "netnode": ("Infra",),
    "vconf": ("Infra",),
    "portal": ("Infra",),
    "soc": ("Infra",),
}
"""CAP ``category`` per device class: an outage is an infrastructure event, plus the public
concern the device serves. A ``security-alert`` incident is ``Security`` whatever its device."""

TRAFFIC_SITES: Final = frozenset({"junction", "highway"})
"""A camera at one of these watches traffic (CAP ``Transport``, NGSI-LD ``traffic``)."""

NGSI_CATEGORY: Final[dict[str, str]] = {
    "camera": "security",
    "telehealth": "health",
    "netnode": "security",
    "vconf": "security",
    "portal": "security",
    "soc": "security",
}
"""Smart Data Models Alert ``category`` (enum: traffic, naturalDisaster, weather, environment,
health, security, agriculture). The enum has no infrastructure category: the specialised data
network, the meeting bridges, the portal and the SOC are information systems whose outage is
an information-security (availability) matter in the national 4-layer model."""

NGSI_SUBCATEGORY: Final[dict[str, str]] = {t.INCIDENT_SECURITY: "suspiciousAction"}
"""``subCategory`` only where the published enum has a value that fits; the schema does not
require it, and an invented value would not validate. The product's own kind is in ``data``."""

CAP_SEVERITY: Final[dict[str, tuple[str, str, str]]] = {
    "critical": ("Immediate", "Severe", "critical"),
    "warning": ("Expected", "Moderate", "medium"),
    "info": ("Future", "Minor", "informational"),
}
"""Our severity -> CAP urgency, CAP severity, NGSI-LD severity. Certainty is always
``Observed``: the monitoring measured it. A resolved incident's urgency is ``Past``."""

STATUS_VI: Final[dict[str, str]] = {
    "open": "đang xử lý",
    "acknowledged": "đã tiếp nhận",
    "resolved": "đã khắc phục",
}

SENDER_NAME_VI: Final = "Trung tâm Giám sát, điều hành đô thị thông minh"
"""What a provincial IOC is called in Vietnamese; the province's name follows."""

CAP_STATUSES: Final = ("Actual", "Exercise", "System", "Test", "Draft")


# --- shared facts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    event: IncidentEvent
    province: str
    province_name: str
    device: Device
    site_name: str
    site_kind: str
    unit_code: str
    """The incident's unit (as the agent recorded it), else the root device's site's."""
    unit_chain: list[str]
    """Unit names, the incident's unit first, the province last."""
    radius_km: float
    opened_ms: int
    opened_seq: int


def _check(event: IncidentEvent, topology: Topology, opened: Opened | None) -> _Facts:
    where = f"incident {event.incident_id}.{event.seq} ({event.event})"
    if event.kind not in KIND_EVENT:
        raise ExchangeError(f"{where}: unknown kind {event.kind!r}; known: {', '.join(KIND_EVENT)}")
    if event.severity not in CAP_SEVERITY:
        raise ExchangeError(
            f"{where}: unknown severity {event.severity!r}; known: {', '.join(CAP_SEVERITY)}"
        )
    device = topology.devices.get(event.root_device)
    if device is None:
        raise ExchangeError(
            f"{where}: root device {event.root_device!r} is not in scenario {topology.name}"
        )
    if device.device_class not in CAP_CATEGORIES:
        raise ExchangeError(f"{where}: device class {device.device_class!r} has no mapping")
    if event.event == "opened":
        opened_ms, opened_seq = event.at_ms, event.seq
    elif opened is None or opened.incident_id != event.incident_id:
        raise ExchangeError(
            f"{where}: its opened event is not known, so the update cannot reference it "
            "(the topic keeps 30 days; export from the operations service instead)"
        )
    else:
        opened_ms, opened_seq = opened.at_ms, opened.seq
    site = topology.sites[device.site]
    unit = event.unit_code if event.unit_code in topology.units else site.unit
    chain = topology.ancestors(unit)
    radius = 0.0
    for other in event.affected:
        dev = topology.devices.get(other)
        if dev is None:
            raise ExchangeError(
                f"{where}: affected device {other!r} is not in scenario {topology.name}"
            )
        radius = max(radius, _km(device.lat, device.lon, dev.lat, dev.lon))
    return _Facts(
        event=event,
        province=chain[-1],
        province_name=topology.units[chain[-1]].name,
        device=device,
        site_name=site.name,
        site_kind=site.kind,
        unit_code=unit,
        unit_chain=[topology.units[code].name for code in chain],
        radius_km=math.ceil(radius * 10) / 10,
        opened_ms=opened_ms,
        opened_seq=opened_seq,
    )


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, a)))


def _cap_time(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, VN_OFFSET).isoformat()


def _utc(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def opened_events(events: Iterable[IncidentEvent]) -> dict[int, Opened]:
    """Each incident's opening, from a stream of its events (the references of updates)."""
    return {
        e.incident_id: Opened(e.incident_id, e.seq, e.at_ms) for e in events if e.event == "opened"
    }


# --- CAP 1.2 -------------------------------------------------------------------------------------


def cap_identifier(province: str, incident_id: int, seq: int) -> str:
    return f"ioc-{province}-{incident_id}-{seq}"


def default_sender(topology: Topology) -> str:
    """CAP ``sender``: no spaces, commas, ``<`` or ``&``."""
    return f"ioc.{topology.name}@{topology.top_units()[0]}"


def check_cap_options(sender: str, status: str) -> str:
    """CAP's rules for ``sender`` (no spaces, commas, ``<`` or ``&``) and ``status``."""
    if not sender or any(c in sender for c in " \t\n,<&"):
        raise ExchangeError(f"CAP sender {sender!r}: must be non-empty, without spaces, , < or &")
    if status not in CAP_STATUSES:
        raise ExchangeError(f"CAP status {status!r}: one of {', '.join(CAP_STATUSES)}")
    return sender


def to_cap(
    event: IncidentEvent,
    topology: Topology,
    *,
    opened: Opened | None = None,
    sender: str | None = None,
    status: str = "Actual",
) -> ET.Element:
    """The CAP 1.2 ``<alert>`` of one step. ``opened``: the incident's opening (needed by every
    step after ``opened``, which references its message)."""
    f = _check(event, topology, opened)
    sender = check_cap_options(sender or default_sender(topology), status)
    resolved = event.status == "resolved"
    alert = ET.Element(f"{{{CAP_NS}}}alert")

    def sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
        node = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
        if text is not None:
            node.text = text
        return node

    sub(alert, "identifier", cap_identifier(f.province, event.incident_id, event.seq))
    sub(alert, "sender", sender)
    sub(alert, "sent", _cap_time(event.at_ms))
    sub(alert, "status", status)
    sub(alert, "msgType", "Alert" if event.event == "opened" else "Update")
    sub(alert, "scope", "Restricted")
    sub(alert, "restriction", CAP_RESTRICTION)
    if event.event != "opened":
        first = cap_identifier(f.province, event.incident_id, f.opened_seq)
        sub(alert, "references", f"{sender},{first},{_cap_time(f.opened_ms)}")
    sub(alert, "incidents", f"ioc-{f.province}-{event.incident_id}")
    urgency, severity, _ngsi = CAP_SEVERITY[event.severity]
    categories = _cap_categories(event, f)
    event_vi, event_en = KIND_EVENT[event.kind]
    area_desc = ", ".join(f.unit_chain)
    for language, name, headline, description in (
        ("vi-VN", event_vi, _headline_vi(f), _description_vi(f)),
        ("en-US", event_en, event.title, _description_en(f)),
    ):
        info = sub(alert, "info")
        sub(info, "language", language)
        for category in categories:
            sub(info, "category", category)
        sub(info, "event", name)
        if resolved:
            sub(info, "responseType", "AllClear")
        sub(info, "urgency", "Past" if resolved else urgency)
        sub(info, "severity", severity)
        sub(info, "certainty", "Observed")
        sub(info, "onset", _cap_time(f.opened_ms))
        sub(info, "senderName", f"{SENDER_NAME_VI} {f.province_name}")
        sub(info, "headline", headline)
        sub(info, "description", description)
        for value_name, value in (
            ("ioc:incidentId", str(event.incident_id)),
            ("ioc:seq", str(event.seq)),
            ("ioc:lifecycle", event.event),
            ("ioc:status", event.status),
            ("ioc:kind", event.kind),
            ("ioc:severity", event.severity),
            ("ioc:deviceClass", f.device.device_class),
            ("ioc:rootDevice", event.root_device),
            ("ioc:affectedCount", str(len(event.affected))),
        ):
            param = sub(info, "parameter")
            sub(param, "valueName", value_name)
            sub(param, "value", value)
        area = sub(info, "area")
        sub(area, "areaDesc", area_desc)
        sub(area, "circle", f"{f.device.lat:.5f},{f.device.lon:.5f} {f.radius_km:.1f}")
        geocode = sub(area, "geocode")
        sub(geocode, "valueName", "ioc:unitCode")
        sub(geocode, "value", f.unit_code)
    return alert


def to_cap_xml(
    event: IncidentEvent,
    topology: Topology,
    *,
    opened: Opened | None = None,
    sender: str | None = None,
    status: str = "Actual",
) -> bytes:
    """:func:`to_cap` as a document (:func:`cap_document`)."""
    return cap_document(to_cap(event, topology, opened=opened, sender=sender, status=status))


def cap_document(alert: ET.Element) -> bytes:
    """An ``<alert>`` as an indented UTF-8 document with its XML declaration, CAP's
    namespace the default one."""
    ET.register_namespace("", CAP_NS)
    ET.indent(alert)
    body: bytes = ET.tostring(alert, encoding="utf-8", xml_declaration=True)
    return body + b"\n"


def _cap_categories(event: IncidentEvent, f: _Facts) -> list[str]:
    if event.kind == t.INCIDENT_SECURITY:
        return ["Security"]
    if _traffic_camera(f):
        return ["Infra", "Transport"]
    return list(CAP_CATEGORIES[f.device.device_class])


def _traffic_camera(f: _Facts) -> bool:
    return f.device.device_class == "camera" and f.site_kind in TRAFFIC_SITES


def _headline_vi(f: _Facts) -> str:
    event_vi = KIND_EVENT[f.event.kind][0]
    cls = CLASS_NAME_VI[f.device.device_class]
    status = STATUS_VI[f.event.status]
    return f"{event_vi}: {cls} {f.event.root_device} tại {f.site_name} ({status})"


def _description_vi(f: _Facts) -> str:
    e = f.event
    text = f"{_headline_vi(f)}. Địa bàn: {', '.join(f.unit_chain)}."
    if e.kind == t.INCIDENT_SITE_ISOLATED:
        text += f" {len(e.affected)} thiết bị phía sau bị mất kết nối."
    if e.status == "resolved":
        text += " Sự cố đã được khắc phục."
    return text


def _description_en(f: _Facts) -> str:
    e = f.event
    text = f"{e.title}. Status: {e.status}. Area: {', '.join(f.unit_chain)}."
    if e.status == "resolved":
        text += " The incident is resolved."
    return text


# --- NGSI-LD Alert (Smart Data Models) -----------------------------------------------------------


def ngsi_ld_id(province: str, incident_id: int) -> str:
    return f"urn:ngsi-ld:Alert:{province}:{incident_id}"


def device_urn(province: str, device_id: str) -> str:
    return f"urn:ngsi-ld:Device:{province}:{device_id}"


def to_ngsi_ld(
    event: IncidentEvent, topology: Topology, *, opened: Opened | None = None
) -> dict[str, Any]:
    """The incident's ``Alert`` entity as of this step (keyValues with ``@context``)."""
    f = _check(event, topology, opened)
    _urgency, _severity, severity = CAP_SEVERITY[event.severity]
    category = NGSI_CATEGORY[f.device.device_class]
    if event.kind == t.INCIDENT_SECURITY:
        category = "security"
    elif _traffic_camera(f):
        category = "traffic"
    entity: dict[str, Any] = {
        "id": ngsi_ld_id(f.province, event.incident_id),
        "type": "Alert",
        "alertSource": device_urn(f.province, event.root_device),
        "category": category,
    }
    if event.kind in NGSI_SUBCATEGORY:
        entity["subCategory"] = NGSI_SUBCATEGORY[event.kind]
    entity.update(
        {
            "dateIssued": _utc(f.opened_ms),
            "validFrom": _utc(f.opened_ms),
            "dateModified": _utc(event.at_ms),
            "severity": severity,
            "name": f"{KIND_EVENT[event.kind][1]}: {event.root_device}",
            "description": _headline_vi(f),
            "alternateName": event.title,
            "location": {"type": "Point", "coordinates": [f.device.lon, f.device.lat]},
            "areaServed": ", ".join(f.unit_chain),
            "address": _address(f),
            "data": {
                "incidentId": event.incident_id,
                "seq": event.seq,
                "lifecycle": event.event,
                "status": event.status,
                "kind": event.kind,
                "severity": event.severity,
                "deviceClass": f.device.device_class,
                "unitCode": event.unit_code,
                "siteId": event.site_id,
                "affected": list(event.affected),
            },
            "@context": list(NGSI_LD_CONTEXT),
        }
    )
    if event.status == "resolved":
        entity["validTo"] = _utc(event.at_ms)
    return entity


def _address(f: _Facts) -> dict[str, str]:
    """The unit chain as schema.org's address: locality (the incident's unit), district (the
    tier between, in three tiers), region (the province)."""
    chain = f.unit_chain
    address = {"addressLocality": chain[0], "addressRegion": chain[-1], "addressCountry": "VN"}
    if len(chain) >= 3:
        address["district"] = chain[1]
    return address


# --- a stream of events ---------------------------------------------------------------------------


@dataclass
class Exported:
    """What an export of a stream produced: CAP documents by identifier (every step), NGSI-LD
    entities by id (each incident's latest state), and one ``incident N.seq: problem`` line
    per step that could not be exported (never dropped silently)."""

    cap: dict[str, bytes]
    ngsi_ld: dict[str, dict[str, Any]]
    errors: list[str]


def export_events(
    events: Iterable[IncidentEvent],
    topology: Topology,
    *,
    formats: tuple[str, ...] = ("cap", "ngsi-ld"),
    since_ms: int | None = None,
    incident_id: int | None = None,
    sender: str | None = None,
    status: str = "Actual",
) -> Exported:
    """Export the steps of ``events`` (in topic order) at or after ``since_ms``; earlier steps
    still supply each incident's opening, which later messages reference."""
    if "cap" in formats:
        check_cap_options(sender or default_sender(topology), status)
    steps = list(events)
    opened = opened_events(steps)
    out = Exported({}, {}, [])
    for e in steps:
        if incident_id is not None and e.incident_id != incident_id:
            continue
        if since_ms is not None and e.at_ms < since_ms:
            continue
        first = opened.get(e.incident_id)
        try:
            if "cap" in formats:
                alert = to_cap(e, topology, opened=first, sender=sender, status=status)
                identifier = alert.findtext(f"{{{CAP_NS}}}identifier") or ""
                out.cap[identifier] = cap_document(alert)
            if "ngsi-ld" in formats:
                entity = to_ngsi_ld(e, topology, opened=first)
                out.ngsi_ld[entity["id"]] = entity
        except ExchangeError as exc:
            out.errors.append(str(exc))
    return out
