"""The leader's periodic round: device states, intervals, incidents and domain gauges.

Reads ``device_last_seen`` (kept current by every worker), runs the pure
:class:`~ioc.streams.state.StateMachine` at the event-time watermark, and writes transitions
(``device_state``, ``device_state_intervals``) and incidents in one transaction, under the
shard's round lock (:mod:`ioc.streams.leader`). State lives in the database, so when
leadership moves to another worker it restores from there (:meth:`Evaluator.new_term`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from itertools import compress
from operator import attrgetter, itemgetter
from typing import Any, Protocol

import asyncpg

from ioc import memory
from ioc.contract import events as ev
from ioc.contract import metrics as m
from ioc.contract import tables as t
from ioc.contract.feeds import Feed
from ioc.contract.topology import Topology
from ioc.observability import counter, gauge, histogram
from ioc.streams.incidents import Send
from ioc.streams.leader import ShardLeader
from ioc.streams.rows import ts_of
from ioc.streams.soc import alert_facts as soc_alert_facts
from ioc.streams.state import (
    Current,
    Facts,
    FactsView,
    StateMachine,
    Thresholds,
    Transition,
    Verdict,
)
from ioc.streams.vconf import ReadinessMonitor

log = logging.getLogger(__name__)


class Backlog(Protocol):
    """Where the feeds stand in Kafka (:class:`ioc.streams.consumer.FeedBacklog`): None when
    the broker does not say."""

    async def backlog_marks(self) -> dict[tuple[str, int], int] | None:
        """Every feed partition's end now."""

    async def backlog_landed(self, marks: dict[tuple[str, int], int]) -> bool | None:
        """Whether every feed partition has landed in the database up to ``marks``."""


_NO_HOLD = -(2**62)
ROUND_PAUSE_LONGEST_S = 30.0
"""The collector is paused for a round at most this long (a national round takes about 1 s;
one waiting on an unanswering database resumes it, :func:`ioc.memory.collector_paused`)."""
PUBLISH_BATCH = 1_000
"""Outbox rows sent per transaction, deleted once the broker has them all. A batch is all or
nothing: the worker gives a publish 60 s, and in the national run on saturated cores a batch
of 5,000 did not complete in that time, so each call was cancelled, rolled back, and sent
the same first 5,000 of the first round's 100,000 transitions again, and transitions behind
them (an outage) were never published. Smaller batches keep what each one delivered."""

_RESTATE_SQL = f"""
    WITH due AS (
        SELECT s.device_id, s.state, coalesce(s.reason, '') AS reason, s.since
        FROM {t.DEVICE_STATE} s
        WHERE GREATEST(s.updated_at, s.published_at) < now() - $1::interval
          AND (s.applied_at IS NULL
               OR s.applied_at < date_trunc('milliseconds', s.since))  -- events carry ms
          AND (s.restated_at IS NULL OR s.restated_at < now() - $1::interval)
          AND (s.state = ANY($2::text[]) OR s.device_id IN (
                SELECT root_device FROM {t.INCIDENTS} WHERE status <> 'resolved'))
          AND NOT EXISTS (
                SELECT 1 FROM {t.DEVICE_EVENTS_OUTBOX} o WHERE o.device_id = s.device_id)
    ), marked AS (
        UPDATE {t.DEVICE_STATE} s SET restated_at = now() FROM due
        WHERE s.device_id = due.device_id
    )
    INSERT INTO {t.DEVICE_EVENTS_OUTBOX} (device_id, prev, new, reason, at_ts, since_ts)
    SELECT device_id, state, state, reason, since, since FROM due ORDER BY since
    RETURNING device_id"""
"""Restate, as a transition from a state to itself, each device whose last transition the
agent has not applied (``device_state.applied_at``, migration 0016) a grace period after it
was written and published (so an agent merely behind gets that long after each publish),
and that matters to incidents: in a state that roots one, or the root of one still open (its
"up" was lost)."""


_ONLINE = frozenset((t.STATE_UP, t.STATE_DEGRADED))
"""A camera in these states counts as online (``camera_online_ratio``)."""
_NOTABLE = frozenset((t.STATE_DOWN, t.STATE_FLAPPING, t.STATE_DEGRADED))
"""States the per-device gauges export (down, site isolated, flapping, degraded): those that
root an incident (:func:`ioc.streams.incidents.incident_for`), which :meth:`Evaluator.restate`
looks for."""


def _ms(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _epoch_ms(column: str) -> str:
    """Epoch ms of a timestamptz column, to the nearest ms (exact for the devices' own
    millisecond times). ``date_part`` computes in float8: ``extract`` computes in numeric,
    which took a third of a national round's facts query (600,000 values)."""
    return f"(date_part('epoch', {column}) * 1000)::int8"


_ROW_FIELDS = [
    f.name
    for f in dataclasses.fields(Facts)
    if f.name not in ("alert_ts", "alert_reason")  # the last two: ioc.streams.soc fills them
]
"""The :class:`Facts` fields a facts row carries, in its order after ``device_id``."""
_FACT_COLUMNS = [{"seen_ms": "updated_at"}.get(name, name) for name in _ROW_FIELDS]
_DEVICE_ID = itemgetter(0)
_LAST_TS = itemgetter(1 + _FACT_COLUMNS.index("last_ts"))
_PROBE_TS = itemgetter(1 + _FACT_COLUMNS.index("probe_ts"))
"""A facts row's ``last_ts`` and ``probe_ts`` (epoch ms, None before any; never 0)."""
_FACTS_SQL = (
    "SELECT device_id, "
    + ", ".join(_epoch_ms(c) if c.endswith(("_ts", "_at")) else c for c in _FACT_COLUMNS)
    + f" FROM {t.DEVICE_LAST_SEEN}"
)
"""One row per device, its columns in :class:`Facts`' order (``Facts(*row[1:])``)."""


class FactsRecord(asyncpg.Record):  # type: ignore[misc]  # asyncpg has no stubs
    """A row of :data:`_FACTS_SQL` read in place as a :class:`~ioc.streams.state.FactsView`.

    A national round built a ``Facts`` per row (0.14 s of 100,000 ``__init__`` calls) only
    for the rules to read a few attributes of each once. Each attribute here is a C
    ``itemgetter`` behind a ``property`` (set below the class), not a Python function: a
    read costs a few tens of ns more than a slot. A SOC sensor's alert fields are not in the
    row (None here); :func:`ioc.streams.soc.alert_facts` replaces a sensor's record with a
    ``Facts``."""

    __slots__ = ()
    alert_ts: int | None = None
    alert_reason: str | None = None


for _i, _name in enumerate(_ROW_FIELDS):
    setattr(FactsRecord, _name, property(itemgetter(1 + _i)))


_NO_NEWS = frozenset((t.STATE_UNKNOWN, t.STATE_UP))


def is_news(tr: Transition) -> bool:
    """Whether the incident agent can act on a transition. Between ``unknown`` (also a
    device's first verdict) and ``up`` it cannot: nothing is rooted at a device in either
    state (the agent resolved what was when the device left its last incident-worthy state,
    and a device never judged roots nothing), and neither opens anything. A national first
    round makes 100,000 of them and the next rounds about 90,000 more: published, they stood
    in front of every later transition for tens of minutes on a loaded machine, an outage's
    among them (docs/scaling.md, "The national run")."""
    return not (tr.old in _NO_NEWS and tr.new in _NO_NEWS)


_STATE_OF = attrgetter("state")


@dataclasses.dataclass
class _Counted:
    """What the gauges count over every device, kept from round to round (``_export``)."""

    round_no: int
    """The machine's round whose verdict these counts are."""
    state_at: list[str]
    """Every device's state, in ``Evaluator.order``."""
    by_group: Counter[tuple[int, str]]
    """Devices per (class and top unit group, state); a count may be 0."""
    cams_up: Counter[str]
    """Online cameras per unit, each counted in every unit above its site's too."""
    notable: dict[str, None]
    """The devices down, flapping or degraded (an ordered set)."""


class Evaluator:
    def __init__(
        self, topology: Topology, pool: asyncpg.Pool, thresholds: Thresholds | None = None
    ) -> None:
        self.topology = topology
        self.pool = pool
        self.machine = StateMachine(topology, thresholds)
        self.restored = False
        self.top_unit = {dev_id: topology.region_of(dev_id) for dev_id in topology.devices}
        # per round the gauges count every device's state: by C loops (map, zip, Counter) over
        # lists fixed here, so no Python code runs per device (0.36 s of a national round did)
        self.order = self.machine.ids
        """Every device, in the order of the lists below (the machine's: one list)."""
        self.group_keys: list[dict[str, tuple[str, str, str]]] = []
        """Per (class, top unit) group, its ``devices_by_state`` series key per state."""
        groups: dict[tuple[str, str], int] = {}
        self.group_of: list[int] = []  # per device in ``order``, its group
        for dev_id in self.order:
            cls, top = topology.devices[dev_id].device_class, self.top_unit[dev_id]
            index = groups.get((cls, top))
            if index is None:
                index = groups[(cls, top)] = len(self.group_keys)
                self.group_keys.append({s: (cls, s, top) for s in t.STATES})
            self.group_of.append(index)
        self.telehealth = [d.id for d in topology.devices_of(Feed.TELEHEALTH)]
        cameras = [d.id for d in topology.devices_of(Feed.CAMERA)]
        position = self.position = self.machine.position
        """Each device's position in ``order`` (the machine's map, not a second one)."""
        self.camera_at = [position[d] for d in cameras]
        """Each camera's position in ``order`` (its state is read from the round's list)."""
        self.camera_unit = [topology.unit_of_device[d] for d in cameras]
        """Per camera, in the same order, the unit of its site."""
        self.camera_unit_of = dict(zip(cameras, self.camera_unit, strict=True))
        self.camera_totals: Counter[str] = Counter()
        for unit, n in Counter(self.camera_unit).items():
            for up in topology.ancestors(unit):
                self.camera_totals[up] += n
        self.gauges = {
            spec.name: gauge(spec)
            for spec in (
                m.DEVICES_BY_STATE,
                m.OPEN_INCIDENTS,
                m.TELEHEALTH_SESSIONS,
                m.CAMERA_ONLINE_RATIO,
                m.DEVICE_DOWN,
                m.SITE_ISOLATED,
                m.DEVICE_FLAPPING,
                m.DEVICE_DEGRADED,
            )
        }
        self._counted: _Counted | None = None
        """The last exported verdict's counts, updated by the next verdict's changes only."""
        self._children: dict[str, dict[tuple[str, ...], list[Any]]] = {}
        """Per gauge, the series this leader exports: [child, value] (:meth:`_publish`)."""
        self.eval_seconds = histogram(m.EVALUATION_SECONDS)
        self.vconf = ReadinessMonitor(topology, self.machine.th)  # meeting readiness
        self.events_published = counter(m.DEVICE_EVENTS_PUBLISHED)
        self.events_restated = counter(m.DEVICE_EVENTS_RESTATED)
        self._restated_at = 0.0
        self._last: tuple[int, int] | None = None
        self._hold_from = 0
        self.backlog: Backlog | None = None
        """A hold ends as soon as all that was produced before it began has landed (else
        after each held class's heartbeat timeout): set by the worker (ioc.streams.app)."""
        self._marks: dict[tuple[str, int], int] | None = None
        self._marks_wanted = False
        self._held_at = 0.0
        self.pause_collector = True
        """Run each round with the cyclic collector paused (:func:`ioc.memory.collector_paused`;
        bench/device_scale.py compares rounds without)."""
        self.freeze_after_restore = True
        """Freeze what a restoring round built (:func:`ioc.memory.freeze_long_lived`): a
        national round's full collections walked the whole topology (bench/device_scale.py
        ``--no-freeze`` measures without)."""

    def _catching_up(self, watermark: int, wall_ms: int) -> frozenset[str]:
        """The device classes whose new outages are held: in a new term (the previous
        leader's partitions may not be consumed yet) and while event time runs faster than
        the wall clock (backlog after a stall or a restart). Each class is held until what
        was produced before the hold began has landed (:attr:`backlog`) or, failing word of
        that, until a full heartbeat timeout of its own data has arrived (a slow feed's
        longer timeout does not delay the outages of the others)."""
        slack = self.machine.th.catch_up_slack_ms
        why = None
        if self._last is None:
            why = "first round of this term"
        else:
            last_watermark, last_wall = self._last
            if watermark - last_watermark > (wall_ms - last_wall) + slack:
                why = (
                    f"event time ran {watermark - last_watermark} ms in "
                    f"{wall_ms - last_wall} ms of wall clock (a backlog)"
                )
        if why is not None:
            log.info("new outages held: %s", why)
            self._hold_from = watermark
            self._marks, self._marks_wanted = None, True
            self._held_at = time.monotonic()
        self._last = (watermark, wall_ms)
        held = frozenset(
            cls
            for cls, timeout in self.machine.th.heartbeat_timeout_ms.items()
            if watermark < self._hold_from + timeout
        )
        if not held:
            self._marks, self._marks_wanted = None, False
        return held

    async def _end_hold_if_landed(self) -> None:
        """Release a hold whose backlog has landed (before the round: it judges at once)."""
        if self._marks is None or self.backlog is None:
            return
        if await self.backlog.backlog_landed(self._marks):
            log.info(
                "new outages judged again: the backlog landed after %.1f s",
                time.monotonic() - self._held_at,
            )
            self._hold_from, self._marks = _NO_HOLD, None

    async def _mark_backlog(self) -> None:
        """Where the feeds end when a hold began (after the round: outside its transaction).
        Taken a little after the hold began, they cover at least its backlog."""
        if not self._marks_wanted or self.backlog is None:
            return
        marks = await self.backlog.backlog_marks()
        if marks is not None:
            self._marks, self._marks_wanted = marks, False

    async def restore(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(f"SELECT device_id, state, reason, since FROM {t.DEVICE_STATE}")
        current = {
            r["device_id"]: Current(r["state"], r["reason"] or "", _ms(r["since"]) or 0)
            for r in rows
            if r["device_id"] in self.topology.devices
        }
        window = self.machine.th.flap_window_ms
        downs: dict[str, list[int]] = {}
        for r in await conn.fetch(
            f"SELECT device_id, start_ts FROM {t.DEVICE_STATE_INTERVALS} "
            f"WHERE state IN ('down', 'flapping') AND start_ts > now() - $1::interval "
            f"ORDER BY start_ts",
            dt.timedelta(milliseconds=window),
        ):
            downs.setdefault(r["device_id"], []).append(_ms(r["start_ts"]) or 0)
        self.machine.restore(current, downs)
        self.restored = True

    async def facts(self, conn: asyncpg.Connection) -> tuple[dict[str, FactsView], int | None]:
        """Every device's row of ``device_last_seen``, times as epoch ms computed by the
        database (a national round reads 100,000 rows: a datetime per value was most of it),
        each row read in place (:class:`FactsRecord`), the dict built by C loops."""
        rows = await conn.fetch(_FACTS_SQL, record_class=FactsRecord)
        facts: dict[str, FactsView] = dict(zip(map(_DEVICE_ID, rows), rows, strict=True))
        # the newest own report or probe, by C loops over the rows
        newest = max(
            max(filter(None, map(_LAST_TS, rows)), default=-1),
            max(filter(None, map(_PROBE_TS, rows)), default=-1),
        )
        if self.machine.sensors:  # SOC sensors: their recent alerts (ioc.streams.soc)
            await soc_alert_facts(conn, facts, self.machine.th)
        return facts, (newest if newest >= 0 else None)

    def new_term(self) -> None:
        """This worker became the shard's leader (again): restore the machine from the
        database, which the previous leader kept current, instead of trusting memory."""
        self.restored = False
        self._last = None

    async def run_once(
        self, wall_ms: int | None = None, leader: ShardLeader | None = None
    ) -> Verdict | None:
        """One round, in one transaction (under ``leader``'s round lock when given).
        Returns the verdict, or None when no data has arrived yet or the round was skipped.
        The cyclic collector waits for the round's end (:func:`ioc.memory.collector_paused`)."""
        with (
            memory.collector_paused(longest_s=ROUND_PAUSE_LONGEST_S)
            if self.pause_collector
            else contextlib.nullcontext()
        ):
            return await self._round(wall_ms, leader)

    async def _round(self, wall_ms: int | None, leader: ShardLeader | None) -> Verdict | None:
        await self._end_hold_if_landed()
        started = time.perf_counter()
        wall_ms = wall_ms if wall_ms is not None else int(time.time() * 1000)
        async with self.pool.acquire() as conn, conn.transaction():
            if leader is not None and not await leader.holds_round(conn):
                log.info("another worker's round holds the shard; skipped")
                return None
            restoring = not self.restored
            if restoring:
                await self.restore(conn)
            facts, newest = await self.facts(conn)
            if newest is None:
                return None
            # Event-time watermark: the newest event seen, never ahead of the wall clock.
            now_ms = min(wall_ms, newest)
            verdict = self.machine.evaluate(facts, now_ms, self._catching_up(now_ms, wall_ms))
            await self._write_transitions(conn, verdict)
            await self._outbox(conn, verdict)
            open_incidents = await conn.fetch(
                f"SELECT kind, severity, count(*) AS n FROM {t.INCIDENTS} "
                f"WHERE status <> 'resolved' GROUP BY kind, severity"
            )
            readiness = await self.vconf.collect(conn, now_ms, verdict)
        self._export(verdict, facts, open_incidents)
        self.vconf.export(readiness)
        if restoring and self.freeze_after_restore:
            # the state machine, its gauges' series and the topology now live as long as the
            # term: out of the cyclic collector's full collections (ioc.memory)
            memory.freeze_long_lived()
        self.eval_seconds.observe(time.perf_counter() - started)
        await self._mark_backlog()
        return verdict

    async def _write_transitions(self, conn: asyncpg.Connection, verdict: Verdict) -> None:
        """The round's transitions as three set-based statements (one row per device: a
        round moves each device at most once). Per-row statements took 72 s for the
        100,000 transitions of a national scenario's first round."""
        if not verdict.transitions:
            return
        ids = [tr.device_id for tr in verdict.transitions]
        states = [tr.new for tr in verdict.transitions]
        reasons = [tr.reason for tr in verdict.transitions]
        ats = [ts_of(tr.at_ms) for tr in verdict.transitions]
        await conn.execute(
            f"""INSERT INTO {t.DEVICE_STATE} (device_id, state, reason, since)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                ON CONFLICT (device_id) DO UPDATE SET state = EXCLUDED.state,
                  reason = EXCLUDED.reason, since = EXCLUDED.since, updated_at = now()""",
            ids,
            states,
            reasons,
            ats,
        )
        await conn.execute(
            f"""UPDATE {t.DEVICE_STATE_INTERVALS} i SET end_ts = n.at
                FROM unnest($1::text[], $2::timestamptz[]) AS n (device_id, at)
                WHERE i.device_id = n.device_id AND i.end_ts IS NULL AND i.start_ts <= n.at""",
            ids,
            ats,
        )
        await conn.execute(
            f"""INSERT INTO {t.DEVICE_STATE_INTERVALS} (device_id, state, reason, start_ts)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                ON CONFLICT (device_id, start_ts) DO UPDATE
                SET state = EXCLUDED.state, reason = EXCLUDED.reason, end_ts = NULL""",
            ids,
            states,
            reasons,
            ats,
        )

    async def _outbox(self, conn: asyncpg.Connection, verdict: Verdict) -> None:
        """The round's transitions, for the incident agent, in the round's transaction: they
        reach ``ioc.device-events.v1`` if and only if this round commits (COPY). Not those of
        a device between ``unknown`` and ``up`` (:func:`is_news`)."""
        news = [tr for tr in verdict.transitions if is_news(tr)]
        if news:
            await conn.copy_records_to_table(
                t.DEVICE_EVENTS_OUTBOX,
                columns=["device_id", "prev", "new", "reason", "at_ts", "since_ts"],
                records=[
                    (
                        tr.device_id,
                        tr.old,
                        tr.new,
                        tr.reason,
                        ts_of(tr.at_ms),
                        ts_of(verdict.states[tr.device_id].since_ms),
                    )
                    for tr in news
                ],
            )

    async def restate(self, conn: asyncpg.Connection) -> list[str]:
        """Put the current state of each device whose last transition the incident agent
        has not applied within ``restate_unapplied_ms`` in the outbox again, as a new event
        (a transition from its state to itself, a new id: the agent's per-key last id would
        drop the old one). The agent converges on it: it opens what the state roots and is
        not open, resolves what it no longer roots, and does nothing twice. Faust commits
        past a message its stream skipped during a rebalance (flow suspended), so a
        transition the broker confirmed may never reach the agent."""
        self._restated_at = time.monotonic()
        grace_ms = self.machine.th.restate_unapplied_ms
        rows = await conn.fetch(_RESTATE_SQL, dt.timedelta(milliseconds=grace_ms), sorted(_NOTABLE))
        devices = [r["device_id"] for r in rows]
        if devices:
            self.events_restated.inc(len(devices))
            log.warning(
                "incident agent has not applied the last transition of %d devices in %.0f s; "
                "their states published again: %s",
                len(devices),
                grace_ms / 1000,
                ", ".join(devices[:12]) + (" ..." if len(devices) > 12 else ""),
            )
        return devices

    async def publish(
        self, send: Send, leader: ShardLeader | None = None, budget_s: float | None = None
    ) -> int:
        """Publish committed transitions in order and delete what the broker confirmed. Under
        the round lock, so two leaders never interleave; a crash after sending leaves rows that
        the next publisher sends again, and the agent drops by id.

        ``budget_s``: start no new batch after this long, and leave the rest in the outbox for
        the next call: the worker publishes between rounds, and a national first round
        (100,000 devices from unknown to up) would otherwise hold the rounds off for minutes."""
        # every half of the grace (ms), so a loss is restated at most 1.5 graces after it
        if (time.monotonic() - self._restated_at) * 2_000 >= self.machine.th.restate_unapplied_ms:
            # here rather than in the round: the round's time (its histogram) stays its own
            async with self.pool.acquire() as conn, conn.transaction():
                if leader is None or await leader.holds_round(conn):
                    await self.restate(conn)
        sent = 0
        deadline = None if budget_s is None else time.monotonic() + budget_s
        while deadline is None or time.monotonic() < deadline:
            async with self.pool.acquire() as conn, conn.transaction():
                if leader is not None and not await leader.holds_round(conn):
                    return sent
                rows = await conn.fetch(
                    f"SELECT id, device_id, prev, new, reason, at_ts, since_ts "
                    f"FROM {t.DEVICE_EVENTS_OUTBOX} ORDER BY id LIMIT {PUBLISH_BATCH}"
                )
                if not rows:
                    return sent
                pending = []
                for r in rows:
                    event = ev.DeviceTransition(
                        id=r["id"],
                        device_id=r["device_id"],
                        prev=r["prev"],
                        new=r["new"],
                        reason=r["reason"][: ev.MAX_TEXT],
                        at_ms=_ms(r["at_ts"]) or 0,
                        since_ms=_ms(r["since_ts"]) or 0,
                    )
                    key = (
                        ev.correlation_key(self.topology, r["device_id"])
                        if r["device_id"] in self.topology.devices
                        else r["device_id"]
                    )
                    pending.append(await send(key.encode(), ev.encode(event)))
                await asyncio.gather(*pending)
                await conn.execute(
                    f"DELETE FROM {t.DEVICE_EVENTS_OUTBOX} WHERE id <= $1", rows[-1]["id"]
                )
                await conn.execute(  # the grace before a restatement counts from here
                    f"UPDATE {t.DEVICE_STATE} SET published_at = now() "
                    f"WHERE device_id = ANY($1::text[])",
                    list({r["device_id"] for r in rows}),
                )
                self.events_published.inc(len(rows))
                sent += len(rows)
        return sent

    def _publish(self, spec: m.MetricSpec, values: dict[tuple[str, ...], float]) -> None:
        """Make a gauge's series exactly ``values``. A series' child is kept from round to
        round and set only when its value changed: clearing the gauge and making every child
        again (label validation, 40 us each) took 0.5-1 s of a national round's 24,000
        series, and setting each unchanged one (a lock each) most of the rest."""
        self._publish_some(spec, values, gone=self._series(spec).keys() - values.keys())

    def _publish_some(
        self,
        spec: m.MetricSpec,
        values: Mapping[tuple[str, ...], float],
        gone: Iterable[tuple[str, ...]] = (),
    ) -> None:
        """Remove the series in ``gone``, set those in ``values``, and leave the gauge's
        other series as they are."""
        gauge = self.gauges[spec.name]
        children = self._series(spec)
        for key in gone:
            if children.pop(key, None) is not None:
                gauge.remove(*key)
        for key, value in values.items():
            entry = children.get(key)
            if entry is None:
                child = gauge.labels(*key)
                child.set(value)
                children[key] = [child, value]
            elif entry[1] != value:
                entry[0].set(value)
                entry[1] = value

    def _series(self, spec: m.MetricSpec) -> dict[tuple[str, ...], list[Any]]:
        """The series this leader exports of a gauge: [child, value] per label values."""
        return self._children.setdefault(spec.name, {})

    def _count_all(self, verdict: Verdict) -> _Counted:
        """Every device's state counted, by C loops over the lists fixed in ``__init__``: a
        term's first round, or after a verdict that was not exported (a failed round)."""
        every_state = list(map(_STATE_OF, map(verdict.states.__getitem__, self.order)))
        online = map(_ONLINE.__contains__, map(every_state.__getitem__, self.camera_at))
        cams_up: Counter[str] = Counter()
        for unit, n in Counter(compress(self.camera_unit, online)).items():
            for up in self.topology.ancestors(unit):
                cams_up[up] += n
        notable = compress(self.order, map(_NOTABLE.__contains__, every_state))
        return _Counted(
            round_no=verdict.round_no,
            state_at=every_state,
            by_group=Counter(zip(self.group_of, every_state, strict=True)),
            cams_up=cams_up,
            notable=dict.fromkeys(notable),
        )

    def _count_changes(
        self, counted: _Counted, verdict: Verdict, changed: AbstractSet[str]
    ) -> set[tuple[int, str]]:
        """The previous round's counts moved by the devices whose state changed: a national
        round changes about 1 % of them, and recounting all 100,000 took 0.2 s a round.
        Returns the (group, state) counts that moved."""
        state_at, by_group, group_of = counted.state_at, counted.by_group, self.group_of
        moved: set[tuple[int, str]] = set()
        for dev_id in changed:
            i = self.position[dev_id]
            old, new = state_at[i], verdict.states[dev_id].state
            if old == new:
                continue
            state_at[i] = new
            by_group[(group_of[i], old)] -= 1
            by_group[(group_of[i], new)] += 1
            moved.update(((group_of[i], old), (group_of[i], new)))
            if (old in _NOTABLE) != (new in _NOTABLE):
                if new in _NOTABLE:
                    counted.notable[dev_id] = None
                else:
                    del counted.notable[dev_id]
            unit = self.camera_unit_of.get(dev_id)
            if unit is not None and (old in _ONLINE) != (new in _ONLINE):
                step = 1 if new in _ONLINE else -1
                for up in self.topology.ancestors(unit):
                    counted.cams_up[up] += step
        counted.round_no = verdict.round_no
        return moved

    def _export(
        self, verdict: Verdict, facts: Mapping[str, FactsView], open_incidents: list[Any]
    ) -> None:
        """The domain gauges from the verdict: counted from the previous round's counts and
        the round's changes when this verdict follows the last exported one, else afresh."""
        topo, states = self.topology, verdict.states
        counted = self._counted
        if verdict.changed is None or counted is None or verdict.round_no != counted.round_no + 1:
            counted = self._counted = self._count_all(verdict)
            by_state: dict[tuple[str, ...], float] = {
                self.group_keys[group][state]: n
                for (group, state), n in counted.by_group.items()
                if n
            }
            self._publish(m.DEVICES_BY_STATE, by_state)
        else:
            # only the counts that moved: a national worker exports 16,000 of them
            moved = self._count_changes(counted, verdict, verdict.changed)
            counts = {self.group_keys[g][state]: counted.by_group[(g, state)] for g, state in moved}
            self._publish_some(
                m.DEVICES_BY_STATE,
                {key: n for key, n in counts.items() if n},
                gone=[key for key, n in counts.items() if not n],
            )
        # the devices the per-device gauges below look at: down, flapping or degraded (few)
        notable = [(dev_id, states[dev_id]) for dev_id in counted.notable]
        incidents: dict[tuple[str, ...], float] = {
            (kind, sev): 0 for kind in t.INCIDENT_KINDS for sev in t.SEVERITIES
        }
        for r in open_incidents:
            incidents[(r["kind"], r["severity"])] = r["n"]
        self._publish(m.OPEN_INCIDENTS, incidents)
        sessions: dict[tuple[str, ...], float] = {
            (self.top_unit[dev_id],): 0 for dev_id in self.telehealth
        }
        for dev_id in self.telehealth:
            f = facts.get(dev_id)
            if f is not None and states[dev_id].state not in (t.STATE_DOWN, t.STATE_UNREACHABLE):
                sessions[(self.top_unit[dev_id],)] += f.sessions_active or 0
        self._publish(m.TELEHEALTH_SESSIONS, sessions)
        # online cameras per unit of their site, rolled up the unit tree (``_Counted``)
        cams_up = counted.cams_up
        ratios: dict[tuple[str, ...], float] = {}
        for unit, total in self.camera_totals.items():
            u = topo.units[unit]
            ratios[(unit, u.name, u.level_name)] = cams_up[unit] / total
        self._publish(m.CAMERA_ONLINE_RATIO, ratios)
        down: dict[tuple[str, ...], float] = {}
        isolated: dict[tuple[str, ...], float] = {}
        flapping: dict[tuple[str, ...], float] = {}
        degraded: dict[tuple[str, ...], float] = {}
        for dev_id, cur in notable:
            dev = topo.devices[dev_id]
            unit = topo.unit_of_device[dev_id]
            if cur.state == t.STATE_DOWN:
                behind = topo.devices_behind(dev_id) if dev.device_class == Feed.NETNODE else []
                if behind:
                    # upstream_node = the node itself: inhibits alerts of devices behind it;
                    # region and province: the unit-level consequences (ioc.alerting)
                    region, province = self.top_unit[dev_id], topo.ancestors(unit)[-1]
                    isolated[(dev_id, unit, dev.site, dev_id, region, province)] = len(behind)
                else:
                    down[(dev_id, dev.device_class, unit, dev.site, dev.upstream or "")] = 1
            elif cur.state == t.STATE_FLAPPING:
                flap_key = (
                    dev_id,
                    dev.device_class,
                    unit,
                    dev.site,
                    dev.upstream or "",
                    self.top_unit[dev_id],
                    topo.ancestors(unit)[-1],
                )
                flapping[flap_key] = 1
            elif cur.state == t.STATE_DEGRADED:
                reason = cur.reason.split(" ")[0]
                degraded[(dev_id, dev.device_class, unit, dev.site, reason, dev.upstream or "")] = 1
        self._publish(m.DEVICE_DOWN, down)
        self._publish(m.SITE_ISOLATED, isolated)
        self._publish(m.DEVICE_FLAPPING, flapping)
        self._publish(m.DEVICE_DEGRADED, degraded)

    def clear_gauges(self) -> None:
        """When leadership moves away, stop exporting domain state from this worker."""
        for domain_gauge in self.gauges.values():
            domain_gauge.clear()
        self._children.clear()
        self._counted = None
        self.vconf.clear()
