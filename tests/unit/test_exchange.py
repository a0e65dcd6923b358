"""Incidents as CAP 1.2 and NGSI-LD Alert (ioc.contract.exchange): every kind and lifecycle
step maps to a document the published schemas accept, Vietnamese text survives, updates
reference the opening, and bad input is refused with the incident and the problem."""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import msgspec
import pytest

from ioc.contract import feeds
from ioc.contract import tables as t
from ioc.contract.events import IncidentEvent
from ioc.contract.exchange import mapping as x
from ioc.contract.exchange.validate import cap_errors, check_cap, check_ngsi_ld, ngsi_ld_errors
from ioc.contract.topology import Topology, load_scenario
from ioc.services.ops.models import IncidentDetail

NS = {"cap": x.CAP_NS}
OPENED_MS = 1_764_140_000_123  # 2025-11-26 13:53:20.123 +07:00
LIFECYCLE: list[tuple[str, str]] = [
    ("opened", "open"),
    ("acknowledged", "acknowledged"),
    ("assigned", "acknowledged"),
    ("commented", "acknowledged"),
    ("escalated", "open"),
    ("resolved", "resolved"),
]


@pytest.fixture(scope="module")
def demo() -> Topology:
    return load_scenario("demo")


def _device_for(topology: Topology, kind: str) -> str:
    """A root device a real incident of ``kind`` could have."""
    if kind == t.INCIDENT_SITE_ISOLATED:
        return "nn-991-001"
    if kind == t.INCIDENT_SECURITY:
        return "soc-991-001"
    return "cam-991-003"


def event(
    topology: Topology,
    kind: str = t.INCIDENT_DEVICE_DOWN,
    step: str = "opened",
    status: str = "open",
    seq: int = 1,
    severity: str = "critical",
    root: str | None = None,
    incident_id: int = 42,
) -> IncidentEvent:
    root = root or _device_for(topology, kind)
    dev = topology.devices[root]
    affected = topology.devices_behind(root) if kind == t.INCIDENT_SITE_ISOLATED else [root]
    return IncidentEvent(
        incident_id=incident_id,
        seq=seq,
        event=step,  # type: ignore[arg-type]
        kind=kind,
        severity=severity,
        status=status,  # type: ignore[arg-type]
        title=f"{dev.device_class} {root} is down",
        root_device=root,
        device_class=dev.device_class,
        unit_code=topology.unit_of_device[root],
        site_id=dev.site,
        affected=list(affected),
        at_ms=OPENED_MS + (seq - 1) * 60_000,
        actor="nguyen.van.a",
        note="gọi kỹ thuật viên Nguyễn Văn A",
    )


def opened_of(e: IncidentEvent) -> x.Opened:
    return x.Opened(e.incident_id, 1, OPENED_MS)


# --- the committed schemas ------------------------------------------------------------------


def test_committed_schemas_match_their_recorded_hashes() -> None:
    folder = resources.files("ioc.contract.exchange").joinpath("schemas")
    readme = folder.joinpath("README.md").read_text(encoding="utf-8")
    recorded = dict(re.findall(r"\| `([^`]+\.(?:xsd|json))` \|.*\| `([0-9a-f]{64})` \|", readme))
    assert len(recorded) == 5, recorded
    for name, digest in recorded.items():
        data = folder.joinpath(name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, f"{name}: not the recorded copy"


def test_the_validators_refuse_what_the_schemas_refuse(demo: Topology) -> None:
    """The validators really apply the schemas (a validator that accepts everything would
    make every other test here pass)."""
    doc = x.to_cap_xml(event(demo), demo)
    assert cap_errors(doc.replace(b"<msgType>Alert</msgType>", b"<msgType>Close</msgType>"))
    assert cap_errors(doc.replace(b"<scope>Restricted</scope>", b""))
    assert cap_errors(b"not xml")
    entity = x.to_ngsi_ld(event(demo), demo)
    assert ngsi_ld_errors({**entity, "category": "infrastructure"})
    assert ngsi_ld_errors({**entity, "severity": "urgent"})
    assert ngsi_ld_errors({**entity, "subCategory": "deviceDown"})
    assert ngsi_ld_errors({k: v for k, v in entity.items() if k != "alertSource"})
    assert ngsi_ld_errors({**entity, "location": {"type": "Point", "coordinates": "21,105"}})


# --- every kind, every step, both formats -------------------------------------------------------


@pytest.mark.parametrize("kind", t.INCIDENT_KINDS)
@pytest.mark.parametrize(("step", "status"), LIFECYCLE)
@pytest.mark.parametrize("severity", t.SEVERITIES)
def test_every_kind_and_step_validates(
    demo: Topology, kind: str, step: str, status: str, severity: str
) -> None:
    seq = 1 + [s for s, _ in LIFECYCLE].index(step)
    e = event(demo, kind, step, status, seq=seq, severity=severity)
    opened = None if step == "opened" else opened_of(e)
    check_cap(x.to_cap_xml(e, demo, opened=opened))
    check_ngsi_ld(x.to_ngsi_ld(e, demo, opened=opened))


@pytest.mark.parametrize("device_class", feeds.device_classes())
def test_every_device_class_has_a_mapping(demo: Topology, device_class: str) -> None:
    root = next(d.id for d in demo.devices.values() if d.device_class == device_class)
    e = event(demo, t.INCIDENT_DEVICE_DOWN, root=root)
    check_cap(x.to_cap_xml(e, demo))
    check_ngsi_ld(x.to_ngsi_ld(e, demo))
    assert device_class in x.CLASS_NAME_VI and device_class in x.NGSI_CATEGORY


def test_the_yen_bai_scenario_validates_too() -> None:
    """Real unit names, three tiers, a site-isolated node with many devices behind it."""
    yb = load_scenario("yen-bai-2022")
    node = max(
        (d.id for d in yb.devices.values() if d.device_class == "netnode"),
        key=lambda n: len(yb.devices_behind(n)) if yb.devices[n].upstream else -1,
    )
    e = event(yb, t.INCIDENT_SITE_ISOLATED, root=node)
    doc = x.to_cap_xml(e, yb)
    check_cap(doc)
    check_ngsi_ld(x.to_ngsi_ld(e, yb))
    circle = ET.fromstring(doc).findtext("cap:info/cap:area/cap:circle", namespaces=NS) or ""
    assert float(circle.split()[1]) > 0, "the circle covers the devices cut off"


# --- the mapping's content ------------------------------------------------------------------


def test_opened_is_an_alert_and_later_steps_reference_it(demo: Topology) -> None:
    first = event(demo)
    alert = ET.fromstring(x.to_cap_xml(first, demo))
    assert alert.findtext("cap:msgType", namespaces=NS) == "Alert"
    assert alert.find("cap:references", NS) is None
    identifier = alert.findtext("cap:identifier", namespaces=NS)
    sender = alert.findtext("cap:sender", namespaces=NS)
    sent = alert.findtext("cap:sent", namespaces=NS)
    assert sent == "2025-11-26T13:53:20+07:00"
    assert alert.findtext("cap:incidents", namespaces=NS) == "ioc-99-42"

    ack = msgspec.structs.replace(
        first, seq=2, event="acknowledged", status="acknowledged", at_ms=OPENED_MS + 60_000
    )
    update = ET.fromstring(x.to_cap_xml(ack, demo, opened=opened_of(first)))
    assert update.findtext("cap:msgType", namespaces=NS) == "Update"
    assert update.findtext("cap:references", namespaces=NS) == f"{sender},{identifier},{sent}"
    assert update.findtext("cap:identifier", namespaces=NS) == "ioc-99-42-2"


def test_resolved_is_an_all_clear_update_referencing_the_first(demo: Topology) -> None:
    first = event(demo)
    done = msgspec.structs.replace(
        first, seq=5, event="resolved", status="resolved", at_ms=OPENED_MS + 3_600_000
    )
    alert = ET.fromstring(x.to_cap_xml(done, demo, opened=opened_of(first)))
    assert alert.findtext("cap:msgType", namespaces=NS) == "Update"
    assert alert.findtext("cap:references", namespaces=NS) == (
        "ioc.demo@99,ioc-99-42-1,2025-11-26T13:53:20+07:00"
    )
    for info in alert.findall("cap:info", NS):
        assert info.findtext("cap:responseType", namespaces=NS) == "AllClear"
        assert info.findtext("cap:urgency", namespaces=NS) == "Past"
        assert info.findtext("cap:onset", namespaces=NS) == "2025-11-26T13:53:20+07:00"
    entity = x.to_ngsi_ld(done, demo, opened=opened_of(first))
    assert entity["validFrom"] == entity["dateIssued"] == "2025-11-26T06:53:20.123Z"
    assert entity["validTo"] == "2025-11-26T07:53:20.123Z"
    assert entity["data"]["status"] == "resolved"


def test_vietnamese_text_round_trips(demo: Topology) -> None:
    e = event(demo, root="cam-991-003")  # in Phường Quang Cát
    doc = x.to_cap_xml(e, demo)
    assert doc.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    alert = ET.fromstring(doc)
    vi, en = alert.findall("cap:info", NS)
    assert vi.findtext("cap:language", namespaces=NS) == "vi-VN"
    assert en.findtext("cap:language", namespaces=NS) == "en-US"
    area = "Phường Quang Cát, Demo City, Demo"
    assert vi.findtext("cap:area/cap:areaDesc", namespaces=NS) == area
    assert vi.findtext("cap:area/cap:geocode/cap:value", namespaces=NS) == "991-002"
    assert vi.findtext("cap:event", namespaces=NS) == "Thiết bị mất kết nối"
    assert "camera giám sát cam-991-003" in (vi.findtext("cap:headline", namespaces=NS) or "")
    entity = x.to_ngsi_ld(e, demo)
    again = json.loads(json.dumps(entity, ensure_ascii=False).encode("utf-8"))
    assert again["areaServed"] == area
    assert again["address"] == {
        "addressLocality": "Phường Quang Cát",
        "district": "Demo City",
        "addressRegion": "Demo",
        "addressCountry": "VN",
    }
    assert again["description"].startswith("Thiết bị mất kết nối: camera giám sát")


def test_operators_names_and_notes_are_not_exported(demo: Topology) -> None:
    e = msgspec.structs.replace(event(demo), seq=4, event="commented", status="acknowledged")
    doc = x.to_cap_xml(e, demo, opened=opened_of(e)).decode("utf-8")
    entity = json.dumps(x.to_ngsi_ld(e, demo, opened=opened_of(e)), ensure_ascii=False)
    for private in ("nguyen.van.a", "Nguyễn Văn A"):
        assert private not in doc and private not in entity


def test_ngsi_ld_entity_fields(demo: Topology) -> None:
    e = event(demo, t.INCIDENT_SECURITY, severity="warning")
    entity = x.to_ngsi_ld(e, demo)
    assert entity["id"] == "urn:ngsi-ld:Alert:99:42"
    assert entity["type"] == "Alert"
    assert entity["alertSource"] == "urn:ngsi-ld:Device:99:soc-991-001"
    assert (entity["category"], entity["subCategory"]) == ("security", "suspiciousAction")
    assert entity["severity"] == "medium"
    dev = demo.devices["soc-991-001"]
    assert entity["location"] == {"type": "Point", "coordinates": [dev.lon, dev.lat]}
    assert entity["@context"] == list(x.NGSI_LD_CONTEXT)
    assert "validTo" not in entity


def test_categories_follow_what_the_device_serves(demo: Topology) -> None:
    def cap_categories(root: str, kind: str = t.INCIDENT_DEVICE_DOWN) -> list[str]:
        alert = ET.fromstring(x.to_cap_xml(event(demo, kind, root=root), demo))
        return [c.text or "" for c in alert.findall("cap:info[1]/cap:category", NS)]

    assert cap_categories("cam-991-003") == ["Infra", "Transport"]  # a junction
    assert cap_categories("cam-991-002") == ["Infra", "Security"]  # a town centre
    assert cap_categories("th-991-001") == ["Infra", "Health"]
    assert cap_categories("soc-991-001", t.INCIDENT_SECURITY) == ["Security"]
    assert x.to_ngsi_ld(event(demo, root="cam-991-003"), demo)["category"] == "traffic"
    assert x.to_ngsi_ld(event(demo, root="th-991-001"), demo)["category"] == "health"


# --- refusals ----------------------------------------------------------------------------------


def test_bad_input_is_refused_with_the_incident_and_the_problem(demo: Topology) -> None:
    good = event(demo)
    cases = [
        (msgspec.structs.replace(good, kind="meteor"), "incident 42.1 (opened): unknown kind"),
        (msgspec.structs.replace(good, severity="high"), "unknown severity 'high'"),
        (
            msgspec.structs.replace(good, root_device="cam-nowhere"),
            "root device 'cam-nowhere' is not in scenario demo",
        ),
        (
            msgspec.structs.replace(good, affected=["ghost"]),
            "affected device 'ghost' is not in scenario demo",
        ),
        (
            msgspec.structs.replace(good, seq=3, event="resolved", status="resolved"),
            "incident 42.3 (resolved): its opened event is not known",
        ),
    ]
    for bad, reason in cases:
        for convert in (x.to_cap_xml, x.to_ngsi_ld):
            with pytest.raises(x.ExchangeError, match=re.escape(reason)):
                convert(bad, demo)
    with pytest.raises(x.ExchangeError, match="CAP sender 'a b'"):
        x.to_cap_xml(good, demo, sender="a b")
    with pytest.raises(x.ExchangeError, match="CAP status 'Real'"):
        x.to_cap_xml(good, demo, status="Real")


def test_export_events_takes_openings_from_before_since_and_names_refusals(
    demo: Topology,
) -> None:
    first = event(demo)
    ack = msgspec.structs.replace(
        first, seq=2, event="acknowledged", status="acknowledged", at_ms=OPENED_MS + 60_000
    )
    orphan = msgspec.structs.replace(
        event(demo, incident_id=7),
        seq=4,
        event="resolved",
        status="resolved",
        at_ms=OPENED_MS + 120_000,
    )
    done = x.export_events([first, ack, orphan], demo, since_ms=OPENED_MS + 1)
    assert sorted(done.cap) == ["ioc-99-42-2"]
    assert list(done.ngsi_ld) == ["urn:ngsi-ld:Alert:99:42"]
    assert done.ngsi_ld["urn:ngsi-ld:Alert:99:42"]["data"]["status"] == "acknowledged"
    assert len(done.errors) == 1 and done.errors[0].startswith("incident 7.4 (resolved)")
    only = x.export_events([first, ack, orphan], demo, incident_id=42, formats=("cap",))
    assert sorted(only.cap) == ["ioc-99-42-1", "ioc-99-42-2"] and not only.errors


def test_cli_writes_one_cap_file_per_step_and_an_ngsi_ld_array(
    demo: Topology, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ioc.services.cli import UsageError, write_export

    first = event(demo)
    ack = msgspec.structs.replace(first, seq=2, event="acknowledged", status="acknowledged")
    done = x.export_events([first, ack], demo)
    assert write_export(done.cap, done.ngsi_ld, "cap", tmp_path / "cap") == 2
    files = sorted(p.name for p in (tmp_path / "cap").iterdir())
    assert files == ["ioc-99-42-1.xml", "ioc-99-42-2.xml"]
    check_cap((tmp_path / "cap" / files[1]).read_bytes())
    with pytest.raises(UsageError, match="2 CAP messages: give --out DIR"):
        write_export(done.cap, done.ngsi_ld, "cap", None)
    assert write_export(done.cap, done.ngsi_ld, "ngsi-ld", None) == 1
    entities = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in entities] == ["urn:ngsi-ld:Alert:99:42"]
    assert "Phường" in json.dumps(entities, ensure_ascii=False)


# --- the operations service's side (no database: a stored incident built by hand) -------------


def _detail(topology: Topology, steps: list[tuple[str, str]]) -> IncidentDetail:
    from datetime import UTC, datetime, timedelta

    from ioc.services.ops.models import AffectedDevice, TimelineStep

    opened = datetime.fromtimestamp(OPENED_MS / 1000, UTC)
    root = "nn-991-001"
    behind = topology.devices_behind(root)
    return IncidentDetail(
        id=42,
        kind=t.INCIDENT_SITE_ISOLATED,
        severity="critical",
        status=steps[-1][1],
        title=f"Site isolated: node {root} is down",
        root_device=root,
        device_class="netnode",
        domain="network",
        unit_code="991-001",
        unit_name="Phường Đại Châu",
        site_id=topology.devices[root].site,
        opened_at=opened,
        acknowledged_at=None,
        acknowledged_by=None,
        assigned_to=None,
        resolved_at=None,
        affected_count=1 + len(behind),
        affected=[
            AffectedDevice(
                device_id=d,
                device_class=None,
                site_id=None,
                site_name=None,
                unit_code=None,
                unit_name=None,
                state=None,
                state_since=None,
            )
            for d in [root, *behind]
        ],
        timeline=[
            TimelineStep(
                seq=n,
                event=step,
                status=status,
                at=opened + timedelta(minutes=n - 1),
                actor="op-an",
                note="ghi chú nội bộ",
                assigned_to=None,
            )
            for n, (step, status) in enumerate(steps, 1)
        ],
        comments=[],
        acknowledgements=[],
        pages=[],
        state_changes=[],
        silences=[],
        escalations=[],
    )


def test_a_stored_incident_exports_its_latest_step_or_the_one_asked_for(demo: Topology) -> None:
    from ioc.services.ops import exchange as ops_exchange
    from ioc.services.ops.common import Conflict, NotFound

    detail = _detail(demo, [("opened", "open"), ("acknowledged", "acknowledged"), LIFECYCLE[-1]])
    doc = ops_exchange.cap_xml(demo, detail, None)
    check_cap(doc)
    alert = ET.fromstring(doc)
    assert alert.findtext("cap:identifier", namespaces=NS) == "ioc-99-42-3"
    assert alert.findtext("cap:references", namespaces=NS) == (
        "ioc.demo@99,ioc-99-42-1,2025-11-26T13:53:20+07:00"
    )
    assert b"op-an" not in doc and "ghi chú".encode() not in doc
    first = ET.fromstring(ops_exchange.cap_xml(demo, detail, 1))
    assert first.findtext("cap:msgType", namespaces=NS) == "Alert"

    entity = ops_exchange.ngsi_ld(demo, detail, None).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    check_ngsi_ld(entity)
    assert entity["@context"] == list(x.NGSI_LD_CONTEXT) and entity["validTo"]
    assert entity["data"]["affected"] == demo.devices_behind("nn-991-001")

    with pytest.raises(NotFound, match=re.escape("incident 42 has no step 9 (it has 1..3)")):
        ops_exchange.cap_xml(demo, detail, 9)
    odd = detail.model_copy(update={"root_device": "nn-elsewhere"})
    with pytest.raises(Conflict, match="root device 'nn-elsewhere' is not in scenario demo"):
        ops_exchange.ngsi_ld(demo, odd, None)
    unknown_step = _detail(demo, [("opened", "open"), ("reopened", "open")])
    with pytest.raises(Conflict, match=re.escape("incident 42.2: cannot be exported")):
        ops_exchange.cap_xml(demo, unknown_step, None)
