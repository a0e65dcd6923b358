"""The three built-in feeds, one :class:`~ioc.contract.feeds.FeedSpec` each.

Their tables were created by hand-written migrations (0002, 0004, 0005) before feeds were
declared here, so they keep ``tables_from_migrations=True``; a unit test checks that the DDL
:mod:`ioc.db.feeds` would generate from these declarations matches those migrations. The
numbers (heartbeat timeouts, severities) are the ones :mod:`ioc.contract.thresholds` owns.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from ioc.contract import schemas as s
from ioc.contract import tables as t
from ioc.contract.feeds import Aggregate, Collection, Feed, FeedSpec
from ioc.contract.portal import FEED as PORTAL
from ioc.contract.soc import FEED as SOC
from ioc.contract.thresholds import CRITICAL, INFO, WARNING
from ioc.contract.topics import CAMERA as CAMERA_TOPIC
from ioc.contract.topics import NETNODE as NETNODE_TOPIC
from ioc.contract.topics import TELEHEALTH as TELEHEALTH_TOPIC
from ioc.contract.vconf import FEED as VCONF

_INT: Final = "integer"
_BIGINT: Final = "bigint"
_REAL: Final = "real"
_DOUBLE: Final = "double precision"


def _a(name: str, type_: str, expr: str, not_null: bool = False) -> Aggregate:
    return Aggregate(name, type_, expr, not_null)


CAMERA: Final = FeedSpec(
    name=Feed.CAMERA,
    title="Cameras",
    messages=(s.CameraHeartbeat, s.CameraStream, s.CameraTraffic, s.CameraIncident),
    topic=CAMERA_TOPIC,
    renamed=MappingProxyType({(s.CameraIncident, "state"): "incident_state"}),
    device_rollup=(
        _a("reports", _INT, "sat_int4(count(*))", True),
        _a("heartbeats", _INT, "sat_int4(count(*) FILTER (WHERE kind = 'camera.heartbeat'))", True),
        _a("fps_avg", _REAL, "sat_real(avg(fps))"),
        _a("fps_min", _REAL, "min(fps)"),
        _a("bitrate_kbps_avg", _REAL, "sat_real(avg(bitrate_kbps))"),
        _a("dropped_frames", _BIGINT, "sat_int8(sum(dropped_frames))"),
        _a("frozen_samples", _INT, "sat_int4(count(*) FILTER (WHERE frozen))"),
        _a("black_samples", _INT, "sat_int4(count(*) FILTER (WHERE black))"),
        _a("vehicles", _BIGINT, "sat_int8(sum(vehicles))"),
        _a("speed_kmh_avg", _REAL, "sat_real(avg(mean_speed_kmh))"),
        _a("occupancy_pct_avg", _REAL, "sat_real(avg(occupancy_pct))"),
        _a("occupancy_pct_max", _REAL, "max(occupancy_pct)"),
        _a("incidents_opened", _INT, "sat_int4(count(*) FILTER (WHERE incident_state = 'open'))"),
    ),
    unit_rollup=(
        _a("cameras", _INT, "sat_int4(count(*))", True),
        _a("cameras_reporting", _INT, "sat_int4(count(r.device_id))", True),
        _a("fps_avg", _REAL, "sat_real(avg(r.fps_avg))"),
        _a("frozen_cameras", _INT, "sat_int4(count(*) FILTER (WHERE r.frozen_samples > 0))"),
        _a("vehicles", _BIGINT, "sat_int8(coalesce(sum(r.vehicles), 0))"),
        _a("speed_kmh_avg", _REAL, "sat_real(avg(r.speed_kmh_avg))"),
        _a("occupancy_pct_avg", _REAL, "sat_real(avg(r.occupancy_pct_avg))"),
        _a("incidents_opened", _INT, "sat_int4(coalesce(sum(r.incidents_opened), 0))"),
    ),
    heartbeat_timeout_ms=15_000,
    incident_severity=MappingProxyType(
        {t.INCIDENT_DEVICE_DOWN: WARNING, t.INCIDENT_FLAPPING: WARNING, t.INCIDENT_DEGRADED: INFO}
    ),
    behaviour="ioc.simulators.behaviour:CameraSim",
    tables_from_migrations=True,
    # The RTSP collector (docs/collectors.md): a cheap RTSP OPTIONS every 5 s is the
    # heartbeat (three inside the 15 s timeout); 2 s of decoded video every 10 s is the
    # stream's health, as often as the simulator reports it, so a frozen picture is seen
    # within the same bounds. 3 s covers a camera's RTSP answer and first frame.
    collection=Collection(
        interval_s=MappingProxyType({"camera.heartbeat": 5.0, "camera.stream": 10.0}),
        timeout_s=3.0,
        sample_s=2.0,
    ),
)

TELEHEALTH: Final = FeedSpec(
    name=Feed.TELEHEALTH,
    title="Telehealth",
    messages=(s.TelehealthHeartbeat, s.TelehealthSession, s.TelehealthQuality),
    topic=TELEHEALTH_TOPIC,
    device_rollup=(
        _a("reports", _INT, "sat_int4(count(*))", True),
        _a(
            "heartbeats",
            _INT,
            "sat_int4(count(*) FILTER (WHERE kind = 'telehealth.heartbeat'))",
            True,
        ),
        _a("waiting_max", _INT, "max(waiting_patients)"),
        _a("sessions_active", _INT, "max(active_sessions)"),
        _a("sessions_started", _INT, "sat_int4(count(*) FILTER (WHERE event = 'start'))"),
        _a("sessions_ended", _INT, "sat_int4(count(*) FILTER (WHERE event = 'end'))"),
        _a("sessions_dropped", _INT, "sat_int4(count(*) FILTER (WHERE event = 'dropped'))"),
        _a(
            "quality_samples",
            _INT,
            "sat_int4(count(*) FILTER (WHERE kind = 'telehealth.quality'))",
        ),
        _a("rtt_ms_avg", _REAL, "sat_real(avg(rtt_ms))"),
        _a("rtt_ms_p95", _REAL, "sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY rtt_ms))"),
        _a("jitter_ms_avg", _REAL, "sat_real(avg(jitter_ms))"),
        _a(
            "jitter_ms_p95",
            _REAL,
            "sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY jitter_ms))",
        ),
        _a("loss_pct_avg", _REAL, "sat_real(avg(loss_pct))"),
        _a("loss_pct_max", _REAL, "max(loss_pct)"),
    ),
    unit_rollup=(
        _a("stations", _INT, "sat_int4(count(*))", True),
        _a("stations_reporting", _INT, "sat_int4(count(r.device_id))", True),
        _a("sessions_active", _INT, "sat_int4(coalesce(sum(r.sessions_active), 0))"),
        _a("sessions_started", _INT, "sat_int4(coalesce(sum(r.sessions_started), 0))"),
        _a("sessions_dropped", _INT, "sat_int4(coalesce(sum(r.sessions_dropped), 0))"),
        _a("waiting", _INT, "sat_int4(coalesce(sum(r.waiting_max), 0))"),
        _a(
            "rtt_ms_p95",
            _REAL,
            "sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY r.rtt_ms_p95))",
        ),
        _a(
            "jitter_ms_p95",
            _REAL,
            "sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY r.jitter_ms_p95))",
        ),
        _a("loss_pct_avg", _REAL, "sat_real(avg(r.loss_pct_avg))"),
    ),
    heartbeat_timeout_ms=15_000,
    incident_severity=MappingProxyType(
        {
            t.INCIDENT_DEVICE_DOWN: CRITICAL,
            t.INCIDENT_FLAPPING: WARNING,
            t.INCIDENT_DEGRADED: WARNING,
        }
    ),
    behaviour="ioc.simulators.behaviour:TelehealthSim",
    tables_from_migrations=True,
    # One HTTP status poll every 5 s gives the heartbeat and each session's quality (three
    # inside the 15 s heartbeat timeout); 3 s covers a commune station's uplink, and a station
    # slower than that is as good as silent (docs/collectors.md).
    collection=Collection(
        interval_s=MappingProxyType({"telehealth.heartbeat": 5.0, "telehealth.quality": 5.0}),
        timeout_s=3.0,
    ),
)

NETNODE: Final = FeedSpec(
    name=Feed.NETNODE,
    title="Network",
    messages=(s.NetnodeProbe, s.NetnodeCounters, s.NetnodeLink),
    topic=NETNODE_TOPIC,
    renamed=MappingProxyType({(s.NetnodeLink, "state"): "link_state"}),
    device_rollup=(
        _a("reports", _INT, "sat_int4(count(*))", True),
        _a("probes", _INT, "sat_int4(count(*) FILTER (WHERE kind = 'netnode.probe'))", True),
        _a("probes_ok", _INT, "sat_int4(count(*) FILTER (WHERE reachable))", True),
        _a("rtt_ms_avg", _REAL, "sat_real(avg(rtt_ms))"),
        _a("rtt_ms_p95", _REAL, "sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY rtt_ms))"),
        _a("loss_pct_avg", _REAL, "sat_real(avg(loss_pct))"),
        _a("loss_pct_max", _REAL, "max(loss_pct)"),
        _a("in_bps_avg", _DOUBLE, "avg(in_bps)"),
        _a("out_bps_avg", _DOUBLE, "avg(out_bps)"),
        _a(
            "util_pct_max",
            _REAL,
            "sat_real(max(CASE WHEN in_bps < 1e-300 THEN 0 "
            "ELSE 100.0 * in_bps / nullif(capacity_bps, 0) END))",
        ),
        _a("errors", _BIGINT, "sat_int8(sum(in_errors + out_errors))"),
        _a("link_changes", _INT, "sat_int4(count(*) FILTER (WHERE kind = 'netnode.link'))"),
    ),
    unit_rollup=(
        _a("nodes", _INT, "sat_int4(count(*))", True),
        _a("nodes_reporting", _INT, "sat_int4(count(r.device_id))", True),
        _a("nodes_reachable", _INT, "sat_int4(count(*) FILTER (WHERE r.probes_ok > 0))", True),
        _a("rtt_ms_avg", _REAL, "sat_real(avg(r.rtt_ms_avg))"),
        _a(
            "rtt_ms_p95",
            _REAL,
            "sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY r.rtt_ms_p95))",
        ),
        _a("loss_pct_avg", _REAL, "sat_real(avg(r.loss_pct_avg))"),
        _a("in_bps", _DOUBLE, "coalesce(sum(r.in_bps_avg), 0)"),
        _a("out_bps", _DOUBLE, "coalesce(sum(r.out_bps_avg), 0)"),
        _a("errors", _BIGINT, "sat_int8(coalesce(sum(r.errors), 0))"),
    ),
    heartbeat_timeout_ms=15_000,
    incident_severity=MappingProxyType(
        {
            t.INCIDENT_SITE_ISOLATED: CRITICAL,
            t.INCIDENT_DEVICE_DOWN: WARNING,
            t.INCIDENT_FLAPPING: WARNING,
            t.INCIDENT_DEGRADED: WARNING,
        }
    ),
    behaviour="ioc.simulators.behaviour:NetnodeSim",
    tables_from_migrations=True,
    # A probe every 5 s keeps three results inside the 15 s heartbeat timeout; 2 s covers a
    # commune link's worst round trip with a wide margin (docs/collectors.md).
    collection=Collection(
        interval_s=MappingProxyType({"netnode.probe": 5.0, "netnode.counters": 15.0}),
        timeout_s=2.0,
        echoes=3,
    ),
)

BUILTIN_FEEDS: Final = (CAMERA, TELEHEALTH, NETNODE, VCONF, PORTAL, SOC)
