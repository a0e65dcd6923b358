"""The Jitsi adapter maps the native payloads onto the vconf contract, and refuses bad ones
with a clear AdapterError (ioc/adapters/jitsi.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from ioc.adapters.jitsi import JitsiAdapter, colibri_time, format_colibri_time
from ioc.adapters.native import AdapterError
from ioc.contract import schemas as s
from ioc.contract import vconf as vc

# GET /colibri/stats of a Jitsi videobridge (keys as jitsi-videobridge documents them)
COLIBRI: dict[str, Any] = {
    "current_timestamp": "2026-11-30 00:59:55.120",
    "conferences": 2,
    "participants": 171,
    "largest_conference": 160,
    "endpoints_sending_video": 158,
    "endpoints_sending_audio": 171,
    "stress_level": 0.684,
    "bit_rate_download": 243512.5,
    "bit_rate_upload": 402108.0,
    "packet_rate_download": 23110,
    "packet_rate_upload": 38200,
    "total_failed_conferences": 1,
    "total_partially_failed_conferences": 4,
    "total_conferences_created": 88,
    "videochannels": 171,
    "threads": 214,
    "rtt_aggregate": 41.2,
    "version": "2.3.92",
}


def _webrtc(ts: float, received: int, lost: int, freezes: int, fps: float = 29.5) -> dict[str, Any]:
    return {
        "timestamp": ts,
        "conference": "weekly-15-20261130",
        "bridge": "vc-15-mcu-1",
        "stats": [
            {
                "id": "CPa1",
                "type": "candidate-pair",
                "nominated": True,
                "state": "succeeded",
                "currentRoundTripTime": 0.048,
            },
            {
                "id": "IT01A",
                "type": "inbound-rtp",
                "kind": "audio",
                "packetsReceived": received // 4,
                "packetsLost": lost // 4,
                "jitter": 0.004,
            },
            {
                "id": "IT01V",
                "type": "inbound-rtp",
                "kind": "video",
                "packetsReceived": received - received // 4,
                "packetsLost": lost - lost // 4,
                "jitter": 0.0125,
                "framesPerSecond": fps,
                "frameHeight": 720,
                "freezeCount": freezes,
            },
        ],
    }


def test_colibri_stats_become_a_bridge_report() -> None:
    a = JitsiAdapter()
    msg = a.colibri_stats("vc-15-mcu-1", orjson.dumps(COLIBRI), licensed_ports=250)
    assert isinstance(msg, vc.VconfBridge)
    assert msg.seq == 1 and msg.ts_ms == colibri_time("2026-11-30 00:59:55.120")
    assert (msg.conferences, msg.participants, msg.largest_conference) == (2, 171, 160)
    assert (msg.ports_used, msg.ports_licensed) == (171, 250)
    assert msg.download_bps == 243_512_500.0 and msg.upload_bps == 402_108_000.0
    assert (msg.conferences_failed, msg.conferences_partially_failed) == (1, 4)
    assert msg.stress_level == pytest.approx(0.684)
    # the message is what the workers accept, and the licence server's figure may come inline
    decoded: s.Message = s.decode(s.encode(msg), feed="vconf")
    assert decoded == msg
    inline = a.colibri_stats("vc-15-mcu-1", {**COLIBRI, "licensed_ports": 300}, None)
    assert inline.ports_licensed == 300 and inline.seq == 2


def test_colibri_time_round_trips() -> None:
    ts = colibri_time("2026-11-30 00:59:55.120")
    assert format_colibri_time(ts) == "2026-11-30 00:59:55.120"
    assert ts % 1000 == 120


def test_webrtc_stats_give_loss_and_freezes_over_the_interval() -> None:
    a = JitsiAdapter()
    first = a.webrtc_stats("vc-138-007", _webrtc(1_796_000_000_000.0, 1000, 0, 2))
    second = a.webrtc_stats("vc-138-007", _webrtc(1_796_000_010_000.0, 1900, 100, 5))
    assert isinstance(second, vc.VconfEndpoint)
    assert first.in_meeting and first.meeting_id == "weekly-15-20261130"
    assert first.loss_pct == 0.0 and first.freezes == 2
    assert second.loss_pct == 10.0  # 100 lost of 1000 in the interval
    assert second.freezes == 3 and second.rtt_ms == 48.0 and second.jitter_ms == 12.5
    assert second.fps == 29.5 and second.frame_height == 720 and not second.audio_only
    assert (first.seq, second.seq) == (1, 2)
    # a new peer connection restarts the counters: the interval starts from zero
    third = a.webrtc_stats("vc-138-007", _webrtc(1_796_000_020_000.0, 500, 50, 0))
    assert third.loss_pct == pytest.approx(9.09, abs=0.01) and third.freezes == 0


def test_webrtc_stats_without_video_are_an_audio_only_fallback_and_idle_is_idle() -> None:
    a = JitsiAdapter()
    doc = _webrtc(1_796_000_000_000.0, 1000, 10, 0)
    doc["stats"] = [x for x in doc["stats"] if x.get("kind") != "video"]
    msg = a.webrtc_stats("vc-138-007", doc)
    assert msg.audio_only and msg.fps is None and msg.frame_height is None
    idle = a.webrtc_stats("vc-138-007", {"timestamp": 1_796_000_010_000, "conference": None})
    assert not idle.in_meeting and idle.meeting_id is None and idle.loss_pct is None


def test_conference_events_map_lib_jitsi_meet_errors_to_reasons() -> None:
    a = JitsiAdapter()
    base = {"timestamp": 1_796_000_000_000, "conference": "weekly-15-20261130"}
    joined = a.conference_event("vc-138-007", {**base, "event": "conference.joined"})
    failed = a.conference_event(
        "vc-138-007",
        {**base, "event": "conference.failed", "error": "conference.max_users", "bridge": "b1"},
    )
    left = a.conference_event(
        "vc-138-007", {**base, "event": "conference.left", "error": "conference.iceFailed"}
    )
    assert (joined.event, joined.reason) == ("joined", None)
    assert (failed.event, failed.reason, failed.bridge_id) == ("failed", vc.REASON_LICENCE, "b1")
    assert (left.event, left.reason) == ("left", vc.REASON_MEDIA)


def test_booking_events_become_scheduled_meetings() -> None:
    a = JitsiAdapter()
    event = {
        "uid": "weekly-15-20261130",
        "summary": "Yên Bái weekly meeting",
        "dtstamp": "2026-11-30T07:40:00.000+07:00",
        "dtstart": "2026-11-30T08:00:00+07:00",
        "duration_minutes": 120,
        "status": "CONFIRMED",
        "location": "vc-15-mcu-1",
        "attendees": {"unit": "15", "points": 183},
    }
    msg = a.booking_event("vc-15-booking", event)
    assert isinstance(msg, vc.VconfMeeting)
    assert msg.starts_at_ms == int(
        dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC).timestamp() * 1000
    )  # 08:00 +07:00 is 01:00 UTC
    assert (msg.scope_unit, msg.expected_points, msg.duration_s) == ("15", 183, 7200)
    assert msg.status == "scheduled" and msg.bridge_id == "vc-15-mcu-1"
    assert msg.ts_ms == msg.starts_at_ms - 20 * 60_000
    cancelled = a.booking_event("vc-15-booking", {**event, "status": "CANCELLED"})
    assert cancelled.status == "cancelled"
    sync = a.calendar_sync("vc-15-booking", {"dtstamp": event["dtstamp"], "events": 1})
    assert isinstance(sync, vc.VconfCalendar)
    assert (sync.upcoming_meetings, sync.seq, sync.ts_ms) == (1, 3, msg.ts_ms)


@pytest.mark.parametrize(
    ("method", "payload", "words"),
    [
        ("colibri", b"{not json", "not JSON"),
        ("colibri", b"[1, 2]", "expected a JSON object"),
        ("colibri", {**COLIBRI, "current_timestamp": "yesterday"}, "current_timestamp"),
        ("colibri", {**COLIBRI, "participants": "many"}, "must be a number"),
        ("colibri", {**COLIBRI, "participants": -3}, "participants"),
        ("colibri", {k: v for k, v in COLIBRI.items() if k != "bit_rate_upload"}, "missing"),
        ("webrtc", {"timestamp": "now", "conference": None}, "must be a number"),
        ("webrtc", {"timestamp": 1.0, "conference": "m", "stats": "x"}, "list of RTCStats"),
        ("webrtc", {"timestamp": 1.0, "conference": "m", "stats": []}, "no inbound-rtp"),
        ("event", {"timestamp": 1, "conference": "m", "event": "hello"}, "is not one of"),
        ("event", {"timestamp": 1, "event": "conference.joined"}, "'conference'"),
        ("booking", {"status": "MAYBE"}, "status"),
        ("booking", {"status": "CONFIRMED", "attendees": {}, "dtstamp": "x"}, "ISO 8601"),
    ],
)
def test_bad_native_input_is_a_clear_adapter_error(method: str, payload: Any, words: str) -> None:
    a = JitsiAdapter()

    def call() -> s.Message:
        if method == "colibri":
            return a.colibri_stats("vc-15-mcu-1", payload, 250)
        if method == "webrtc":
            return a.webrtc_stats("vc-1", payload)
        if method == "event":
            return a.conference_event("vc-1", payload)
        return a.booking_event("vc-15-booking", payload)

    with pytest.raises(AdapterError, match=words):
        call()
    # a refused payload does not use up a sequence number
    assert a.next_seq("vc-15-mcu-1") == 1
