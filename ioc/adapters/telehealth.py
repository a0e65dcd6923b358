"""A telehealth station's HTTP status -> the ``telehealth`` contract (heartbeat, session
events, media quality).

A station (the PC of a telemedicine room: codec, camera, the clinic's queue) exposes its state
as one JSON document, ``GET /status``, which ``ioc collect --protocols http`` polls
(docs/collectors.md). The document, all times ISO 8601 with their UTC offset::

    {
      "time": "2026-11-30T08:00:05.120+07:00",    # the station's clock, when it answered
      "state": "ok",                               # ok | degraded | fault
      "queue": {"waiting": 3},                     # patients waiting for a consultation
      "sessions": [                                # consultations in progress
        {"id": "th-1-s17", "peer": "provincial-hospital",
         "started": "2026-11-30T07:52:10.000+07:00",
         "media": {"rtt_ms": 35.2, "jitter_ms": 4.1, "loss_pct": 0.3, "video_height": 720}}
      ],
      "ended": [                                   # consultations ended recently
        {"id": "th-1-s16", "ended": "2026-11-30T07:50:00.000+07:00",
         "outcome": "dropped", "reason": "network"}
      ]
    }

A poll is a snapshot and the contract has events, so :class:`StationAdapter` keeps, per
station, the sessions it has seen: a session listed for the first time is a ``start`` (at its
``started``), one in ``ended`` not reported yet an ``end`` or ``dropped`` (at its ``ended``),
one that vanished from both lists a ``dropped`` with reason ``vanished`` (the station lost
it, e.g. it restarted). A collector's first poll of a station is its baseline (what is in
progress is not a start it saw), unless ``baseline=False`` (the simulator sees every session
from its birth). Memory per station is bounded by the size of its document.

Bad input raises :class:`~ioc.adapters.native.AdapterError` (a ``ValueError`` with a clear
message), never anything else; a refused document changes no state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

import msgspec

from ioc.adapters.native import AdapterError, Sequencer, document, iso_time, number, validated
from ioc.contract import schemas as s

STATES: Final = ("ok", "degraded", "fault")
OUTCOMES: Final[dict[str, Literal["end", "dropped"]]] = {"completed": "end", "dropped": "dropped"}
VANISHED: Final = "vanished"
"""The reason of a ``dropped`` session the station stopped listing without ending it."""
MAX_ENDED: Final = 1000
"""``ended`` entries a document may hold (a station lists the recent ones, not its history)."""

__all__ = ["AdapterError", "StationAdapter"]

M = TypeVar("M", bound=s.Message)


@dataclass
class _Station:
    active: dict[str, str | None] = field(default_factory=dict)
    """Session id -> peer, as listed by the previous document."""
    reported: set[str] = field(default_factory=set)
    """Ids of the previous document's ``ended`` entries (already reported)."""


@dataclass(frozen=True)
class _Session:
    session_id: str
    peer: str | None
    started_ms: int | None
    media: dict[str, Any] | None


def _list(doc: dict[str, Any], key: str, what: str, limit: int) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise AdapterError(f"{what}: '{key}' must be a list of objects")
    if len(value) > limit:
        raise AdapterError(f"{what}: '{key}' lists {len(value)} entries, at most {limit}")
    return value


def _id(entry: dict[str, Any], what: str) -> str:
    value = entry.get("id")
    if not isinstance(value, str) or not value:
        raise AdapterError(f"{what}: a session without an 'id'")
    return value


def _peer(entry: dict[str, Any]) -> str | None:
    value = entry.get("peer")
    return value if isinstance(value, str) and value else None


class StationAdapter:
    """Maps status documents to ``telehealth`` messages; keeps per-station session state and
    sequence numbers (``next_seq``: a collector's own numbering, default from 1)."""

    def __init__(
        self, *, baseline: bool = True, next_seq: Callable[[str], int] | None = None
    ) -> None:
        self.baseline = baseline
        self._stations: dict[str, _Station] = {}
        self.next_seq = next_seq or Sequencer().next

    def status(self, device_id: str, payload: dict[str, Any] | bytes | str) -> list[s.Message]:
        """One poll: the session events since the previous one, the heartbeat, and a quality
        sample per session that reports media."""
        doc, ts_ms, sessions, ended = self._parse(device_id, payload)
        events = self._events(device_id, ts_ms, sessions, ended)
        heartbeat = self._heartbeat(device_id, doc, ts_ms, len(sessions))
        quality = self._quality(device_id, ts_ms, sessions)
        self._remember(device_id, sessions, ended)
        return [*self._numbered(events), *self._numbered([heartbeat]), *self._numbered(quality)]

    def events_and_heartbeat(
        self, device_id: str, payload: dict[str, Any] | bytes | str
    ) -> list[s.Message]:
        """:meth:`status` without the quality samples (a station reporting them apart)."""
        doc, ts_ms, sessions, ended = self._parse(device_id, payload)
        events = self._events(device_id, ts_ms, sessions, ended)
        heartbeat = self._heartbeat(device_id, doc, ts_ms, len(sessions))
        self._remember(device_id, sessions, ended)
        return [*self._numbered(events), *self._numbered([heartbeat])]

    def quality(self, device_id: str, payload: dict[str, Any] | bytes | str) -> list[s.Message]:
        """Only the quality samples of a document (no session state read or changed)."""
        _, ts_ms, sessions, _ = self._parse(device_id, payload)
        return self._numbered(self._quality(device_id, ts_ms, sessions))

    # --- mapping ------------------------------------------------------------------------------

    def _parse(
        self, device_id: str, payload: dict[str, Any] | bytes | str
    ) -> tuple[dict[str, Any], int, list[_Session], list[dict[str, Any]]]:
        what = f"station status of {device_id}"
        doc = document(payload, what)
        ts_ms = iso_time(doc.get("time"), f"{what}: time")
        sessions: list[_Session] = []
        for entry in _list(doc, "sessions", what, 100):
            media = entry.get("media")
            if media is not None and not isinstance(media, dict):
                raise AdapterError(f"{what}: a session's 'media' must be an object")
            started = entry.get("started")
            sessions.append(
                _Session(
                    _id(entry, what),
                    _peer(entry),
                    None if started is None else iso_time(started, f"{what}: started"),
                    media,
                )
            )
        if len({x.session_id for x in sessions}) != len(sessions):
            raise AdapterError(f"{what}: a session is listed twice")
        ended = _list(doc, "ended", what, MAX_ENDED)
        for entry in ended:
            _id(entry, what)
            if entry.get("outcome") not in OUTCOMES:
                raise AdapterError(
                    f"{what}: an ended session's 'outcome' must be completed or dropped"
                )
        return doc, ts_ms, sessions, ended

    def _heartbeat(
        self, device_id: str, doc: dict[str, Any], ts_ms: int, active: int
    ) -> s.TelehealthHeartbeat:
        what = f"station status of {device_id}"
        state = doc.get("state")
        if state not in STATES:
            raise AdapterError(f"{what}: 'state' {state!r:.40} is not ok, degraded or fault")
        queue = doc.get("queue", {})
        if not isinstance(queue, dict):
            raise AdapterError(f"{what}: 'queue' must be an object")
        fields = {
            "device_id": device_id,
            "ts_ms": ts_ms,
            "status": state,
            "waiting_patients": int(number(queue, "waiting", what, 0)),
            "active_sessions": active,
        }
        return self._valid(s.TelehealthHeartbeat, fields, what)

    def _events(
        self,
        device_id: str,
        ts_ms: int,
        sessions: list[_Session],
        ended: list[dict[str, Any]],
    ) -> list[s.Message]:
        what = f"station status of {device_id}"
        known = self._stations.get(device_id)
        if known is None and self.baseline:
            return []
        before = known or _Station()
        out: list[s.Message] = []
        listed = {x.session_id for x in sessions}
        closed = set()
        for entry in ended:
            session_id = _id(entry, what)
            closed.add(session_id)
            if session_id in before.reported or session_id in listed:
                continue
            when = iso_time(entry.get("ended"), f"{what}: ended")
            if session_id not in before.active and entry.get("started") is not None:
                started = iso_time(entry.get("started"), f"{what}: started")
                out.append(self._session(device_id, started, session_id, "start", _peer(entry)))
            reason = entry.get("reason")
            out.append(
                self._session(
                    device_id,
                    when,
                    session_id,
                    OUTCOMES[entry["outcome"]],
                    None,
                    reason if isinstance(reason, str) and reason else None,
                )
            )
        for session_id in before.active:
            if session_id not in listed and session_id not in closed:
                out.append(self._session(device_id, ts_ms, session_id, "dropped", None, VANISHED))
        for x in sessions:
            if x.session_id not in before.active:
                started = ts_ms if x.started_ms is None else x.started_ms
                out.append(self._session(device_id, started, x.session_id, "start", x.peer))
        return out

    def _session(
        self,
        device_id: str,
        ts_ms: int,
        session_id: str,
        event: Literal["start", "end", "dropped"],
        peer: str | None,
        reason: str | None = None,
    ) -> s.TelehealthSession:
        fields = {
            "device_id": device_id,
            "ts_ms": ts_ms,
            "session_id": session_id,
            "event": event,
            "peer_site": peer,
            "reason": reason,
        }
        return self._valid(s.TelehealthSession, fields, f"session {session_id} of {device_id}")

    def _quality(
        self, device_id: str, ts_ms: int, sessions: list[_Session]
    ) -> list[s.TelehealthQuality]:
        out = []
        for x in sessions:
            if x.media is None:
                continue
            what = f"media of session {x.session_id} of {device_id}"
            fields = {
                "device_id": device_id,
                "ts_ms": ts_ms,
                "session_id": x.session_id,
                "rtt_ms": number(x.media, "rtt_ms", what),
                "jitter_ms": number(x.media, "jitter_ms", what),
                "loss_pct": number(x.media, "loss_pct", what),
                "video_height": int(number(x.media, "video_height", what, 0)),
            }
            out.append(self._valid(s.TelehealthQuality, fields, what))
        return out

    def _remember(
        self, device_id: str, sessions: list[_Session], ended: list[dict[str, Any]]
    ) -> None:
        active = {x.session_id: x.peer for x in sessions}
        # an entry also still listed as active was not reported: it is, once it leaves the list
        reported = {str(e["id"]) for e in ended} - active.keys()
        self._stations[device_id] = _Station(active, reported)

    # --- validation and numbering --------------------------------------------------------------

    @staticmethod
    def _valid(kind: type[M], fields: dict[str, Any], what: str) -> M:
        """Validated exactly as the workers will, numbered later (a refused document leaves
        no gap in the station's sequence)."""
        return validated(kind, {"v": s.SCHEMA_VERSION, "seq": 1, **fields}, what)

    def _numbered(self, messages: Sequence[s.Message]) -> list[s.Message]:
        return [msgspec.structs.replace(m, seq=self.next_seq(m.device_id)) for m in messages]
