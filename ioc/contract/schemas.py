"""Versioned message schemas of the three feeds, defined once.

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

DeviceId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
Seq = Annotated[int, Meta(ge=0, le=2**62)]
EpochMs = Annotated[int, Meta(ge=0, le=2**53)]
NonNegInt = Annotated[int, Meta(ge=0, le=2**53)]
Percent = Annotated[float, Meta(ge=0.0, le=100.0)]
Millis = Annotated[float, Meta(ge=0.0, le=600_000.0)]
ShortText = Annotated[str, Meta(min_length=1, max_length=128)]

FEEDS: Final = ("camera", "telehealth", "netnode")
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
    uptime_s: NonNegInt


class CameraStream(Message, tag="camera.stream", frozen=True, kw_only=True):
    fps: Annotated[float, Meta(ge=0.0, le=240.0)]
    bitrate_kbps: Annotated[float, Meta(ge=0.0, le=200_000.0)]
    dropped_frames: NonNegInt
    frozen: bool
    black: bool


class CameraTraffic(Message, tag="camera.traffic", frozen=True, kw_only=True):
    interval_s: Annotated[int, Meta(ge=1, le=3600)]
    vehicles: NonNegInt
    mean_speed_kmh: Annotated[float, Meta(ge=0.0, le=300.0)]
    occupancy_pct: Percent


class CameraIncident(Message, tag="camera.incident", frozen=True, kw_only=True):
    incident_id: ShortText
    incident: IncidentType
    state: Literal["open", "clear"]


# --- telehealth ---


class TelehealthHeartbeat(Message, tag="telehealth.heartbeat", frozen=True, kw_only=True):
    status: Status
    waiting_patients: Annotated[int, Meta(ge=0, le=10_000)]
    active_sessions: Annotated[int, Meta(ge=0, le=100)]


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
    video_height: Annotated[int, Meta(ge=0, le=4320)]


# --- network node ---


class NetnodeProbe(Message, tag="netnode.probe", frozen=True, kw_only=True):
    """Reachability of the node from the provincial core (sent by the core's prober)."""

    reachable: bool
    rtt_ms: Millis | None
    loss_pct: Percent


class NetnodeCounters(Message, tag="netnode.counters", frozen=True, kw_only=True):
    interface: ShortText
    interval_s: Annotated[int, Meta(ge=1, le=3600)]
    in_bps: Annotated[float, Meta(ge=0.0, le=1e12)]
    out_bps: Annotated[float, Meta(ge=0.0, le=1e12)]
    in_errors: NonNegInt
    out_errors: NonNegInt
    capacity_bps: Annotated[float, Meta(gt=0.0, le=1e12)]


class NetnodeLink(Message, tag="netnode.link", frozen=True, kw_only=True):
    interface: ShortText
    state: LinkState


CameraMessage = CameraHeartbeat | CameraStream | CameraTraffic | CameraIncident
TelehealthMessage = TelehealthHeartbeat | TelehealthSession | TelehealthQuality
NetnodeMessage = NetnodeProbe | NetnodeCounters | NetnodeLink
AnyMessage = CameraMessage | TelehealthMessage | NetnodeMessage

MESSAGE_TYPES: Final[dict[str, tuple[type[Message], ...]]] = {
    "camera": (CameraHeartbeat, CameraStream, CameraTraffic, CameraIncident),
    "telehealth": (TelehealthHeartbeat, TelehealthSession, TelehealthQuality),
    "netnode": (NetnodeProbe, NetnodeCounters, NetnodeLink),
}
FEED_OF_KIND: Final[dict[type[Message], str]] = {
    t: feed for feed, types in MESSAGE_TYPES.items() for t in types
}
KIND_OF_TYPE: Final[dict[type[Message], str]] = {
    t: str(t.__struct_config__.tag) for types in MESSAGE_TYPES.values() for t in types
}
TYPE_OF_KIND: Final[dict[str, type[Message]]] = {k: t for t, k in KIND_OF_TYPE.items()}
DEVICE_CLASS_OF_FEED: Final = {"camera": "camera", "telehealth": "telehealth", "netnode": "netnode"}


class InvalidMessage(Exception):
    """A message that must go to the dead-letter topic; ``reason`` is a short label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# Reasons, also the values of the `reason` label of the DLQ metric (bounded set).
REASON_OVERSIZED: Final = "oversized"
REASON_BAD_JSON: Final = "bad_json"
REASON_SCHEMA: Final = "schema"
REASON_UNKNOWN_VERSION: Final = "unknown_version"
REASON_UNKNOWN_KIND: Final = "unknown_kind"
REASON_WRONG_FEED: Final = "wrong_feed"
REASON_KEY_MISMATCH: Final = "key_mismatch"
REASON_EVENT_TIME: Final = "event_time"
REASON_UNKNOWN_DEVICE: Final = "unknown_device"
DLQ_REASONS: Final = (
    REASON_OVERSIZED,
    REASON_BAD_JSON,
    REASON_SCHEMA,
    REASON_UNKNOWN_VERSION,
    REASON_UNKNOWN_KIND,
    REASON_WRONG_FEED,
    REASON_KEY_MISMATCH,
    REASON_EVENT_TIME,
    REASON_UNKNOWN_DEVICE,
)


class _Probe(msgspec.Struct):
    """Just enough of the envelope to explain why a full decode failed."""

    v: Any = None
    kind: Any = None


def _union(types: tuple[type[Message], ...]) -> Any:
    result: Any = types[0]
    for t in types[1:]:
        result = result | t
    return result


_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    feed: msgspec.json.Decoder(_union(types)) for feed, types in MESSAGE_TYPES.items()
}
_any_decoder = msgspec.json.Decoder(AnyMessage)
_probe_decoder = msgspec.json.Decoder(_Probe)
_encoder = msgspec.json.Encoder()


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def _explain(data: bytes, feed: str | None, error: msgspec.ValidationError) -> InvalidMessage:
    try:
        probe = _probe_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
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


def decode(
    data: bytes,
    *,
    feed: str | None = None,
    key: bytes | None = None,
    now_ms: int | None = None,
) -> AnyMessage:
    """Decode and validate one message; raise :class:`InvalidMessage` with a reason.

    ``feed`` restricts the accepted kinds to that feed's; ``key`` (the Kafka key) must equal
    the device id; ``now_ms`` enables the event-time plausibility check.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(REASON_OVERSIZED, f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    decoder = _decoders[feed] if feed is not None else _any_decoder
    try:
        message: AnyMessage = decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _explain(data, feed, exc) from None
    except msgspec.DecodeError as exc:
        raise InvalidMessage(REASON_BAD_JSON, str(exc)) from None
    except RecursionError:
        raise InvalidMessage(REASON_BAD_JSON, "JSON nested too deeply") from None
    if message.v not in SUPPORTED_VERSIONS:
        raise InvalidMessage(REASON_UNKNOWN_VERSION, f"schema version {message.v} unsupported")
    if key is not None and key != message.device_id.encode():
        raise InvalidMessage(
            REASON_KEY_MISMATCH,
            f"key {key[:64]!r} is not the device id {message.device_id!r}",
        )
    if now_ms is not None and not (now_ms - MAX_PAST_MS <= message.ts_ms <= now_ms + MAX_FUTURE_MS):
        raise InvalidMessage(
            REASON_EVENT_TIME,
            f"event time {message.ts_ms} is outside [now-7d, now+10min] (now={now_ms})",
        )
    return message
