"""The foundation works end to end on real services: Kafka -> Python -> TimescaleDB."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ioc.cli import main
from ioc.config import Settings
from ioc.db import connect
from ioc.db.migrate import current_version, load_migrations, migrate
from ioc.deploy.local.stack import Stack
from ioc.kafka import ensure_topics
from ioc.kafka_clients import aiokafka_common
from tests.support.ports import free_ports


def test_stack_status_reports_all_services_healthy(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stack", "status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["healthy"] is True
    assert {s["name"] for s in doc["services"]} == {
        "kafka",
        "timescaledb",
        "prometheus",
        "alertmanager",
        "alertmanager-2",  # the second peer of the Alertmanager cluster
    }
    assert doc["kafka_bootstrap_servers"].startswith("127.0.0.1:")
    assert doc["database_dsn"].startswith("postgresql://ioc_app:")
    assert doc["prometheus_url"].startswith("http://127.0.0.1:")
    ts = next(s for s in doc["services"] if s["name"] == "timescaledb")
    assert ts["extra"]["timescaledb"]


def test_stack_up_twice_is_fast_and_idempotent(stack: Stack) -> None:
    started = time.monotonic()
    stack.up(progress=lambda _m: None)
    assert time.monotonic() - started < 15


async def test_migrations_apply_once_and_rerun_cleanly(namespace: Settings) -> None:
    dsn, schema = namespace.admin_dsn(), namespace.db_schema
    first = await migrate(dsn, schema)
    assert [m.version for m in first] == [m.version for m in load_migrations()]
    assert await migrate(dsn, schema) == []
    assert await current_version(dsn, schema) == load_migrations()[-1].version


async def test_topics_create_is_idempotent(namespace: Settings) -> None:
    first = await ensure_topics(namespace)
    assert {r.action for r in first} == {"created"}
    second = await ensure_topics(namespace)
    assert {r.action for r in second} == {"exists"}
    assert all(r.name.startswith(namespace.kafka_topic_prefix) for r in second)


async def test_kafka_to_hypertable_round_trip(namespace: Settings) -> None:
    """Produce with aiokafka, consume, COPY into a real hypertable with asyncpg, read back."""
    from ioc.contract.topics import CAMERA

    await ensure_topics(namespace, [CAMERA])
    topic = namespace.topic(CAMERA.name)
    now_ms = int(time.time() * 1000)
    sent: list[dict[str, Any]] = [
        {"device_id": f"cam-{i % 7}", "seq": i, "ts_ms": now_ms + i, "fps": 25.0}
        for i in range(200)
    ]
    producer = AIOKafkaProducer(**aiokafka_common(namespace), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for msg in sent:
            await producer.send(topic, orjson.dumps(msg), key=msg["device_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_common(namespace),
        group_id=f"{namespace.db_schema}-smoke",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                received += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    assert len(received) == len(sent)

    conn = await connect(namespace.admin_dsn())
    try:
        await conn.execute(f"CREATE SCHEMA {namespace.db_schema}")
        table = f"{namespace.db_schema}.smoke"
        await conn.execute(f"""CREATE TABLE {table} (
            ts timestamptz NOT NULL, device_id text NOT NULL, seq bigint NOT NULL,
            fps real, PRIMARY KEY (device_id, seq, ts))""")
        await conn.execute("SELECT create_hypertable($1::regclass, 'ts')", table)
        from datetime import UTC, datetime

        rows = [
            (datetime.fromtimestamp(m["ts_ms"] / 1000, UTC), m["device_id"], m["seq"], m["fps"])
            for m in received
        ]
        await conn.copy_records_to_table(
            "smoke",
            schema_name=namespace.db_schema,
            records=rows,
            columns=["ts", "device_id", "seq", "fps"],
        )
        count = await conn.fetchval(f"SELECT count(DISTINCT seq) FROM {table}")
        is_hyper = await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = $1 AND hypertable_name = 'smoke'",
            namespace.db_schema,
        )
    finally:
        await conn.close()
    assert count == len(sent)
    assert is_hyper == 1


def test_main_job_runs_the_scenario_for_its_duration(
    namespace: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ioc run` in miniature: stack, migrations, topics, the pager and the operations
    service, the simulators with a fault plan and the background failures, then exits; the
    weekly maintenance window is created once, however often it runs."""
    from ioc.runner import RunOptions, run_main_job

    # the pager keeps its port: the shared Alertmanager is configured for it at `stack up`
    # (a pager already answering there is used as it is)
    settings = namespace.model_copy(update={"ops_port": free_ports(2), "ops_url": None})
    options = RunOptions(fault_flags=["device_dark:camera#0@0+2"], seed=5)
    started = time.monotonic()
    assert run_main_job(settings, scenario="demo", duration=3, options=options) == 0
    assert time.monotonic() - started < 90
    err = capsys.readouterr().err
    assert f"operator console  {settings.console_base_url}/console" in err
    assert "log in with the admin token in" in err or "IOC_OPS_ADMIN_TOKEN" in err
    assert settings.resolved_ops_admin_token() not in err
    assert "weekly maintenance #" in err and "created" in err
    assert "1 planned fault(s)" in err  # the background's first failure comes after 3 s

    assert run_main_job(settings, scenario="demo", duration=1, options=options) == 0
    err = capsys.readouterr().err
    assert "weekly maintenance #" in err and "created" not in err

    from ioc.services.ops.client import OpsClient

    assert not OpsClient(settings.ops_base_url, "x").healthy(), "stopped with the run"
