"""Every threshold, ``for:`` duration and severity, defined once (kubernetes-mixin ``_config``).

The workers' device state machine (:mod:`ioc.streams.state`, :mod:`ioc.streams.evaluator`),
the generated alert and recording rules (:mod:`ioc.alerting`) and the generated dashboards
(:mod:`ioc.dashboards`) read their numbers from :data:`THRESHOLDS` and never repeat one as a
literal; a unit test builds all of them from a modified :class:`Thresholds` and checks that
every change shows up. To change a threshold, change it here, run ``ioc alerts build`` and
``ioc dashboards build``, and commit the regenerated files.

Units are in the field names: the state machine works in event-time milliseconds, the alert
rules in seconds. Dashboard panels that show the same quantity as an alert colour at the
alert's threshold; the ``*_target``/``*_bad`` levels below are for panels without an alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from ioc.contract import tables as t

CRITICAL: Final = "critical"
WARNING: Final = "warning"
INFO: Final = "info"
NONE: Final = "none"  # never pages (the Watchdog)
ALERT_SEVERITIES: Final = (*t.SEVERITIES, NONE)


@dataclass(frozen=True)
class AlertPolicy:
    """How long an alert's condition must hold before it fires, and whom it pages."""

    for_s: int
    severity: str
    keep_firing_s: int = 0
    """How long it stays firing after its condition stops holding (``keep_firing_for``): a root
    cause outlasts the consequences it inhibits, which clear only once the backlog is in."""


HEARTBEAT_TIMEOUT_MS: Final[dict[str, int]] = {}
"""Device class -> heartbeat timeout (``FeedSpec.heartbeat_timeout_ms``; kept in step with
the feed registry by ioc.contract.feeds)."""
INCIDENT_SEVERITY: Final[dict[tuple[str, str], str]] = {}
"""(incident kind, device class) -> severity (``FeedSpec.incident_severity``; likewise)."""


def _alert_policies() -> Mapping[str, AlertPolicy]:
    return MappingProxyType(
        {
            # Device and node outages are confirmed by the state machine (a heartbeat timeout;
            # a node's ``node_down_confirm_ms``) before the gauge exists: no ``for:`` on top,
            # so the page latency budget holds (docs/alerting.md).
            "CameraDown": AlertPolicy(0, WARNING),
            "TelehealthStationDown": AlertPolicy(0, CRITICAL),
            "NetworkNodeDown": AlertPolicy(0, WARNING),
            "SiteIsolated": AlertPolicy(0, CRITICAL),
            "DeviceFlapping": AlertPolicy(0, WARNING),
            "CameraOnlineRatioLow": AlertPolicy(120, WARNING),
            "TelehealthQualityDegraded": AlertPolicy(60, WARNING),
            "TelehealthSessionsDropping": AlertPolicy(0, WARNING),
            "NetworkLinkDegraded": AlertPolicy(120, WARNING),
            "CameraStreamFrozen": AlertPolicy(60, WARNING),
            "ConsumerLagGrowing": AlertPolicy(300, WARNING),
            "DataStale": AlertPolicy(15, CRITICAL),
            "PartitionStalled": AlertPolicy(30, CRITICAL),
            "DeadLetterRateHigh": AlertPolicy(300, WARNING),
            "StreamWorkerDown": AlertPolicy(60, CRITICAL),
            "DatabaseWritesFailing": AlertPolicy(60, CRITICAL),
            "DeadLetterSendFailing": AlertPolicy(60, CRITICAL),
            "DatabaseWritesSlow": AlertPolicy(60, WARNING),
            # Records a collector's full spool dropped are lost for good: page at once.
            "CollectorSpoolDropping": AlertPolicy(0, CRITICAL),
            # A worker that cannot reach its broker or database does no work: as critical as
            # a missing worker, after a few failed probes (a restart or a switchover is
            # shorter); it inhibits the data alerts that follow from it (docs/alerting.md).
            "StreamWorkerCannotReachKafka": AlertPolicy(15, CRITICAL, keep_firing_s=30),
            "StreamWorkerCannotReachDatabase": AlertPolicy(15, CRITICAL, keep_firing_s=30),
            "KafkaLatencyHigh": AlertPolicy(60, WARNING),
            "PortalSyncSilent": AlertPolicy(60, WARNING),
            "PortalOnTimeRateLow": AlertPolicy(300, WARNING),
            "PortalPaymentsFailing": AlertPolicy(120, WARNING),
            "VconfPointNotJoined": AlertPolicy(15, WARNING),
            "VconfDeviceDown": AlertPolicy(0, WARNING),
            "VconfLicenceExhausted": AlertPolicy(15, WARNING),
            "SocSensorDown": AlertPolicy(0, WARNING),
            "SecurityCriticalAlert": AlertPolicy(0, CRITICAL),
            "SecurityAttackOnDegradedLink": AlertPolicy(10, CRITICAL),
            "Watchdog": AlertPolicy(0, NONE),
        }
    )


@dataclass(frozen=True)
class Thresholds:
    # --- device state machine (ioc.streams.state), event time in milliseconds ---
    heartbeat_timeout_ms: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType(HEARTBEAT_TIMEOUT_MS)
    )
    """Silent for longer (or no probe result for longer): down. Default: each feed's
    declaration (a read-only view of the registry's, so a feed registered later has one)."""
    quality_max_age_ms: int = 30_000
    """Quality readings older than this do not make a device degraded."""
    camera_min_fps: float = 5.0
    telehealth_max_loss_pct: float = 5.0
    telehealth_max_jitter_ms: float = 60.0
    link_max_loss_pct: float = 5.0
    link_max_rtt_ms: float = 250.0
    flap_count: int = 3
    """Down this many times within ``flap_window_ms``: flapping."""
    flap_window_ms: int = 10 * 60_000
    flap_quiet_ms: int = 5 * 60_000
    """A flapping device is up again after this long without going down."""
    node_down_confirm_ms: int = 10_000
    """A network node whose probes fail is an outage (down, a site isolated, an incident, a
    page) only once it has been down this long; a shorter cut is a blip, counted towards
    flapping, so a flapping node's first cuts raise no critical incident or page (a device's
    heartbeat timeout confirms its outages the same way)."""
    confirm_upstream_ms: int = 12_000
    """How long a failed node waits for its upstream node's verdict before it is blamed."""
    catch_up_slack_ms: int = 5_000
    """Event time running this much faster than the wall clock means a backlog is replayed."""
    restate_unapplied_ms: int = 20_000
    """A device whose last transition the incident agent has not applied this long after the
    leader wrote and published it has its state published again (the agent applies one
    within a second or two when it keeps up; one merely behind applies the restatement as a
    no-op); the leader looks every half of it (ioc.streams.evaluator, docs/streams.md
    "Restated when unapplied")."""
    soc_alert_hold_ms: int = 5 * 60_000
    """A SOC sensor stays degraded (its incident open) this long after its last critical, DDoS
    or scan alert (ioc.streams.soc): a campaign is one incident, not one per alert."""
    portal_silent_ms: int = 30 * 60_000
    """A portal desk (its LGSP sync channel) from which nothing has arrived for this long,
    counted in working hours only, is down: "LGSP sync silent" (ioc.streams.state)."""
    portal_working_hours: str = "Mon-Fri 07:30-11:30,13:30-17:00"
    """When the one-stop desks work, Vietnam time (ioc.contract.workhours): silence outside
    these hours is normal, so a desk is never down at night or at the weekend."""
    incident_severity: Mapping[tuple[str, str], str] = field(
        default_factory=lambda: MappingProxyType(INCIDENT_SEVERITY)
    )
    """(incident kind, device class) -> severity of the incident the workers open (default:
    each feed's declaration)."""

    # --- alert rules (ioc.alerting.rules), seconds ---
    scrape_interval_s: int = 5
    """Every Prometheus scrape (and file_sd refresh) of the generated scrape configs."""
    evaluation_interval_s: int = 5
    """Rule evaluation interval; the promtool tests step by it."""
    camera_online_ratio_min: float = 0.8
    """CameraOnlineRatioLow below it; online-share panels turn amber below it."""
    sessions_dropped_max: int = 3
    """TelehealthSessionsDropping at this many drops in a unit within the window."""
    sessions_dropped_window_s: int = 600
    consumer_lag_max_messages: int = 10_000
    """ConsumerLagGrowing above it (and growing); the lag panel turns amber above it."""
    consumer_lag_trend_window_s: int = 300
    data_stale_s: int = 30
    """DataStale when the newest event of a feed is older than this."""
    partition_stalled_s: int = 60
    """PartitionStalled when a partition has had lag without progress for longer."""
    dlq_ratio_max: float = 0.01
    """DeadLetterRateHigh when more than this share of a feed is dead-lettered."""
    dlq_rate_window_s: int = 300
    write_errors_window_s: int = 120
    """DatabaseWritesFailing / DeadLetterSendFailing: any failure within this window."""
    db_write_quantile: float = 0.99
    db_write_max_s: float = 1
    """DatabaseWritesSlow when the ``db_write_quantile`` batch write time is above it."""
    db_write_window_s: int = 120
    dependency_probe_timeout_s: float = 3.0
    """A stream worker probes the broker (a metadata request on its feed consumer) and the
    database (``SELECT 1`` on a connection of its own) every 5 s; no answer within this long:
    unreachable (``ioc_worker_dependency_up`` 0, StreamWorkerCannotReach*)."""
    kafka_rtt_max_s: float = 0.25
    """KafkaLatencyHigh when the p99 round trip of a worker's group-coordinator requests
    (heartbeats, offset commits) is above it."""
    portal_ontime_min: float = 0.9
    """PortalOnTimeRateLow when a unit resolves fewer of its dossiers on time than this over
    the last ``portal_ontime_days`` (Vietnam-time days, today included)."""
    portal_ontime_days: int = 7
    portal_ontime_min_resolved: int = 20
    """Fewer resolved dossiers in the window: no on-time ratio (too few to judge)."""
    portal_payment_success_min: float = 0.3
    """PortalPaymentsFailing when fewer online payments than this succeed over the last
    ``portal_payment_window_s`` (normal is about two in three: 6,283 of 9,549 in Dak Lak)."""
    portal_payment_window_s: int = 3600
    portal_payment_min_attempts: int = 10
    """Fewer attempts in the window: no success ratio (too few to judge)."""
    vconf_readiness_before_s: int = 15 * 60
    """Meeting readiness: expected bridge points that have not joined are listed from this
    long before a meeting's scheduled start (the panel); VconfPointNotJoined fires from the
    start on (its ``for:`` later)."""
    vconf_readiness_after_s: int = 30 * 60
    """... and until this long after the start."""
    vconf_ports_use_max: float = 1.0
    """VconfLicenceExhausted when a bridge uses this share of its licensed ports."""
    alerts: Mapping[str, AlertPolicy] = field(default_factory=_alert_policies)
    """Alert name -> ``for:`` and severity."""

    # --- dashboard colour steps for panels with no alert behind them ---
    online_ratio_target: float = 0.95
    """Online-share panels turn green from here (amber from ``camera_online_ratio_min``)."""
    network_reachable_low: float = 0.9
    network_reachable_target: float = 0.99
    freshness_warn_s: int = 10
    freshness_bad_s: int = 60
    consumer_lag_bad_messages: int = 100_000
    sessions_dropped_hour_bad: int = 10
    db_write_median_quantile: float = 0.5
    """The second line of the write-latency panel (the first is ``db_write_quantile``)."""
    portal_ontime_target: float = 0.968
    """Portal on-time panels turn green from here (amber from ``portal_ontime_min``)."""
    availability_warn_pct: float = 99.0
    availability_target_pct: float = 99.9
    """SLA dashboard: availability turns amber from ``availability_warn_pct``, green from here
    (an SLA object's own SLO is what the report judges against)."""


THRESHOLDS: Final = Thresholds()


def overridden(text: str) -> Thresholds:
    """:data:`THRESHOLDS` with the fields of the JSON object ``text`` replaced (the setting
    ``IOC_THRESHOLDS``); an empty text is :data:`THRESHOLDS` itself."""
    import dataclasses
    import json

    if not text.strip():
        return THRESHOLDS
    changes = json.loads(text)
    known = {f.name for f in dataclasses.fields(Thresholds)}
    if not isinstance(changes, dict) or not set(changes) <= known:
        raise ValueError(f"IOC_THRESHOLDS: expected an object of Thresholds fields, got {text!r}")
    return dataclasses.replace(THRESHOLDS, **changes)
