"""Outage to page, end to end: simulator -> Kafka -> worker -> Prometheus rules ->
Alertmanager (routing, grouping, inhibition) -> `ioc pager` -> pages table."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract.topology import load_scenario
from ioc.db import connect
from ioc.simulators.run import SimConfig, run_simulation
from tests.support.alertmanager import forget_pages_sent
from tests.support.processes import Worker, ioc_process
from tests.support.wait import wait_for

SCENARIO = "yen-bai-2022"


async def _pages(settings: Settings) -> list[Any]:
    conn = await connect(settings.admin_dsn())
    try:
        return list(
            await conn.fetch(
                f"SELECT alertname, status, device_id, labels, received_at, starts_at "
                f"FROM {settings.db_schema}.pages ORDER BY id"
            )
        )
    finally:
        await conn.close()


def pages(settings: Settings) -> list[Any]:
    return asyncio.run(_pages(settings))


def test_one_page_per_outage_within_90_s_and_resolved_after(
    namespace: Settings, tmp_path: Path
) -> None:
    asyncio.run(bootstrap(namespace, SCENARIO))
    forget_pages_sent(namespace)
    topo = load_scenario(SCENARIO)
    camera, node = "cam-135-002", "nn-140-001"
    behind = set(topo.devices_behind(node))
    assert camera not in behind
    pager = ioc_process(namespace, tmp_path / "pager.log", "pager").start()
    worker = Worker(namespace, SCENARIO, tmp_path / "worker.log").start()
    try:
        wait_for(
            lambda: pager.log_text().count("ioc pager:") == 1 or not pager.alive(),
            30,
            what="pager up",
        )
        assert pager.alive(), pager.log_text()
        time.sleep(10)  # worker joins its group; Prometheus discovers both (file_sd, 5 s)
        summary = run_simulation(
            namespace,
            SimConfig(
                scenario=SCENARIO,
                mode="realtime",
                duration_s=150,
                progress=False,
                fault_flags=[f"device_dark:{camera}@20+60", f"node_down:{node}@40+60"],
            ),
        )
        starts = {f["target"]: f["start_ms"] / 1000 for f in summary.faults}

        def resolved_both() -> bool:
            got = {(p["alertname"], p["status"]) for p in pages(namespace)}
            return {("CameraDown", "resolved"), ("SiteIsolated", "resolved")} <= got

        wait_for(resolved_both, 150, interval=3, what="resolved pages")
        mine = [p for p in pages(namespace) if p["alertname"] != "Watchdog"]
        firing = [(p["alertname"], p["device_id"]) for p in mine if p["status"] == "firing"]
        print("pages:", [(p["alertname"], p["device_id"], p["status"]) for p in mine])
        assert firing.count(("CameraDown", camera)) == 1
        assert firing.count(("SiteIsolated", node)) == 1
        assert not [f for f in firing if f[1] in behind], "a device behind the node paged"
        for alertname, target in (("CameraDown", camera), ("SiteIsolated", node)):
            page = next(
                p
                for p in mine
                if p["alertname"] == alertname
                and p["device_id"] == target
                and p["status"] == "firing"
            )
            delay = page["received_at"].timestamp() - starts[target]
            print(f"{alertname} {target}: paged {delay:.1f} s after the fault")
            assert delay <= 90
        assert any(p["alertname"] == "Watchdog" for p in pages(namespace))
    finally:
        worker.stop()
        pager.stop(timeout=30)
