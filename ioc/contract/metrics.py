"""Prometheus metric names and labels, defined once.

Every process (workers, simulators, pager) creates its collectors from these specs
(:func:`ioc.observability.counter`, ``gauge``, ``histogram``: typed, one per metric type);
alert rules and dashboards build their expressions from the same names, so renaming a metric
here cannot leave a panel or an alert silently empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: str  # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def series(self) -> str:
        """The sample name Prometheus exposes (counters get ``_total``)."""
        return f"{self.name}_total" if self.type == "counter" else self.name

    @property
    def bucket_series(self) -> str:
        """A histogram's ``le`` buckets, for ``histogram_quantile``."""
        if self.type != "histogram":
            raise ValueError(f"{self.name} is a {self.type}, not a histogram")
        return f"{self.name}_bucket"


# --- pipeline health ---
EVENTS_CONSUMED = MetricSpec(
    "ioc_events_consumed", "counter", "Messages consumed from the feed topics", ("feed",)
)
EVENTS_WRITTEN = MetricSpec(
    "ioc_events_written",
    "counter",
    "Valid messages written to the raw tables (new rows)",
    ("feed",),
)
EVENTS_DUPLICATE = MetricSpec(
    "ioc_events_duplicate",
    "counter",
    "Valid messages already stored (replays, duplicates)",
    ("feed",),
)
DLQ_MESSAGES = MetricSpec(
    "ioc_dlq_messages", "counter", "Messages sent to the dead-letter topic", ("feed", "reason")
)
DLQ_SEND_ERRORS = MetricSpec(
    "ioc_dlq_send_errors",
    "counter",
    "Failed attempts to produce dead letters (the broker away; retried, never dropped)",
    ("feed",),
)
PARTITION_STALLED = MetricSpec(
    "ioc_partition_stalled_seconds",
    "gauge",
    "Seconds a feed partition owned by this worker has had lag without progress (0: none)",
    ("feed", "partition"),
)
BATCH_SIZE = MetricSpec(
    "ioc_batch_size",
    "histogram",
    "Messages per processed batch",
    ("feed",),
    (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
DB_WRITE_SECONDS = MetricSpec(
    "ioc_db_write_seconds",
    "histogram",
    "Time to write one batch to TimescaleDB",
    ("feed",),
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_WRITE_ERRORS = MetricSpec(
    "ioc_db_write_errors",
    "counter",
    "Transient batch write failures (retried until they succeed)",
    ("feed",),
)
CONSUMER_LAG = MetricSpec(
    "ioc_consumer_lag_messages",
    "gauge",
    "Messages behind the end of the feed topic",
    ("feed", "partition"),
)
EVENT_FRESHNESS = MetricSpec(
    "ioc_event_freshness_seconds",
    "gauge",
    "Now minus the newest event time written, per feed",
    ("feed",),
)
LAST_WRITE = MetricSpec(
    "ioc_last_successful_write_timestamp_seconds",
    "gauge",
    "Unix time of the last successful batch write",
    ("feed",),
)
WORKER_UP = MetricSpec("ioc_worker_up", "gauge", "1 while a stream worker runs", ("worker",))
DEPENDENCY_UP = MetricSpec(
    "ioc_worker_dependency_up",
    "gauge",
    "1 while the stream worker's latest probe of a dependency (kafka: a metadata request on "
    "its feed consumer; database: SELECT 1 on a connection of its own) was answered within "
    "Thresholds.dependency_probe_timeout_s, 0 when it was not; probed every 5 s",
    ("worker", "dependency"),
)
DEPENDENCY_KAFKA: Final = "kafka"
DEPENDENCY_DATABASE: Final = "database"
"""The ``dependency`` label values of :data:`DEPENDENCY_UP`."""
KAFKA_RTT = MetricSpec(
    "ioc_worker_kafka_rtt_seconds",
    "gauge",
    "p99 round trip of the stream worker's group-coordinator requests (heartbeats, offset "
    "commits) over librdkafka's last statistics interval; absent when none completed (fetches "
    "are left out: they wait at the broker for data)",
    ("worker",),
)
ROLLUP_SECONDS = MetricSpec(
    "ioc_rollup_seconds",
    "histogram",
    "Time to recompute one dirty minute of rollups",
    ("feed",),
    (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVALUATION_SECONDS = MetricSpec(
    "ioc_state_evaluation_seconds",
    "histogram",
    "Time of one device-state evaluation round",
    (),
    (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

SHARD_LEADER = MetricSpec(
    "ioc_shard_leader",
    "gauge",
    "1 while this worker runs the shard's singleton work (state evaluation, retention)",
    ("shard",),
)
DEVICE_EVENTS_PUBLISHED = MetricSpec(
    "ioc_device_events_published",
    "counter",
    "Device-state transitions published from the evaluation's outbox to ioc.device-events.v1",
)
DEVICE_EVENTS_RESTATED = MetricSpec(
    "ioc_device_events_restated",
    "counter",
    "Devices whose current state the leader published again because the incident agent had "
    "not applied their last transition within the grace period (ioc.streams.evaluator)",
)
INCIDENT_EVENTS = MetricSpec(
    "ioc_incident_events",
    "counter",
    "Incident lifecycle events the incident agent published to ioc.incidents.v1",
    ("event",),
)
INCIDENT_COMMANDS = MetricSpec(
    "ioc_incident_commands",
    "counter",
    "Operator commands on incidents the incident agent took (applied, no-op or rejected)",
    ("action", "result"),
)

# --- domain (exported by the leader worker; bounded labels) ---
DEVICES_BY_STATE = MetricSpec(
    "ioc_devices",
    "gauge",
    "Devices by class, state and top-level unit",
    ("device_class", "state", "unit"),
)
OPEN_INCIDENTS = MetricSpec(
    "ioc_open_incidents", "gauge", "Open incidents by kind and severity", ("kind", "severity")
)
TELEHEALTH_SESSIONS = MetricSpec(
    "ioc_telehealth_sessions_active", "gauge", "Telehealth sessions in progress", ("unit",)
)
CAMERA_ONLINE_RATIO = MetricSpec(
    "ioc_camera_online_ratio",
    "gauge",
    "Cameras up / cameras, per unit (every level)",
    ("unit", "unit_name", "level"),
)
PORTAL_ONTIME_RATIO = MetricSpec(
    "ioc_portal_ontime_ratio",
    "gauge",
    "Portal dossiers resolved on time / resolved, per unit (every level), over the last "
    "Thresholds.portal_ontime_days days (Vietnam time); absent with too few resolved",
    ("unit", "unit_name", "level"),
)
PORTAL_PAYMENT_SUCCESS_RATIO = MetricSpec(
    "ioc_portal_payment_success_ratio",
    "gauge",
    "Online payments succeeded / attempted, per unit (every level), over the last "
    "Thresholds.portal_payment_window_s (event time); absent with too few attempts",
    ("unit", "unit_name", "level"),
)
DEVICE_DOWN = MetricSpec(
    "ioc_device_down",
    "gauge",
    "1 per device that is down (not unreachable-upstream); only down devices have a series",
    ("device_id", "device_class", "unit", "site", "upstream_node"),
)
SITE_ISOLATED = MetricSpec(
    "ioc_site_isolated",
    "gauge",
    "Devices cut off behind a node that is down; one series per down node",
    ("node_id", "unit", "site", "upstream_node", "region", "province"),
)
DEVICE_FLAPPING = MetricSpec(
    "ioc_device_flapping",
    "gauge",
    "1 per device or node that is flapping (down again and again); only those have a series",
    ("device_id", "device_class", "unit", "site", "upstream_node", "region", "province"),
)
STREAM_WORKERS_DESIRED = MetricSpec(
    "ioc_stream_workers_desired",
    "gauge",
    "How many stream workers the deployment runs (IOC_WORKERS_DESIRED): StreamWorkerDown "
    "compares the workers up with it",
    (),
)
DEVICE_DEGRADED = MetricSpec(
    "ioc_device_degraded",
    "gauge",
    "1 per degraded device with the reason; only degraded devices have a series",
    ("device_id", "device_class", "unit", "site", "reason", "upstream_node"),
)
TELEHEALTH_SESSIONS_DROPPED = MetricSpec(
    "ioc_telehealth_sessions_dropped",
    "counter",
    "Telehealth sessions that ended by dropping, per top-level unit",
    ("unit",),
)
VCONF_POINT_NOT_JOINED = MetricSpec(
    "ioc_vconf_point_not_joined",
    "gauge",
    "Seconds since the scheduled start (negative before it) per expected bridge point that "
    "has not joined a meeting in its readiness window, with the cause (meeting readiness)",
    (
        "meeting_id",
        "meeting_title",
        "device_id",
        "unit",
        "unit_name",
        "site",
        "cause",
        "cause_device",
        "upstream_node",
    ),
)
VCONF_MEETING_POINTS = MetricSpec(
    "ioc_vconf_meeting_points",
    "gauge",
    "Bridge points of a meeting in its readiness window: expected, joined, not joined",
    ("meeting_id", "meeting_title", "state"),
)
VCONF_BRIDGE_PORTS_USED = MetricSpec(
    "ioc_vconf_bridge_ports_used",
    "gauge",
    "Ports (participants) in use on a bridge that is up, from its latest colibri stats",
    ("device_id",),
)
VCONF_BRIDGE_PORTS_LICENSED = MetricSpec(
    "ioc_vconf_bridge_ports_licensed",
    "gauge",
    "Licensed ports of a bridge that is up, from its latest colibri stats",
    ("device_id",),
)
VCONF_BRIDGE_STRESS = MetricSpec(
    "ioc_vconf_bridge_stress",
    "gauge",
    "Jitsi stress_level of a bridge that is up (1 = at its configured load limit)",
    ("device_id",),
)

# --- pager (Alertmanager webhook receiver) ---
PAGER_PAGES = MetricSpec(
    "ioc_pager_pages",
    "counter",
    "Pages recorded (new alert/status pairs)",
    ("alertname", "status", "severity"),
)
PAGER_DUPLICATES = MetricSpec(
    "ioc_pager_duplicates", "counter", "Notifications of pages already recorded"
)
PAGER_REJECTED = MetricSpec(
    "ioc_pager_rejected_requests", "counter", "Requests refused", ("reason",)
)
PAGER_DELIVERIES = MetricSpec(
    "ioc_pager_deliveries", "counter", "Forwarding attempts per channel", ("channel", "result")
)
PAGER_REQUEST_SECONDS = MetricSpec(
    "ioc_pager_request_seconds", "histogram", "Webhook handling time"
)

# --- operations service (API, console) ---
OPS_REQUESTS = MetricSpec(
    "ioc_ops_requests",
    "counter",
    "Requests answered by the operations service, per route template and status",
    ("method", "route", "status"),
)
OPS_REQUEST_SECONDS = MetricSpec(
    "ioc_ops_request_seconds",
    "histogram",
    "Operations service request handling time, per route template",
    ("method", "route"),
)

# --- simulators ---
SIM_SENT = MetricSpec(
    "ioc_simulator_records_sent", "counter", "Records the simulators delivered to Kafka"
)
SIM_ERRORS = MetricSpec(
    "ioc_simulator_delivery_errors", "counter", "Records Kafka refused to the simulators"
)

# --- collectors of real sources (ioc collect) ---
COLLECT_REQUESTS = MetricSpec(
    "ioc_collector_requests",
    "counter",
    "Requests a collector sent to devices (ICMP echo requests, SNMP get/getbulk requests, "
    "HTTP GETs, RTSP OPTIONS)",
    ("protocol",),
)
COLLECT_REPLIES = MetricSpec(
    "ioc_collector_replies",
    "counter",
    "Replies matched to a collector's requests",
    ("protocol",),
)
COLLECT_TIMEOUTS = MetricSpec(
    "ioc_collector_timeouts",
    "counter",
    "Requests that got no reply within the feed's collection timeout (or an ICMP error)",
    ("protocol",),
)
COLLECT_ROUND_SECONDS = MetricSpec(
    "ioc_collector_round_seconds",
    "histogram",
    "Time from the start of a collection round to the last target's result, per message kind",
    ("kind",),
    (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 15, 30, 60),
)
COLLECT_TARGETS = MetricSpec(
    "ioc_collector_targets",
    "gauge",
    "Targets this collector (its shard) polls",
    ("protocol",),
)
COLLECT_MESSAGES = MetricSpec(
    "ioc_collector_messages", "counter", "Messages a collector produced", ("kind",)
)
COLLECT_POLLS = MetricSpec(
    "ioc_collector_polls",
    "counter",
    "Polls a collector started, one per target per round (an ICMP probe, an SNMP walk, an "
    "HTTP GET, an RTSP stream sample)",
    ("protocol",),
)
COLLECT_ERRORS = MetricSpec(
    "ioc_collector_errors",
    "counter",
    "Polls or samples a collector could not turn into messages, by reason (bounded sets: "
    "ioc.services.collect.snmp.REASONS, ioc.services.collect.httppoll.REASONS, "
    "ioc.services.collect.rtsp.REASONS), and records its spool could not write "
    '(protocol="spool", reason="write_failed")',
    ("protocol", "reason"),
)
COLLECT_TRAPS = MetricSpec(
    "ioc_collector_traps",
    "counter",
    "SNMP notifications received, by outcome (link: turned into netnode.link; else the reason "
    "it was not, ioc.services.collect.traps.OUTCOMES)",
    ("outcome",),
)
COLLECT_SPOOL_RECORDS = MetricSpec(
    "ioc_collector_spool_records",
    "gauge",
    "Records in the collector's disk spool not yet acknowledged by Kafka",
)
COLLECT_SPOOL_BYTES = MetricSpec(
    "ioc_collector_spool_bytes", "gauge", "Bytes of the collector's disk spool"
)
COLLECT_SPOOL_DROPPED = MetricSpec(
    "ioc_collector_spool_dropped",
    "counter",
    "Records the collector's full disk spool dropped (its oldest) before Kafka took them",
)

ALL_METRICS: Final = (
    EVENTS_CONSUMED,
    EVENTS_WRITTEN,
    EVENTS_DUPLICATE,
    DLQ_MESSAGES,
    DLQ_SEND_ERRORS,
    PARTITION_STALLED,
    BATCH_SIZE,
    DB_WRITE_SECONDS,
    DB_WRITE_ERRORS,
    CONSUMER_LAG,
    EVENT_FRESHNESS,
    LAST_WRITE,
    WORKER_UP,
    DEPENDENCY_UP,
    KAFKA_RTT,
    ROLLUP_SECONDS,
    EVALUATION_SECONDS,
    SHARD_LEADER,
    DEVICE_EVENTS_PUBLISHED,
    DEVICE_EVENTS_RESTATED,
    INCIDENT_EVENTS,
    INCIDENT_COMMANDS,
    DEVICES_BY_STATE,
    OPEN_INCIDENTS,
    TELEHEALTH_SESSIONS,
    CAMERA_ONLINE_RATIO,
    PORTAL_ONTIME_RATIO,
    PORTAL_PAYMENT_SUCCESS_RATIO,
    DEVICE_DOWN,
    SITE_ISOLATED,
    DEVICE_FLAPPING,
    STREAM_WORKERS_DESIRED,
    DEVICE_DEGRADED,
    TELEHEALTH_SESSIONS_DROPPED,
    VCONF_POINT_NOT_JOINED,
    VCONF_MEETING_POINTS,
    VCONF_BRIDGE_PORTS_USED,
    VCONF_BRIDGE_PORTS_LICENSED,
    VCONF_BRIDGE_STRESS,
    PAGER_PAGES,
    PAGER_DUPLICATES,
    PAGER_REJECTED,
    PAGER_DELIVERIES,
    PAGER_REQUEST_SECONDS,
    OPS_REQUESTS,
    OPS_REQUEST_SECONDS,
    SIM_SENT,
    SIM_ERRORS,
    COLLECT_REQUESTS,
    COLLECT_REPLIES,
    COLLECT_TIMEOUTS,
    COLLECT_ROUND_SECONDS,
    COLLECT_TARGETS,
    COLLECT_MESSAGES,
    COLLECT_POLLS,
    COLLECT_ERRORS,
    COLLECT_TRAPS,
    COLLECT_SPOOL_RECORDS,
    COLLECT_SPOOL_BYTES,
    COLLECT_SPOOL_DROPPED,
)
