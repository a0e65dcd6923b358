"""Kafka authentication: the stack's SASL/SCRAM listener refuses anonymous clients and wrong
passwords, and the whole pipeline (topic tooling, simulator, Faust worker) runs through it
from configuration alone."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.deploy.local.stack import KAFKA_SASL_MECHANISM, KAFKA_USER
from ioc.kafka_clients import aiokafka_common, librdkafka_admin
from ioc.simulators.run import SimConfig, run_simulation
from tests.support.db import landed
from tests.support.processes import Worker
from tests.support.wait import wait_for


def sasl(settings: Settings, password: str | None = None) -> Settings:
    """The same namespace through the SASL listener, as a deployment would configure it."""
    update: dict[str, object] = {
        "kafka_bootstrap_servers": f"127.0.0.1:{settings.kafka_sasl_port}",
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": KAFKA_SASL_MECHANISM,
        "kafka_sasl_username": KAFKA_USER,
        "kafka_sasl_password": SecretStr(password or settings.stack_kafka_users()[KAFKA_USER]),
    }
    return settings.model_copy(update=update)


def anonymous(settings: Settings) -> Settings:
    """A client of the SASL listener configured without credentials."""
    update = {
        "kafka_bootstrap_servers": f"127.0.0.1:{settings.kafka_sasl_port}",
        "kafka_security_protocol": "PLAINTEXT",
    }
    return settings.model_copy(update=update)


def test_stack_generated_a_private_scram_password(namespace: Settings) -> None:
    path = namespace.stack_credentials_path("kafka")
    assert path.stat().st_mode & 0o077 == 0, "credentials must be readable by the owner only"
    users = json.loads(path.read_text())["users"]
    assert len(users[KAFKA_USER]) >= 24


async def test_unauthenticated_client_is_refused(namespace: Settings) -> None:
    producer = AIOKafkaProducer(**aiokafka_common(anonymous(namespace)), request_timeout_ms=5000)
    with pytest.raises((KafkaConnectionError, KafkaError, asyncio.TimeoutError)):
        await asyncio.wait_for(producer.start(), 20)
    await producer.stop()


def test_unauthenticated_tooling_is_refused(namespace: Settings) -> None:
    admin = AdminClient(librdkafka_admin(anonymous(namespace)))
    with pytest.raises(Exception) as failure:
        admin.list_topics(timeout=5)
    print(f"anonymous AdminClient refused: {failure.value}")


async def test_wrong_password_is_refused(
    namespace: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # `ioc.cli.main` (run in-process by unit tests) silences aiokafka; hear it here anyway.
    caplog.set_level(logging.ERROR, logger="aiokafka")
    producer = AIOKafkaProducer(**aiokafka_common(sasl(namespace, "not-the-password")))
    with pytest.raises(KafkaError):
        await asyncio.wait_for(producer.start(), 20)
    await producer.stop()
    assert "SaslAuthenticationFailed" in caplog.text, caplog.text


def test_pipeline_runs_end_to_end_over_scram(namespace: Settings, tmp_path: Path) -> None:
    secure = sasl(namespace)
    asyncio.run(bootstrap(secure, "demo"))  # topics created through the SASL listener
    worker = Worker(secure, "demo", tmp_path / "worker.log").start()
    try:
        summary = run_simulation(
            secure, SimConfig(scenario="demo", mode="rate", rate=2000, duration_s=5, progress=False)
        )
        assert summary.errors == 0
        produced = sum(summary.stats.valid_by_feed.values())
        assert produced > 0
        wait_for(
            lambda: landed(secure) >= produced, 90, what=f"rows landed ({worker.log_tail(2000)})"
        )
        assert landed(secure) == produced
        assert secure.kafka_sasl_password is not None
        log = worker.log_text()
        assert secure.kafka_sasl_password.get_secret_value() not in log, "secret logged"
    finally:
        worker.stop()
