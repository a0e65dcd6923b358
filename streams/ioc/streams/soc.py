"""The SOC feed in the workers: sensors' alert facts, and correlating attacks with links.

**Facts** (the leader's evaluation, :func:`alert_facts`): for each SOC sensor, its most
telling recent alert in ``raw_soc`` (critical first, then the newest), if it is critical or
a DDoS or scan alert. The state machine (:func:`ioc.streams.state.raw_state`) keeps such a
sensor *degraded* for ``Thresholds.soc_alert_hold_ms`` after it, with the reason
:func:`ioc.contract.soc.alert_reason` (``critical-ddos alert (critical): ET DOS ...``).

**Incidents** (the incident agent, :class:`Correlator`): a critical alert opens a
``security-alert`` incident rooted at the sensor. A DDoS or scan alert on a node whose link
is degraded is *correlated*: it joins the link's ``degraded`` incident (the sensor is added to
``affected``, ``details.correlated`` says why, a ``commented`` step on the timeline), and a
link that degrades under a DDoS or scan incident joins that incident instead of opening its
own, whichever comes first. A non-critical DDoS or scan alert with a healthy link opens
nothing; the agent remembers it (``watch``) until the link degrades or the alert ages out.
A member leaves when its state no longer calls for it (a step says so); when the incident
it joined resolves while the member still needs one, the member gets its own incident.
Both sides share a correlation key (the node: a sensor sits behind its site's node), so the
agent sees their transitions in order, in one partition.

The agent keeps the memberships in its table value under ``links``
(``{"members": {device: {...}}, "watch": {device: {...}}}``). An operator who resolves the
joined incident leaves its members without one until their state changes again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import asyncpg

from ioc.contract import events as ev
from ioc.contract import soc
from ioc.contract import tables as t
from ioc.contract.feeds import Feed
from ioc.contract.thresholds import Thresholds
from ioc.contract.topology import Topology
from ioc.streams.state import Facts, FactsView

if TYPE_CHECKING:
    from ioc.streams.incidents import IncidentAgent, WantedIncident


async def alert_facts(
    conn: asyncpg.Connection, facts: dict[str, FactsView], th: Thresholds
) -> None:
    """Fill each SOC sensor's ``alert_ts``/``alert_reason`` from its recent alerts (those of
    the last hold period and a minute of slack, by the database's clock). A sensor's facts
    read in place (a query row, read-only) become a ``Facts`` first."""
    since = dt.timedelta(milliseconds=th.soc_alert_hold_ms + 60_000)
    correlated = sorted(soc.CORRELATED_CATEGORIES)
    rows = await conn.fetch(
        f"""SELECT DISTINCT ON (device_id) device_id, ts, severity, category, signature
            FROM {t.RAW[Feed.SOC]}
            WHERE ts > now() - $1::interval AND kind = 'soc.alert'
              AND (severity = 'critical' OR category = ANY($2::text[]))
            ORDER BY device_id, (severity = 'critical') DESC, ts DESC""",
        since,
        correlated,
    )
    for r in rows:
        view = facts.get(r["device_id"])
        if view is None:
            continue
        if isinstance(view, Facts):
            f = view
        else:
            f = Facts(**{k.name: getattr(view, k.name) for k in dataclasses.fields(Facts)})
            facts[r["device_id"]] = f
        f.alert_ts = int(r["ts"].timestamp() * 1000)
        f.alert_reason = soc.alert_reason(r["severity"], r["category"], r["signature"])


def security_incident(topology: Topology, device_id: str, reason: str) -> tuple[str, str] | None:
    """(kind, title) of the incident a degraded sensor opens: a critical alert only."""
    parsed = soc.parse_reason(reason)
    if parsed is None or not parsed[0]:
        return None
    site = topology.sites[topology.devices[device_id].site]
    return t.INCIDENT_SECURITY, f"Security alert at {site.name}: {reason}"


def _key(root: str, kind: str) -> str:
    return f"{root}|{kind}"


class Correlator:
    """The incident agent's SOC correlation (see the module's docstring)."""

    def __init__(self, agent: IncidentAgent) -> None:
        self.agent = agent
        self.topology = agent.topology

    # --- who may join what ---

    def _sensors_of(self, node: str) -> list[str]:
        return [
            d
            for d in self.topology.devices_behind(node)
            if self.topology.devices[d].device_class == Feed.SOC
            and self.topology.devices[d].upstream == node
        ]

    def _correlated(self, reason: str) -> bool:
        cls = soc.alert_class(reason)
        return cls is not None and cls[1]

    async def target(
        self,
        conn: asyncpg.Connection,
        open_: dict[str, Any],
        device_id: str,
        kind: str,
        reason: str,
    ) -> str | None:
        """The key of the open incident a device in trouble joins, if any."""
        dev = self.topology.devices[device_id]
        if dev.device_class == Feed.SOC and dev.upstream and self._correlated(reason):
            key = _key(dev.upstream, t.INCIDENT_DEGRADED)
            return key if key in open_ else None
        if dev.device_class == Feed.NETNODE and kind == t.INCIDENT_DEGRADED:
            sensors = self._sensors_of(device_id)
            if not sensors:
                return None
            rows = await conn.fetch(
                f"""SELECT root_device, details->>'reason' AS reason FROM {t.INCIDENTS}
                    WHERE root_device = ANY($1::text[]) AND kind = $2 AND status <> 'resolved'
                    ORDER BY id""",
                sensors,
                t.INCIDENT_SECURITY,
            )
            for r in rows:
                key = _key(r["root_device"], t.INCIDENT_SECURITY)
                if key in open_ and self._correlated(r["reason"] or ""):
                    return key
        return None

    # --- joining and leaving ---

    async def join(
        self,
        conn: asyncpg.Connection,
        value: dict[str, Any],
        key: str,
        member: dict[str, Any],
        tr: ev.DeviceTransition,
    ) -> list[int]:
        """Add ``member`` (device, kind, title, reason, since_ms, own) to the open incident
        ``key``; returns the incident touched."""
        record = value["open"][key]
        row = await conn.fetchrow(
            f"""UPDATE {t.INCIDENTS} SET
                  affected = ARRAY(SELECT DISTINCT x FROM unnest(affected || $2::text[]) x
                                   ORDER BY x),
                  details = jsonb_set(details, '{{correlated}}',
                      coalesce(details->'correlated', '[]'::jsonb) || $3::jsonb)
                WHERE id = $1 RETURNING status, assigned_to""",
            record["id"],
            [member["device"]],
            json.dumps(
                [{"device": member["device"], "reason": member["reason"], "at_ms": tr.at_ms}]
            ),
        )
        links = value.setdefault("links", {})
        links.setdefault("members", {})[member["device"]] = {**member, "to": key}
        links.get("watch", {}).pop(member["device"], None)
        if row is None:
            return []
        await self.agent._step(
            conn,
            record["id"],
            record,
            "commented",
            row["status"],
            row["assigned_to"],
            tr.at_ms,
            "ioc",
            f"correlated: {member['title']}",
        )
        return [int(record["id"])]

    async def leave(
        self,
        conn: asyncpg.Connection,
        value: dict[str, Any],
        tr: ev.DeviceTransition,
        still: bool,
    ) -> list[int]:
        """The device's membership ends unless ``still`` (its new state still calls for it);
        a non-correlated reason also ends its watch."""
        links = value.get("links") or {}
        if not still:
            links.get("watch", {}).pop(tr.device_id, None)
        member = links.get("members", {}).get(tr.device_id)
        if member is None:
            return []
        if still:
            member["reason"] = tr.reason
            return []
        del links["members"][tr.device_id]
        record = value["open"].get(member["to"])
        if record is None:
            return []
        row = await conn.fetchrow(
            f"SELECT status, assigned_to FROM {t.INCIDENTS} WHERE id = $1", record["id"]
        )
        if row is None or row["status"] == "resolved":
            return []
        await self.agent._step(
            conn,
            record["id"],
            record,
            "commented",
            row["status"],
            row["assigned_to"],
            tr.at_ms,
            "ioc",
            f"{tr.device_id} is {tr.new} ({tr.reason}): no longer part of this incident",
        )
        return [int(record["id"])]

    async def release(
        self, conn: asyncpg.Connection, value: dict[str, Any], key: str, tr: ev.DeviceTransition
    ) -> list[int]:
        """The incident ``key`` resolved: each member that still needs an incident opens its
        own; a member that only joined (a non-critical alert) is watched again."""
        from ioc.streams.incidents import WantedIncident

        links = value.get("links") or {}
        members = links.get("members", {})
        touched: list[int] = []
        for device, member in sorted(members.items()):
            if member["to"] != key:
                continue
            del members[device]
            if not member["own"]:
                links.setdefault("watch", {})[device] = member
                continue
            wanted = WantedIncident(device, member["kind"], member["title"], (device,))
            own = ev.DeviceTransition(
                id=tr.id,
                device_id=device,
                prev=tr.prev,
                new=t.STATE_DEGRADED,
                reason=member["reason"],
                at_ms=tr.at_ms,
                since_ms=int(member["since_ms"]),
            )
            touched += await self.agent._open(conn, value["open"], wanted, own)
        return touched

    async def opened(
        self, conn: asyncpg.Connection, value: dict[str, Any], key: str, tr: ev.DeviceTransition
    ) -> list[int]:
        """A link's degraded incident just opened: the sensors behind the node that are
        watched (a non-critical DDoS or scan alert) join it."""
        root, _, kind = key.partition("|")
        if kind != t.INCIDENT_DEGRADED:
            return []
        watch = (value.get("links") or {}).get("watch", {})
        touched: list[int] = []
        for sensor in self._sensors_of(root):
            member = watch.get(sensor)
            if member is not None and key in value["open"]:
                touched += await self.join(conn, value, key, member, tr)
        return touched

    def watch(self, value: dict[str, Any], member: dict[str, Any]) -> None:
        value.setdefault("links", {}).setdefault("watch", {})[member["device"]] = member

    def unwatch(self, value: dict[str, Any], device_id: str) -> None:
        (value.get("links") or {}).get("watch", {}).pop(device_id, None)

    def is_member(self, value: dict[str, Any], device_id: str) -> bool:
        return device_id in ((value.get("links") or {}).get("members") or {})

    @staticmethod
    def member(
        wanted: WantedIncident | None, tr: ev.DeviceTransition, title: str
    ) -> dict[str, Any]:
        return {
            "device": tr.device_id,
            "kind": wanted.kind if wanted else t.INCIDENT_SECURITY,
            "title": wanted.title if wanted else title,
            "reason": tr.reason,
            "since_ms": tr.since_ms,
            "own": wanted is not None,
        }
