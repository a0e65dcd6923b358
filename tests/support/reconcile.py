"""Did a run account for every message? Sequence numbers in the database, counters in the
worker (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from ioc.config import Settings
from ioc.contract.tables import RAW
from ioc.processes import WorkerProcess
from ioc.simulators.run import Summary

from .db import query
from .kafka import dlq_count
from .wait import wait_for

PER_DEVICE_SQL = (
    "SELECT device_id, count(*) AS n, count(DISTINCT seq) AS d, max(seq) AS mx FROM ("
    + " UNION ALL ".join(f"SELECT device_id, seq FROM {table}" for table in RAW.values())
    + ") x GROUP BY device_id"
)
"""Per device: rows landed, distinct sequence numbers, highest sequence number."""


def reconcile(
    settings: Settings, summary: Summary, what: str, dlq_timeout: float = 120
) -> dict[str, int]:
    """Sequence-number reconciliation of a run: every valid message stored exactly once
    (no duplicates, no gaps in any device's sequence), every invalid one dead-lettered with
    its reason. Prints the figures and asserts them.

    A batch's dead letters are sent after its rows are stored, and after a broker fault the
    dead-letter topic's partitions may regain their in-sync replicas later than the feeds'
    (their producer blocks until then, by design): so the last row landing does not mean
    the last dead letter is on the topic. Waits up to ``dlq_timeout`` s for as many dead
    letters as invalid messages produced, then compares them reason by reason."""
    valid = sum(summary.stats.valid_by_feed.values())
    invalid = dict(summary.stats.invalid_by_reason)
    rows = query(settings, PER_DEVICE_SQL)
    landed_ = sum(r["n"] for r in rows)
    duplicates = sum(r["n"] - r["d"] for r in rows)
    lost = sum(r["mx"] - r["d"] for r in rows) + max(0, valid - landed_ + duplicates)
    produced_invalid = sum(invalid.values())
    dlq: Counter[str] = Counter()

    def dead_lettered() -> bool:
        nonlocal dlq
        dlq = asyncio.run(dlq_count(settings))
        return sum(dlq.values()) >= produced_invalid

    with contextlib.suppress(AssertionError):  # the assertion below names the reasons short
        wait_for(dead_lettered, dlq_timeout, interval=2, what=f"{produced_invalid} dead letters")
    figures = {
        "produced_valid": valid,
        "produced_invalid": produced_invalid,
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


def assert_accounting(worker: WorkerProcess, timeout: float = 30) -> dict[str, float]:
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
