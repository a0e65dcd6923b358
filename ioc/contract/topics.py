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

FEED_TOPICS: dict[str, TopicSpec] = {
    "camera": CAMERA,
    "telehealth": TELEHEALTH,
    "netnode": NETNODE,
}
ALL_TOPICS: tuple[TopicSpec, ...] = (CAMERA, TELEHEALTH, NETNODE, DEAD_LETTER, FAULT_LOG)
