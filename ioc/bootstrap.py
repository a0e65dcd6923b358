"""The bootstrap step and the check that workers make instead of it.

Bootstrap (``ioc bootstrap``, ``ioc run``, a deployment's one-shot job, the tests) runs as
the schema owner: versioned migrations, every Kafka topic the contract declares, each
service's Kafka ACLs (ioc.contract.access), and the scenario's topology in the database.
With per-province topics (``IOC_KAFKA_PROVINCE_TOPICS``) also each province's feed topics,
its Kafka user's ACLs and quotas and, on the local stack, the user itself
(:func:`ensure_province_kafka`).
Workers run as the runtime role only (``ioc_app``, no DDL): they :func:`verify` that
bootstrap happened for their release and scenario and, if not, stop with one line saying
what to run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ioc.config import Settings
from ioc.contract.topics import TopicSpec, all_topics, province_topics
from ioc.contract.topology import Topology, load_scenario
from ioc.errors import IocError

if TYPE_CHECKING:
    from asyncpg import Connection


class NotBootstrapped(IocError):
    """The database or Kafka lacks what this release and scenario need."""


async def bootstrap(settings: Settings, scenario: str) -> Topology:
    """Migrations, topics, the scenario's topology in the database and a viewer role per
    province (all idempotent)."""
    from ioc.kafka import ensure_acls, ensure_topics

    topology = load_scenario(scenario)
    await bootstrap_database(settings, topology)
    await ensure_topics(settings, kafka_topics(settings, topology))
    await ensure_province_kafka(settings, topology)  # before the ACLs that name them
    # each service's user: its topics and groups only; each province's: its own topics
    await ensure_acls(settings, topology.top_units())
    return topology


def kafka_topics(settings: Settings, topology: Topology) -> list[TopicSpec]:
    """The topics bootstrap makes for ``topology``: the contract's and, with per-province
    topics on, every province's feed topics."""
    specs = list(all_topics())
    if settings.kafka_province_topics:
        specs += province_topics(topology)
    return specs


async def ensure_province_kafka(settings: Settings, topology: Topology) -> list[str]:
    """With per-province topics on: each province's Kafka user, on the local stack (its SCRAM
    credential; a deployment makes its own, e.g. Strimzi's KafkaUser), and its client quotas
    (everywhere: they are the contract's); returns the users made here. Off: nothing."""
    if not settings.kafka_province_topics:
        return []
    from ioc.kafka import ensure_province_quotas, ensure_province_users

    provinces = topology.top_units()
    made = await ensure_province_users(settings, provinces)
    await ensure_province_quotas(settings, provinces)
    return made


async def bootstrap_database(settings: Settings, topology: Topology) -> None:
    """The database part of :func:`bootstrap`: migrations, the topology and the provinces'
    viewer roles (the history benchmark loads a schema without Kafka)."""
    from ioc.db import connect
    from ioc.db.migrate import migrate
    from ioc.db.provinces import ensure_province_viewers
    from ioc.db.topology import store_topology

    await migrate(settings.admin_dsn(), settings.db_schema)
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        await store_topology(conn, topology)
        await ensure_province_viewers(conn, settings.db_schema, topology)
    finally:
        await conn.close()


async def _check_schema_version(conn: Connection, schema: str, todo: str) -> None:
    from ioc.db.migrate import load_migrations

    needed = max(m.version for m in load_migrations())
    have: int | None = None
    if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.schema_migrations"):
        have = await conn.fetchval(f"SELECT max(version) FROM {schema}.schema_migrations")
    if have is None or have < needed:
        at = "has no migrations" if have is None else f"is at migration {have:04d}"
        raise NotBootstrapped(
            f"database schema {schema} {at}, this release needs {needed:04d}: {todo}"
        )


async def verify_schema(settings: Settings) -> None:
    """As the runtime role: the schema is at this release's version. The services that only
    need the schema (pager, operations service) check this instead of migrating: they run as
    the runtime role, which cannot change the schema (least privilege)."""
    from ioc.db import connect

    conn = await connect(settings.database_dsn())
    try:
        await _check_schema_version(
            conn, settings.db_schema, "run `ioc bootstrap` (or `ioc db migrate`)"
        )
    finally:
        await conn.close()


async def verify(settings: Settings, topology: Topology) -> None:
    """As the runtime role: schema at this release's version, topology loaded, topics made."""
    from ioc.db import connect
    from ioc.db.feeds import missing_feed_tables
    from ioc.kafka import admin_client

    todo = f"run `ioc bootstrap --scenario {topology.name}`"
    schema = settings.db_schema
    conn = await connect(settings.database_dsn())
    try:
        await _check_schema_version(conn, schema, todo)
        stored = {r["id"] for r in await conn.fetch(f"SELECT id FROM {schema}.devices")}
        missing_tables = await missing_feed_tables(conn, schema)
        if missing_tables:  # a feed registered (IOC_EXTRA_FEEDS) after the last bootstrap
            raise NotBootstrapped(
                f"database schema {schema} lacks the tables {', '.join(missing_tables)} of "
                f"registered feeds: {todo}"
            )
    finally:
        await conn.close()
    missing = set(topology.devices) - stored
    if missing:
        raise NotBootstrapped(
            f"{len(missing)} of the {len(topology.devices)} devices of scenario "
            f"{topology.name} are not in schema {schema} (e.g. {sorted(missing)[0]}): {todo}"
        )
    admin = await admin_client(settings)
    try:
        present = set(await admin.list_topics())
    finally:
        await admin.close()
    absent = [
        settings.topic(t.name)
        for t in kafka_topics(settings, topology)
        if settings.topic(t.name) not in present
    ]
    if absent:
        # a topic the user may not describe is left out of the metadata: bootstrap grants it
        who = (
            f" (or not visible to {settings.kafka_sasl_username})"
            if settings.kafka_sasl_username
            else ""
        )
        raise NotBootstrapped(f"Kafka topics missing{who}: {', '.join(absent)}: {todo}")


def _check_private(settings: Settings, what: str) -> None:
    default_schema = Settings.model_fields["db_schema"].default
    if settings.db_schema == default_schema or not settings.kafka_topic_prefix:
        raise IocError(
            f"refusing to drop {what}: only a private namespace (a topic prefix and a schema "
            f"other than {default_schema!r}) is dropped, got prefix "
            f"{settings.kafka_topic_prefix!r}, schema {settings.db_schema!r}"
        )


async def drop_schema(settings: Settings) -> None:
    """Drop a private namespace's database schema (tests, benchmarks), with all its data."""
    from ioc.db import connect
    from ioc.db.provinces import view_schema

    _check_private(settings, f"schema {settings.db_schema}")
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {settings.db_schema} CASCADE")
        await conn.execute(f"DROP SCHEMA IF EXISTS {view_schema(settings.db_schema)} CASCADE")
    finally:
        await conn.close()


async def drop_namespace(settings: Settings) -> None:
    """Undo :func:`bootstrap` for a private namespace (tests, benchmarks): its schema, every
    topic with its prefix and the services' ACLs on them. The default namespace (no prefix,
    schema ``ioc``) is refused."""
    _check_private(settings, "the namespace")
    await drop_schema(settings)
    await drop_kafka_namespace(settings)


async def drop_kafka_namespace(settings: Settings) -> None:
    """The Kafka half of :func:`drop_namespace`: the prefix's topics and ACLs."""
    from ioc.kafka import admin_client, delete_topics, drop_acls

    _check_private(settings, "the namespace")
    await drop_acls(settings)
    admin = await admin_client(settings)
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(settings.kafka_topic_prefix)]
    finally:
        await admin.close()
    if mine:
        await delete_topics(settings, mine)
