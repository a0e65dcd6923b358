"""Who may do what on Kafka: one principal per service, and the topics and groups it needs.

The local stack creates a SCRAM user per principal (ioc.deploy.local.credentials); bootstrap
grants each one the ACLs derived here, per namespace (topic prefix); the admin principal is a
super user (bootstrap, tools, tests).

:func:`kafka_acls` derives the grants from the contract (:mod:`ioc.contract.topics`, the feed
registry, the consumer groups), so a newly registered feed is covered without an edit here.
What each process does on Kafka, read from its code:

- worker (``ioc worker``, :mod:`ioc.streams.app`): the feed consumer (librdkafka, group
  ``{prefix}ioc-streams-feeds``) reads every feed topic; Faust (group and app id
  ``{prefix}ioc-streams``) reads the device events (incident agent), the open-incidents
  changelog (table recovery) and its assignor leader topic, and writes the dead letters,
  device events (the evaluator's outbox relay), incident events and the changelog;
  :func:`ioc.bootstrap.verify` checks that every contract topic exists (metadata, so
  Describe on the fault log too). Faust declares its changelog and leader topics at start:
  it skips the CreateTopics request when its producer's metadata already lists the topic,
  which is not always so at start; refused, the request fails the worker, allowed, it gets
  "topic already exists" (bootstrap created them). Hence Create on those two names only.
- simulator (``ioc simulate``, :mod:`ioc.sinks`): an idempotent producer to the
  feed topics and the fault log; its admin client only lists topics (metadata).
- ops (``ioc ops serve``, :mod:`ioc.services.incidents`): writes operator commands to the
  device events, reads the incident events without a consumer group (``group_id=None``,
  nothing committed).
- pager (``ioc pager``, :class:`ioc.services.incidents.IncidentFollower`): reads the
  incident events without a consumer group.
- collector (``ioc collect``, :class:`ioc.services.collect.spool.SpoolingSink`): an
  idempotent producer to the feed topics (what real devices answered), nothing else: unlike
  the simulator it injects no faults, so it may not write the fault log, and a collector
  installed at a province's edge cannot read anything back. With per-province topics, a
  province's collector (``ioc collect --province``) writes as that province's user instead.

With per-province feed topics (``IOC_KAFKA_PROVINCE_TOPICS``, docs/scaling.md), each
province's producer is its own user, ``ioc-p-<code>`` (:func:`province_user`), allowed to
Write the PREFIXED resource ``{prefix}ioc.p.<code>.`` and nothing else
(:func:`province_acls`), with a producer quota (:data:`PROVINCE_QUOTAS`) so that one
province's burst cannot starve the others; the worker reads the PREFIXED ``{prefix}ioc.p.``
(its feed consumer subscribes by pattern), and the simulator, which stands in for every
province's producers at once, writes it (one producer, not 34: the load generator's CPU is
what limits the benchmarks, docs/scaling.md).

Kafka implies Describe from Read or Write on a topic (metadata, offsets) and Describe from
Read on a group; an idempotent producer needs nothing beyond Write on a topic (KIP-679,
Kafka >= 3.2), so the grants are Read and Write, Describe where only metadata is needed, and
the worker's Create above. No service deletes or alters topics, creates any other, or writes
a topic it only reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

ADMIN_USER = "ioc"
"""Super user: bootstrap (topics, ACLs), operators' tools (dead-letter replay, restore), tests."""

SERVICE_USERS: dict[str, str] = {
    "worker": "ioc-worker",  # `ioc worker`: feed consumers, DLQ, outbox relay, Faust agents
    "simulator": "ioc-simulator",  # `ioc simulate`: writes feed topics and the fault log
    "ops": "ioc-ops",  # operations service: operator commands, incident stream
    "pager": "ioc-pager",  # `ioc pager`: follows the incident stream
    "collector": "ioc-collector",  # `ioc collect`: writes what real devices answer
}
"""Service -> its Kafka user."""

KAFKA_USERS: tuple[str, ...] = (ADMIN_USER, *SERVICE_USERS.values())
"""Every SCRAM user the local stack creates."""

PROVINCE_USER_PREFIX = "ioc-p-"
"""A province's producer is ``ioc-p-<code>`` (:func:`province_user`)."""

PROVINCE_QUOTAS: dict[str, float] = {
    # Per user and per broker. A province's devices send well under 1 MiB/s (the largest
    # province of the national scenario, 11,340 devices, about 0.5 MiB/s of lz4-compressed
    # batches); twice that leaves room for a collector's spool replay after an outage, which
    # the quota stretches out instead of letting it crowd out the other provinces.
    "producer_byte_rate": float(2 << 20),
    # the share of one broker's request handler threads the user's requests may take
    "request_percentage": 10.0,
}
"""The client quotas (Kafka's names) of every province's user."""

ResourceType = Literal["TOPIC", "GROUP"]
PatternType = Literal["LITERAL", "PREFIXED"]
Operation = Literal["READ", "WRITE", "DESCRIBE", "CREATE"]


@dataclass(frozen=True, order=True)
class AclGrant:
    """One ALLOW ACL from any host: ``principal`` may ``operation`` on the resource."""

    principal: str  # "User:ioc-worker"
    resource_type: ResourceType
    name: str
    pattern: PatternType
    operation: Operation

    @property
    def user(self) -> str:
        return self.principal.removeprefix("User:")


def principal(service: str) -> str:
    """The Kafka principal of a service (a key of :data:`SERVICE_USERS`)."""
    return f"User:{SERVICE_USERS[service]}"


def province_user(province: str) -> str:
    """The Kafka user of a province's producers (its collectors at the province's edge)."""
    from ioc.contract.topics import province_prefix

    province_prefix(province)  # the code must be usable in names: same check as the topic's
    return f"{PROVINCE_USER_PREFIX}{province}"


def province_acls(prefix: str, provinces: Iterable[str]) -> list[AclGrant]:
    """Each province's user: Write on its PREFIXED topics ``{prefix}ioc.p.<code>.``, nothing
    else (Describe is implied; no read, no group, no other province's topics), sorted."""
    from ioc.contract.topics import province_prefix

    return sorted(
        AclGrant(
            f"User:{province_user(code)}",
            "TOPIC",
            f"{prefix}{province_prefix(code)}",
            "PREFIXED",
            "WRITE",
        )
        for code in set(provinces)
    )


def feeds_group(prefix: str) -> str:
    """The worker's feed consumers' group (:func:`ioc.streams.consumer.consumer_group`)."""
    return f"{prefix}ioc-streams-feeds"


def streams_group(prefix: str) -> str:
    """Faust's app id, which is its consumer group (:func:`ioc.streams.app.build_app`)."""
    from ioc.contract.topics import STREAMS_APP_ID

    return f"{prefix}{STREAMS_APP_ID}"


def _needs() -> dict[str, list[tuple[ResourceType, str, Operation]]]:
    """Per service: (resource type, name without the namespace prefix, operation)."""
    import ioc.contract.feeds  # noqa: F401  (fills FEED_TOPICS with the registered feeds)
    from ioc.contract import topics as t

    feeds = [spec.name for spec in t.FEED_TOPICS.values()]

    def topic(op: Operation, *names: str) -> list[tuple[ResourceType, str, Operation]]:
        return [("TOPIC", name, op) for name in names]

    read_or_written = {
        *feeds,
        t.DEAD_LETTER.name,
        t.DEVICE_EVENTS.name,
        t.INCIDENT_EVENTS.name,
        t.OPEN_INCIDENTS_CHANGELOG.name,
        t.FAUST_LEADER.name,
    }
    # `ioc worker` verifies that every topic bootstrap makes exists: metadata only.
    described = [s.name for s in t.all_topics() if s.name not in read_or_written]
    return {
        "worker": [
            *topic("READ", *feeds),
            *topic("WRITE", t.DEAD_LETTER.name),
            *topic("READ", t.DEVICE_EVENTS.name),
            *topic("WRITE", t.DEVICE_EVENTS.name),
            *topic("WRITE", t.INCIDENT_EVENTS.name),
            *topic("READ", t.OPEN_INCIDENTS_CHANGELOG.name),
            *topic("WRITE", t.OPEN_INCIDENTS_CHANGELOG.name),
            *topic("READ", t.FAUST_LEADER.name),
            # Faust declares these at start: "exists" needs Create (see the module's doc)
            *topic("CREATE", t.OPEN_INCIDENTS_CHANGELOG.name, t.FAUST_LEADER.name),
            *topic("DESCRIBE", *described),
            ("GROUP", feeds_group(""), "READ"),
            ("GROUP", streams_group(""), "READ"),
        ],
        "simulator": topic("WRITE", *feeds, t.FAULT_LOG.name),
        "ops": [
            *topic("WRITE", t.DEVICE_EVENTS.name),
            *topic("READ", t.INCIDENT_EVENTS.name),
        ],
        "pager": topic("READ", t.INCIDENT_EVENTS.name),
        "collector": topic("WRITE", *feeds),
    }


_PROVINCE_TOPIC_NEEDS: dict[str, Operation] = {"worker": "READ", "simulator": "WRITE"}
"""With per-province topics: the services that read or write all of them, through the
PREFIXED resource ``{prefix}ioc.p.`` (a province created later is covered)."""


def kafka_acls(
    prefix: str = "", services: Iterable[str] | None = None, *, province_topics: bool = False
) -> list[AclGrant]:
    """The least set of ACLs the services need in the namespace ``prefix`` (each resource
    named literally, the prefix included), sorted; ``services``: a subset of
    :data:`SERVICE_USERS` (default all). ``province_topics``: the per-province feed topics
    are on (``IOC_KAFKA_PROVINCE_TOPICS``): the worker may also read, and the simulator
    write, the PREFIXED resource ``{prefix}ioc.p.``; the provinces' own users are
    :func:`province_acls`."""
    from ioc.contract.topics import PROVINCE_TOPIC_PREFIX

    needs = _needs()
    wanted = list(SERVICE_USERS) if services is None else list(services)
    grants = {
        AclGrant(principal(service), kind, f"{prefix}{name}", "LITERAL", op)
        for service in wanted
        for kind, name, op in needs[service]
    }
    if province_topics:
        grants |= {
            AclGrant(
                principal(service), "TOPIC", f"{prefix}{PROVINCE_TOPIC_PREFIX}", "PREFIXED", op
            )
            for service, op in _PROVINCE_TOPIC_NEEDS.items()
            if service in wanted
        }
    return sorted(grants)


def acl_table(prefix: str = "", *, province_topics: bool = False) -> str:
    """The grants as a Markdown table, one row per (service, resource) (docs/security.md);
    a PREFIXED resource is written ``name*``."""
    rows = ["| Service (user) | Resource | Operations |", "|---|---|---|"]
    for service, user in SERVICE_USERS.items():
        ops: dict[tuple[str, str], list[str]] = {}
        for grant in kafka_acls(prefix, [service], province_topics=province_topics):
            name = f"{grant.name}*" if grant.pattern == "PREFIXED" else grant.name
            ops.setdefault((grant.resource_type, name), []).append(grant.operation)
        for (kind, name), allowed in sorted(ops.items()):
            rows.append(
                f"| {service} (`{user}`) | {kind.lower()} `{name}` | {', '.join(sorted(allowed))} |"
            )
    return "\n".join(rows)
