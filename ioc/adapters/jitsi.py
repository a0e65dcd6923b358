"""Jitsi (and the booking calendar beside it) -> the ``vconf`` contract (ioc/contract/vconf.py).

Four native payloads, as the real systems emit them:

- a videobridge's ``GET /colibri/stats`` JSON (Jitsi's keys: ``current_timestamp`` as
  ``"YYYY-MM-DD hh:mm:ss.fff"`` UTC, ``conferences``, ``participants``,
  ``largest_conference``, ``endpoints_sending_video``, ``stress_level``,
  ``bit_rate_download``/``bit_rate_upload`` in kbit/s, the cumulative
  ``total_failed_conferences`` and ``total_partially_failed_conferences``), plus the licensed
  port count the collector knows from the licence server (``licensed_ports``, optional: Jitsi
  itself has none) -> :class:`~ioc.contract.vconf.VconfBridge`;
- a bridge point's WebRTC statistics (what ``RTCPeerConnection.getStats()`` returns, posted by
  the room's agent every 10 s: ``candidate-pair`` ``currentRoundTripTime`` in seconds,
  ``inbound-rtp`` ``packetsReceived``/``packetsLost`` (cumulative), ``jitter`` in seconds,
  ``framesPerSecond``, ``frameHeight`` and the cumulative ``freezeCount``) ->
  :class:`~ioc.contract.vconf.VconfEndpoint` with loss and freezes over the interval;
- the point's conference events (lib-jitsi-meet's ``conference.joined``, ``conference.left``,
  ``conference.failed`` with its ``error``) -> :class:`~ioc.contract.vconf.VconfJoin`;
- the booking calendar's event (iCalendar fields in JSON: ``uid``, ``summary``, ``dtstart``
  ISO 8601 with offset, ``duration`` in minutes, ``status`` CONFIRMED/CANCELLED, the
  organiser's unit and expected points) -> :class:`~ioc.contract.vconf.VconfMeeting`, and its
  sync status (``dtstamp``, ``events``) -> :class:`~ioc.contract.vconf.VconfCalendar`.

:class:`JitsiAdapter` holds the per-device state a mapping needs (the sequence counter, the
previous cumulative counters), so one object serves a collector of many devices, or one
simulated device. Bad native input raises :class:`AdapterError` (a ``ValueError`` with a
clear message, for the collector to dead-letter), never anything else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ioc.adapters.native import AdapterError, Sequencer, document, iso_time, number, validated
from ioc.contract import schemas as s
from ioc.contract import vconf as vc

COLIBRI_TIME: Final = "%Y-%m-%d %H:%M:%S.%f"
"""``current_timestamp`` of ``/colibri/stats`` (UTC, no zone)."""

JOIN_EVENTS: Final[dict[str, vc.JoinEvent]] = {
    "conference.joined": "joined",
    "conference.left": "left",
    "conference.failed": "failed",
}
ERRORS: Final[dict[str, str]] = {
    # lib-jitsi-meet's conference errors -> the contract's reasons
    "conference.max_users": vc.REASON_LICENCE,
    "conference.connectionError.notAllowed": vc.REASON_LICENCE,
    "conference.iceFailed": vc.REASON_MEDIA,
    "conference.connectionError.timeout": vc.REASON_MEDIA,
    "conference.focusLeft": vc.REASON_BRIDGE,
    "conference.videobridgeNotAvailable": vc.REASON_BRIDGE,
    "conference.destroyed": vc.REASON_ENDED,
}


M = TypeVar("M", bound=s.Message)


@dataclass
class _Counters:
    packets_received: int = 0
    packets_lost: int = 0
    freezes: int = 0


def _text(doc: dict[str, Any], key: str, what: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise AdapterError(f"{what}: '{key}' must be a non-empty string")
    return value


def _optional_text(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) and value else None


def colibri_time(value: Any) -> int:
    """``current_timestamp`` (``"2026-11-30 01:00:00.123"``, UTC) -> epoch ms."""
    if not isinstance(value, str):
        raise AdapterError("colibri stats: 'current_timestamp' must be a string")
    try:
        parsed = dt.datetime.strptime(value, COLIBRI_TIME).replace(tzinfo=dt.UTC)
    except ValueError:
        raise AdapterError(
            f"colibri stats: 'current_timestamp' {value!r:.40} is not YYYY-MM-DD hh:mm:ss.fff"
        ) from None
    return int(parsed.timestamp() * 1000)


def format_colibri_time(ts_ms: int) -> str:
    """The inverse of :func:`colibri_time` (the simulator writes what Jitsi writes)."""
    moment = dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)
    return moment.strftime(COLIBRI_TIME)[:-3]


def _epoch_ms(doc: dict[str, Any], what: str) -> int:
    """WebRTC's ``timestamp``: epoch milliseconds (a DOMHighResTimeStamp, may be fractional)."""
    ms = number(doc, "timestamp", what)
    if not 0 <= ms <= s.MAX_EPOCH_MS:
        raise AdapterError(f"{what}: 'timestamp' {ms} is not epoch milliseconds")
    return int(ms)


class JitsiAdapter:
    """Maps native payloads to ``vconf`` messages; keeps per-device sequence numbers and the
    previous cumulative counters of each bridge point."""

    def __init__(self, next_seq: Callable[[str], int] | None = None) -> None:
        """``next_seq``: a collector's own per-device numbering (``ioc collect`` continues
        above a previous run's numbers); by default each device counts from 1."""
        self._counters: dict[str, _Counters] = {}
        self.next_seq = next_seq or Sequencer().next

    def _envelope(self, device_id: str, ts_ms: int) -> dict[str, Any]:
        return {"v": s.SCHEMA_VERSION, "device_id": device_id, "ts_ms": ts_ms}

    def _finish(self, kind: type[M], fields: dict[str, Any], what: str) -> M:
        """Validate first, then number: a refused payload does not consume a sequence number
        (the stream's sequence stays gapless)."""
        validated(kind, {**fields, "seq": 1}, what)
        return validated(kind, {**fields, "seq": self.next_seq(fields["device_id"])}, what)

    # --- the bridge ---------------------------------------------------------------------------

    def colibri_stats(
        self, device_id: str, payload: dict[str, Any] | bytes | str, licensed_ports: int | None
    ) -> vc.VconfBridge:
        what = f"colibri stats of {device_id}"
        doc = document(payload, what)
        participants = int(number(doc, "participants", what))
        ports = doc.get("licensed_ports", licensed_ports)
        fields = {
            **self._envelope(device_id, colibri_time(doc.get("current_timestamp"))),
            "conferences": int(number(doc, "conferences", what)),
            "participants": participants,
            "largest_conference": int(number(doc, "largest_conference", what, 0)),
            "endpoints_sending_video": int(number(doc, "endpoints_sending_video", what, 0)),
            "stress_level": number(doc, "stress_level", what, 0.0),
            "ports_used": participants,
            "ports_licensed": ports,
            "download_bps": number(doc, "bit_rate_download", what) * 1000.0,
            "upload_bps": number(doc, "bit_rate_upload", what) * 1000.0,
            "conferences_failed": int(number(doc, "total_failed_conferences", what, 0)),
            "conferences_partially_failed": int(
                number(doc, "total_partially_failed_conferences", what, 0)
            ),
        }
        return self._finish(vc.VconfBridge, fields, what)

    # --- a bridge point -----------------------------------------------------------------------

    def webrtc_stats(
        self, device_id: str, payload: dict[str, Any] | bytes | str
    ) -> vc.VconfEndpoint:
        """One ``getStats()`` report of a bridge point. Loss is over the interval since the
        previous report (cumulative counters; a counter that went back means the peer
        connection was re-created, and the interval starts from zero)."""
        what = f"WebRTC stats of {device_id}"
        doc = document(payload, what)
        ts_ms = _epoch_ms(doc, what)
        conference = _optional_text(doc, "conference")
        stats = doc.get("stats", [])
        if not isinstance(stats, list) or not all(isinstance(x, dict) for x in stats):
            raise AdapterError(f"{what}: 'stats' must be a list of RTCStats objects")
        previous = self._counters.get(device_id, _Counters())
        fields: dict[str, Any] = {
            **self._envelope(device_id, ts_ms),
            "in_meeting": conference is not None,
            "meeting_id": conference,
            "bridge_id": _optional_text(doc, "bridge"),
        }
        if conference is None:
            self._counters.pop(device_id, None)
            return self._finish(vc.VconfEndpoint, fields, what)
        pair = next(
            (x for x in stats if x.get("type") == "candidate-pair" and x.get("nominated")), None
        )
        inbound = [x for x in stats if x.get("type") == "inbound-rtp"]
        video = next((x for x in inbound if x.get("kind") == "video"), None)
        audio = next((x for x in inbound if x.get("kind") == "audio"), None)
        if audio is None and video is None:
            raise AdapterError(f"{what}: in conference {conference} but no inbound-rtp stats")
        received = sum(int(number(x, "packetsReceived", what, 0)) for x in inbound)
        lost = sum(int(number(x, "packetsLost", what, 0)) for x in inbound)
        freezes = int(number(video, "freezeCount", what, 0)) if video else 0
        if received < previous.packets_received or lost < previous.packets_lost:
            previous = _Counters()  # a new peer connection: counters restarted
        d_received = received - previous.packets_received
        d_lost = lost - previous.packets_lost
        d_freezes = freezes - previous.freezes if freezes >= previous.freezes else freezes
        total = d_received + d_lost
        main = video if video is not None else audio
        assert main is not None
        fps = video.get("framesPerSecond") if video else None
        fields |= {
            "rtt_ms": round(number(pair, "currentRoundTripTime", what) * 1000.0, 2)
            if pair
            else None,
            "jitter_ms": round(number(main, "jitter", what, 0.0) * 1000.0, 2),
            "loss_pct": round(100.0 * d_lost / total, 2) if total > 0 else 0.0,
            "fps": float(fps)
            if isinstance(fps, int | float) and not isinstance(fps, bool)
            else None,
            "frame_height": video.get("frameHeight") if video else None,
            "freezes": d_freezes,
            "audio_only": video is None or not fps,
        }
        message = self._finish(vc.VconfEndpoint, fields, what)
        self._counters[device_id] = _Counters(received, lost, freezes)
        return message

    def conference_event(
        self, device_id: str, payload: dict[str, Any] | bytes | str
    ) -> vc.VconfJoin:
        """``conference.joined`` / ``conference.left`` / ``conference.failed`` (with ``error``)."""
        what = f"conference event of {device_id}"
        doc = document(payload, what)
        name = doc.get("event")
        event = JOIN_EVENTS.get(name) if isinstance(name, str) else None
        if event is None:
            raise AdapterError(
                f"{what}: 'event' {name!r:.40} is not one of {', '.join(JOIN_EVENTS)}"
            )
        error = _optional_text(doc, "error")
        reason = ERRORS.get(error, error) if error else None
        fields = {
            **self._envelope(device_id, _epoch_ms(doc, what)),
            "meeting_id": _text(doc, "conference", what),
            "event": event,
            "bridge_id": _optional_text(doc, "bridge"),
            "reason": reason,
        }
        return self._finish(vc.VconfJoin, fields, what)

    # --- the booking calendar -----------------------------------------------------------------

    def calendar_sync(
        self, device_id: str, payload: dict[str, Any] | bytes | str
    ) -> vc.VconfCalendar:
        """The calendar's sync status (``{"dtstamp": ISO 8601, "events": N}``): its heartbeat."""
        what = f"calendar sync of {device_id}"
        doc = document(payload, what)
        fields = {
            **self._envelope(device_id, iso_time(doc.get("dtstamp"), f"{what}: dtstamp")),
            "upcoming_meetings": int(number(doc, "events", what)),
        }
        return self._finish(vc.VconfCalendar, fields, what)

    def booking_event(
        self, device_id: str, payload: dict[str, Any] | bytes | str
    ) -> vc.VconfMeeting:
        """A calendar event (re-)announced by the booking system; ``dtstamp`` is when."""
        what = f"booking event of {device_id}"
        doc = document(payload, what)
        status = doc.get("status")
        if status not in ("CONFIRMED", "TENTATIVE", "CANCELLED"):
            raise AdapterError(f"{what}: 'status' {status!r:.40} is not CONFIRMED or CANCELLED")
        attendees = doc.get("attendees")
        if not isinstance(attendees, dict):
            raise AdapterError(f"{what}: 'attendees' must be an object (unit, points)")
        fields = {
            **self._envelope(device_id, iso_time(doc.get("dtstamp"), f"{what}: dtstamp")),
            "meeting_id": _text(doc, "uid", what),
            "title": _text(doc, "summary", what)[:128],
            "scope_unit": _text(attendees, "unit", what),
            "starts_at_ms": iso_time(doc.get("dtstart"), f"{what}: dtstart"),
            "duration_s": int(number(doc, "duration_minutes", what) * 60),
            "expected_points": int(number(attendees, "points", what)),
            "status": "cancelled" if status == "CANCELLED" else "scheduled",
            "bridge_id": _optional_text(doc, "location"),
        }
        return self._finish(vc.VconfMeeting, fields, what)
