"""The incident agent's SOC correlation, event by event, against the real database.

A critical alert opens a security incident; a DDoS or scan alert on a node whose link is
degraded joins the link's incident, and a link that degrades under a DDoS incident joins it,
whichever comes first; a non-critical scan waits for the link; a member whose incident
resolves while it still needs one gets its own. The end-to-end run
(tests/integration/test_soc_e2e.py) proves the same with the simulator and the workers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import events as ev
from ioc.contract import soc
from ioc.contract import tables as t
from ioc.contract.topology import Topology
from ioc.streams.incidents import IncidentAgent
from ioc.streams.writer import open_pool

CRITICAL_DDOS = soc.alert_reason("critical", "ddos", "ET DOS Possible NTP DDoS Inbound")
HIGH_SCAN = soc.alert_reason("high", "scan", "ET SCAN Potential SSH Scan")
CRITICAL_BRUTE = soc.alert_reason("critical", "brute_force", "Multiple authentication failures")
LINK = "link loss 10.0%"


class Feeder:
    """Transitions to the agent with one table value per correlation key, as Faust keeps it."""

    def __init__(self, topology: Topology, agent: IncidentAgent) -> None:
        self.topology, self.agent = topology, agent
        self.values: dict[str, dict[str, Any] | None] = {}
        self.ids = itertools.count(1)
        self.now = int(time.time() * 1000)

    async def __call__(self, device: str, new: str, reason: str, prev: str = "up") -> None:
        self.now += 5000
        key = ev.correlation_key(self.topology, device)
        event = ev.DeviceTransition(
            id=next(self.ids),
            device_id=device,
            prev=prev,
            new=new,
            reason=reason,
            at_ms=self.now,
            since_ms=self.now,
        )
        self.values[key] = await self.agent.apply(self.values.get(key), event)


async def incidents(pool: Any) -> list[Any]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                f"SELECT id, kind, root_device, status, affected, details FROM {t.INCIDENTS} "
                f"ORDER BY id"
            )
        )


async def notes(pool: Any, incident_id: int) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT note FROM {t.INCIDENT_EVENTS} WHERE incident_id = $1 ORDER BY seq",
            incident_id,
        )
    return [r["note"] for r in rows]


async def test_attacks_and_degraded_links_share_one_incident_whichever_comes_first(
    namespace: Settings,
) -> None:
    topology = await bootstrap(namespace, "demo")
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema)

    async def send(key: bytes, value: bytes) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    feed = Feeder(topology, IncidentAgent(topology, pool, send))
    try:
        # 1. the link degrades first; a critical DDoS on its site joins the link's incident
        await feed("nn-992-001", "degraded", LINK)
        await feed("soc-992-001", "degraded", CRITICAL_DDOS)
        (link,) = await incidents(pool)
        assert (link["root_device"], link["kind"]) == ("nn-992-001", t.INCIDENT_DEGRADED)
        assert set(link["affected"]) == {"nn-992-001", "soc-992-001"}
        assert json.loads(link["details"])["correlated"][0]["device"] == "soc-992-001"
        assert (await notes(pool, link["id"]))[-1].startswith("correlated: Security alert")
        await feed("soc-992-001", "up", "heartbeat ok", prev="degraded")
        assert "soc-992-001 is up" in (await notes(pool, link["id"]))[-1]
        await feed("nn-992-001", "up", "probe ok", prev="degraded")
        assert [r["status"] for r in await incidents(pool)] == ["resolved"]

        # 2. a critical DDoS first; the link that degrades under it joins the security
        #    incident; when the alert ages out, the link still degraded gets its own
        await feed("soc-991-001", "degraded", CRITICAL_DDOS)
        await feed("nn-991-001", "degraded", LINK)
        now = await incidents(pool)
        attack = now[-1]
        assert (attack["root_device"], attack["kind"]) == ("soc-991-001", t.INCIDENT_SECURITY)
        assert set(attack["affected"]) == {"soc-991-001", "nn-991-001"}
        assert len(now) == 2
        await feed("soc-991-001", "up", "heartbeat ok", prev="degraded")
        now = await incidents(pool)
        assert now[1]["status"] == "resolved"
        assert (now[2]["root_device"], now[2]["kind"], now[2]["status"]) == (
            "nn-991-001",
            t.INCIDENT_DEGRADED,
            "open",
        )

        # 3. a scan (not critical) on a healthy link opens nothing; when the link degrades,
        #    the link's incident opens and the scanned site joins it
        await feed("soc-992", "degraded", HIGH_SCAN)
        assert len(await incidents(pool)) == 3
        await feed("nn-992", "degraded", LINK)
        scanned = (await incidents(pool))[-1]
        assert (scanned["root_device"], scanned["kind"]) == ("nn-992", t.INCIDENT_DEGRADED)
        assert set(scanned["affected"]) == {"nn-992", "soc-992"}

        # 4. a critical brute force is not correlated: its own incident, link or not
        await feed("soc-991", "degraded", CRITICAL_BRUTE)
        brute = (await incidents(pool))[-1]
        assert (brute["root_device"], brute["kind"], list(brute["affected"])) == (
            "soc-991",
            t.INCIDENT_SECURITY,
            ["soc-991"],
        )
        assert len(await incidents(pool)) == 5
    finally:
        await pool.close()
