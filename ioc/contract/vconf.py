"""The video-conference feed (``vconf``): the provincial online meeting system.

Three kinds of ``vconf`` device share the feed (``Device.attributes["role"]``):

- ``mcu``: a bridge (Jitsi videobridge) at the provincial data centre; every 5 s it reports
  what its ``/colibri/stats`` says (:class:`VconfBridge`).
- ``endpoint``: a bridge point, one meeting room per administrative unit at the unit's office,
  behind that site's network node; every 10 s it reports its WebRTC statistics
  (:class:`VconfEndpoint`), and it joins, leaves or fails to join meetings (:class:`VconfJoin`).
- ``booking``: the meeting calendar (the province's booking system) at the data centre; every
  10 s it re-announces the meetings of the coming day and the ones in progress
  (:class:`VconfMeeting`), and says it is in sync (:class:`VconfCalendar`, its heartbeat).

The schedule is a message kind rather than a table filled by hand: it reaches the workers by
the same path, validation and dead letters as every other fact, it is stored with its event
time (so "what was scheduled when" is history, not state), a cancelled or moved meeting is one
more announcement, and the booking system's silence is seen by the same heartbeat rule that
watches every device. Meeting readiness (which expected points have not joined N minutes
before and after the start, and why) is computed by the leader worker from the latest
announcement of each meeting, the join events and the device states
(:mod:`ioc.streams.vconf`); docs/vconf.md.

Native payloads (colibri JSON, WebRTC stats, booking calendar events) are mapped onto these
kinds by :mod:`ioc.adapters.jitsi`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Annotated, Final, Literal

from msgspec import Meta

from ioc.contract import schemas as s
from ioc.contract import tables as t
from ioc.contract.feeds import Aggregate, Collection, Feed, FeedSpec
from ioc.contract.thresholds import WARNING
from ioc.contract.topics import DAY_MS, TopicSpec

ROLE_MCU: Final = "mcu"
ROLE_ENDPOINT: Final = "endpoint"
ROLE_BOOKING: Final = "booking"
ROLES: Final = (ROLE_MCU, ROLE_ENDPOINT, ROLE_BOOKING)

_INT4: Final = {"column": "integer"}
_INT8: Final = {"column": "bigint"}
_REAL: Final = {"column": "real"}

Count = Annotated[int, Meta(ge=0, le=1_000_000, extra=_INT4)]
"""Conferences, participants, ports: far inside an integer column."""
Stress = Annotated[float, Meta(ge=0.0, le=1000.0, extra=_REAL)]
"""Jitsi's ``stress_level``: 0 idle, 1 at its configured load threshold, may exceed 1."""
Fps = Annotated[float, Meta(ge=0.0, le=240.0, extra=_REAL)]
FrameHeight = Annotated[int, Meta(ge=0, le=4320, extra=_INT4)]
StartMs = Annotated[int, Meta(ge=0, le=s.MAX_EPOCH_MS, extra=_INT8)]
"""A scheduled start, epoch milliseconds UTC (a bigint: ``to_timestamp(starts_at_ms / 1000.0)``)."""
DurationS = Annotated[int, Meta(ge=60, le=86_400, extra=_INT4)]
JoinEvent = Literal["joined", "left", "failed"]
MeetingStatus = Literal["scheduled", "cancelled"]

# Join failure / leave reasons the adapter emits (a bounded set: the readiness causes use them).
REASON_LICENCE: Final = "licence_exhausted"
REASON_MEDIA: Final = "media_timeout"
REASON_BRIDGE: Final = "bridge_unavailable"
REASON_ENDED: Final = "meeting_ended"


class VconfBridge(s.Message, tag="vconf.bridge", frozen=True, kw_only=True):
    """One MCU's ``/colibri/stats`` (every 5 s)."""

    conferences: Count
    participants: Count
    largest_conference: Count
    endpoints_sending_video: Count
    stress_level: Stress
    ports_used: Count
    ports_licensed: Count | None
    """The bridge's licensed ports (the licence server's figure; Jitsi itself has none)."""
    download_bps: s.Bps
    upload_bps: s.Bps
    conferences_failed: s.Counter64
    """Cumulative ``total_failed_conferences`` since the bridge started."""
    conferences_partially_failed: s.Counter64
    """Cumulative ``total_partially_failed_conferences``."""


class VconfEndpoint(s.Message, tag="vconf.endpoint", frozen=True, kw_only=True):
    """A bridge point's media statistics over the last interval (every 10 s). Out of a
    meeting only ``in_meeting=False`` is meaningful (the room's PC is registered and idle)."""

    in_meeting: bool
    meeting_id: s.ShortText | None = None
    bridge_id: s.ShortText | None = None
    rtt_ms: s.Millis | None = None
    jitter_ms: s.Millis | None = None
    loss_pct: s.Percent | None = None
    fps: Fps | None = None
    frame_height: FrameHeight | None = None
    freezes: Count | None = None
    """Video freezes in the interval (the delta of WebRTC's cumulative ``freezeCount``)."""
    audio_only: bool = False


class VconfJoin(s.Message, tag="vconf.join", frozen=True, kw_only=True):
    """A bridge point joined, left or failed to join a meeting."""

    meeting_id: s.ShortText
    event: JoinEvent
    bridge_id: s.ShortText | None = None
    reason: s.ShortText | None = None


class VconfMeeting(s.Message, tag="vconf.meeting", frozen=True, kw_only=True):
    """A scheduled meeting, as the booking system announces it (re-announced every 10 s while
    it is upcoming or in progress; the latest announcement of a ``meeting_id`` wins)."""

    meeting_id: s.ShortText
    title: s.ShortText
    scope_unit: s.ShortText
    """Every bridge point of this unit and of the units below it is expected."""
    starts_at_ms: StartMs
    duration_s: DurationS
    expected_points: Count
    status: MeetingStatus
    bridge_id: s.ShortText | None = None


class VconfCalendar(s.Message, tag="vconf.calendar", frozen=True, kw_only=True):
    """The booking system's sync status (every 10 s, meetings or not): its heartbeat."""

    upcoming_meetings: Count
    """Meetings it announces now (starting within a day, or in progress)."""


VCONF_TOPIC: Final = TopicSpec(
    "ioc.vconf.v1",
    6,
    2 * DAY_MS,
    description="video-conference bridges (colibri stats), bridge points (WebRTC stats, "
    "joins) and the meeting schedule",
)

_I, _B, _R, _D = "integer", "bigint", "real", "double precision"

FEED: Final = FeedSpec(
    name=Feed.VCONF,
    title="Video conference",
    messages=(VconfBridge, VconfEndpoint, VconfJoin, VconfMeeting, VconfCalendar),
    topic=VCONF_TOPIC,
    device_rollup=(
        Aggregate("reports", _I, "sat_int4(count(*))", True),
        Aggregate("conferences_max", _I, "max(conferences)"),
        Aggregate("participants_max", _I, "max(participants)"),
        Aggregate("stress_max", _R, "max(stress_level)"),
        Aggregate("ports_used_max", _I, "max(ports_used)"),
        Aggregate("ports_licensed", _I, "min(ports_licensed)"),
        Aggregate("download_bps_avg", _D, "avg(download_bps)"),
        Aggregate("upload_bps_avg", _D, "avg(upload_bps)"),
        # the bridge's cumulative counters, as the rise within the minute: minutes add up
        Aggregate(
            "conferences_failed",
            _B,
            "sat_int8(greatest(max(conferences_failed) - min(conferences_failed), 0))",
            over_time="sum",
        ),
        Aggregate(
            "conferences_partially_failed",
            _B,
            "sat_int8(greatest(max(conferences_partially_failed) "
            "- min(conferences_partially_failed), 0))",
            over_time="sum",
        ),
        Aggregate("in_meeting_samples", _I, "sat_int4(count(*) FILTER (WHERE in_meeting))"),
        Aggregate("rtt_ms_avg", _R, "sat_real(avg(rtt_ms))"),
        Aggregate("jitter_ms_avg", _R, "sat_real(avg(jitter_ms))"),
        Aggregate("loss_pct_avg", _R, "sat_real(avg(loss_pct))"),
        Aggregate("loss_pct_max", _R, "max(loss_pct)"),
        Aggregate("fps_avg", _R, "sat_real(avg(fps))"),
        Aggregate("frame_height_min", _I, "min(frame_height)"),
        Aggregate("freezes", _I, "sat_int4(sum(freezes))"),
        Aggregate(
            "audio_only_samples", _I, "sat_int4(count(*) FILTER (WHERE audio_only AND in_meeting))"
        ),
        Aggregate("joins", _I, "sat_int4(count(*) FILTER (WHERE event = 'joined'))"),
        Aggregate("join_failures", _I, "sat_int4(count(*) FILTER (WHERE event = 'failed'))"),
        Aggregate("leaves", _I, "sat_int4(count(*) FILTER (WHERE event = 'left'))"),
    ),
    unit_rollup=(
        Aggregate("devices", _I, "sat_int4(count(*))", True),
        Aggregate("devices_reporting", _I, "sat_int4(count(r.device_id))", True),
        Aggregate(
            "points_in_meeting", _I, "sat_int4(count(*) FILTER (WHERE r.in_meeting_samples > 0))"
        ),
        Aggregate("participants_max", _I, "sat_int4(coalesce(sum(r.participants_max), 0))"),
        Aggregate("ports_used_max", _I, "sat_int4(coalesce(sum(r.ports_used_max), 0))"),
        Aggregate("ports_licensed", _I, "sat_int4(sum(r.ports_licensed))"),
        Aggregate("stress_max", _R, "max(r.stress_max)"),
        Aggregate("rtt_ms_avg", _R, "sat_real(avg(r.rtt_ms_avg))"),
        Aggregate("jitter_ms_avg", _R, "sat_real(avg(r.jitter_ms_avg))"),
        Aggregate("loss_pct_avg", _R, "sat_real(avg(r.loss_pct_avg))"),
        Aggregate("loss_pct_max", _R, "max(r.loss_pct_max)"),
        Aggregate("fps_avg", _R, "sat_real(avg(r.fps_avg))"),
        Aggregate("freezes", _I, "sat_int4(coalesce(sum(r.freezes), 0))"),
        Aggregate(
            "audio_only_points", _I, "sat_int4(count(*) FILTER (WHERE r.audio_only_samples > 0))"
        ),
        Aggregate("joins", _I, "sat_int4(coalesce(sum(r.joins), 0))"),
        Aggregate("join_failures", _I, "sat_int4(coalesce(sum(r.join_failures), 0))"),
        Aggregate("conferences_failed", _B, "sat_int8(coalesce(sum(r.conferences_failed), 0))"),
    ),
    heartbeat_timeout_ms=20_000,
    incident_severity=MappingProxyType(
        {t.INCIDENT_DEVICE_DOWN: WARNING, t.INCIDENT_FLAPPING: WARNING}
    ),
    behaviour="ioc.simulators.vconf:VconfSim",
    # ``ioc collect`` polls each bridge's /colibri/stats over HTTP every 5 s (the simulated
    # bridges report as often); a bridge in the data centre that takes 2 s is not answering.
    # Points and the calendar push their reports: nothing to poll.
    collection=Collection(interval_s=MappingProxyType({"vconf.bridge": 5.0}), timeout_s=2.0),
)
