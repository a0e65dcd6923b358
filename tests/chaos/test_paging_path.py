"""Chaos: no single paging path. Two Alertmanager peers (one gossip cluster) and two pagers
sharing the database; each is SIGKILLed while pages are due, and every page is still recorded
once and sent once through the outgoing channel.

- end to end from Prometheus: a camera goes dark (``device_dark``) with Alertmanager peer 1
  killed, so its CameraDown page goes out through peer 2; peer 1 comes back, pager 1 is
  killed, and the camera's return is paged (resolved) through pager 2 alone;
- straight to both peers' API (as Prometheus posts), a probe alert with everything up (two
  peers and two pagers race for it) and one with pager 1 dead, each firing and resolved;
- the window between recording a page and sending it: a page claimed by a pager that died
  before it went out is taken over and sent by a live pager.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.deploy.local.monitoring import Alertmanager
from ioc.deploy.local.stack import Stack
from ioc.simulators.run import SimConfig, Summary, run_simulation
from tests.support.alertmanager import forget_pages_sent
from tests.support.db import landed, query
from tests.support.processes import Worker, ioc_process
from tests.support.reconcile import assert_accounting, reconcile
from tests.support.wait import wait_for

pytestmark = pytest.mark.chaos

CAMERA = "cam-992-001"
DARK_AT_S, DARK_FOR_S, SIM_S = 10, 80, 140


class Sink:
    """The outgoing channel: a loopback webhook recording every page it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/page"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sends(self) -> Counter[int]:
        return Counter(int(p["id"]) for p in list(self.received))


def _post_alert(am: Alertmanager, labels: dict[str, str], starts: str, ends: str | None) -> bool:
    alert: dict[str, Any] = {"labels": labels, "annotations": {"summary": "paging probe"}}
    alert["startsAt"] = starts
    if ends is not None:
        alert["endsAt"] = ends
    request = urllib.request.Request(
        f"{am.endpoint}/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5):
            return True
    except OSError:
        return False  # that peer is down: Prometheus fails the same way and goes on


class Probe:
    """An alert posted straight to every live peer's API, as Prometheus posts."""

    def __init__(self, peers: list[Alertmanager], tag: str, n: int) -> None:
        self.peers = peers
        self.labels = {
            "alertname": "PagingPathProbe",
            "severity": "critical",
            "domain": "pipeline",
            "feed": f"{tag}-probe{n}",
        }
        self.starts = dt.datetime.now(dt.UTC).isoformat()

    def fire(self) -> int:
        return sum(_post_alert(am, self.labels, self.starts, None) for am in self.peers)

    def resolve(self) -> int:
        now = dt.datetime.now(dt.UTC).isoformat()
        return sum(_post_alert(am, self.labels, self.starts, now) for am in self.peers)


def _pages(settings: Settings) -> list[Any]:
    return query(
        settings,
        "SELECT id, alertname, status, device_id, labels->>'feed' AS feed, claimed_by, "
        "sent_at, fingerprint FROM pages ORDER BY id",
    )


def _page_of(settings: Settings, alertname: str, status: str, **label: str) -> list[Any]:
    (key, value), *_ = label.items()
    return [
        p
        for p in _pages(settings)
        if p["alertname"] == alertname and p["status"] == status and p[key] == value
    ]


def _kill(process_group: int) -> None:
    os.killpg(process_group, signal.SIGKILL)  # no clean shutdown, no cluster leave


def _cluster_size(am: Alertmanager) -> int:
    _ok, _detail, extra = am.probe()
    return int(extra.get("peers", 0))


def test_any_one_alertmanager_or_pager_lost_pages_once(namespace: Settings, tmp_path: Path) -> None:
    started = time.monotonic()
    asyncio.run(bootstrap(namespace, "demo"))
    sink = Sink()
    settings = namespace.model_copy(
        update={
            "pager_channels": json.dumps(
                [{"type": "webhook", "url": sink.url, "rate_per_min": 10_000, "burst": 100}]
            )
        }
    )
    stack = Stack(settings)
    am1, am2 = stack.alertmanager, stack.alertmanager_peer
    assert am2.pid() is not None, "the local stack runs two Alertmanagers: `ioc stack up`"
    forget_pages_sent(settings)  # an earlier run's notification log must not mute this one
    wait_for(lambda: _cluster_size(am1) == 2, 30, what="two Alertmanager peers in one cluster")
    tag = settings.db_schema
    pager1 = ioc_process(settings, tmp_path / "pager1.log", "pager")
    pager2 = ioc_process(
        settings, tmp_path / "pager2.log", "pager", "--port", str(settings.pager_peer_port)
    )
    worker = Worker(settings, "demo", tmp_path / "worker.log")
    timeline: list[tuple[float, str]] = []

    def note(what: str) -> None:
        timeline.append((time.monotonic() - started, what))
        print(f"[{time.monotonic() - started:6.1f} s] {what}", flush=True)

    summary: list[Summary] = []
    try:
        pager1.start()
        pager2.start()
        worker.start()
        for port, p in ((settings.pager_port, pager1), (settings.pager_peer_port, pager2)):
            p.wait_http(f"http://127.0.0.1:{port}/healthz", 60)
        note("two pagers up, two Alertmanager peers in one cluster")
        sim = threading.Thread(
            target=lambda: summary.append(
                run_simulation(
                    settings,
                    SimConfig(
                        scenario="demo",
                        mode="realtime",
                        duration_s=SIM_S,
                        progress=False,
                        fault_flags=[f"device_dark:{CAMERA}@{DARK_AT_S}+{DARK_FOR_S}"],
                    ),
                )
            )
        )
        sim.start()
        sim_started = time.monotonic()

        # probe 1: everything up; two peers and two pagers race for it
        probe1 = Probe([am1, am2], tag, 1)
        assert probe1.fire() == 2
        wait_for(
            lambda: _page_of(settings, "PagingPathProbe", "firing", feed=probe1.labels["feed"]),
            60,
            what="probe 1 firing page",
        )
        note("probe 1 (all up): firing page recorded")

        # Alertmanager peer 1 killed before the camera's alert fires
        time.sleep(max(0.0, sim_started + DARK_AT_S + 5 - time.monotonic()))
        am1_pid = am1.pid()
        assert am1_pid is not None
        _kill(am1_pid)
        note("Alertmanager peer 1 SIGKILLed (camera dark since t=10 s of the simulation)")
        assert probe1.resolve() == 1  # to the live peer only
        wait_for(
            lambda: _page_of(settings, "PagingPathProbe", "resolved", feed=probe1.labels["feed"]),
            90,
            what="probe 1 resolved page through peer 2",
        )
        note("probe 1: resolved page recorded (through peer 2)")
        wait_for(
            lambda: _page_of(settings, "CameraDown", "firing", device_id=CAMERA),
            120,
            interval=2,
            what=f"CameraDown {CAMERA} paged through peer 2 ({worker.log_tail()})",
        )
        note(f"CameraDown {CAMERA} firing page recorded with peer 1 down")

        am1.up(lambda _line: None)  # its notification log comes back from peer 2's gossip
        wait_for(lambda: _cluster_size(am1) == 2, 30, what="peer 1 back in the cluster")
        note("Alertmanager peer 1 restarted and rejoined")
        _kill(pager1.pid)
        pager1.wait(10)
        note("pager 1 SIGKILLed")

        # probe 2: pager 1 dead; Alertmanager's webhook to it fails, the one to pager 2 works
        probe2 = Probe([am1, am2], tag, 2)
        assert probe2.fire() == 2
        wait_for(
            lambda: _page_of(settings, "PagingPathProbe", "firing", feed=probe2.labels["feed"]),
            60,
            what="probe 2 firing page through pager 2",
        )
        note("probe 2 (pager 1 dead): firing page recorded")
        assert probe2.resolve() == 2
        wait_for(
            lambda: _page_of(settings, "CameraDown", "resolved", device_id=CAMERA),
            SIM_S + 60 - (time.monotonic() - sim_started),
            interval=2,
            what=f"CameraDown {CAMERA} resolved through pager 2",
        )
        note(f"CameraDown {CAMERA} resolved page recorded with pager 1 down")
        wait_for(
            lambda: _page_of(settings, "PagingPathProbe", "resolved", feed=probe2.labels["feed"]),
            60,
            what="probe 2 resolved page",
        )
        note("probe 2: resolved page recorded")

        pager1.start()
        pager1.wait_http(f"http://127.0.0.1:{settings.pager_port}/healthz", 60)
        note("pager 1 restarted")

        # a page whose pager died between recording it and sending it: claimed by an
        # instance that holds no lock, never sent
        orphan = query(
            settings,
            "INSERT INTO pages (fingerprint, status, alertname, severity, starts_at, receiver, "
            "labels, claimed_by) VALUES ($1, 'firing', 'PagingPathOrphan', 'critical', now(), "
            "'pager', $2::jsonb, 7) RETURNING id",
            f"orphan:{tag}",
            json.dumps({"alertname": "PagingPathOrphan", "severity": "critical"}),
        )[0]["id"]
        wait_for(
            lambda: sink.sends()[orphan] >= 1, 30, what="the orphaned page taken over and sent"
        )
        note(f"page {orphan} of a dead pager taken over and sent")

        sim.join()
        # every page sent: the ones Alertmanager's retries and the incident stream brought too
        wait_for(
            lambda: all(p["sent_at"] is not None for p in _pages(settings)),
            30,
            what="every recorded page sent",
        )
        time.sleep(3)  # a second send, were there one, would land meanwhile
        rows = _pages(settings)
        sends = sink.sends()
        keys = Counter((p["fingerprint"], p["status"]) for p in rows)
        print(f"\n{'page':>6} {'alert':<22} {'status':<9} {'subject':<26} {'claimed_by':>10} sent")
        for p in rows:
            subject = p["device_id"] or p["feed"] or ""
            print(
                f"{p['id']:>6} {p['alertname']:<22} {p['status']:<9} {subject:<26} "
                f"{p['claimed_by'] or '-':>10} {sends[p['id']]}"
            )
        doubled = [p["id"] for p in rows if sends[p["id"]] > 1]
        unsent = [p["id"] for p in rows if sends[p["id"]] == 0]
        duplicate_rows = {k: n for k, n in keys.items() if n > 1}
        print(
            f"paging path: {len(rows)} pages recorded, {sum(sends.values())} sent, "
            f"{len(duplicate_rows)} recorded twice, {len(doubled)} sent twice, "
            f"{len(unsent)} never sent; timeline: "
            + "; ".join(f"{at:.0f} s {what}" for at, what in timeline)
        )
        for alertname, status, key, value in (
            ("PagingPathProbe", "firing", "feed", probe1.labels["feed"]),
            ("PagingPathProbe", "resolved", "feed", probe1.labels["feed"]),
            ("PagingPathProbe", "firing", "feed", probe2.labels["feed"]),
            ("PagingPathProbe", "resolved", "feed", probe2.labels["feed"]),
            ("CameraDown", "firing", "device_id", CAMERA),
            ("CameraDown", "resolved", "device_id", CAMERA),
        ):
            assert len(_page_of(settings, alertname, status, **{key: value})) == 1, (
                alertname,
                status,
                value,
            )
        assert not duplicate_rows and not doubled and not unsent, (duplicate_rows, doubled, unsent)
        assert set(sends) <= {p["id"] for p in rows}

        # the producer's accounting: nothing lost or doubled while paging was disturbed
        assert summary and summary[0].errors == 0
        valid = sum(summary[0].stats.valid_by_feed.values())
        wait_for(lambda: landed(settings) >= valid, 60, what=f"{valid} rows landed")
        reconcile(settings, summary[0], "paging path")
        print(f"paging path: worker accounting {assert_accounting(worker)}")
        print(f"paging path: {time.monotonic() - started:.0f} s in all (budget 240 s)")
    finally:
        for am in (am1, am2):
            if am.pid() is None:
                am.up(print)
        worker.stop()
        for p in (pager1, pager2):
            if p.alive():
                p.stop(timeout=30)
        sink.server.shutdown()
        print("\n".join(f"pager log tail:\n{p.log_tail(1500)}" for p in (pager1, pager2)))
