"""Kafka topics of the product, declared once; `ioc topics create` makes them.

Keys are device ids on every feed topic, so one device's messages keep their order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ioc.contract.deadletter import TOPIC_MAX_MESSAGE_BYTES

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    cleanup_policy: str = "delete"
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **self.extra,
        }


CAMERA = TopicSpec("ioc.camera.v1", 6, 2 * DAY_MS, description="camera telemetry and events")
TELEHEALTH = TopicSpec(
    "ioc.telehealth.v1",
    6,
    2 * DAY_MS,
    description="telehealth station heartbeats, sessions and quality",
)
NETNODE = TopicSpec(
    "ioc.netnode.v1",
    6,
    2 * DAY_MS,
    description="network-node probes, interface counters, link state",
)
DEAD_LETTER = TopicSpec(
    "ioc.deadletter.v1",
    2,
    14 * DAY_MS,
    cleanup_policy="compact,delete",
    description="messages that failed validation or storage, with the reason; keyed by source "
    "topic/partition/offset, so a batch replayed after a crash collapses",
    extra={"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)},
)
FAULT_LOG = TopicSpec(
    "ioc.faults.v1",
    1,
    14 * DAY_MS,
    description="faults injected by the simulators (start/end), for tests",
)

FEED_TOPICS: dict[str, TopicSpec] = {}
"""Feed -> its topic (``FeedSpec.topic``; kept in step with the feed registry)."""
DEVICE_EVENTS = TopicSpec(
    "ioc.device-events.v1",
    6,
    14 * DAY_MS,
    description="device-state transitions (from the evaluation's outbox) and operator commands "
    "on incidents; keyed by the network node a device depends on (ioc.contract.events)",
)
INCIDENT_EVENTS = TopicSpec(
    "ioc.incidents.v1",
    6,
    30 * DAY_MS,
    description="incident lifecycle (opened, acknowledged, assigned, commented, resolved), "
    "published by the incident agent; keyed like ioc.device-events.v1, in order per root cause",
)

# Faust's own topics (the stream workers' app): declared here so that bootstrap creates them
# with the deployment's replication factor, instead of Faust creating them at first start.
STREAMS_APP_ID = "ioc-streams"
"""The stream workers' Faust app id (after the namespace prefix) and consumer group."""
OPEN_INCIDENTS_TABLE = "open-incidents"
"""The incident agent's table: open incidents and the last transition applied, per key."""
OPEN_INCIDENTS_CHANGELOG = TopicSpec(
    f"{STREAMS_APP_ID}-{OPEN_INCIDENTS_TABLE}-changelog",
    DEVICE_EVENTS.partitions,  # co-partitioned with the stream that updates the table
    -1,
    cleanup_policy="compact",
    description="changelog of the incident agent's table: restores it after a rebalance",
)
FAUST_LEADER = TopicSpec(
    f"{STREAMS_APP_ID}-__assignor-__leader",
    1,
    DAY_MS,
    description="Faust's assignor leader topic (unused by the project's own singleton work, "
    "which ioc.streams.leader elects in the database)",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    CAMERA,
    TELEHEALTH,
    NETNODE,
    DEAD_LETTER,
    FAULT_LOG,
    DEVICE_EVENTS,
    INCIDENT_EVENTS,
    OPEN_INCIDENTS_CHANGELOG,
    FAUST_LEADER,
)


def all_topics() -> tuple[TopicSpec, ...]:
    """What bootstrap creates: :data:`ALL_TOPICS` and the topic of every registered feed."""
    return (*ALL_TOPICS, *(t for t in FEED_TOPICS.values() if t not in ALL_TOPICS))
