"""The event streams operators act on: device-state transitions, operator commands, incidents.

``ioc.device-events.v1`` carries what happens to devices: state transitions (published by the
shard leader's evaluation from its outbox, each with a unique increasing ``id``) and operator
commands on incidents (acknowledge, assign, comment, resolve). ``ioc.incidents.v1`` carries
the incident lifecycle the incident agent derives from them (opened, acknowledged, assigned,
commented, resolved), numbered per incident by ``seq`` so that a consumer can drop a
redelivered event.

Both are keyed by the network node a device depends on (:func:`correlation_key`): everything a
correlation needs, and every event of one root cause, shares a partition and keeps its order.
A national centre, the SOC or the operations service subscribe to ``ioc.incidents.v1``.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from ioc.contract.topology import Topology

EVENTS_VERSION: Final = 1

MAX_TEXT: Final = 1024
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
Name = Annotated[str, Meta(min_length=1, max_length=128)]


class DeviceTransition(msgspec.Struct, tag="transition", frozen=True, kw_only=True):
    """One device changed state (written to the outbox in the round that decided it), or,
    with ``prev == new``, its state restated by the leader because the incident agent had
    not applied its last transition (ioc.streams.evaluator, ``Evaluator.restate``)."""

    v: int = EVENTS_VERSION
    id: Annotated[int, Meta(ge=1)]
    device_id: Name
    prev: Name
    new: Name
    reason: Text = ""
    at_ms: int
    since_ms: int


CommandAction = Literal["acknowledge", "assign", "comment", "resolve", "escalate"]
"""``escalate`` is the operations service's escalator: the incident was paged to the next
on-call level (``note`` says which and to whom); it changes no status."""


class IncidentCommand(msgspec.Struct, tag="command", frozen=True, kw_only=True):
    """An operator's action on an open incident; it reaches the incident agent on the same
    stream as the transitions, so that one owner orders and applies both."""

    v: int = EVENTS_VERSION
    incident_id: Annotated[int, Meta(ge=1)]
    root_device: Name
    action: CommandAction
    actor: Name
    note: Text = ""
    assignee: Name | None = None
    """For ``assign``: who takes the incident over."""
    at_ms: int


DeviceEvent = DeviceTransition | IncidentCommand

IncidentEventKind = Literal[
    "opened", "acknowledged", "assigned", "commented", "escalated", "resolved"
]


class IncidentEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One step of an incident's life, as ``ioc.incidents.v1`` carries it."""

    v: int = EVENTS_VERSION
    incident_id: int
    seq: int
    event: IncidentEventKind
    kind: str
    severity: str
    status: Literal["open", "acknowledged", "resolved"]
    title: str
    root_device: str
    device_class: str
    unit_code: str
    site_id: str
    affected: list[str]
    at_ms: int
    actor: str = "ioc"
    note: str = ""
    assigned_to: str | None = None


_device_events: msgspec.json.Decoder[DeviceEvent] = msgspec.json.Decoder(DeviceEvent)
_incident_events = msgspec.json.Decoder(IncidentEvent)
_encoder = msgspec.json.Encoder()


def encode(event: DeviceTransition | IncidentCommand | IncidentEvent) -> bytes:
    return _encoder.encode(event)


def decode_device_event(data: bytes) -> DeviceEvent:
    """Raises :class:`msgspec.ValidationError` / :class:`msgspec.DecodeError` with the reason."""
    return _device_events.decode(data)


def decode_incident_event(data: bytes) -> IncidentEvent:
    return _incident_events.decode(data)


def correlation_key(topology: Topology, device_id: str) -> str:
    """The partition key of a device's events: the network node it depends on (a node is its
    own key), so a site-isolated node and the devices behind it share one partition."""
    device = topology.devices[device_id]
    if device.device_class == "netnode" or not device.upstream:
        return device.id
    return device.upstream
