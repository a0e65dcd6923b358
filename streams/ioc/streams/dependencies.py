"""Can the stream worker reach its broker and its database? (``StreamWorkerCannotReach*``,
``KafkaLatencyHigh``; docs/alerting.md.)

A partition between a worker and its dependencies shows in no other metric in time: a write to
a partitioned database does not fail, it waits on TCP (each attempt up to 60 s), and while it
waits the worker's consume loop calls no ``consume()``, so librdkafka serves none of its
callbacks either. So the worker asks, from a timer of its own, every 5 s:

- **kafka**: a metadata request for one feed topic on the feed consumer itself (the
  connections that carry its data), bounded by ``Thresholds.dependency_probe_timeout_s``
  (:meth:`~ioc.streams.consumer.FeedConsumer.reachable`);
- **database**: ``SELECT 1`` on a connection of its own (not from the pool, which hung writes
  may hold), bounded the same way; a failed probe drops the connection and the next one
  opens a new one.

Each answer sets ``ioc_worker_dependency_up{worker, dependency}`` to 1 or 0.

Latency comes from librdkafka's statistics (``statistics.interval.ms``, 5 s:
``ioc.streams.consumer.STATS_INTERVAL_MS``, parsed once per interval on the consume thread,
:class:`KafkaStats`): the 99th percentile round trip of the
requests to the group coordinator (heartbeats every 2 s, offset commits) over the last window,
``ioc_worker_kafka_rtt_seconds{worker}``. Fetch requests are left out: a fetch waits at the
broker for data (up to ``fetch.wait.max.ms``), so an idle feed would read as a slow network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Protocol

import asyncpg

from ioc.contract import metrics as m
from ioc.observability import gauge

log = logging.getLogger(__name__)

PROBE_EVERY_S = 5.0
"""How often the worker probes its broker and its database."""
APPLICATION_NAME = "ioc-worker-probe"
"""The probe connection's ``application_name`` (pg_stat_activity): not one of the pool's."""


def coordinator_rtt_s(stats: dict[str, Any]) -> float | None:
    """The 99th percentile round trip, in seconds, of the group coordinator's requests in
    librdkafka's last statistics window (``rtt`` of the ``logical`` broker handle, which has
    a connection of its own); None when none completed (no coordinator yet, or it does not
    answer: reachability is the probe's business)."""
    worst: float | None = None
    for broker in stats.get("brokers", {}).values():
        if broker.get("source") != "logical":
            continue
        rtt = broker.get("rtt") or {}
        if not rtt.get("cnt"):
            continue
        seconds = rtt.get("p99", 0) / 1_000_000
        worst = seconds if worst is None else max(worst, seconds)
    return worst


class KafkaStats:
    """librdkafka's ``stats_cb`` for the feed consumer: the coordinator round-trip gauge.

    Runs on the consume thread inside ``consume()``, once per ``statistics.interval.ms``; it
    never raises (an exception would come out of ``consume()`` and restart the consumer)."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.rtt = gauge(m.KAFKA_RTT)
        self._warned = False

    def __call__(self, stats_json: str) -> None:
        try:
            seconds = coordinator_rtt_s(json.loads(stats_json))
            if seconds is None:
                with contextlib.suppress(KeyError):
                    self.rtt.remove(self.worker)
            else:
                self.rtt.labels(self.worker).set(seconds)
        except Exception as exc:
            if not self._warned:
                self._warned = True
                log.warning("librdkafka statistics not understood (%s): no Kafka rtt gauge", exc)


class DatabaseProbe:
    """``SELECT 1`` within ``timeout`` on a connection of its own; True if it answered."""

    def __init__(self, dsn: str, timeout: float) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._conn: asyncpg.Connection | None = None

    async def __call__(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(
                        self.dsn, server_settings={"application_name": APPLICATION_NAME}
                    )
                await self._conn.fetchval("SELECT 1")
            return True
        except Exception as exc:  # any failure is "no answer": the alert says which way
            log.debug("database probe failed: %s", exc or type(exc).__name__)
            self._drop()
            return False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()  # no goodbye: over a cut network it would wait

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                async with asyncio.timeout(self.timeout):
                    await conn.close()
            except Exception:
                conn.terminate()


class KafkaProbe(Protocol):
    async def reachable(self, timeout: float) -> bool | None: ...


class DependencyProbes:
    """One round of probes (:data:`PROBE_EVERY_S` apart, from the worker's timer): both at
    once, each bounded by ``timeout``, their answers in ``ioc_worker_dependency_up``."""

    def __init__(self, kafka: KafkaProbe, database_dsn: str, worker: str, timeout: float) -> None:
        self.kafka = kafka
        self.database = DatabaseProbe(database_dsn, timeout)
        self.worker = worker
        self.timeout = timeout
        self.up = gauge(m.DEPENDENCY_UP)
        self._last: dict[str, bool] = {}

    async def run_once(self) -> dict[str, bool]:
        """Probe both; never raises (it runs on a Faust timer, which an exception stops)."""
        kafka, database = await asyncio.gather(
            self.kafka.reachable(self.timeout), self.database(), return_exceptions=True
        )
        answers: dict[str, bool] = {}
        for dependency, answer in ((m.DEPENDENCY_KAFKA, kafka), (m.DEPENDENCY_DATABASE, database)):
            if isinstance(answer, BaseException):  # a bug in a probe, not an answer
                log.error("%s probe failed: %r", dependency, answer)
            elif answer is not None:  # None: no feed consumer yet (or between two)
                answers[dependency] = answer
        for dependency, ok in answers.items():
            self.up.labels(self.worker, dependency).set(int(ok))
            if self._last.get(dependency, True) != ok:
                if ok:
                    log.info("%s answers again", dependency)
                else:
                    log.warning("%s does not answer within %.1f s", dependency, self.timeout)
            self._last[dependency] = ok
        return answers
