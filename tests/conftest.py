"""Shared fixtures.

Integration tests run against the real local stack (``ioc stack up``), brought up once per
session. Each test gets its own namespace: a Kafka topic prefix and a database schema that
no other test uses, dropped afterwards, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from ioc.config import Settings, load_settings

if TYPE_CHECKING:
    from ioc.deploy.local.stack import Stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(base_settings: Settings) -> Iterator[Stack]:
    """The real local stack, started once (installs on first use, then seconds)."""
    from ioc.deploy.local.stack import Stack

    stack = Stack(base_settings)
    if os.environ.get("IOC_TEST_SKIP_STACK_UP") != "1":
        stack.up(progress=lambda message: print(message))
    yield stack


@pytest.fixture
async def topics(namespace: Settings) -> Settings:
    """The namespace with every topic of the contract created (no database bootstrap): for
    tests that only produce to Kafka, as the collectors do."""
    from ioc.kafka import ensure_topics

    await ensure_topics(namespace)
    return namespace


@pytest.fixture
async def namespace(base_settings: Settings, stack: object) -> AsyncIterator[Settings]:
    """Settings whose topics and schema are private to this test; cleaned up afterwards."""
    from ioc.bootstrap import drop_namespace

    tag = f"t{uuid.uuid4().hex[:10]}"
    settings = base_settings.model_copy(update={"kafka_topic_prefix": f"{tag}.", "db_schema": tag})
    yield settings
    from ioc.deploy.local.monitoring import prune_dead_targets

    # a worker the test SIGKILLed left its scrape target: down, it would fire StreamWorkerDown
    # in the tests after it whenever no worker is up
    prune_dead_targets(settings.stack_dir / "prometheus" / "targets")
    if os.environ.get("IOC_TEST_KEEP_NAMESPACE"):  # to read what a failed test left behind
        print(f"namespace kept: schema and topic prefix {tag}")
        return
    from tests.support.alertmanager import expire_silences_of

    await asyncio.to_thread(expire_silences_of, settings)
    await drop_namespace(settings)
