"""Kafka plumbing shared by every process: clear errors, idempotent topic creation, the
services' ACLs (:mod:`ioc.contract.access`) and, with per-province topics, the provinces'
users: their ACLs, their client quotas and (on the local stack) their SCRAM credentials."""

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
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Float64, Int16, Int32, Schema, String

from ioc.config import Settings
from ioc.contract.access import (
    PROVINCE_QUOTAS,
    PROVINCE_USER_PREFIX,
    SERVICE_USERS,
    AclGrant,
    kafka_acls,
    province_acls,
    province_user,
)
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
                results.append(TopicResult(name, action, have))
            # one request for every topic (a national scenario's province topics are 200+)
            await admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC,
                        settings.topic(spec.name),
                        configs=topic_configs(settings, spec),
                    )
                    for spec in present
                ]
            )
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


def _bindings(
    settings: Settings,
    admin: Any,
    *,
    principal: str | None = None,
    topics_prefixed: bool = False,
) -> list[Any] | None:
    """The cluster's ACL bindings matching ``principal`` (None: anyone), of topics under a
    PREFIXED pattern only if ``topics_prefixed``; None without an authorizer."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    any_name: Any = None  # None matches any name or host (the stubs say str)
    query = AclBindingFilter(
        ResourceType.TOPIC if topics_prefixed else ResourceType.ANY,
        any_name,
        ResourcePatternType.PREFIXED if topics_prefixed else ResourcePatternType.ANY,
        principal if principal is not None else any_name,
        any_name,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    try:
        return list(admin.describe_acls(query, request_timeout=_ACL_TIMEOUT_S).result())
    except Exception as exc:
        if _security_disabled(exc):
            return None
        raise _acl_failure(settings, "read", exc) from None


def _service_grants(
    settings: Settings, admin: Any, users: Iterable[str] | None = None
) -> list[AclGrant] | None:
    """Every ACL of the services' principals (and of ``users``, e.g. the provinces') on the
    cluster; None without an authorizer."""
    found: list[AclGrant] = []
    for user in dict.fromkeys([*SERVICE_USERS.values(), *(users or ())]):
        bindings = _bindings(settings, admin, principal=f"User:{user}")
        if bindings is None:
            return None
        found += [g for g in (_grant(b) for b in bindings) if g is not None]
    return found


def wanted_acls(settings: Settings, provinces: Iterable[str] = ()) -> list[AclGrant]:
    """What :func:`ensure_acls` grants: the services' ACLs in this namespace and, with
    per-province topics on, each province's user's (``provinces``: the scenario's)."""
    prefix = settings.kafka_topic_prefix
    on = settings.kafka_province_topics
    wanted = kafka_acls(prefix, province_topics=on)
    if on:
        wanted += province_acls(prefix, provinces)
    return wanted


def _ensure_acls(settings: Settings, provinces: Iterable[str]) -> AclResult:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(librdkafka_admin(settings))
    wanted = wanted_acls(settings, provinces)
    users = sorted({g.user for g in wanted})
    present = _service_grants(settings, admin, users)
    if present is None:
        log.info(
            "Kafka at %s has no authorizer: no ACLs granted (every authenticated client may "
            "do anything)",
            settings.bootstrap_servers,
        )
        return AclResult(0, 0, enabled=False)
    missing = [g for g in wanted if g not in set(present)]
    if missing:
        futures = admin.create_acls([_binding(g) for g in missing], request_timeout=_ACL_TIMEOUT_S)
        for future in futures.values():
            try:
                future.result()
            except Exception as exc:
                raise _acl_failure(settings, "create", exc) from None
        _await_grants(settings, admin, set(wanted), users)
    return AclResult(len(missing), len(wanted) - len(missing))


def _await_grants(
    settings: Settings, admin: Any, wanted: set[AclGrant], users: Iterable[str] = ()
) -> None:
    """Wait (bounded) until the broker serves the new ACLs: the controller commits them and
    the brokers apply them a moment later, and a service started right after bootstrap must
    not be refused meanwhile."""
    deadline = time.monotonic() + _ACL_TIMEOUT_S
    while True:
        missing = wanted - set(_service_grants(settings, admin, users) or ())
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


async def ensure_acls(settings: Settings, provinces: Iterable[str] = ()) -> AclResult:
    """Grant each service's principal the ACLs :func:`ioc.contract.access.kafka_acls`
    derives for this namespace, and with per-province topics on each province's user its
    own (:func:`ioc.contract.access.province_acls`; ``provinces``: the scenario's), only the
    missing ones: safe to call repeatedly. A cluster without an authorizer
    (``SecurityDisabled``) is left alone, with one info line."""
    return await asyncio.to_thread(_ensure_acls, settings, list(provinces))


def _drop_acls(settings: Settings) -> int:
    from confluent_kafka.admin import AclBindingFilter, AdminClient  # type: ignore[attr-defined]

    admin = AdminClient(librdkafka_admin(settings))
    present = _service_grants(settings, admin, _province_users_with_acls(settings, admin))
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


def _province_users_with_acls(settings: Settings, admin: Any) -> list[str]:
    """Every province user (``ioc-p-*``) holding an ACL on this namespace's per-province
    topics, whichever scenario granted it."""
    bindings = _bindings(settings, admin, topics_prefixed=True) or []
    users = {
        b.principal.removeprefix("User:")
        for b in bindings
        if b.principal.startswith(f"User:{PROVINCE_USER_PREFIX}")
        and b.name.startswith(settings.kafka_topic_prefix)
    }
    return sorted(users)


async def drop_acls(settings: Settings) -> int:
    """Remove the services' and the provinces' users' ACLs on this namespace's resources
    (every one whose name starts with the topic prefix; all of them for the default
    namespace's empty prefix); returns how many. Nothing to do without an authorizer."""
    return await asyncio.to_thread(_drop_acls, settings)


# --- the provinces' users: client quotas and (local stack) SCRAM credentials ----------------
# Neither aiokafka's admin client nor confluent-kafka's has AlterClientQuotas (KIP-546, Kafka
# 2.6+; the stack runs 4.x): the request is sent through aiokafka's client, as its own
# requests are. Version 0, the one every broker since 2.6 serves (Kafka 4.0's removal of old
# request versions, KIP-896, left it in).


# aiokafka.protocol has no type information: its base classes are Any to mypy
class _AlterClientQuotasResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 49
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "entries",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                (
                    "entity",
                    Array(("entity_type", String("utf-8")), ("entity_name", String("utf-8"))),
                ),
            ),
        ),
    )


class _AlterClientQuotasRequest_v0(RequestStruct):  # type: ignore[misc]
    API_KEY = 49
    API_VERSION = 0
    RESPONSE_TYPE = _AlterClientQuotasResponse_v0
    SCHEMA = Schema(
        (
            "entries",
            Array(
                (
                    "entity",
                    Array(("entity_type", String("utf-8")), ("entity_name", String("utf-8"))),
                ),
                ("ops", Array(("key", String("utf-8")), ("value", Float64), ("remove", Boolean))),
            ),
        ),
        ("validate_only", Boolean),
    )


class _AlterClientQuotasRequest(Request[_AlterClientQuotasRequest_v0]):  # type: ignore[misc]
    API_KEY = 49

    def __init__(self, entries: list[tuple[list[tuple[str, str]], list[tuple[str, float, bool]]]]):
        self._entries = entries

    def build(
        self, request_struct_class: type[_AlterClientQuotasRequest_v0]
    ) -> _AlterClientQuotasRequest_v0:
        return request_struct_class(self._entries, False)


class KafkaQuotaError(IocError):
    pass


async def ensure_province_quotas(settings: Settings, provinces: Iterable[str]) -> int:
    """Set every province's user's client quotas (:data:`ioc.contract.access.PROVINCE_QUOTAS`,
    per broker) to the contract's values: an upsert, safe to call repeatedly; returns how
    many users. Quotas hold for the user across namespaces (a Kafka user is cluster-wide)."""
    users = sorted({province_user(p) for p in provinces})
    if not users:
        return 0
    ops = [(key, value, False) for key, value in sorted(PROVINCE_QUOTAS.items())]
    request = _AlterClientQuotasRequest([([("user", user)], ops) for user in users])
    admin = await admin_client(settings)
    try:
        response: Any = await admin._send_request(request)
    finally:
        await admin.close()
    problems = [
        f"{entity}: error {code} {message or ''}".strip()
        for code, message, entity in response.entries
        if code != 0
    ]
    if problems:
        raise KafkaQuotaError(
            f"cannot set the provinces' Kafka quotas on {settings.bootstrap_servers}: "
            f"{'; '.join(problems)}"
        )
    return len(users)


async def describe_user_quotas(settings: Settings, user: str) -> dict[str, float]:
    """The client quotas set for ``user`` (exactly that user entity), name -> value."""
    from aiokafka.protocol.admin import DescribeClientQuotasRequest

    admin = await admin_client(settings)
    try:
        response: Any = await admin._send_request(
            DescribeClientQuotasRequest([("user", 0, user)], True)  # 0: match exactly
        )
    finally:
        await admin.close()
    if response.error_code:
        raise KafkaQuotaError(f"cannot read {user}'s quotas: error {response.error_code}")
    return {name: value for _entity, values in response.entries for name, value in values}


def upsert_scram_users(
    settings: Settings, users: dict[str, str], client_id: str = "ioc-admin"
) -> None:
    """Set each SCRAM user (name -> password) on the cluster as ``settings``' admin: created
    or, if the broker holds an older password, set back to this one. The local stack's users
    (:meth:`ioc.deploy.local.kafka_broker.Kafka.after_ready`) and the provinces'
    (:func:`ensure_province_users`)."""
    # Public API of confluent_kafka.admin (since 2.2); its __init__ re-exports the SCRAM
    # classes from a private module without `__all__`, which mypy's no-implicit-reexport
    # does not accept: hence the ignore.
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    from ioc.deploy.local.credentials import KAFKA_SASL_MECHANISM, SCRAM_ITERATIONS

    admin = AdminClient(librdkafka_admin(settings, client_id))
    info = ScramCredentialInfo(
        ScramMechanism[KAFKA_SASL_MECHANISM.replace("-", "_")], SCRAM_ITERATIONS
    )
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(u, info, p.encode()) for u, p in sorted(users.items())]
    )
    for future in futures.values():
        future.result(timeout=30)


def on_local_stack(settings: Settings) -> bool:
    """Whether ``settings`` administer the local stack's broker (``ioc stack up``): it has
    generated credentials, the brokers are on loopback and the client is its admin
    (PLAINTEXT, or SASL with the stack's admin password). A deployment's users (Strimzi's
    KafkaUser, compose) are made by the deployment, never here."""
    from ioc.contract.access import ADMIN_USER

    stack = settings.stack_kafka_users()
    if ADMIN_USER not in stack:
        return False
    hosts = [h.rsplit(":", 1)[0] for h in settings.bootstrap_servers.split(",")]
    if not all(h in ("127.0.0.1", "localhost") for h in hosts):
        return False
    if not settings.kafka_security_protocol.startswith("SASL_"):
        return True
    given = settings.kafka_sasl_password
    return settings.kafka_sasl_username in (None, ADMIN_USER) and (
        given is None or given.get_secret_value() == stack[ADMIN_USER]
    )


async def ensure_province_users(settings: Settings, provinces: Iterable[str]) -> list[str]:
    """On the local stack (:func:`on_local_stack`): a SCRAM user per province, its password
    generated into the stack's credentials file (kept once made) and set on the broker;
    returns the users. Elsewhere nothing (the deployment makes them): []."""
    if not on_local_stack(settings):
        return []
    names = sorted({province_user(p) for p in provinces})
    if not names:
        return []
    creds = await asyncio.to_thread(settings.stack_credentials().ensure_kafka_users, names)
    await asyncio.to_thread(upsert_scram_users, settings, {u: creds.users[u] for u in names})
    return names
