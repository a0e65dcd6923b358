"""Operators' side of the incident stream: send commands, read the lifecycle.

Operators never write incident rows: an action (acknowledge, assign, comment, resolve) is an
:class:`~ioc.contract.events.IncidentCommand` on ``ioc.device-events.v1``, keyed like the
incident's transitions, so the incident agent (:mod:`ioc.streams.incidents`) applies it in
order with them; the outcome appears on ``ioc.incidents.v1``. The operations service
(:mod:`ioc.services.ops.actions`, behind the API, the console and ``ioc incidents``) calls
:func:`send_command`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ioc.config import Settings
from ioc.contract import events as ev
from ioc.contract import tables as t
from ioc.contract.topics import DEVICE_EVENTS, INCIDENT_EVENTS
from ioc.contract.topology import Topology
from ioc.errors import IocError
from ioc.kafka_clients import aiokafka_common, aiokafka_producer

_log = logging.getLogger(__name__)


class IncidentCommandError(IocError):
    pass


async def _root_device(settings: Settings, incident_id: int) -> str | None:
    from ioc.db import connect

    conn = await connect(
        settings.database_dsn(), server_settings={"search_path": f"{settings.db_schema},public"}
    )
    try:
        root: str | None = await conn.fetchval(
            f"SELECT root_device FROM {t.INCIDENTS} WHERE id = $1", incident_id
        )
    finally:
        await conn.close()
    return root


class CommandProducer:
    """One Kafka producer for a process's operator commands, started on first use. The
    operations service sends a command per acknowledgement, comment or escalation; a producer
    per command would cost a connection and a metadata round trip each time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(**aiokafka_producer(self._settings))
                try:  # a caller's timeout may cancel start() half-way: stop() still runs
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def send(self, topic: str, payload: bytes, key: bytes) -> None:
        """Acknowledged by the broker on return. A failed send drops the producer, so the
        next command starts from a fresh connection."""
        producer = await self._started()
        try:
            await producer.send_and_wait(topic, payload, key=key)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()


async def send_command(
    settings: Settings,
    topology: Topology,
    incident_id: int,
    action: ev.CommandAction,
    actor: str,
    note: str = "",
    assignee: str | None = None,
    root_device: str | None = None,
    producer: CommandProducer | None = None,
) -> ev.IncidentCommand:
    """Put one operator command on the stream (acknowledged by the broker on return).
    ``root_device``: the incident's, when the caller has just read it (else looked up).
    ``producer``: a long-lived one (the operations service); else one for this command."""
    root = root_device if root_device is not None else await _root_device(settings, incident_id)
    if root is None:
        raise IncidentCommandError(f"no incident {incident_id} in schema {settings.db_schema}")
    if root not in topology.devices:
        raise IncidentCommandError(
            f"incident {incident_id}'s device {root} is not in scenario {topology.name}"
        )
    command = ev.IncidentCommand(
        incident_id=incident_id,
        root_device=root,
        action=action,
        actor=actor,
        note=note,
        assignee=assignee,
        at_ms=int(time.time() * 1000),
    )
    payload = ev.encode(command)
    try:  # what the agent will accept: refuse here, with the reason, not in its dead letters
        ev.decode_device_event(payload)
    except msgspec.ValidationError as exc:
        raise IncidentCommandError(f"incident {incident_id}: {action} refused: {exc}") from None
    sender = producer or CommandProducer(settings)
    try:
        await sender.send(
            settings.topic(DEVICE_EVENTS.name),
            payload,
            ev.correlation_key(topology, root).encode(),
        )
    finally:
        if producer is None:
            await sender.close()
    return command


@dataclass
class IncidentLog:
    """``ioc.incidents.v1`` from its beginning, redeliveries dropped by (incident, seq)."""

    events: list[ev.IncidentEvent]
    undecodable: int = 0

    def of(self, incident_id: int) -> list[ev.IncidentEvent]:
        return [e for e in self.events if e.incident_id == incident_id]


async def _from_beginning(
    settings: Settings, timeout: float
) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    """A started consumer (no group, nothing committed) at the start of every partition of
    ``ioc.incidents.v1``; the caller stops it."""
    topic = settings.topic(INCIDENT_EVENTS.name)
    consumer = AIOKafkaConsumer(
        **aiokafka_common(settings), group_id=None, enable_auto_commit=False
    )
    try:
        await asyncio.wait_for(consumer.start(), timeout)
        tps = [TopicPartition(topic, p) for p in range(INCIDENT_EVENTS.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
    except BaseException:
        await consumer.stop()
        raise
    return consumer, tps


async def read_incident_events(settings: Settings, timeout: float = 15.0) -> IncidentLog:
    """Every incident event on the topic up to its end offsets at the start, in partition
    order (which is the order per root cause)."""
    consumer, tps = await _from_beginning(settings, timeout)
    log = IncidentLog([])
    seen: set[tuple[int, int]] = set()
    try:
        end = await consumer.end_offsets(tps)
        for tp in tps:
            while await consumer.position(tp) < end[tp]:
                batch = await consumer.getmany(tp, timeout_ms=int(timeout * 1000))
                if not batch:
                    raise IncidentCommandError(f"{tp.topic} stopped delivering before its end")
                for record in batch.get(tp, []):
                    try:
                        event = ev.decode_incident_event(record.value or b"")
                    except msgspec.DecodeError:
                        log.undecodable += 1
                        continue
                    if (event.incident_id, event.seq) not in seen:
                        seen.add((event.incident_id, event.seq))
                        log.events.append(event)
    finally:
        await consumer.stop()
    return log


class IncidentFollower:
    """The open incidents by root device, kept current from ``ioc.incidents.v1`` (read from
    its beginning, no consumer group): the pager tells the on-call which incident a page
    belongs to, so they act on the incident rather than on each alert. While the broker is
    away it retries in the background and :meth:`open_for` knows less, never blocks.

    ``on_event`` sees every event after :meth:`apply`, replays included (the topic is read
    from its beginning on each start): the pager records resolutions from it, idempotently."""

    def __init__(
        self,
        settings: Settings,
        on_event: Callable[[ev.IncidentEvent], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.open: dict[str, ev.IncidentEvent] = {}
        self.on_event = on_event
        self._task: asyncio.Task[None] | None = None

    def open_for(self, device_id: str | None) -> ev.IncidentEvent | None:
        return self.open.get(device_id) if device_id else None

    def apply(self, event: ev.IncidentEvent) -> None:
        current = self.open.get(event.root_device)
        if event.status == "resolved":
            if current is not None and current.incident_id == event.incident_id:
                del self.open[event.root_device]
        elif current is None or (current.incident_id, current.seq) <= (
            event.incident_id,
            event.seq,
        ):
            self.open[event.root_device] = event

    async def _hook(self, event: ev.IncidentEvent) -> None:
        assert self.on_event is not None
        try:
            await self.on_event(event)
        except asyncio.CancelledError:
            raise
        except Exception:  # the follower must keep following
            _log.exception("incident event hook failed for incident %s", event.incident_id)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 1.0
        while True:
            consumer: AIOKafkaConsumer | None = None
            try:
                consumer, _tps = await _from_beginning(self.settings, 30.0)
                while True:
                    batches = await consumer.getmany(timeout_ms=1000)
                    for records in batches.values():
                        for record in records:
                            try:
                                event = ev.decode_incident_event(record.value or b"")
                            except msgspec.DecodeError:
                                _log.warning("undecodable incident event at %s", record.offset)
                                continue
                            self.apply(event)
                            if self.on_event is not None:
                                await self._hook(event)
                    delay = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("incident stream unavailable (%s); retry in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
            finally:
                if consumer is not None:
                    await consumer.stop()
