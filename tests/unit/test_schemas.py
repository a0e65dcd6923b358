"""Message schemas: round trips, version checks, and no exception but InvalidMessage."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioc.contract import schemas as s
from ioc.contract.builtin_feeds import BUILTIN_FEEDS

NOW = 1_700_000_000_000

device_ids = st.from_regex(r"[A-Za-z0-9._:\-]{1,64}", fullmatch=True)
envelope = {
    "v": st.just(1),
    "device_id": device_ids,
    "seq": st.integers(1, 2**62),
    "ts_ms": st.integers(NOW - 3600_000, NOW + 60_000),
}
pct = st.floats(0, 100, allow_nan=False)
ms = st.floats(0, 600_000, allow_nan=False)
text = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1, max_size=128
)

MESSAGES = st.one_of(
    st.builds(
        s.CameraHeartbeat,
        **envelope,
        status=st.sampled_from(["ok", "degraded", "fault"]),
        uptime_s=st.integers(0, 2**40),
    ),
    st.builds(
        s.CameraStream,
        **envelope,
        fps=st.floats(0, 240),
        bitrate_kbps=st.floats(0, 2e5),
        dropped_frames=st.integers(0, 10**6),
        frozen=st.booleans(),
        black=st.booleans(),
    ),
    st.builds(
        s.CameraTraffic,
        **envelope,
        interval_s=st.integers(1, 3600),
        vehicles=st.integers(0, 10**5),
        mean_speed_kmh=st.floats(0, 300),
        occupancy_pct=pct,
    ),
    st.builds(
        s.CameraIncident,
        **envelope,
        incident_id=text,
        incident=st.sampled_from(["congestion", "stopped_vehicle", "wrong_way"]),
        state=st.sampled_from(["open", "clear"]),
    ),
    st.builds(
        s.TelehealthHeartbeat,
        **envelope,
        status=st.sampled_from(["ok", "fault"]),
        waiting_patients=st.integers(0, 10_000),
        active_sessions=st.integers(0, 100),
    ),
    st.builds(
        s.TelehealthSession,
        **envelope,
        session_id=text,
        event=st.sampled_from(["start", "end", "dropped"]),
        peer_site=st.none() | text,
        reason=st.none() | text,
    ),
    st.builds(
        s.TelehealthQuality,
        **envelope,
        session_id=text,
        rtt_ms=ms,
        jitter_ms=ms,
        loss_pct=pct,
        video_height=st.integers(0, 4320),
    ),
    st.builds(
        s.NetnodeProbe, **envelope, reachable=st.booleans(), rtt_ms=st.none() | ms, loss_pct=pct
    ),
    st.builds(
        s.NetnodeCounters,
        **envelope,
        interface=text,
        interval_s=st.integers(1, 3600),
        in_bps=st.floats(0, 1e12),
        out_bps=st.floats(0, 1e12),
        in_errors=st.integers(0, 2**40),
        out_errors=st.integers(0, 2**40),
        capacity_bps=st.floats(1, 1e12),
    ),
    st.builds(s.NetnodeLink, **envelope, interface=text, state=st.sampled_from(["up", "down"])),
)


@given(MESSAGES)
@settings(max_examples=300)
def test_every_message_round_trips_through_its_feed(message: s.Message) -> None:
    data = s.encode(message)
    decoded = s.decode(data, feed=message.feed, key=message.device_id.encode(), now_ms=NOW)
    assert decoded == message
    assert type(decoded) is type(message)


@given(st.binary(max_size=2048))
@settings(max_examples=500)
def test_random_bytes_never_raise_anything_but_invalid_message(data: bytes) -> None:
    try:
        s.decode(data, feed="camera", now_ms=NOW)
    except s.InvalidMessage as exc:
        assert exc.reason in s.DLQ_REASONS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(
    st.dictionaries(
        st.sampled_from(["v", "kind", "device_id", "seq", "ts_ms", "fps", "status", "x"]),
        json_values,
    )
)
@settings(max_examples=500)
def test_random_json_objects_are_rejected_with_a_reason(doc: dict[str, object]) -> None:
    try:
        data = msgspec.json.encode(doc)
    except (OverflowError, msgspec.EncodeError):
        return
    try:
        s.decode(data, feed="telehealth", now_ms=NOW)
    except s.InvalidMessage as exc:
        assert exc.reason in s.DLQ_REASONS


def _heartbeat(**overrides: object) -> bytes:
    doc = {
        "kind": "camera.heartbeat",
        "v": 1,
        "device_id": "cam-1",
        "seq": 1,
        "ts_ms": NOW,
        "status": "ok",
        "uptime_s": 10,
    } | overrides
    return msgspec.json.encode(doc)


@pytest.mark.parametrize(
    ("data", "feed", "reason"),
    [
        (b"{not json", "camera", s.REASON_NOT_JSON),
        (_heartbeat(v=2), "camera", s.REASON_UNKNOWN_VERSION),
        (_heartbeat(v=0), "camera", s.REASON_UNKNOWN_VERSION),
        (_heartbeat(kind="camera.teleport"), "camera", s.REASON_UNKNOWN_KIND),
        (_heartbeat(), "netnode", s.REASON_WRONG_FEED),
        (_heartbeat(seq="1"), "camera", s.REASON_SCHEMA),
        (_heartbeat(seq=-1), "camera", s.REASON_SCHEMA),
        (_heartbeat(status="sleepy"), "camera", s.REASON_SCHEMA),
        (_heartbeat(ts_ms=NOW + 86_400_000), "camera", s.REASON_EVENT_TIME),
        (_heartbeat(ts_ms=0), "camera", s.REASON_EVENT_TIME),
        (_heartbeat(device_id="x" * 1000), "camera", s.REASON_SCHEMA),
        (_heartbeat(padding="x" * 70_000), "camera", s.REASON_OVERSIZED),
        (
            b'{"kind":"camera.stream","v":1,"device_id":"c","seq":1,"ts_ms":1,"fps":1e999,'
            b'"bitrate_kbps":1,"dropped_frames":0,"frozen":false,"black":false}',
            "camera",
            s.REASON_SCHEMA,
        ),
        (b"[" * 10_000 + b"]" * 10_000, "camera", s.REASON_SCHEMA),
        # the decisions of issue 12: named causes, no storable-but-invalid values
        (b"7\x8f\x01 random bytes", "camera", s.REASON_NOT_JSON),
        (b'{"s":"\xed\xa0\x80"}', "camera", s.REASON_NOT_JSON),
        (b"12", "camera", s.REASON_SCHEMA),
        (_heartbeat(seq=0), "camera", s.REASON_SCHEMA),
        (_heartbeat(seq=2**62 + 1), "camera", s.REASON_SCHEMA),
        (_heartbeat(uptime_s=2**53 + 1), "camera", s.REASON_SCHEMA),
        (_heartbeat(ts_ms=s.MAX_EPOCH_MS + 1), "camera", s.REASON_SCHEMA),
        (
            b'{"kind":"telehealth.session","v":1,"device_id":"t","seq":1,"ts_ms":1,'
            b'"session_id":"a\\u0000b","event":"start"}',
            "telehealth",
            s.REASON_SCHEMA,
        ),
        (
            b'{"kind":"telehealth.session","v":1,"device_id":"t","seq":1,"ts_ms":1,'
            b'"session_id":"\\ud800","event":"start"}',
            "telehealth",
            s.REASON_NOT_JSON,
        ),
        (
            b'{"kind":"camera.stream","v":1,"device_id":"c","seq":1,"ts_ms":1,"fps":1,'
            b'"bitrate_kbps":1,"dropped_frames":2147483648,"frozen":false,"black":false}',
            "camera",
            s.REASON_SCHEMA,
        ),
        (b'{"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}", "camera", s.REASON_NOT_JSON),
    ],
)
def test_invalid_messages_carry_the_right_reason(data: bytes, feed: str, reason: str) -> None:
    with pytest.raises(s.InvalidMessage) as info:
        s.decode(data, feed=feed, now_ms=NOW)
    assert info.value.reason == reason, info.value.detail


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"cam-1", None, s.REASON_TOMBSTONE),
        (None, None, s.REASON_TOMBSTONE),
        (b"cam-1", b"", s.REASON_EMPTY),
        (None, b"x" * (s.MAX_MESSAGE_BYTES + 1), s.REASON_OVERSIZED),
        (None, _heartbeat(), s.REASON_MISSING_KEY),
    ],
)
def test_records_are_checked_before_parsing_in_the_documented_order(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(s.InvalidMessage) as info:
        s.check_record(key, value)
    assert info.value.reason == reason


def test_no_reason_or_detail_carries_a_decoder_exception_text() -> None:
    with pytest.raises(s.InvalidMessage) as info:
        s.decode(b"\x00\x01\x02", feed="camera")
    assert info.value.reason == s.REASON_NOT_JSON
    assert "byte" not in info.value.detail and "malformed" not in info.value.detail


def test_key_must_be_the_device_id() -> None:
    with pytest.raises(s.InvalidMessage) as info:
        s.decode(_heartbeat(), feed="camera", key=b"cam-2")
    assert info.value.reason == s.REASON_KEY_MISMATCH


def test_every_kind_has_a_feed_and_a_unique_tag() -> None:
    kinds = [k for k in s.TYPE_OF_KIND]
    # 10 of the first three feeds + each later built-in feed's own (from its declaration)
    later = sum(len(f.messages) for f in BUILTIN_FEEDS[3:])
    assert len(kinds) == len(set(kinds)) == 10 + later
    assert {k.split(".")[0] for k in kinds} == set(s.FEEDS)
