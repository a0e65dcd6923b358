"""Workers run as the runtime role and only check the bootstrap; they say what to run."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from ioc.bootstrap import NotBootstrapped, verify, verify_schema
from ioc.config import Settings
from ioc.contract.topology import load_scenario
from tests.support.processes import ioc_command, ioc_env


def test_a_worker_on_an_unprepared_namespace_says_what_to_run(namespace: Settings) -> None:
    proc = subprocess.run(
        ioc_command("worker", "--scenario", "demo", "--metrics-port", "0"),
        env=ioc_env(namespace),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"database schema {namespace.db_schema} has no migrations" in lines[0]
    assert "run `ioc bootstrap --scenario demo`" in lines[0]


def test_bootstrap_then_verify_as_the_runtime_role(namespace: Settings) -> None:
    topology = load_scenario("demo")
    with pytest.raises(NotBootstrapped):
        asyncio.run(verify(namespace, topology))
    # the pager's and the operations service's start check: they no longer migrate (no DDL)
    with pytest.raises(NotBootstrapped, match=r"has no migrations.*run `ioc bootstrap`"):
        asyncio.run(verify_schema(namespace))
    proc = subprocess.run(
        ioc_command("bootstrap", "--scenario", "demo"),
        env=ioc_env(namespace),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "scenario demo" in proc.stdout
    asyncio.run(verify(namespace, topology))  # the runtime role sees all it needs
    asyncio.run(verify_schema(namespace))
    with pytest.raises(NotBootstrapped, match="devices of scenario yen-bai-2022"):
        asyncio.run(verify(namespace, load_scenario("yen-bai-2022")))
