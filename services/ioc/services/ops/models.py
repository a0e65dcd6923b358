"""What the operations API reads and answers: pydantic models, so FastAPI validates requests
and the committed OpenAPI document describes them.

Request bodies forbid unknown fields (a typo such as ``asignee`` is a 422, not a silently
ignored field) and bound every string, so a huge or SQL-looking value is refused or stored as
plain text, never interpreted.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ioc.contract.events import MAX_TEXT
from ioc.services.ops.common import VN_TZ


def _printable(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and a lone surrogate is no UTF-8: refuse both here
    with a reason rather than let the database driver fail."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


def _aware(value: datetime) -> datetime:
    """A time without a zone is Vietnam time (what an operator in the room types)."""
    try:
        zoned = value if value.tzinfo is not None else value.replace(tzinfo=VN_TZ)
        return zoned.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None


When = Annotated[datetime, AfterValidator(_aware)]
"""A time; without a zone it is Vietnam time."""
Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_printable)]
"""Free text (notes, reasons, comments): at most 1024 characters, like the incident events."""
Name = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable)]
"""A person, team, token or unit name."""
Query = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]

Role = Literal["viewer", "operator", "admin"]
Severity = Literal["critical", "warning", "info"]
StatusFilter = Literal["open", "acknowledged", "resolved", "active"]
"""``active``: not resolved (open or acknowledged)."""
IncidentStatus = Literal["open", "acknowledged", "resolved"]

MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- incidents ----------------------------------------------------------------------------


class IncidentFilter(_Strict):
    """The list's filters; all optional and combined with AND. Times without a zone are
    Vietnam time (what an operator in the room types)."""

    unit: Name | None = None
    """A unit at any level: incidents in it and in every unit below it."""
    domain: Name | None = None
    """network, camera, telehealth, ... (the alert rules' ``domain`` label)."""
    severity: Severity | None = None
    status: StatusFilter | None = None
    since: When | None = None
    """Opened at or after."""
    until: When | None = None
    """Opened before."""
    q: Query | None = None
    """Text searched (case-insensitive) in the title, the root device and affected devices."""
    limit: int = Field(100, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class IncidentSummary(BaseModel):
    id: int
    kind: str
    severity: str
    status: IncidentStatus
    title: str
    root_device: str
    device_class: str
    domain: str
    unit_code: str | None
    unit_name: str | None
    site_id: str | None
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    assigned_to: str | None
    resolved_at: datetime | None
    affected_count: int


class TimelineStep(BaseModel):
    seq: int
    event: str
    status: str
    at: datetime
    actor: str
    note: str
    assigned_to: str | None


class AffectedDevice(BaseModel):
    device_id: str
    device_class: str | None
    site_id: str | None
    site_name: str | None
    unit_code: str | None
    unit_name: str | None
    state: str | None
    """Current state (device_state), None if never evaluated."""
    state_since: datetime | None


class PageRow(BaseModel):
    id: int
    status: str
    alertname: str
    severity: str | None
    device_id: str | None
    summary: str | None
    starts_at: datetime
    received_at: datetime
    notifications: int
    deliveries: list[dict[str, Any]]


class StateChange(BaseModel):
    device_id: str
    state: str
    reason: str | None
    start_ts: datetime
    end_ts: datetime | None


class EscalationRow(BaseModel):
    level: int
    targets: list[str]
    paged_at: datetime


class IncidentDetail(IncidentSummary):
    affected: list[AffectedDevice]
    timeline: list[TimelineStep]
    comments: list[TimelineStep]
    """The timeline's ``commented`` steps."""
    acknowledgements: list[TimelineStep]
    """The timeline's ``acknowledged`` steps."""
    pages: list[PageRow]
    state_changes: list[StateChange]
    """The root device's state intervals that overlap the incident."""
    silences: list[str]
    """Alertmanager silences created when it was acknowledged (not yet expired)."""
    escalations: list[EscalationRow]


class AcknowledgeIn(_Strict):
    note: Text = ""


class AssignIn(_Strict):
    assignee: Name
    note: Text = ""


class CommentIn(_Strict):
    note: Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_printable)]


class ResolveIn(_Strict):
    """Resolving by hand needs a reason: the timeline must say why it was closed."""

    note: Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_printable)]


class CommandAccepted(BaseModel):
    """202: the command is on the stream but the incident agent had not applied it in time;
    the incident's timeline will show it."""

    incident_id: int
    action: str
    actor: str
    at_ms: int
    detail: str


# --- tokens and audit ---------------------------------------------------------------------


def _not_an_id(value: str) -> str:
    """Tokens are revoked by id or name: a name of digits only would read as an id."""
    if value.isascii() and value.isdigit():
        raise ValueError("a token name must not be all digits (it would read as a token id)")
    return value


TokenName = Annotated[Name, AfterValidator(_not_an_id)]


class TokenIn(_Strict):
    name: TokenName
    """Not all digits: ``DELETE /tokens/{id or name}`` would read it as an id."""
    role: Role
    unit_code: Name | None = None
    """Viewers and operators may be limited to a unit subtree."""
    rate_per_min: int = Field(120, ge=1, le=100_000)


class TokenOut(BaseModel):
    id: int
    name: str
    role: Role
    unit_code: str | None
    rate_per_min: int
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str
    """Shown once: only its hash is stored."""


class AuditFilter(_Strict):
    actor: Name | None = None
    action: Name | None = None
    target: Name | None = None
    since: When | None = None
    until: When | None = None
    limit: int = Field(100, ge=1, le=MAX_LIMIT)


class AuditRow(BaseModel):
    id: int
    at: datetime
    actor: str | None
    token_id: int | None
    role: str | None
    address: str | None
    method: str
    path: str
    action: str
    target: str | None
    outcome: str
    status: int
    before: Any
    after: Any


class ErrorOut(BaseModel):
    error: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool


class UnitOut(BaseModel):
    """An administrative unit of the scenario, with its validity and today's unit."""

    code: str
    name: str
    level: str = Field(description="the tier's name: province, district, commune...")
    parent: str | None
    valid_from: date | None = Field(description="first day it exists (Vietnam time)")
    valid_to: date | None = Field(description="last day it exists; null: still exists")
    merged_into: str | None = Field(description="the unit it was merged into when it ended")
    abolished: bool = Field(description="ended before today")
    current: str = Field(
        description="today's unit its history rolls into (itself unless merged since)"
    )
