"""Run real `ioc worker` processes for a test namespace."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from ioc.config import Settings
from ioc.contract import deadletter as dl
from ioc.contract.topics import DEAD_LETTER
from ioc.db import connect
from ioc.kafka import admin_client, delete_topics
from ioc.kafka_clients import aiokafka_common
from ioc.runner import worker_env

IOC = str(Path(sys.executable).parent / "ioc")


env_for = worker_env


def forget_pages_sent(settings: Settings) -> None:
    """Restart Alertmanager without its notification log.

    Alertmanager keeps what it delivered on disk (``data/nflog``) for days, across restarts.
    A run that paged an alert and stopped the pager before the resolved notification went
    out leaves "firing" as the last delivered state, and the same alert firing again within
    ``repeat_interval`` is then (correctly) not paged again. Tests that count pages for a
    fixed device must not depend on what an earlier run left there.
    """
    from ioc.deploy.local.stack import Stack

    alertmanager = Stack(settings).services["alertmanager"]
    alertmanager.down(lambda _line: None)
    (alertmanager.dir / "data" / "nflog").unlink(missing_ok=True)
    alertmanager.up(lambda _line: None)


class Worker:
    def __init__(self, settings: Settings, scenario: str, log: Path, name: str = "w1") -> None:
        self.settings, self.scenario, self.log_path, self.name = settings, scenario, log, name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        self.log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                IOC,
                "worker",
                "--scenario",
                self.scenario,
                "--metrics-port",
                "0",
                "--name",
                self.name,
            ],
            env=env_for(self.settings),
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def metrics_url(self) -> str | None:
        """Where the worker serves /metrics: it logs the port it bound (``--metrics-port 0``)."""
        match = re.search(
            r"metrics (http://127\.0\.0\.1:\d+/metrics)", self.log_path.read_text(errors="replace")
        )
        return match[1] if match else None

    def metric_totals(self) -> dict[str, float]:
        """Every sample the worker exposes, summed over its labels, by sample name."""
        url = self.metrics_url()
        if url is None:
            return {}
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


RAW_ROWS_SQL = """
    SELECT count(*) AS n, count(DISTINCT (device_id, seq)) AS d FROM (
      SELECT device_id, seq FROM raw_camera UNION ALL
      SELECT device_id, seq FROM raw_telehealth UNION ALL
      SELECT device_id, seq FROM raw_netnode) x"""
"""Rows landed in the raw tables and how many distinct (device, seq) they hold."""


async def fetch(settings: Settings, sql: str, *args: object) -> list[Any]:
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def query(settings: Settings, sql: str, *args: object) -> list[Any]:
    return asyncio.run(fetch(settings, sql, *args))


async def dlq_by_source(settings: Settings) -> dict[str, dl.DeadLetter]:
    """Dead letters by source record (topic/partition/offset); a replayed batch repeats its
    keys, so the newest one per source stands (as compaction leaves it)."""
    consumer = AIOKafkaConsumer(
        settings.topic(DEAD_LETTER.name),
        **aiokafka_common(settings),
        group_id=f"{settings.db_schema}-dlq-check-{time.monotonic_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    by_source: dict[str, dl.DeadLetter] = {}
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=3000)
            if not batch:
                break
            for msgs in batch.values():
                for m in msgs:
                    assert m.value is not None
                    letter = dl.decode(m.value)
                    assert m.key is not None and m.key.decode() == letter.source
                    by_source[letter.source] = letter
    finally:
        await consumer.stop()
    return by_source


async def dlq_count(settings: Settings) -> Counter[str]:
    """Dead letters by reason, one per source message."""
    return Counter(letter.reason for letter in (await dlq_by_source(settings)).values())


def assert_accounting(worker: Worker, timeout: float = 30) -> dict[str, float]:
    """Every input accounted for, from the worker's own counters once it is idle:
    consumed = written + duplicate + dead-lettered (per process: counters die with it)."""

    def balanced() -> dict[str, float] | None:
        t = worker.metric_totals()
        consumed = t.get("ioc_events_consumed_total", 0.0)
        accounted = (
            t.get("ioc_events_written_total", 0.0)
            + t.get("ioc_events_duplicate_total", 0.0)
            + t.get("ioc_dlq_messages_total", 0.0)
        )
        figures = {"consumed": consumed, "accounted": accounted}
        return figures if consumed > 0 and consumed == accounted else None

    return wait_for(balanced, timeout, what="consumed = written + duplicate + dead-lettered")


def max_metric(worker: Worker, name: str) -> float:
    """The largest sample of ``name`` a live worker exposes (0 if it has none or is gone)."""
    url = worker.metrics_url()
    if url is None or not worker.alive():
        return 0.0
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]
    return max(values, default=0.0)


PER_DEVICE_SQL = """
    SELECT device_id, count(*) AS n, count(DISTINCT seq) AS d, max(seq) AS mx FROM (
      SELECT device_id, seq FROM raw_camera UNION ALL
      SELECT device_id, seq FROM raw_telehealth UNION ALL
      SELECT device_id, seq FROM raw_netnode) x GROUP BY device_id"""


def reconcile(settings: Settings, summary: Any, what: str) -> dict[str, int]:
    """Sequence-number reconciliation of a run: every valid message stored exactly once
    (no duplicates, no gaps in any device's sequence), every invalid one dead-lettered with
    its reason. Prints the figures and asserts them."""
    valid = sum(summary.stats.valid_by_feed.values())
    invalid = dict(summary.stats.invalid_by_reason)
    rows = query(settings, PER_DEVICE_SQL)
    landed_ = sum(r["n"] for r in rows)
    duplicates = sum(r["n"] - r["d"] for r in rows)
    lost = sum(r["mx"] - r["d"] for r in rows) + max(0, valid - landed_ + duplicates)
    dlq = asyncio.run(dlq_count(settings))
    figures = {
        "produced_valid": valid,
        "produced_invalid": sum(invalid.values()),
        "landed": landed_,
        "dlq": sum(dlq.values()),
        "duplicates": duplicates,
        "lost": lost,
    }
    print(
        f"{what}: produced {valid} valid + {figures['produced_invalid']} invalid, "
        f"landed {landed_}, DLQ {figures['dlq']}, duplicates {duplicates}, lost {lost}"
    )
    assert landed_ == valid, figures
    assert duplicates == 0 and lost == 0, figures
    assert dict(dlq) == invalid, (dict(dlq), invalid)
    return figures


def landed(settings: Settings) -> int:
    """Rows in the namespace's raw tables."""
    return int(query(settings, RAW_ROWS_SQL)[0]["n"])


async def drop_schema(settings: Settings) -> None:
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {settings.db_schema} CASCADE")
    finally:
        await conn.close()


async def drop_namespace(settings: Settings) -> None:
    """Remove a test or benchmark namespace: its schema and its prefixed topics."""
    await drop_schema(settings)
    admin = await admin_client(settings)
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(settings.kafka_topic_prefix)]
    finally:
        await admin.close()
    if mine:
        await delete_topics(settings, mine)
