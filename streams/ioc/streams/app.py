"""The stream worker as one Faust application: the hot path as a task, the event path as agents.

- **Feeds (hot path)**: :class:`~ioc.streams.consumer.FeedConsumer` (librdkafka, whole
  batches, COPY, offsets committed after the database) runs as a Faust task in one consumer
  group that shares the feed partitions among the workers; per-batch work is
  :class:`~ioc.streams.processor.FeedProcessor`. Faust's per-message machinery is too slow
  for feeds (docs/streams.md), not for events.
- **Events (keyed, stateful)**: the shard leader (one worker at a time, by a database
  advisory lock: :mod:`ioc.streams.leader`) evaluates device states every few seconds and
  publishes the transitions from its outbox to ``ioc.device-events.v1``; the
  ``incident_lifecycle`` agent (Faust group ``ioc-streams``) turns them and operators'
  commands into incidents, with open incidents in a Faust table whose changelog survives a
  rebalance, and publishes ``ioc.incidents.v1`` (:mod:`ioc.streams.incidents`).
- **Timers**: 1-minute rollups (every worker helps), the hourly and daily rollups and
  retention (shard leader; :mod:`ioc.streams.history`, docs/history.md), health gauges, and
  the broker and database probes (:mod:`ioc.streams.dependencies`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import faust
import msgspec

from ioc import memory
from ioc.config import Settings
from ioc.contract import events as ev
from ioc.contract import metrics as m
from ioc.contract.deadletter import PRODUCER_MAX_REQUEST_BYTES
from ioc.contract.history import Retention
from ioc.contract.thresholds import overridden
from ioc.contract.topics import (
    DEAD_LETTER,
    DEVICE_EVENTS,
    INCIDENT_EVENTS,
    OPEN_INCIDENTS_TABLE,
    STREAMS_APP_ID,
    TopicSpec,
)
from ioc.contract.topology import Topology
from ioc.kafka_clients import faust_broker, faust_idempotent_producer
from ioc.observability import gauge, histogram
from ioc.streams import history, recovery_watch
from ioc.streams.consumer import FeedBacklog, FeedConsumer, StallClock
from ioc.streams.dependencies import PROBE_EVERY_S, DependencyProbes, KafkaStats
from ioc.streams.evaluator import Evaluator
from ioc.streams.incidents import IncidentAgent, Send, TransientError
from ioc.streams.leader import ShardLeader, lock_key
from ioc.streams.portal import PortalKpis
from ioc.streams.processor import FeedProcessor, Record, dead_letter, dead_letter_key
from ioc.streams.rollups import enforce_retention, recompute_dirty
from ioc.streams.writer import open_pool

log = logging.getLogger(__name__)


@dataclass
class StreamOptions:
    batch_size: int = 10_000
    batch_within_s: float = 0.5
    evaluate_every_s: float = 5.0
    rollup_every_s: float = 5.0
    rollup_settle_s: float = 15.0
    retention_every_s: float = 600.0
    retention: Retention = field(default_factory=Retention)
    """Days each tier is kept (IOC_RAW_RETENTION_DAYS, IOC_ROLLUP_1M/1H/1D_RETENTION_DAYS)."""
    history_every_s: float = 60.0
    """How often the shard leader rolls the marked hours and days (IOC_HISTORY_EVERY_S)."""
    history_settle_s: float = 300.0
    """An hour is rolled once it has been marked this long, so an hour that keeps changing
    (the open one) is rolled once per period (IOC_HISTORY_SETTLE_S)."""
    history_day_settle_s: float = 1800.0
    """The same for days (IOC_HISTORY_DAY_SETTLE_S)."""
    memory_trim_every_s: float = 30.0
    """How often freed heap goes back to the operating system (ioc.memory; 0: never)."""
    worker_name: str = field(default_factory=lambda: f"worker-{os.getpid()}")


class Pipeline:
    """Owns the database pool and the processor; created on the worker's event loop."""

    def __init__(self, settings: Settings, topology: Topology, options: StreamOptions) -> None:
        self.settings = settings
        self.topology = topology
        self.options = options
        self.pool: asyncpg.Pool | None = None
        self.processor: FeedProcessor | None = None
        self.evaluator: Evaluator | None = None
        self.portal_kpis: PortalKpis | None = None
        self.incidents: IncidentAgent | None = None
        self.send_incident_event: Send | None = None
        self.feeds: FeedConsumer | None = None
        self._lock = asyncio.Lock()
        self.lag = gauge(m.CONSUMER_LAG)
        self.freshness = gauge(m.EVENT_FRESHNESS)
        self.rollup_seconds = histogram(m.ROLLUP_SECONDS)
        self.stalled = gauge(m.PARTITION_STALLED)
        self.stalls = StallClock()
        self.leading = gauge(m.SHARD_LEADER)
        self.leader = ShardLeader(
            settings.database_dsn(),
            settings.db_schema,
            shard="+".join(topology.top_units()),
            job="evaluator",
            worker=options.worker_name,
        )
        self._term = 0
        gauge(m.WORKER_UP).labels(options.worker_name).set(1)

    async def lead(self) -> bool:
        """Whether this worker runs the shard's singleton work now; a new term restores the
        evaluator from the database (the previous leader may have moved it on)."""
        if not await self.leader.ensure():
            return False
        if self.leader.terms != self._term and self.evaluator is not None:
            self._term = self.leader.terms
            self.evaluator.new_term()
        return True

    async def dead_letter(self, topic: Any, reason: str, detail: str, message: Any) -> None:
        """An event the incident agent cannot take goes to the dead-letter topic, kept."""
        log.error(
            "dead-lettered %s/%s/%s: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
            detail,
        )
        record = Record(  # Faust's message, as the feed path's dead-letter builders read it
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value,
            int(message.timestamp * 1000) if message.timestamp else None,
        )
        value = dead_letter(record, reason, detail, int(time.time() * 1000))
        await (await topic.send(key=dead_letter_key(record), value=value))

    async def ready(self, dead_letter_topic: Any) -> FeedProcessor:
        if self.processor is not None:
            return self.processor
        async with self._lock:
            if self.processor is None:
                delay = 0.5
                while self.pool is None:
                    try:
                        self.pool = await open_pool(
                            self.settings.database_dsn(), self.settings.db_schema
                        )
                    except Exception as exc:
                        log.warning("database not ready (%s); retry in %.1f s", exc, delay)
                        await asyncio.sleep(delay)
                        delay = min(10.0, delay * 2)

                async def send(key: bytes | None, value: bytes) -> Any:
                    return await dead_letter_topic.send(key=key, value=value)

                self.processor = FeedProcessor(self.topology, self.pool, send)
                th = overridden(self.settings.thresholds)
                self.evaluator = Evaluator(self.topology, self.pool, th)
                self.evaluator.backlog = FeedBacklog(self.settings)
                self.portal_kpis = PortalKpis(self.topology, self.pool, th)
                assert self.send_incident_event is not None
                self.incidents = IncidentAgent(self.topology, self.pool, self.send_incident_event)
        assert self.processor is not None
        return self.processor


def build_app(
    settings: Settings, topology: Topology, options: StreamOptions | None = None
) -> tuple[faust.App, Pipeline]:
    options = options or StreamOptions()
    (settings.stack_dir / "faust").mkdir(parents=True, exist_ok=True)  # Faust makes one level
    faust_idempotent_producer()  # dead letters and events: acks=all, never expired or doubled
    app = faust.App(
        settings.topic(STREAMS_APP_ID),
        **faust_broker(settings),
        store="memory://",
        datadir=str(settings.stack_dir / "faust" / "{conf.name}"),
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        # A SIGKILLed worker's device-event partitions wait for its session to expire: Faust's
        # 60 s default kept incidents unopened and unresolved for a minute after a leader
        # died (the feed consumer's is 10 s). aiokafka heartbeats from the event loop, which a
        # national evaluation round holds for about 2 s: 15 s leaves room for that.
        broker_session_timeout=15.0,
        broker_heartbeat_interval=3.0,
        broker_commit_interval=1.0,
        broker_commit_every=10_000,
        topic_replication_factor=settings.kafka_replication_factor,
        topic_partitions=DEVICE_EVENTS.partitions,
        stream_buffer_maxsize=options.batch_size * 2,
        producer_compression_type="lz4",
        producer_linger_ms=5,
        # Dead letters are bounded below this (ioc.contract.deadletter): one always fits.
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        consumer_max_fetch_size=4 * 1024 * 1024,
    )
    pipeline = Pipeline(settings, topology, options)

    def raw_topic(spec: TopicSpec) -> Any:
        return app.topic(
            settings.topic(spec.name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=spec.partitions,
            internal=False,  # bootstrap creates them (ioc.contract.topics)
        )

    dlq = raw_topic(DEAD_LETTER)
    device_events = raw_topic(DEVICE_EVENTS)
    incident_events = raw_topic(INCIDENT_EVENTS)
    open_incidents = app.Table(
        OPEN_INCIDENTS_TABLE,
        default=None,
        partitions=DEVICE_EVENTS.partitions,
        key_type=str,  # raw UTF-8 on the changelog; values are JSON (the app's default)
        help="open incidents and the last transition applied, per correlation key",
    )

    async def send_device_event(key: bytes, value: bytes) -> Any:
        return await device_events.send(key=key, value=value)

    async def send_incident_event(key: bytes, value: bytes) -> Any:
        return await incident_events.send(key=key, value=value)

    pipeline.send_incident_event = send_incident_event

    feeds = FeedConsumer(
        settings,
        lambda: pipeline.ready(dlq),
        batch_size=options.batch_size,
        batch_within_s=options.batch_within_s,
        client_id=options.worker_name,
        on_stats=KafkaStats(options.worker_name),
    )
    pipeline.feeds = feeds
    probes = DependencyProbes(
        feeds,
        settings.database_dsn(),
        options.worker_name,
        overridden(settings.thresholds).dependency_probe_timeout_s,
    )

    @app.timer(PROBE_EVERY_S)
    async def dependencies() -> None:
        """Broker and database reachability, on a timer of its own: neither a write that
        hangs nor the health gauges wait for it (ioc.streams.dependencies)."""
        await probes.run_once()

    @app.task
    async def consume_feeds() -> None:
        # Anything but a stop restarts the consumer (rounds in flight were not committed, so
        # they replay) instead of leaving a worker that is up but reads nothing.
        delay = 1.0
        while True:
            try:
                await feeds.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("feed consumer failed; restarting it in %.0f s", delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    @app.timer(options.evaluate_every_s)
    async def evaluate_states() -> None:
        await pipeline.ready(dlq)
        assert pipeline.evaluator is not None
        if not await pipeline.lead():
            return
        try:
            await pipeline.evaluator.run_once(leader=pipeline.leader)
            if pipeline.portal_kpis is not None:
                await pipeline.portal_kpis.maybe_export()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("state evaluation skipped: %s", exc)
        try:
            # what this and earlier rounds committed; the outbox keeps it until the broker has
            # it. Batches for up to a round interval, the rest at the next tick: a flood of
            # transitions (a national first round) must not hold the next rounds off
            await asyncio.wait_for(
                pipeline.evaluator.publish(
                    send_device_event,
                    leader=pipeline.leader,
                    budget_s=options.evaluate_every_s,
                ),
                timeout=60,
            )
        except Exception as exc:  # the broker or the database away: the next round retries
            log.warning("device events not published yet: %s", exc or type(exc).__name__)

    @app.agent(device_events)
    async def incident_lifecycle(stream: Any) -> None:
        """The one owner of incident state (:mod:`ioc.streams.incidents`): transitions and
        operator commands in, the open-incidents table and incident events out."""
        async for event in stream.events():
            await pipeline.ready(dlq)
            assert pipeline.incidents is not None
            message = event.message
            key = message.key.decode("utf-8", "replace") if message.key else ""
            try:
                parsed = ev.decode_device_event(message.value)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                await pipeline.dead_letter(dlq, "invalid-device-event", str(exc), message)
                continue
            delay = 0.5
            while True:
                try:
                    open_incidents[key] = await pipeline.incidents.apply(
                        open_incidents.get(key), parsed
                    )
                    break
                except TransientError as exc:
                    log.warning("incident agent: database away (%s); retry in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(10.0, delay * 2)
                except Exception as exc:  # a bug must not stop the stream: keep the event
                    log.exception("incident agent could not apply %s", parsed)
                    await pipeline.dead_letter(dlq, "incident-agent-error", repr(exc), message)
                    await pipeline.incidents.give_up(parsed)
                    break

    @app.timer(options.rollup_every_s)
    async def rollups() -> None:
        await pipeline.ready(dlq)
        assert pipeline.pool is not None

        def observe(feed: str, seconds: float) -> None:
            pipeline.rollup_seconds.labels(feed).observe(seconds)

        try:
            while (
                await recompute_dirty(
                    pipeline.pool, observe=observe, settle_s=options.rollup_settle_s
                )
                > 0
            ):
                pass
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("rollup round skipped: %s", exc)

    history_lock = lock_key(settings.db_schema, "*", "history")  # one roller per schema

    @app.timer(options.history_every_s)
    async def history_rollups() -> None:
        """Hourly and daily rollups of the marked hours and days (ioc.streams.history), for
        at most half a period per tick: the leader's other timers share its event loop."""
        await pipeline.ready(dlq)
        assert pipeline.pool is not None
        if not await pipeline.lead():
            return
        try:
            rolled = await history.roll_due(
                pipeline.pool,
                options.retention,
                lock=history_lock,
                hour_settle_s=options.history_settle_s,
                day_settle_s=options.history_day_settle_s,
                budget_s=options.history_every_s / 2,
            )
            log.debug("history: %d buckets rolled", rolled)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("history round skipped: %s", exc)

    order_lock = lock_key(settings.db_schema, "*", "order-chunks")  # one rewriter per schema

    @app.timer(options.retention_every_s)
    async def retention() -> None:
        await pipeline.ready(dlq)
        assert pipeline.pool is not None
        if not await pipeline.lead():
            return
        try:
            how = await enforce_retention(pipeline.pool, options.retention)
            log.debug("retention enforced by %s", how)
            # then the rolled tiers' newest closed chunks, in key order (migration 0018)
            await history.order_closed_chunks(pipeline.pool, lock=order_lock)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("retention round skipped: %s", exc)

    if options.memory_trim_every_s > 0:

        @app.timer(options.memory_trim_every_s)
        async def release_memory() -> None:
            """After a catch-up, hand the drained buffers' pages back (ioc.memory)."""
            await asyncio.to_thread(memory.trim)

    @app.timer(15.0)
    async def watch_table_recovery() -> None:
        """A recovery of the incident table that takes too long says what it waits for
        (ioc.streams.recovery_watch): no incident opens until it ends."""
        stuck = await recovery_watch.describe(app)
        if stuck is not None:
            log.warning("%s", stuck)

    @app.timer(5.0)
    async def health() -> None:
        processor = pipeline.processor
        if processor is None:
            return
        if pipeline.evaluator is not None and not pipeline.leader.is_leader:
            pipeline.evaluator.clear_gauges()  # only the leader exports domain state
            if pipeline.portal_kpis is not None:
                pipeline.portal_kpis.clear_gauges()
        pipeline.leading.labels(pipeline.leader.shard).set(int(pipeline.leader.is_leader))
        now_ms = time.time() * 1000
        for feed, newest in processor.newest_event_ms.items():
            pipeline.freshness.labels(feed).set(max(0.0, (now_ms - newest) / 1000.0))
        # off the event loop: the Kafka client may be waiting on the broker (feeds.lag_soon)
        lags = await feeds.lag_soon(processor.positions)
        now = time.monotonic()
        for (topic, partition), lag in lags.items():
            labels = feeds.partition_label(topic, partition)
            if labels is None:
                continue
            pipeline.lag.labels(*labels).set(lag)
            position = processor.positions.get((topic, partition), -1)
            stalled = pipeline.stalls.observe((topic, partition), position, lag, now)
            pipeline.stalled.labels(*labels).set(stalled)
        for topic, partition in pipeline.stalls.forget(set(lags)):
            # revoked partitions: their new owner reports them (no stale alert here)
            gone = feeds.partition_label(topic, partition)
            for partition_gauge in (pipeline.lag, pipeline.stalled):
                with contextlib.suppress(KeyError):
                    if gone is not None:
                        partition_gauge.remove(*gone)

    return app, pipeline
