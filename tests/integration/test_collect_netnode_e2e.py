"""A real network node going down, end to end: a peer in a network namespace -> ``ioc collect``
(ICMP, on the netnode feed's own schedule) -> Kafka -> ``ioc worker`` -> a *site-isolated*
incident for the node and the devices behind it -> Prometheus -> Alertmanager -> ``ioc pager``
(a ``SiteIsolated`` page naming the incident); and resolved once the interface is back.

The bounds are the simulated feeds' ones: the incident within 30 s of the fault
(tests/integration/test_streams_e2e.py; here: the next probe round, at most 5 s, its 2 s
timeout, the worker's 10 s confirmation of a down node and its 5 s tick), the page within
90 s (tests/integration/test_operations_e2e.py: scrape, rule evaluation, Alertmanager's
group wait).

The demo scenario is bootstrapped into a private namespace with one commune node,
``nn-991-002`` (two cameras, a video endpoint and a portal desk behind it), at the namespace's
address. The node and its site get a fresh id per run: the shared Alertmanager remembers what
it paged per site for hours (its notification log), and the stack is not restarted to forget
it. Needs root and ``ip`` like test_collect_icmp, and the stack. About 80 s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from pathlib import Path
from typing import Any

import yaml

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import tables as t
from ioc.contract.topology import load_scenario
from ioc.errors import ServiceUnavailable
from tests.support.db import query
from tests.support.netns import NEEDS_ROOT_AND_IP, Peer, peer
from tests.support.processes import Worker, ioc_process
from tests.support.wait import wait_for

__all__ = ["peer"]  # the fixture

pytestmark = NEEDS_ROOT_AND_IP

INCIDENT_BOUND_S = 30.0
"""From the fault to the incident: what test_streams_e2e allows the simulated feeds."""
PAGE_BOUND_S = 90.0
"""From the fault to the page: what test_operations_e2e allows the simulated feeds."""
NODE, SITE = "nn-991-002", "site-991-002-office"


def scenario_with_node_at(path: Path, address: str) -> tuple[str, list[str]]:
    """The demo scenario with ``NODE`` (renamed, its site too) at ``address``, written to
    ``path``; returns the node's id and the devices behind it."""
    tag = secrets.token_hex(3)
    node, site = f"{NODE}-e{tag}", f"{SITE}-e{tag}"
    doc: dict[str, Any] = load_scenario("demo").to_document()
    for s in doc["sites"]:
        if s["id"] == SITE:
            s["id"] = site
    for d in doc["devices"]:
        if d["site"] == SITE:
            d["site"] = site
        if d.get("upstream") == NODE:
            d["upstream"] = node
        if d["id"] == NODE:
            d["id"] = node
            d.setdefault("attributes", {})["address"] = address
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    behind = load_scenario(str(path)).devices_behind(node)
    assert behind, "the node isolates a site when it is down"
    return node, list(behind)


def _rows(settings: Settings, sql: str, *args: object) -> list[Any] | None:
    """``query``, or None while the database does not answer: a poll on a loaded machine
    (the shared stack, other tests) must not fail the test on one slow connection."""
    try:
        return query(settings, sql, *args)
    except ServiceUnavailable:
        return None


def _state(settings: Settings, device: str) -> str | None:
    rows = _rows(settings, "SELECT state FROM device_state WHERE device_id = $1", device)
    return str(rows[0]["state"]) if rows else None


def _isolated(settings: Settings, node: str) -> dict[str, Any] | None:
    rows = _rows(
        settings,
        "SELECT id, title, affected, opened_at, resolved_at FROM incidents "
        "WHERE root_device = $1 AND kind = $2 ORDER BY id",
        node,
        t.INCIDENT_SITE_ISOLATED,
    )
    return dict(rows[-1]) if rows else None


def _page(settings: Settings, node: str, status: str) -> dict[str, Any] | None:
    rows = _rows(
        settings,
        "SELECT incident_id, received_at FROM pages "
        "WHERE alertname = 'SiteIsolated' AND device_id = $1 AND status = $2 ORDER BY id",
        node,
        status,
    )
    return dict(rows[0]) if rows else None


def test_an_interface_down_isolates_the_site_and_pages_within_the_simulated_bounds(
    peer: Peer, namespace: Settings, tmp_path: Path
) -> None:
    scenario = tmp_path / "province.yaml"
    node, behind = scenario_with_node_at(scenario, peer.peer_ip)
    asyncio.run(bootstrap(namespace, str(scenario)))
    pager = ioc_process(namespace, tmp_path / "pager.log", "pager").start()
    worker = Worker(namespace, str(scenario), tmp_path / "worker.log").start()
    collector = ioc_process(
        namespace,
        tmp_path / "collect.log",
        "collect",
        "--scenario",
        str(scenario),
        "--protocols",
        "icmp",
        "--spool",
        str(tmp_path / "spool"),
    ).start()
    try:
        pager.wait_http(f"http://127.0.0.1:{namespace.pager_port}/healthz", 120)
        wait_for(
            lambda: _state(namespace, node) == t.STATE_UP,
            60,
            what=f"{node} up ({collector.log_tail(1000)} {worker.log_tail(1000)})",
        )
        # Prometheus finds the worker through file_sd every 5 s: the node's series must exist
        # before the fault, or the page's delay would include the discovery.
        time.sleep(10)

        peer.cut()
        cut_at = dt.datetime.now(dt.UTC)
        incident = wait_for(
            lambda: _isolated(namespace, node),
            INCIDENT_BOUND_S + 30,
            what=f"a site-isolated incident on {node} ({worker.log_tail(1000)})",
        )
        delay = (incident["opened_at"] - cut_at).total_seconds()
        print(f"{incident['title']!r} opened {delay:.1f} s after the interface went down")
        assert 0 <= delay <= INCIDENT_BOUND_S
        assert _state(namespace, node) == t.STATE_DOWN
        assert set(incident["affected"]) == set(behind)

        page = wait_for(
            lambda: _page(namespace, node, "firing"),
            PAGE_BOUND_S + 30,
            interval=2.0,
            what=f"a SiteIsolated page for {node} ({pager.log_tail(1000)})",
        )
        paged = (page["received_at"] - cut_at).total_seconds()
        print(f"paged {paged:.1f} s after the interface went down")
        assert page["incident_id"] == incident["id"], "the page names the incident"
        assert 0 <= paged <= PAGE_BOUND_S

        peer.restore()
        restored_at = dt.datetime.now(dt.UTC)
        resolved = wait_for(
            lambda: (i := _isolated(namespace, node)) and i["resolved_at"] and i,
            INCIDENT_BOUND_S + 30,
            what="the incident resolved",
        )
        back = (resolved["resolved_at"] - restored_at).total_seconds()
        print(f"resolved {back:.1f} s after the interface came back")
        assert back <= INCIDENT_BOUND_S
        # the first probe after the link comes back may lose an echo to ARP (degraded)
        wait_for(lambda: _state(namespace, node) == t.STATE_UP, 30, what=f"{node} up again")
        assert collector.alive(), collector.log_tail()
    finally:
        collector.stop()
        worker.stop()
        pager.stop()
    assert "0 delivery errors" in collector.log_text(), collector.log_tail()
