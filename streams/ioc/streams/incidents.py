"""The incident agent: the one owner of incident state.

A Faust agent (:func:`ioc.streams.app.build_app`) reads ``ioc.device-events.v1``, where the
shard leader publishes device-state transitions and operators' commands arrive, both keyed by
the network node a device depends on (:func:`ioc.contract.events.correlation_key`).
:class:`IncidentAgent` applies each event to that key's entry of the agent's Faust table
(open incidents and the last transition applied; the table's changelog restores it after a
rebalance), writes the ``incidents`` rows and the ``incident_events`` timeline as the
projection of that state, and then publishes the new steps on ``ioc.incidents.v1``.

Delivery: Faust commits the event's offset after :meth:`IncidentAgent.apply` returned, so a
crash replays it. A transition already applied is dropped by its id (outbox ids only grow);
an incident the database already holds open is adopted, not opened twice; timeline steps are
written in the database transaction first and marked published once the broker confirmed
them, so a step committed just before a crash is published at the next touch of its incident.
Consumers drop a step published twice by ``(incident_id, seq)``. Faust also commits past a
message its stream skipped during a rebalance, unapplied: the agent records per device the
last transition it applied (``device_state.applied_at``), and the shard leader restates a
device whose last transition stays unapplied (:meth:`ioc.streams.evaluator.Evaluator.restate`).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from ioc.contract import events as ev
from ioc.contract import metrics as m
from ioc.contract import soc
from ioc.contract import tables as t
from ioc.contract.feeds import Feed
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.contract.topology import Topology
from ioc.db.errors import PERMANENT, classify
from ioc.observability import counter
from ioc.streams import soc as soc_links
from ioc.streams.state import Verdict

log = logging.getLogger(__name__)

Send = Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]
"""Produce (key, value); the awaitable it returns completes when the broker has it."""


@dataclass(frozen=True)
class WantedIncident:
    root: str
    kind: str
    title: str
    affected: tuple[str, ...]


def incident_for(
    topology: Topology, device_id: str, state: str, reason: str
) -> WantedIncident | None:
    """The incident a device in ``state`` is the root cause of, if any. A down node with
    devices behind it isolates a site; devices behind a down node are unreachable, not down,
    and open nothing (root cause, not symptoms)."""
    dev = topology.devices[device_id]
    site = topology.sites[dev.site]
    if state == t.STATE_DOWN:
        behind = topology.devices_behind(device_id) if dev.device_class == "netnode" else []
        if behind:
            title = (
                f"Site isolated: node {device_id} at {site.name} is down, "
                f"{len(behind)} devices cut off"
            )
            return WantedIncident(device_id, t.INCIDENT_SITE_ISOLATED, title, tuple(behind))
        return WantedIncident(
            device_id,
            t.INCIDENT_DEVICE_DOWN,
            f"{dev.device_class} {device_id} at {site.name} is down ({reason})",
            (device_id,),
        )
    if state == t.STATE_FLAPPING:
        return WantedIncident(
            device_id,
            t.INCIDENT_FLAPPING,
            f"{dev.device_class} {device_id} at {site.name} is flapping ({reason})",
            (device_id,),
        )
    if state == t.STATE_DEGRADED and dev.device_class == Feed.SOC:
        found = soc_links.security_incident(topology, device_id, reason)
        return None if found is None else WantedIncident(device_id, *found, (device_id,))
    if state == t.STATE_DEGRADED:
        return WantedIncident(
            device_id,
            t.INCIDENT_DEGRADED,
            f"{dev.device_class} {device_id} at {site.name} is degraded ({reason})",
            (device_id,),
        )
    return None


def wanted_incidents(topology: Topology, verdict: Verdict) -> dict[tuple[str, str], WantedIncident]:
    """The incidents that should be open given all states (what the agent converges to)."""
    wanted: dict[tuple[str, str], WantedIncident] = {}
    for dev_id, cur in verdict.states.items():
        inc = incident_for(topology, dev_id, cur.state, cur.reason)
        if inc is not None:
            wanted[(inc.root, inc.kind)] = inc
    return wanted


def _ts(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _key(root: str, kind: str) -> str:
    """An open incident's key in the table value: one open incident per root and kind."""
    return f"{root}|{kind}"


_EVENT_OF = {
    "acknowledge": "acknowledged",
    "assign": "assigned",
    "comment": "commented",
    "resolve": "resolved",
    "escalate": "escalated",
}


class TransientError(Exception):
    """The database or the broker is away (or a failure nobody can tell apart from that): the
    agent retries the same event, whose offset is not committed. A failure about the event
    itself (:func:`~ioc.streams.writer.classify` says permanent) propagates instead."""


class IncidentAgent:
    """Applies device events to one key's open incidents (the Faust table's value, a JSON
    dict ``{"last_id": int, "open": {"<root>|<kind>": {"id", "status", "seq"}}}``)."""

    def __init__(
        self,
        topology: Topology,
        pool: asyncpg.Pool,
        send: Send,
        thresholds: Thresholds = THRESHOLDS,
    ) -> None:
        self.topology = topology
        self.pool = pool
        self.send = send
        self.th = thresholds
        self.published = counter(m.INCIDENT_EVENTS)
        self.commands = counter(m.INCIDENT_COMMANDS)
        self.correlator = soc_links.Correlator(self)

    async def apply(self, state: dict[str, Any] | None, event: ev.DeviceEvent) -> dict[str, Any]:
        """The key's new table value; the steps it caused are in the database and published."""
        # a deep copy: a failed transaction retried must find the table's value untouched
        # (an incident's seq bumped by a rolled-back step would leave a gap in its timeline)
        value: dict[str, Any] = {
            "last_id": int((state or {}).get("last_id", 0)),
            "open": {k: dict(r) for k, r in (state or {}).get("open", {}).items()},
        }
        if (state or {}).get("links"):  # SOC correlation memberships (ioc.streams.soc)
            value["links"] = copy.deepcopy((state or {})["links"])
        touched: list[int] = []
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                if isinstance(event, ev.DeviceTransition):
                    if event.id <= value["last_id"]:
                        log.debug("transition %d already applied", event.id)
                        return value
                    at = _ts(event.at_ms)
                    applied = await conn.fetchval(
                        f"SELECT applied_at FROM {t.DEVICE_STATE} WHERE device_id = $1 FOR UPDATE",
                        event.device_id,
                    )
                    if event.prev == event.new and applied is not None and applied >= at:
                        # a restatement of a transition applied meanwhile (the leader saw it
                        # unapplied): applying it again would reopen what an operator resolved
                        log.info("restated transition %d already applied", event.id)
                    elif event.device_id in self.topology.devices:
                        touched = await self._transition(conn, value, event)
                    await self._record_applied(conn, event.device_id, at)
                    value["last_id"] = event.id
                else:
                    touched = await self._command(conn, value["open"], event)
        except Exception as exc:
            if classify(exc) == PERMANENT:
                raise
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        await self.publish(touched)
        return value

    async def give_up(self, event: ev.DeviceEvent) -> None:
        """A transition the agent cannot apply (dead-lettered, ioc.streams.app) counts as
        applied: the leader must not restate it every grace period into another dead letter."""
        if not isinstance(event, ev.DeviceTransition):
            return
        try:
            async with self.pool.acquire() as conn:
                await self._record_applied(conn, event.device_id, _ts(event.at_ms))
        except Exception:  # the dead letter keeps it; at worst it is restated once more
            log.exception("could not record transition %d as given up", event.id)

    @staticmethod
    async def _record_applied(conn: asyncpg.Connection, device_id: str, at: dt.datetime) -> None:
        """The device's last transition applied (``device_state.applied_at``): the leader
        restates a device whose last transition stays unapplied (ioc.streams.evaluator)."""
        await conn.execute(
            f"UPDATE {t.DEVICE_STATE} SET applied_at = GREATEST(applied_at, $2) "
            f"WHERE device_id = $1",
            device_id,
            at,
        )

    # --- transitions -------------------------------------------------------------------------

    async def _transition(
        self, conn: asyncpg.Connection, value: dict[str, Any], tr: ev.DeviceTransition
    ) -> list[int]:
        open_ = value["open"]
        wanted = incident_for(self.topology, tr.device_id, tr.new, tr.reason)
        corr = self.correlator
        dev = self.topology.devices[tr.device_id]
        attack = soc.alert_class(tr.reason) if dev.device_class == Feed.SOC else None
        # may this state be part of a correlated incident (ioc.streams.soc)?
        correlatable = tr.new == t.STATE_DEGRADED and (
            dev.device_class == Feed.NETNODE or (attack is not None and attack[1])
        )
        touched: list[int] = await corr.leave(conn, value, tr, correlatable)
        # Resolve what this device was the root of and no longer is (the database too: an
        # incident opened before the table existed is resolved all the same).
        rows = await conn.fetch(
            f"""UPDATE {t.INCIDENTS} SET status = 'resolved', resolved_at = $3
                WHERE root_device = $1 AND status <> 'resolved' AND kind IS DISTINCT FROM $2
                RETURNING id, kind, assigned_to""",
            tr.device_id,
            wanted.kind if wanted else None,
            _ts(tr.at_ms),
        )
        for row in rows:
            record = open_.pop(_key(tr.device_id, row["kind"]), None)
            await self._step(
                conn,
                row["id"],
                record,
                "resolved",
                "resolved",
                row["assigned_to"],
                tr.at_ms,
                "ioc",
                f"{tr.device_id} is {tr.new}",
            )
            log.info("incident %s resolved: %s is %s", row["id"], tr.device_id, tr.new)
            touched.append(row["id"])
            touched += await corr.release(conn, value, _key(tr.device_id, row["kind"]), tr)
        if corr.is_member(value, tr.device_id):
            return touched  # part of a correlated incident already
        kind = wanted.kind if wanted is not None else t.INCIDENT_SECURITY
        target = (
            await corr.target(conn, open_, tr.device_id, kind, tr.reason) if correlatable else None
        )
        site = self.topology.sites[dev.site].name
        member = corr.member(wanted, tr, f"{dev.device_class} {dev.id} at {site}: {tr.reason}")
        if target is not None and (wanted is None or _key(wanted.root, wanted.kind) not in open_):
            touched += await corr.join(conn, value, target, member, tr)
        elif wanted is not None and _key(wanted.root, wanted.kind) not in open_:
            corr.unwatch(value, tr.device_id)
            touched += await self._open(conn, open_, wanted, tr)
            touched += await corr.opened(conn, value, _key(wanted.root, wanted.kind), tr)
        elif wanted is None and correlatable and dev.device_class == Feed.SOC:
            corr.watch(value, member)  # a DDoS or scan alert: an incident if the link degrades
        return touched

    async def _open(
        self,
        conn: asyncpg.Connection,
        open_: dict[str, Any],
        inc: WantedIncident,
        tr: ev.DeviceTransition,
    ) -> list[int]:
        dev = self.topology.devices[inc.root]
        incident_id = await conn.fetchval(
            f"""INSERT INTO {t.INCIDENTS} (kind, severity, title, root_device, device_class,
                  unit_code, site_id, opened_at, affected, details)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
                ON CONFLICT (root_device, kind) WHERE status <> 'resolved' DO NOTHING
                RETURNING id""",
            inc.kind,
            self.th.incident_severity[(inc.kind, dev.device_class)],
            inc.title,
            inc.root,
            dev.device_class,
            self.topology.unit_of_device[inc.root],
            dev.site,
            _ts(tr.at_ms),
            list(inc.affected),
            json.dumps(
                {
                    "reason": tr.reason,
                    "state_since": _ts(tr.since_ms).isoformat(),
                    "upstream": self.topology.upstream_chain(inc.root),
                }
            ),
        )
        key = _key(inc.root, inc.kind)
        if incident_id is None:  # open already (a replay after a crash): adopt it
            row = await conn.fetchrow(
                f"SELECT id, status FROM {t.INCIDENTS} "
                f"WHERE root_device = $1 AND kind = $2 AND status <> 'resolved'",
                inc.root,
                inc.kind,
            )
            assert row is not None
            await self._adopt(conn, open_, key, row["id"], row["status"])
            return [row["id"]]  # its steps not yet published go out now
        open_[key] = {"id": incident_id, "status": "open", "seq": 0}
        await conn.execute(
            f"UPDATE {t.DEVICE_STATE} SET incident_id = $2 WHERE device_id = $1",
            inc.root,
            incident_id,
        )
        await self._step(
            conn, incident_id, open_[key], "opened", "open", None, tr.at_ms, "ioc", tr.reason
        )
        log.info("incident %s opened: %s", incident_id, inc.title)
        return [incident_id]

    # --- operator commands -------------------------------------------------------------------

    async def _command(
        self, conn: asyncpg.Connection, open_: dict[str, Any], cmd: ev.IncidentCommand
    ) -> list[int]:
        row = await conn.fetchrow(
            f"SELECT id, kind, root_device, status, assigned_to FROM {t.INCIDENTS} WHERE id = $1",
            cmd.incident_id,
        )
        if row is None or row["status"] == "resolved" or row["root_device"] != cmd.root_device:
            why = "unknown" if row is None or row["root_device"] != cmd.root_device else "resolved"
            log.warning(
                "incident %d: %s by %s refused (%s incident)",
                cmd.incident_id,
                cmd.action,
                cmd.actor,
                why,
            )
            self.commands.labels(cmd.action, f"rejected-{why}").inc()
            return []
        key = _key(row["root_device"], row["kind"])
        record = open_.get(key)
        if record is None or record["id"] != row["id"]:  # open in the database only: take it
            record = await self._adopt(conn, open_, key, row["id"], row["status"])
        status, assigned = row["status"], row["assigned_to"]
        if cmd.action == "acknowledge" and status == "acknowledged":
            self.commands.labels(cmd.action, "no-op").inc()
            return []
        if cmd.action == "acknowledge":
            status = "acknowledged"
            await conn.execute(
                f"UPDATE {t.INCIDENTS} SET status = 'acknowledged', acknowledged_at = $2, "
                f"acknowledged_by = $3 WHERE id = $1",
                row["id"],
                _ts(cmd.at_ms),
                cmd.actor,
            )
        elif cmd.action == "assign":
            assigned = cmd.assignee or cmd.actor
            await conn.execute(
                f"UPDATE {t.INCIDENTS} SET assigned_to = $2 WHERE id = $1", row["id"], assigned
            )
        elif cmd.action == "resolve":
            status = "resolved"
            await conn.execute(
                f"UPDATE {t.INCIDENTS} SET status = 'resolved', resolved_at = $2 WHERE id = $1",
                row["id"],
                _ts(cmd.at_ms),
            )
        await self._step(
            conn,
            row["id"],
            record,
            _EVENT_OF[cmd.action],
            status,
            assigned,
            cmd.at_ms,
            cmd.actor,
            cmd.note,
        )
        if status == "resolved":
            open_.pop(key, None)
        else:
            record["status"] = status
        self.commands.labels(cmd.action, "applied").inc()
        return [row["id"]]

    # --- timeline ----------------------------------------------------------------------------

    async def _last_seq(self, conn: asyncpg.Connection, incident_id: int) -> int:
        return int(
            await conn.fetchval(
                f"SELECT coalesce(max(seq), 0) FROM {t.INCIDENT_EVENTS} WHERE incident_id = $1",
                incident_id,
            )
        )

    async def _adopt(
        self,
        conn: asyncpg.Connection,
        open_: dict[str, Any],
        key: str,
        incident_id: int,
        status: str,
    ) -> dict[str, Any]:
        """An incident open in the database but not in the table (a replay after a crash, a
        table restored behind the database): the table takes it over where its timeline is."""
        seq = await self._last_seq(conn, incident_id)
        record = open_[key] = {"id": incident_id, "status": status, "seq": seq}
        return record

    async def _step(
        self,
        conn: asyncpg.Connection,
        incident_id: int,
        record: dict[str, Any] | None,
        event: str,
        status: str,
        assigned_to: str | None,
        at_ms: int,
        actor: str,
        note: str,
    ) -> None:
        if record is not None:
            record["seq"] = seq = int(record["seq"]) + 1
        else:
            seq = await self._last_seq(conn, incident_id) + 1
        await conn.execute(
            f"""INSERT INTO {t.INCIDENT_EVENTS}
                 (incident_id, seq, event, status, assigned_to, at, actor, note)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (incident_id, seq) DO NOTHING""",
            incident_id,
            seq,
            event,
            status,
            assigned_to,
            _ts(at_ms),
            actor,
            note,
        )

    async def publish(self, incident_ids: Iterable[int]) -> int:
        """Publish the unpublished steps of these incidents in order; mark them published
        once the broker confirmed them."""
        ids = sorted(set(incident_ids))
        if not ids:
            return 0
        try:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    f"""SELECT e.incident_id, e.seq, e.event, e.status, e.assigned_to, e.at,
                               e.actor, e.note, i.kind, i.severity, i.title, i.root_device,
                               i.device_class, i.unit_code, i.site_id, i.affected
                        FROM {t.INCIDENT_EVENTS} e JOIN {t.INCIDENTS} i ON i.id = e.incident_id
                        WHERE e.incident_id = ANY($1::bigint[]) AND NOT e.published
                        ORDER BY e.incident_id, e.seq""",
                    ids,
                )
                pending = []
                for r in rows:
                    step = ev.IncidentEvent(
                        incident_id=r["incident_id"],
                        seq=r["seq"],
                        event=r["event"],
                        kind=r["kind"],
                        severity=r["severity"],
                        status=r["status"],
                        title=r["title"],
                        root_device=r["root_device"],
                        device_class=r["device_class"],
                        unit_code=r["unit_code"] or "",
                        site_id=r["site_id"] or "",
                        affected=list(r["affected"]),
                        at_ms=int(r["at"].timestamp() * 1000),
                        actor=r["actor"],
                        note=r["note"],
                        assigned_to=r["assigned_to"],
                    )
                    key = ev.correlation_key(self.topology, r["root_device"]).encode()
                    pending.append(await self.send(key, ev.encode(step)))
                await asyncio.gather(*pending)
                for r in rows:
                    self.published.labels(r["event"]).inc()
                await conn.executemany(
                    f"UPDATE {t.INCIDENT_EVENTS} SET published = true "
                    "WHERE incident_id = $1 AND seq = $2",
                    [(r["incident_id"], r["seq"]) for r in rows],
                )
        except Exception as exc:
            if classify(exc) == PERMANENT:
                raise
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        return len(rows)
