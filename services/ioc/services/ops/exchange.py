"""A stored incident in the open formats (``GET /api/v1/incidents/{id}/cap.xml`` and
``/ngsi-ld``): the same mappings as ``ioc incidents export`` (:mod:`ioc.contract.exchange`),
fed from the incident's row and timeline instead of the topic, so a peer can fetch one incident
after the topic's 30 days."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ioc.contract.events import IncidentEvent
from ioc.contract.exchange.mapping import (
    ExchangeError,
    Opened,
    cap_document,
    to_cap,
    to_ngsi_ld,
)
from ioc.contract.topology import Topology
from ioc.services.ops.common import Conflict, NotFound
from ioc.services.ops.models import IncidentDetail

CAP_MEDIA_TYPE = "application/cap+xml"
NGSI_LD_MEDIA_TYPE = "application/ld+json"


class LdJsonResponse(JSONResponse):
    """JSON-LD, what NGSI-LD brokers and clients expect with an ``@context`` in the body."""

    media_type = NGSI_LD_MEDIA_TYPE


class GeoPoint(BaseModel):
    type: Literal["Point"]
    coordinates: list[float] = Field(min_length=2, max_length=2)
    """Longitude, latitude (GeoJSON order)."""


class NgsiLdAlert(BaseModel):
    """A Smart Data Models ``Alert`` entity (keyValues), one per incident, as of its last step
    (or the step asked for). docs/exchange.md has the mapping."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    type: Literal["Alert"]
    alertSource: str
    category: str
    subCategory: str | None = None
    dateIssued: str
    validFrom: str
    validTo: str | None = None
    dateModified: str
    severity: Literal["informational", "low", "medium", "high", "critical"]
    name: str
    description: str
    alternateName: str
    location: GeoPoint
    areaServed: str
    address: dict[str, str]
    data: dict[str, Any]
    context: list[str] = Field(alias="@context")


def _step_event(detail: IncidentDetail, seq: int | None) -> tuple[IncidentEvent, Opened | None]:
    """The incident event of one step of a stored incident (its last one by default), and
    its opening."""
    if not detail.timeline:
        raise Conflict(f"incident {detail.id} has no timeline yet")
    steps = {s.seq: s for s in detail.timeline}
    if seq is None:
        step = detail.timeline[-1]
    elif seq in steps:
        step = steps[seq]
    else:
        raise NotFound(f"incident {detail.id} has no step {seq} (it has 1..{max(steps)})")
    affected = [a.device_id for a in detail.affected if a.device_id != detail.root_device]
    try:
        event = msgspec.convert(
            {
                "incident_id": detail.id,
                "seq": step.seq,
                "event": step.event,
                "kind": detail.kind,
                "severity": detail.severity,
                "status": step.status,
                "title": detail.title,
                "root_device": detail.root_device,
                "device_class": detail.device_class,
                "unit_code": detail.unit_code or "",
                "site_id": detail.site_id or "",
                "affected": affected or [detail.root_device],
                "at_ms": int(step.at.timestamp() * 1000),
            },
            IncidentEvent,
        )
    except msgspec.ValidationError as exc:
        raise Conflict(f"incident {detail.id}.{step.seq}: cannot be exported: {exc}") from None
    opened = next(
        (
            Opened(detail.id, s.seq, int(s.at.timestamp() * 1000))
            for s in detail.timeline
            if s.event == "opened"
        ),
        None,
    )
    return event, opened


def cap_xml(
    topology: Topology, detail: IncidentDetail, seq: int | None, sender: str | None = None
) -> bytes:
    """The CAP 1.2 alert of a step; :class:`Conflict` (409) with the reason when the
    incident cannot be mapped (e.g. its device is not in the running scenario)."""
    event, opened = _step_event(detail, seq)
    try:
        return cap_document(to_cap(event, topology, opened=opened, sender=sender))
    except ExchangeError as exc:
        raise Conflict(str(exc)) from None


def ngsi_ld(topology: Topology, detail: IncidentDetail, seq: int | None) -> NgsiLdAlert:
    event, opened = _step_event(detail, seq)
    try:
        return NgsiLdAlert.model_validate(to_ngsi_ld(event, topology, opened=opened))
    except ExchangeError as exc:
        raise Conflict(str(exc)) from None
