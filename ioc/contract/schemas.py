"""Versioned message schemas of the built-in feeds, defined once (a feed's kinds are part of
its declaration, :mod:`ioc.contract.feeds`).

Every message is a JSON object with an envelope (``v`` schema version, ``kind``, ``device_id``,
``seq`` per-device sequence number, ``ts_ms`` event time in epoch milliseconds UTC) and the
fields of its kind. The Kafka key is the device id, so a device's messages stay in order.

Decoding (:func:`decode`) validates types and ranges with msgspec and then the rules JSON
cannot express (known version, kind belongs to the topic's feed, plausible event time); it
raises :class:`InvalidMessage` with a short machine-readable ``reason`` for the dead-letter
topic and its metrics.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

SCHEMA_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = frozenset({1})
MAX_MESSAGE_BYTES: Final = 64 * 1024
"""Anything larger is rejected before parsing (an oversized payload is a fault, not data)."""

# Event times outside [now - MAX_PAST, now + MAX_FUTURE] are rejected as implausible clocks.
MAX_PAST_MS: Final = 7 * 24 * 3600 * 1000
MAX_FUTURE_MS: Final = 10 * 60 * 1000

# --- storability by construction --------------------------------------------------------
# Every field is declared with the column type it lands in (``Meta.extra["column"]``) and
# bounds that the column can hold, so a message that validates can always be stored: no
# integer beyond its column's range, no float beyond float4 where the column is ``real``,
# no text PostgreSQL refuses (NUL) or the driver cannot encode (lone surrogates), no
# timestamp Python's datetime cannot represent. Rollups over stored rows saturate at their
# columns' limits (ioc.streams.rollups). tests/integration/test_storability.py proves it
# against the column types of the live database catalog.
INT4_MAX: Final = 2**31 - 1
INT8_MAX: Final = 2**63 - 1
FLOAT4_MAX: Final = 3.4028234663852886e38
MAX_EPOCH_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the last instant Python's datetime (and so the writer) holds."""
MAX_COUNTER: Final = 2**53
"""Cumulative counters (bigint columns): the largest integer a JSON double holds exactly;
two of them still add up inside bigint (netnode errors = in + out)."""
STORABLE_TEXT: Final = r"^[^\x00\ud800-\udfff]*$"
"""Text PostgreSQL stores: no NUL (refused by text columns), no lone surrogates."""

_INT4: Final = {"column": "integer"}
_INT8: Final = {"column": "bigint"}
_REAL: Final = {"column": "real"}
_DOUBLE: Final = {"column": "double precision"}
_TEXT: Final = {"column": "text"}
_TIME: Final = {"column": "timestamptz"}

DeviceId = Annotated[
    str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$", extra=_TEXT)
]
Seq = Annotated[int, Meta(ge=1, le=2**62, extra=_INT8)]
"""Per-device sequence number, from 1 (0 is refused: it is what an uninitialised counter sends)."""
EpochMs = Annotated[int, Meta(ge=0, le=MAX_EPOCH_MS, extra=_TIME)]
Counter64 = Annotated[int, Meta(ge=0, le=MAX_COUNTER, extra=_INT8)]
Count32 = Annotated[int, Meta(ge=0, le=INT4_MAX, extra=_INT4)]
Interval = Annotated[int, Meta(ge=1, le=3600, extra=_INT4)]
Percent = Annotated[float, Meta(ge=0.0, le=100.0, extra=_REAL)]
Millis = Annotated[float, Meta(ge=0.0, le=600_000.0, extra=_REAL)]
Bps = Annotated[float, Meta(ge=0.0, le=1e12, extra=_DOUBLE)]
Capacity = Annotated[float, Meta(ge=1.0, le=1e12, extra=_DOUBLE)]
"""At least 1 bit/s: utilisation (100 * bps / capacity) must stay inside a real column."""
ShortText = Annotated[str, Meta(min_length=1, max_length=128, pattern=STORABLE_TEXT, extra=_TEXT)]

FEEDS: Final = ("camera", "telehealth", "netnode", "vconf", "portal", "soc")
"""The built-in feeds (``ioc.contract.feeds.Feed``); every registered feed: ``feeds.names()``."""
Status = Literal["ok", "degraded", "fault"]
IncidentType = Literal["congestion", "stopped_vehicle", "wrong_way"]
LinkState = Literal["up", "down"]


class Message(msgspec.Struct, tag_field="kind", frozen=True, kw_only=True):
    """The envelope every feed message carries."""

    v: Annotated[int, Meta(ge=0, le=1000)]
    device_id: DeviceId
    seq: Seq
    ts_ms: EpochMs

    @property
    def feed(self) -> str:
        return FEED_OF_KIND[type(self)]

    @property
    def kind(self) -> str:
        return KIND_OF_TYPE[type(self)]


# --- camera ---


class CameraHeartbeat(Message, tag="camera.heartbeat", frozen=True, kw_only=True):
    status: Status
    uptime_s: Counter64


class CameraStream(Message, tag="camera.stream", frozen=True, kw_only=True):
    fps: Annotated[float, Meta(ge=0.0, le=240.0, extra=_REAL)]
    bitrate_kbps: Annotated[float, Meta(ge=0.0, le=200_000.0, extra=_REAL)]
    dropped_frames: Count32
    frozen: bool
    black: bool


class CameraTraffic(Message, tag="camera.traffic", frozen=True, kw_only=True):
    interval_s: Interval
    vehicles: Count32
    mean_speed_kmh: Annotated[float, Meta(ge=0.0, le=300.0, extra=_REAL)]
    occupancy_pct: Percent


class CameraIncident(Message, tag="camera.incident", frozen=True, kw_only=True):
    incident_id: ShortText
    incident: IncidentType
    state: Literal["open", "clear"]


# --- telehealth ---


class TelehealthHeartbeat(Message, tag="telehealth.heartbeat", frozen=True, kw_only=True):
    status: Status
    waiting_patients: Annotated[int, Meta(ge=0, le=10_000, extra=_INT4)]
    active_sessions: Annotated[int, Meta(ge=0, le=100, extra=_INT4)]


class TelehealthSession(Message, tag="telehealth.session", frozen=True, kw_only=True):
    session_id: ShortText
    event: Literal["start", "end", "dropped"]
    peer_site: ShortText | None = None
    reason: ShortText | None = None


class TelehealthQuality(Message, tag="telehealth.quality", frozen=True, kw_only=True):
    session_id: ShortText
    rtt_ms: Millis
    jitter_ms: Millis
    loss_pct: Percent
    video_height: Annotated[int, Meta(ge=0, le=4320, extra=_INT4)]


# --- network node ---


class NetnodeProbe(Message, tag="netnode.probe", frozen=True, kw_only=True):
    """Reachability of the node from the provincial core (sent by the core's prober)."""

    reachable: bool
    rtt_ms: Millis | None
    loss_pct: Percent


class NetnodeCounters(Message, tag="netnode.counters", frozen=True, kw_only=True):
    interface: ShortText
    interval_s: Interval
    in_bps: Bps
    out_bps: Bps
    in_errors: Counter64
    out_errors: Counter64
    capacity_bps: Capacity


class NetnodeLink(Message, tag="netnode.link", frozen=True, kw_only=True):
    interface: ShortText
    state: LinkState


CameraMessage = CameraHeartbeat | CameraStream | CameraTraffic | CameraIncident
TelehealthMessage = TelehealthHeartbeat | TelehealthSession | TelehealthQuality
NetnodeMessage = NetnodeProbe | NetnodeCounters | NetnodeLink
AnyMessage = CameraMessage | TelehealthMessage | NetnodeMessage

# Per-feed tables, kept in step with the feed registry by ioc.contract.feeds (filled in place
# when a feed is registered: the built-in feeds when the package is imported).
MESSAGE_TYPES: Final[dict[str, tuple[type[Message], ...]]] = {}
FEED_OF_KIND: Final[dict[type[Message], str]] = {}
KIND_OF_TYPE: Final[dict[type[Message], str]] = {}
TYPE_OF_KIND: Final[dict[str, type[Message]]] = {}
DEVICE_CLASS_OF_FEED: Final[dict[str, str]] = {}
MAX_PAST_MS_OF_FEED: Final[dict[str, int]] = {}
"""Feed -> its lateness limit (``FeedSpec.max_lateness_ms``; default :data:`MAX_PAST_MS`)."""


class InvalidMessage(Exception):
    """A message that must go to the dead-letter topic; ``reason`` is a short label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# Reasons, also the values of the `reason` label of the DLQ metric (bounded set). The order
# in which a record is checked, and so which reason it gets, is documented in docs/streams.md.
REASON_TOMBSTONE: Final = "tombstone"
REASON_EMPTY: Final = "empty"
REASON_OVERSIZED: Final = "oversized"
REASON_MISSING_KEY: Final = "missing_key"
REASON_NOT_JSON: Final = "not_json"
REASON_SCHEMA: Final = "schema"
REASON_UNKNOWN_VERSION: Final = "unknown_version"
REASON_UNKNOWN_KIND: Final = "unknown_kind"
REASON_WRONG_FEED: Final = "wrong_feed"
REASON_KEY_MISMATCH: Final = "key_mismatch"
REASON_EVENT_TIME: Final = "event_time"
REASON_UNKNOWN_DEVICE: Final = "unknown_device"
REASON_WRONG_PROVINCE: Final = "wrong_province"
"""On a per-province topic (``ioc.p.<code>.*``), a device that is not under that province:
its province's producer may write its own topics only, and so only its own devices."""
REASON_DB_REJECTED: Final = "db_rejected"
"""Valid by the schema, refused by the database for this record alone (a permanent data
error, isolated by bisecting the batch). Storability by construction should keep this at 0."""
DLQ_REASONS: Final = (
    REASON_TOMBSTONE,
    REASON_EMPTY,
    REASON_OVERSIZED,
    REASON_MISSING_KEY,
    REASON_NOT_JSON,
    REASON_SCHEMA,
    REASON_UNKNOWN_VERSION,
    REASON_UNKNOWN_KIND,
    REASON_WRONG_FEED,
    REASON_KEY_MISMATCH,
    REASON_EVENT_TIME,
    REASON_UNKNOWN_DEVICE,
    REASON_WRONG_PROVINCE,
    REASON_DB_REJECTED,
)


class _Probe(msgspec.Struct):
    """Just enough of the envelope to explain why a full decode failed."""

    v: Any = None
    kind: Any = None


_decoders: dict[str, msgspec.json.Decoder[Any]] = {}  # per feed, kept by ioc.contract.feeds
_any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(AnyMessage)  # every feed's kinds
_probe_decoder = msgspec.json.Decoder(_Probe)
# Only asks "is this JSON at all?": numbers are not converted, so 1e999 is JSON (a number
# out of its field's range is a schema problem, not garbage).
_plain_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(float_hook=lambda _text: None)
_encoder = msgspec.json.Encoder()


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def _explain(data: bytes, feed: str | None, error: msgspec.ValidationError) -> InvalidMessage:
    """Why a typed decode failed: not JSON at all, an unknown version or kind, or the shape."""
    try:
        _plain_decoder.decode(data)
    except msgspec.DecodeError:
        # The typed decoder stops at the first value that does not fit ("7\x8f..." is an
        # int before it is garbage): bytes that are not JSON at all are said to be so.
        return InvalidMessage(REASON_NOT_JSON, "the value is not a JSON document")
    except UnicodeDecodeError:
        return InvalidMessage(REASON_NOT_JSON, "the value is not UTF-8")
    except (msgspec.ValidationError, RecursionError):
        pass
    try:
        probe = _probe_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError):
        return InvalidMessage(REASON_SCHEMA, str(error))
    if (
        isinstance(probe.v, int)
        and not isinstance(probe.v, bool)
        and (probe.v not in SUPPORTED_VERSIONS)
    ):
        return InvalidMessage(REASON_UNKNOWN_VERSION, f"schema version {probe.v} unsupported")
    if isinstance(probe.kind, str):
        known = TYPE_OF_KIND.get(probe.kind)
        if known is None:
            return InvalidMessage(REASON_UNKNOWN_KIND, f"unknown kind {probe.kind[:64]!r}")
        if feed is not None and FEED_OF_KIND[known] != feed:
            return InvalidMessage(
                REASON_WRONG_FEED, f"kind {probe.kind} does not belong on the {feed} feed"
            )
    return InvalidMessage(REASON_SCHEMA, str(error))


def _span(ms: int) -> str:
    """``7d``, ``36h``, ``90min``: a lateness limit as the dead-letter detail says it."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def check_record(key: bytes | None, value: bytes | None) -> bytes:
    """The checks before parsing, in their documented order; returns the value to decode.

    A tombstone (no value) or an empty value is not a report; a record without a key breaks
    the per-device ordering the topics promise (the key is the device id).
    """
    if value is None:
        raise InvalidMessage(REASON_TOMBSTONE, "record without a value (tombstone)")
    if not value:
        raise InvalidMessage(REASON_EMPTY, "record with an empty value")
    if len(value) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(REASON_OVERSIZED, f"{len(value)} bytes > {MAX_MESSAGE_BYTES}")
    if key is None:
        raise InvalidMessage(REASON_MISSING_KEY, "record without a key (the key is the device id)")
    return value


def decode(
    data: bytes,
    *,
    feed: str | None = None,
    key: bytes | None = None,
    now_ms: int | None = None,
) -> AnyMessage:
    """Decode and validate one message; raise :class:`InvalidMessage` with a reason.

    ``feed`` restricts the accepted kinds to that feed's; ``key`` (the Kafka key) must equal
    the device id; ``now_ms`` enables the event-time plausibility check. The stream workers
    call :func:`check_record` first (tombstones, empty values, missing keys).
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(REASON_OVERSIZED, f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    decoder = _decoders[feed] if feed is not None else _any_decoder
    try:
        message: AnyMessage = decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _explain(data, feed, exc) from None
    except msgspec.DecodeError:
        raise InvalidMessage(REASON_NOT_JSON, "the value is not a JSON document") from None
    except UnicodeDecodeError:
        raise InvalidMessage(REASON_NOT_JSON, "the value is not UTF-8") from None
    except RecursionError:
        raise InvalidMessage(REASON_NOT_JSON, "JSON nested too deeply") from None
    if message.v not in SUPPORTED_VERSIONS:
        raise InvalidMessage(REASON_UNKNOWN_VERSION, f"schema version {message.v} unsupported")
    if key is not None and key != message.device_id.encode():
        raise InvalidMessage(
            REASON_KEY_MISMATCH,
            f"key {key[:64]!r} is not the device id {message.device_id!r}",
        )
    if now_ms is not None:
        max_past = MAX_PAST_MS_OF_FEED.get(FEED_OF_KIND[type(message)], MAX_PAST_MS)
        if not now_ms - max_past <= message.ts_ms <= now_ms + MAX_FUTURE_MS:
            raise InvalidMessage(
                REASON_EVENT_TIME,
                f"event time {message.ts_ms} is outside [now-{_span(max_past)}, now+10min] "
                f"(now={now_ms})",
            )
    return message
