"""Kafka plumbing shared by every process: clear errors and idempotent topic creation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError

from ioc.config import Settings
from ioc.contract.topics import TopicSpec, all_topics
from ioc.errors import IocError, ServiceUnavailable
from ioc.kafka_clients import aiokafka_common


@dataclass
class TopicResult:
    name: str
    action: str  # created | exists | partitions-increased | configs-updated
    partitions: int


async def admin_client(settings: Settings, timeout: float = 10.0) -> AIOKafkaAdminClient:
    """A started admin client, or :class:`ServiceUnavailable` naming the broker."""
    admin = AIOKafkaAdminClient(**aiokafka_common(settings), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as exc:
        await admin.close()
        raise unreachable(settings, exc) from None
    return admin


def unreachable(settings: Settings, exc: BaseException) -> ServiceUnavailable:
    """The one-line error for a broker that does not answer, whichever client noticed."""
    return ServiceUnavailable(
        f"Kafka broker at {settings.bootstrap_servers} is unreachable "
        f"({exc or type(exc).__name__ + ': timed out'}); is the stack up? (`ioc stack up`)"
    )


def topic_configs(settings: Settings, spec: TopicSpec) -> dict[str, str]:
    """A topic's configs as created and kept: the spec's, with ``min.insync.replicas`` from
    the replication factor (2 of 3, so ``acks=all`` survives one broker down)."""
    return {**spec.configs(), "min.insync.replicas": str(settings.kafka_min_insync_replicas)}


async def ensure_topics(
    settings: Settings, specs: Iterable[TopicSpec] | None = None
) -> list[TopicResult]:
    """Create missing topics, grow partitions and align configs; safe to call repeatedly.
    Default: every topic of the contract, registered feeds' included (``all_topics()``)."""
    admin = await admin_client(settings)
    results: list[TopicResult] = []
    try:
        specs = list(all_topics() if specs is None else specs)
        existing = set(await admin.list_topics())
        missing = [s for s in specs if settings.topic(s.name) not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        settings.topic(s.name),
                        s.partitions,
                        settings.kafka_replication_factor,
                        topic_configs=topic_configs(settings, s),
                    )
                    for s in missing
                ]
            )
            _raise_topic_errors(response, "create")
            results += [
                TopicResult(settings.topic(s.name), "created", s.partitions) for s in missing
            ]
        present = [s for s in specs if s not in missing]
        if present:
            described = await admin.describe_topics([settings.topic(s.name) for s in present])
            partitions = {d["topic"]: len(d["partitions"]) for d in described}
            for spec in present:
                name = settings.topic(spec.name)
                have = partitions.get(name, 0)
                action = "exists"
                if have < spec.partitions:
                    await admin.create_partitions({name: NewPartitions(spec.partitions)})
                    action, have = "partitions-increased", spec.partitions
                await admin.alter_configs(
                    [
                        ConfigResource(
                            ConfigResourceType.TOPIC, name, configs=topic_configs(settings, spec)
                        )
                    ]
                )
                results.append(TopicResult(name, action, have))
    finally:
        await admin.close()
    return results


_TOPIC_ALREADY_EXISTS = 36


def _raise_topic_errors(response: object, action: str) -> None:
    """aiokafka returns per-topic error codes instead of raising; surface them."""
    errors = getattr(response, "topic_errors", None) or getattr(response, "topic_error_codes", [])
    problems = []
    for entry in errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else ""
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            problems.append(f"{name}: error {code} {message or ''}".strip())
    if problems:
        raise KafkaTopicError(f"cannot {action} topics: {'; '.join(problems)}")


class KafkaTopicError(IocError):
    pass


async def delete_topics(settings: Settings, names: list[str]) -> None:
    admin = await admin_client(settings)
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
