"""Chaos: the Kafka broker SIGKILLed and restarted mid-run; the pager down while alerts fire."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.deploy.local.stack import Stack
from ioc.simulators.run import SimConfig, run_simulation
from tests.support.alertmanager import forget_pages_sent, pages
from tests.support.processes import Worker, ioc_process
from tests.support.wait import wait_for

from .faults import Production

pytestmark = pytest.mark.chaos


def test_broker_killed_and_restarted_loses_nothing(namespace: Settings, tmp_path: Path) -> None:
    asyncio.run(bootstrap(namespace, "demo"))
    kafka = Stack(namespace).services["kafka"]
    worker = Worker(namespace, "demo", tmp_path / "worker.log").start()
    try:
        time.sleep(10)
        production = Production(namespace, 60)
        time.sleep(15)
        assert kafka.kill() is not None, "the broker is not running"
        time.sleep(10)
        kafka.up(print)
        production.finish_and_reconcile(worker, "broker SIGKILL + restart", timeout=240)
        assert worker.alive()
    finally:
        if kafka.pid() is None:
            kafka.up(print)
        worker.stop()


def test_pager_down_while_alerts_fire_loses_no_page(namespace: Settings, tmp_path: Path) -> None:
    asyncio.run(bootstrap(namespace, "demo"))
    forget_pages_sent(namespace)
    camera = "cam-992-001"
    worker = Worker(namespace, "demo", tmp_path / "worker.log").start()
    pager = ioc_process(namespace, tmp_path / "pager.log", "pager")
    try:
        time.sleep(8)
        thread = threading.Thread(
            target=lambda: run_simulation(
                namespace,
                SimConfig(
                    scenario="demo",
                    mode="realtime",
                    duration_s=150,
                    progress=False,
                    fault_flags=[f"device_dark:{camera}@10+200"],
                ),
            )
        )
        thread.start()
        time.sleep(75)  # the alert fires and Alertmanager fails to deliver (no pager)
        pager.start()

        def delivered() -> bool:
            return any(
                p["alertname"] == "CameraDown"
                and p["device_id"] == camera
                and p["status"] == "firing"
                for p in pages(namespace)
            )

        try:
            wait_for(delivered, 150, interval=3, what="the page Alertmanager retried")
        except AssertionError as exc:
            recorded = [(p["alertname"], p["device_id"], p["status"]) for p in pages(namespace)]
            pager_log = pager.log_text()
            raise AssertionError(f"{exc}; pages: {recorded}; pager log:\n{pager_log}") from exc
        firing = [
            p
            for p in pages(namespace)
            if p["alertname"] == "CameraDown"
            and p["device_id"] == camera
            and p["status"] == "firing"
        ]
        print(
            f"pager down: CameraDown for {camera} recorded once after the pager came back "
            f"({len(firing)} row)"
        )
        assert len(firing) == 1
        thread.join()
    finally:
        worker.stop()
        pager.stop(timeout=30)
