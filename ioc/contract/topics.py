"""Kafka topics of the product, declared once; `ioc topics create` makes them.

Keys are device ids on every feed topic, so one device's messages keep their order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ioc.contract.deadletter import TOPIC_MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from ioc.contract.topology import Topology

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


# --- per-province feed topics (docs/scaling.md, "Kafka topic layout for many provinces") ----
# Opt-in (IOC_KAFKA_PROVINCE_TOPICS): beside each shared feed topic, one topic per feed per
# province of the scenario, so that a province's own producer (its Kafka user may write the
# PREFIXED resource ``ioc.p.<code>.`` only, ioc.contract.access) cannot write another
# province's devices: a Kafka ACL matches topics, never keys.
PROVINCE_TOPIC_PREFIX = "ioc.p."
"""Every per-province feed topic starts with this (after the namespace prefix)."""
PROVINCE_PARTITIONS = 2
"""Partitions of each per-province feed topic: 34 provinces x 6 feeds x 2 = 408 partitions,
within what three brokers carry; one province's devices fit two partitions' rate."""
_PROVINCE_CODE = re.compile(r"^[A-Za-z0-9_-]+$")


class ProvinceTopicError(ValueError):
    """A unit code that cannot name a per-province topic (a topic name holds letters, digits,
    ``_`` and ``-`` there; no ``.``, which separates the parts)."""


def _feed_part(spec: TopicSpec) -> str:
    """What follows the province in a feed's per-province topic: the shared topic's name
    without its leading ``ioc.`` (``ioc.camera.v1`` -> ``camera.v1``)."""
    return spec.name.removeprefix("ioc.")


def province_prefix(province: str) -> str:
    """The PREFIXED resource of one province's topics, ``ioc.p.<code>.`` (no namespace)."""
    if not _PROVINCE_CODE.match(province):
        raise ProvinceTopicError(
            f"province code {province!r} cannot name a Kafka topic: letters, digits, '_' and "
            "'-' only"
        )
    return f"{PROVINCE_TOPIC_PREFIX}{province}."


def province_topic(feed_topic: TopicSpec, province: str) -> TopicSpec:
    """The per-province topic of a feed (``ioc.camera.v1``, ``15`` -> ``ioc.p.15.camera.v1``):
    the feed topic's retention and configs, :data:`PROVINCE_PARTITIONS` partitions."""
    return TopicSpec(
        f"{province_prefix(province)}{_feed_part(feed_topic)}",
        PROVINCE_PARTITIONS,
        feed_topic.retention_ms,
        cleanup_policy=feed_topic.cleanup_policy,
        description=f"{feed_topic.description} of province {province} (its own producer)",
        extra=dict(feed_topic.extra),
    )


def province_topics(topology: Topology) -> tuple[TopicSpec, ...]:
    """Every per-province feed topic of a scenario: each registered feed for each of its
    provinces (:meth:`Topology.top_units`), by province then feed."""
    return tuple(
        province_topic(spec, province)
        for province in topology.top_units()
        for spec in FEED_TOPICS.values()
    )


def _regex_literal(text: str) -> str:
    """``text`` matched literally by librdkafka's regex engine: a topic name's only special
    character is ``.`` (names hold letters, digits, ``.``, ``_``, ``-``)."""
    return text.replace(".", r"\.")


def province_topic_pattern(prefix: str, feed_topic: TopicSpec) -> str:
    """The subscription pattern of a feed's per-province topics in the namespace ``prefix``
    (``^ioc\\.p\\.[^.]+\\.camera\\.v1$``): librdkafka treats a topic starting with ``^`` as
    a regex and picks up a topic created later (a new province) at its next metadata refresh,
    without a restart."""
    return (
        f"^{_regex_literal(prefix + PROVINCE_TOPIC_PREFIX)}[^.]+\\."
        f"{_regex_literal(_feed_part(feed_topic))}$"
    )


def parse_province_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """(province, feed) of a physical per-province feed topic of the namespace ``prefix``,
    None for any other topic (a shared one, another namespace's, an unregistered feed's)."""
    head = prefix + PROVINCE_TOPIC_PREFIX
    if not topic.startswith(head):
        return None
    province, dot, rest = topic[len(head) :].partition(".")
    if not dot or not _PROVINCE_CODE.match(province):
        return None
    for feed, spec in FEED_TOPICS.items():
        if _feed_part(spec) == rest:
            return province, feed
    return None
