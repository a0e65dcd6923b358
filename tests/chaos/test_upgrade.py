"""Chaos: the previous release's schema with data, migrated to this one while traffic flows.

The previous release is the schema up to :data:`ioc.db.releases.PREVIOUS_RELEASE_MIGRATION`.
Its data: the traffic of the first seconds of a run, loaded into the old raw tables the way
that release's writer stored it (what the Kafka topics held, valid messages only), plus
pages in the old ``pages`` columns. Every old table is fingerprinted (row count and an md5 of
its rows over the columns the old release had), the schema is migrated to head while the
simulator keeps producing, the fingerprints must not change, and then this release's worker
replays the topics from the start: the old rows come back as duplicates (idempotent
writes), everything produced lands exactly once and every invalid message is dead-lettered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import schemas as s
from ioc.contract.raw import RAW_COLUMNS
from ioc.contract.tables import RAW
from ioc.contract.topics import FEED_TOPICS
from ioc.contract.topology import load_scenario
from ioc.db import connect
from ioc.db.migrate import current_version, load_migrations, migrate
from ioc.db.releases import PREVIOUS_RELEASE_MIGRATION
from ioc.db.topology import store_topology
from ioc.kafka import ensure_topics
from ioc.kafka_clients import librdkafka_consumer
from ioc.streams.rows import raw_row
from tests.support.db import landed
from tests.support.processes import Worker

from .faults import Production

pytestmark = pytest.mark.chaos

Fingerprints = dict[str, tuple[int, str]]  # table -> (rows, md5 of its rows)


async def previous_release(settings: Settings) -> None:
    """What bootstrapping the previous release left: its schema, the topics, the topology."""
    await migrate(settings.admin_dsn(), settings.db_schema, upto=PREVIOUS_RELEASE_MIGRATION)
    await ensure_topics(settings)
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        # with that release's columns of admin_units (merged_into came later)
        await store_topology(conn, load_scenario("demo"), schema_version=PREVIOUS_RELEASE_MIGRATION)
    finally:
        await conn.close()


def topic_messages(settings: Settings) -> dict[str, list[s.Message]]:
    """Per feed, the valid messages the topics hold now (read to their current ends)."""
    devices = load_scenario("demo").devices
    feed_of = {settings.topic(spec.name): feed for feed, spec in FEED_TOPICS.items()}
    conf = librdkafka_consumer(settings, f"{settings.kafka_topic_prefix}upgrade-loader", "load")
    consumer = Consumer({**conf, "enable.auto.commit": False})
    out: dict[str, list[s.Message]] = {feed: [] for feed in FEED_TOPICS}
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in feed_of:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > 0:
                    ends[(topic, p)] = high
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 1.0):
                offset = msg.offset()
                tp = (msg.topic(), msg.partition())
                if msg.error() or offset is None or tp not in ends or offset >= ends[tp]:
                    continue
                if offset == ends[tp] - 1:
                    del ends[tp]
                feed = feed_of[tp[0]]
                try:
                    value = s.check_record(msg.key(), msg.value())
                    m = s.decode(value, feed=feed, key=msg.key())
                except s.InvalidMessage:
                    continue  # the previous release dead-lettered it
                device = devices.get(m.device_id)
                if device is not None and device.device_class == s.DEVICE_CLASS_OF_FEED[feed]:
                    out[feed].append(m)
        assert not ends, f"could not read {sorted(ends)} to the end"
    finally:
        consumer.close()
    return out


async def load_previous_data(settings: Settings, messages: dict[str, list[s.Message]]) -> int:
    """The raw rows as the previous release stored them (its columns only) and a few pages."""
    conn = await connect(settings.admin_dsn())
    rows = 0
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        for feed, batch in messages.items():
            have = set(await _columns(conn, settings.db_schema, RAW[feed]))
            columns = [c for c in RAW_COLUMNS[feed] if c in have]
            keep = [RAW_COLUMNS[feed].index(c) for c in columns]
            records = [tuple(raw_row(m)[i] for i in keep) for m in batch]
            await conn.copy_records_to_table(RAW[feed], records=records, columns=columns)
            rows += len(records)
        now = dt.datetime.now(dt.UTC)
        for i, status in enumerate(["firing", "firing", "resolved"]):
            await conn.execute(
                "INSERT INTO pages (fingerprint, status, alertname, severity, device_id, "
                "starts_at, ends_at, labels) VALUES ($1, $2, 'CameraDown', 'warning', $3, $4, "
                '$5, \'{"upgrade": "test"}\'::jsonb)',
                f"fp{i % 2}",
                status,
                f"cam-{i}",
                now - dt.timedelta(minutes=10),
                now if status == "resolved" else None,
            )
    finally:
        await conn.close()
    return rows


async def _columns(conn: Any, schema: str, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        schema,
        table,
    )
    return [r["column_name"] for r in rows]


async def table_columns(settings: Settings) -> dict[str, list[str]]:
    """Every base table of the schema (hypertables included) with its columns."""
    conn = await connect(settings.admin_dsn())
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 "
            "AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'",
            settings.db_schema,
        )
        return {
            t["table_name"]: await _columns(conn, settings.db_schema, t["table_name"])
            for t in tables
        }
    finally:
        await conn.close()


async def fingerprints(settings: Settings, tables: dict[str, list[str]]) -> Fingerprints:
    """Rows and an order-independent md5 of each table over the given columns."""
    conn = await connect(settings.admin_dsn())
    out: Fingerprints = {}
    try:
        for table, columns in tables.items():
            cols = ", ".join(f'"{c}"' for c in columns)
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) AS h "
                f'FROM (SELECT ROW({cols})::text AS r FROM {settings.db_schema}."{table}") x'
            )
            assert row is not None
            out[table] = (int(row["n"]), str(row["h"]))
    finally:
        await conn.close()
    return out


def test_previous_release_upgrades_with_nothing_lost(namespace: Settings, tmp_path: Path) -> None:
    head = max(m.version for m in load_migrations())
    assert head >= PREVIOUS_RELEASE_MIGRATION, "PREVIOUS_RELEASE_MIGRATION is ahead of head"
    asyncio.run(previous_release(namespace))
    assert asyncio.run(current_version(namespace.admin_dsn(), namespace.db_schema)) == (
        PREVIOUS_RELEASE_MIGRATION
    )
    production = Production(namespace, 40)
    worker: Worker | None = None
    try:
        time.sleep(12)
        # the previous release's data, then its fingerprint on its own columns
        messages = topic_messages(namespace)
        old_rows = asyncio.run(load_previous_data(namespace, messages))
        old_tables = asyncio.run(table_columns(namespace))
        before = asyncio.run(fingerprints(namespace, old_tables))

        # the upgrade: this release's bootstrap (migrations to head) while traffic flows
        t0 = time.monotonic()
        asyncio.run(bootstrap(namespace, "demo"))
        migrate_s = time.monotonic() - t0
        after = asyncio.run(fingerprints(namespace, old_tables))
        new_tables = sorted(set(asyncio.run(table_columns(namespace))) - set(old_tables))

        print(
            f"\nupgrade {PREVIOUS_RELEASE_MIGRATION:04d} -> {head:04d} in {migrate_s:.1f} s "
            f"with {old_rows} raw rows of the previous release; new tables: "
            f"{', '.join(new_tables) or 'none'}"
        )
        print(f"{'table':<34}{'rows before':>12}{'rows after':>12}  unchanged")
        for table in sorted(old_tables):
            if before[table][0] or after[table][0]:
                same = "yes" if before[table] == after[table] else "NO"
                print(f"{table:<34}{before[table][0]:>12}{after[table][0]:>12}  {same}")
        changed = [t for t in old_tables if before[t] != after[t]]
        assert not changed, f"the upgrade changed the old rows of {changed}"
        assert old_rows > 0

        # this release's pipeline on the upgraded schema: replays the topics from the start
        worker = Worker(namespace, "demo", tmp_path / "worker.log").start()
        production.finish_and_reconcile(worker, "after the upgrade")
        figures = worker.metric_totals()
        duplicates = figures.get("ioc_events_duplicate_total", 0.0)
        print(f"previous release's rows replayed as duplicates: {duplicates:.0f} of {old_rows}")
        assert duplicates >= old_rows
        assert landed(namespace) == sum(production.summary.stats.valid_by_feed.values())
    finally:
        production.join()
        if worker is not None:
            worker.stop()
