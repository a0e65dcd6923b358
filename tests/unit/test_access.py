"""The services' Kafka ACLs derived from the contract (ioc.contract.access), bootstrap's ACL
step against a fake admin client, and Settings.for_kafka_service."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ioc.config import Settings
from ioc.contract import feeds
from ioc.contract import topics as t
from ioc.contract.access import (
    ADMIN_USER,
    KAFKA_USERS,
    SERVICE_USERS,
    AclGrant,
    acl_table,
    feeds_group,
    kafka_acls,
    principal,
    streams_group,
)
from ioc.errors import ConfigError
from tests.support import airquality as aq

PREFIX = "t0123456789."


def ops(service: str, name: str, prefix: str = PREFIX) -> set[str]:
    """What ``service`` may do on resource ``name`` (a contract name, without the prefix)."""
    return {
        g.operation
        for g in kafka_acls(prefix, [service])
        if g.name == f"{prefix}{name}" and g.resource_type in ("TOPIC", "GROUP")
    }


def writers(name: str) -> set[str]:
    return {s for s in SERVICE_USERS if "WRITE" in ops(s, name)}


def readers(name: str) -> set[str]:
    return {s for s in SERVICE_USERS if "READ" in ops(s, name)}


def feed_topics() -> list[str]:
    return [spec.name for spec in t.FEED_TOPICS.values()]


def test_every_feed_topic_is_written_by_the_simulator_and_read_by_the_worker() -> None:
    assert feed_topics(), "the built-in feeds are registered"
    for name in feed_topics():
        assert writers(name) == {"simulator", "collector"}, name
        assert readers(name) == {"worker"}, name


def test_a_newly_registered_feed_is_covered_without_an_edit() -> None:
    assert aq.FEED.topic.name not in {g.name for g in kafka_acls("")}
    with feeds.registered(aq.FEED):
        assert writers(aq.FEED.topic.name) == {"simulator", "collector"}
        assert readers(aq.FEED.topic.name) == {"worker"}
    assert aq.FEED.topic.name not in {g.name for g in kafka_acls("")}


def test_the_event_topics_writers_and_readers() -> None:
    assert writers(t.DEAD_LETTER.name) == {"worker"}
    assert readers(t.DEAD_LETTER.name) == set(), "dead letters are read by the admin's tool"
    assert writers(t.FAULT_LOG.name) == {"simulator"}
    assert readers(t.FAULT_LOG.name) == set()
    assert writers(t.DEVICE_EVENTS.name) == {"worker", "ops"}  # transitions, commands
    assert readers(t.DEVICE_EVENTS.name) == {"worker"}  # the incident agent
    assert writers(t.INCIDENT_EVENTS.name) == {"worker"}
    assert readers(t.INCIDENT_EVENTS.name) == {"ops", "pager"}


def test_no_principal_writes_a_topic_it_only_reads() -> None:
    # the worker's own state (agent input it also feeds, its table's changelog) aside
    both = {t.DEVICE_EVENTS.name, t.OPEN_INCIDENTS_CHANGELOG.name}
    for service in SERVICE_USERS:
        grants = kafka_acls(PREFIX, [service])
        read = {g.name for g in grants if g.resource_type == "TOPIC" and g.operation == "READ"}
        written = {g.name for g in grants if g.resource_type == "TOPIC" and g.operation == "WRITE"}
        assert read & written <= {f"{PREFIX}{n}" for n in both}, service
    for name in feed_topics():
        assert "WRITE" not in ops("worker", name)
    assert "WRITE" not in ops("ops", t.INCIDENT_EVENTS.name)
    assert "WRITE" not in ops("pager", t.INCIDENT_EVENTS.name)


def test_simulator_only_writes_feeds_and_the_fault_log() -> None:
    grants = kafka_acls(PREFIX, ["simulator"])
    assert {g.operation for g in grants} == {"WRITE"}
    assert {g.name for g in grants} == {f"{PREFIX}{n}" for n in [*feed_topics(), t.FAULT_LOG.name]}
    assert ops("simulator", t.DEAD_LETTER.name) == set()
    assert ops("simulator", t.INCIDENT_EVENTS.name) == set()


def test_collector_only_writes_feeds() -> None:
    """What real devices answered goes to the feed topics; a collector at a province's edge
    injects no faults and reads nothing back."""
    grants = kafka_acls(PREFIX, ["collector"])
    assert {g.operation for g in grants} == {"WRITE"}
    assert {g.name for g in grants} == {f"{PREFIX}{n}" for n in feed_topics()}
    assert ops("collector", t.FAULT_LOG.name) == set()


def test_ops_and_pager_need_no_consumer_group() -> None:
    for service in ("ops", "pager"):
        assert not [g for g in kafka_acls(PREFIX, [service]) if g.resource_type == "GROUP"]
    for name in feed_topics():
        assert ops("ops", name) == set()
        assert ops("pager", name) == set()


def test_the_worker_reads_with_its_two_groups_and_describes_every_topic() -> None:
    from ioc.streams.consumer import consumer_group

    settings = Settings(kafka_topic_prefix=PREFIX)
    assert feeds_group(PREFIX) == consumer_group(settings)
    assert streams_group(PREFIX) == settings.topic(t.STREAMS_APP_ID)  # Faust's app id
    groups = {
        g.name: g.operation for g in kafka_acls(PREFIX, ["worker"]) if g.resource_type == "GROUP"
    }
    assert groups == {feeds_group(PREFIX): "READ", streams_group(PREFIX): "READ"}
    # `ioc worker` verifies that every topic exists: metadata (Read/Write imply Describe)
    for spec in t.all_topics():
        assert ops("worker", spec.name), spec.name


def test_create_only_on_fausts_own_topics() -> None:
    created = {g.name for g in kafka_acls(PREFIX) if g.operation == "CREATE"}
    assert created == {
        f"{PREFIX}{t.OPEN_INCIDENTS_CHANGELOG.name}",
        f"{PREFIX}{t.FAUST_LEADER.name}",
    }
    assert {g.principal for g in kafka_acls(PREFIX) if g.operation == "CREATE"} == {
        principal("worker")
    }


def test_grants_are_literal_names_in_the_namespace() -> None:
    grants = kafka_acls(PREFIX)
    assert grants == sorted(set(grants)), "sorted, no duplicates"
    assert all(g.pattern == "LITERAL" for g in grants)
    assert all(g.name.startswith(PREFIX) for g in grants)
    assert {g.principal for g in grants} == {f"User:{u}" for u in SERVICE_USERS.values()}
    assert f"User:{ADMIN_USER}" not in {g.principal for g in grants}, "the admin is a super user"
    assert set(KAFKA_USERS) == {ADMIN_USER, *SERVICE_USERS.values()}
    assert [g.name.removeprefix(PREFIX) for g in grants] == [g.name for g in kafka_acls("")]


def test_acl_table_lists_every_grant() -> None:
    table = acl_table()
    for grant in kafka_acls(""):
        assert f"`{grant.name}`" in table
    assert table.count("\n") >= len({(g.principal, g.name) for g in kafka_acls("")}) + 1


# --- ensure_acls / drop_acls against a fake confluent-kafka AdminClient ------------------------
def _done(value: Any = None, error: BaseException | None = None) -> Future[Any]:
    future: Future[Any] = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
    return future


class FakeAdmin:
    """The ACL calls of confluent_kafka's AdminClient, on an in-memory set of bindings."""

    bindings: list[Any] = []
    secure = True
    created: list[Any] = []

    def __init__(self, conf: Any) -> None:
        pass

    def describe_acls(self, query: Any, request_timeout: float = 0) -> Future[Any]:
        from confluent_kafka import KafkaError, KafkaException

        if not self.secure:
            return _done(error=KafkaException(KafkaError(KafkaError.SECURITY_DISABLED)))
        return _done(
            [b for b in self.bindings if query.principal in (None, b.principal)]  # None: any
        )

    def create_acls(self, bindings: list[Any], request_timeout: float = 0) -> dict[Any, Any]:
        type(self).created += bindings
        type(self).bindings += bindings
        return {b: _done() for b in bindings}

    def delete_acls(self, filters: list[Any], request_timeout: float = 0) -> dict[Any, Any]:
        doomed = {(f.restype, f.name, f.principal, f.operation) for f in filters}
        type(self).bindings = [
            b for b in self.bindings if (b.restype, b.name, b.principal, b.operation) not in doomed
        ]
        return {f: _done([]) for f in filters}


@pytest.fixture
def fake_admin(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeAdmin]]:
    import confluent_kafka.admin

    FakeAdmin.bindings, FakeAdmin.created, FakeAdmin.secure = [], [], True
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", FakeAdmin)
    yield FakeAdmin


async def test_ensure_acls_grants_the_missing_ones_once(fake_admin: type[FakeAdmin]) -> None:
    from ioc.kafka import drop_acls, ensure_acls

    settings = Settings(kafka_topic_prefix=PREFIX)
    first = await ensure_acls(settings)
    assert first.created == len(kafka_acls(PREFIX)) and first.present == 0
    again = await ensure_acls(settings)
    assert again.created == 0 and again.present == len(kafka_acls(PREFIX))
    other = settings.model_copy(update={"kafka_topic_prefix": "t9876543210."})
    await ensure_acls(other)
    assert await drop_acls(settings) == len(kafka_acls(PREFIX))
    left = {b.name for b in fake_admin.bindings}
    assert left and all(name.startswith("t9876543210.") for name in left)


async def test_no_authorizer_is_one_info_line(
    fake_admin: type[FakeAdmin], caplog: pytest.LogCaptureFixture
) -> None:
    from ioc.kafka import drop_acls, ensure_acls

    fake_admin.secure = False
    caplog.set_level(logging.INFO, logger="ioc.kafka")
    result = await ensure_acls(Settings(kafka_topic_prefix=PREFIX))
    assert not result.enabled and result.created == 0
    assert fake_admin.created == []
    assert len([r for r in caplog.records if "no authorizer" in r.getMessage()]) == 1
    assert await drop_acls(Settings(kafka_topic_prefix=PREFIX)) == 0


# --- Settings.for_kafka_service ------------------------------------------------------------------
@pytest.fixture
def stack_dir(tmp_path: Path) -> Path:
    users = {u: f"pw-{u}" for u in KAFKA_USERS}
    path = tmp_path / "kafka" / "credentials.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"mechanism": "SCRAM-SHA-512", "users": users}))
    path.chmod(0o600)
    return tmp_path


def sasl(stack_dir: Path, **extra: Any) -> Settings:
    return Settings(
        stack_dir=stack_dir,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        **{"kafka_sasl_username": ADMIN_USER, **extra},
    )


@pytest.mark.parametrize("service", sorted(SERVICE_USERS))
def test_a_service_runs_as_its_own_stack_user(stack_dir: Path, service: str) -> None:
    admin = sasl(stack_dir)
    assert admin.kafka_sasl_password is not None
    assert admin.kafka_sasl_password.get_secret_value() == f"pw-{ADMIN_USER}"
    mine = admin.for_kafka_service(service)
    user = SERVICE_USERS[service]
    assert mine.kafka_sasl_username == user
    assert mine.kafka_sasl_password == SecretStr(f"pw-{user}")
    assert admin.kafka_sasl_username == ADMIN_USER, "a copy"
    # a child process gets the admin's settings written out (child_env): same outcome
    child = Settings.model_validate(
        {k.removeprefix("IOC_").lower(): v for k, v in admin.child_env().items()}
    )
    assert child.for_kafka_service(service).kafka_sasl_username == user


def test_explicit_users_and_plaintext_are_left_alone(stack_dir: Path) -> None:
    plain = Settings(stack_dir=stack_dir)
    assert plain.for_kafka_service("worker") is plain
    own = sasl(stack_dir, kafka_sasl_username="svc-worker", kafka_sasl_password="x")
    assert own.for_kafka_service("worker") is own
    other_cluster = sasl(stack_dir, kafka_sasl_password="their-admin-password")
    assert other_cluster.for_kafka_service("worker") is other_cluster
    with pytest.raises(ConfigError, match="no Kafka user for service"):
        sasl(stack_dir).for_kafka_service("nobody")


def test_a_stack_without_the_user_keeps_the_admin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kafka" / "credentials.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"users": {ADMIN_USER: "pw"}}))
    path.chmod(0o600)
    settings = sasl(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert settings.for_kafka_service("ops") is settings
    assert "no Kafka user ioc-ops" in caplog.text


def test_grant_is_a_plain_value() -> None:
    grant = AclGrant("User:ioc-ops", "TOPIC", "x", "LITERAL", "READ")
    assert grant.user == "ioc-ops"
