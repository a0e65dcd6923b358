"""Kafka plumbing shared by every process: clear errors, idempotent topic creation and the
services' ACLs (:mod:`ioc.contract.access`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError

from ioc.config import Settings
from ioc.contract.access import SERVICE_USERS, AclGrant, kafka_acls
from ioc.contract.topics import TopicSpec, all_topics
from ioc.errors import IocError, ServiceUnavailable
from ioc.kafka_clients import aiokafka_common, librdkafka_admin

log = logging.getLogger(__name__)


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


# --- ACLs (confluent-kafka's AdminClient: aiokafka's has no ACL requests) ---------------------
class KafkaAclError(IocError):
    pass


@dataclass
class AclResult:
    created: int
    """Grants added now."""
    present: int
    """Grants that were there already."""
    enabled: bool = True
    """False: the cluster has no authorizer (nothing was done)."""


_ACL_TIMEOUT_S = 30.0


def _binding(grant: AclGrant) -> Any:
    # Public API of confluent_kafka.admin, re-exported without `__all__` (mypy's
    # no-implicit-reexport): hence the ignores, as in ioc.deploy.local.kafka_broker.
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBinding(
        ResourceType[grant.resource_type],
        grant.name,
        ResourcePatternType[grant.pattern],
        grant.principal,
        "*",
        AclOperation[grant.operation],
        AclPermissionType.ALLOW,
    )


def _grant(binding: Any) -> AclGrant | None:
    """A binding as an :class:`AclGrant`, or None for one the project never makes (deny,
    one host, another resource type or operation)."""
    if binding.permission_type.name != "ALLOW" or binding.host != "*":
        return None
    kind, pattern, op = binding.restype.name, binding.resource_pattern_type.name, binding.operation
    if kind not in ("TOPIC", "GROUP") or pattern not in ("LITERAL", "PREFIXED"):
        return None
    if op.name not in ("READ", "WRITE", "DESCRIBE", "CREATE"):
        return None
    return AclGrant(binding.principal, kind, binding.name, pattern, op.name)


def _security_disabled(exc: BaseException) -> bool:
    from confluent_kafka import KafkaError

    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() == KafkaError.SECURITY_DISABLED


def _acl_failure(settings: Settings, action: str, exc: BaseException) -> IocError:
    from confluent_kafka import KafkaError

    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError) and error.code() == KafkaError._TRANSPORT:
        return unreachable(settings, exc)
    return KafkaAclError(
        f"cannot {action} the services' Kafka ACLs on {settings.bootstrap_servers} as "
        f"{settings.kafka_sasl_username or 'the anonymous user'}: {exc} (bootstrap needs an "
        "admin, a super user of the cluster's authorizer)"
    )


def _service_grants(settings: Settings, admin: Any) -> list[AclGrant] | None:
    """Every ACL of the services' principals on the cluster; None without an authorizer."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    found: list[AclGrant] = []
    for user in SERVICE_USERS.values():
        any_name: Any = None  # None matches any name or host (the stubs say str)
        query = AclBindingFilter(
            ResourceType.ANY,
            any_name,
            ResourcePatternType.ANY,
            f"User:{user}",
            any_name,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        try:
            bindings = admin.describe_acls(query, request_timeout=_ACL_TIMEOUT_S).result()
        except Exception as exc:
            if _security_disabled(exc):
                return None
            raise _acl_failure(settings, "read", exc) from None
        found += [g for g in (_grant(b) for b in bindings) if g is not None]
    return found


def _ensure_acls(settings: Settings) -> AclResult:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(librdkafka_admin(settings))
    present = _service_grants(settings, admin)
    if present is None:
        log.info(
            "Kafka at %s has no authorizer: no ACLs granted (every authenticated client may "
            "do anything)",
            settings.bootstrap_servers,
        )
        return AclResult(0, 0, enabled=False)
    wanted = kafka_acls(settings.kafka_topic_prefix)
    missing = [g for g in wanted if g not in set(present)]
    if missing:
        futures = admin.create_acls([_binding(g) for g in missing], request_timeout=_ACL_TIMEOUT_S)
        for future in futures.values():
            try:
                future.result()
            except Exception as exc:
                raise _acl_failure(settings, "create", exc) from None
        _await_grants(settings, admin, set(wanted))
    return AclResult(len(missing), len(wanted) - len(missing))


def _await_grants(settings: Settings, admin: Any, wanted: set[AclGrant]) -> None:
    """Wait (bounded) until the broker serves the new ACLs: the controller commits them and
    the brokers apply them a moment later, and a service started right after bootstrap must
    not be refused meanwhile."""
    deadline = time.monotonic() + _ACL_TIMEOUT_S
    while True:
        missing = wanted - set(_service_grants(settings, admin) or ())
        if not missing:
            return
        if time.monotonic() > deadline:
            log.warning(
                "%d Kafka ACLs created but not served by %s after %.0f s",
                len(missing),
                settings.bootstrap_servers,
                _ACL_TIMEOUT_S,
            )
            return
        time.sleep(0.1)


async def ensure_acls(settings: Settings) -> AclResult:
    """Grant each service's principal the ACLs :func:`ioc.contract.access.kafka_acls`
    derives for this namespace (only the missing ones: safe to call repeatedly). A cluster
    without an authorizer (``SecurityDisabled``) is left alone, with one info line."""
    return await asyncio.to_thread(_ensure_acls, settings)


def _drop_acls(settings: Settings) -> int:
    from confluent_kafka.admin import AclBindingFilter, AdminClient  # type: ignore[attr-defined]

    admin = AdminClient(librdkafka_admin(settings))
    present = _service_grants(settings, admin)
    if not present:
        return 0
    prefix = settings.kafka_topic_prefix
    doomed = [g for g in present if g.name.startswith(prefix)]
    if not doomed:
        return 0
    filters = []
    for grant in doomed:
        b = _binding(grant)
        filters.append(
            AclBindingFilter(
                b.restype,
                b.name,
                b.resource_pattern_type,
                b.principal,
                b.host,
                b.operation,
                b.permission_type,
            )
        )
    for future in admin.delete_acls(filters, request_timeout=_ACL_TIMEOUT_S).values():
        try:
            future.result()
        except Exception as exc:
            raise _acl_failure(settings, "delete", exc) from None
    return len(doomed)


async def drop_acls(settings: Settings) -> int:
    """Remove the services' ACLs on this namespace's resources (every one whose name starts
    with the topic prefix; all of them for the default namespace's empty prefix); returns
    how many. Nothing to do without an authorizer."""
    return await asyncio.to_thread(_drop_acls, settings)
