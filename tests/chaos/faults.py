"""What every fault test does: produce in the background, watch for the alert, reconcile."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

from ioc.config import Settings
from ioc.simulators.run import SimConfig, run_simulation
from tests.support.db import landed
from tests.support.processes import Worker
from tests.support.reconcile import assert_accounting, reconcile
from tests.support.wait import wait_for


class Production:
    """The demo province at ``rate`` events/s with 1 % malformed messages, on a thread."""

    def __init__(self, settings: Settings, duration_s: float, rate: float = 400) -> None:
        self.settings = settings
        self.summary: Any = None
        config = SimConfig(
            scenario="demo",
            mode="rate",
            rate=rate,
            duration_s=duration_s,
            progress=False,
            fault_flags=["malformed:0.01"],
        )
        self._thread = threading.Thread(target=self._run, args=(config,))
        self._thread.start()

    def _run(self, config: SimConfig) -> None:
        self.summary = run_simulation(self.settings, config)

    def join(self) -> None:
        """Wait until the producer is done (a test's cleanup, before its topics go)."""
        self._thread.join()

    def finish_and_reconcile(
        self, worker: Worker, what: str, timeout: float = 180
    ) -> dict[str, int]:
        """Wait for the producer, let the workers drain, reconcile (prints the figures and
        returns them: see :func:`~tests.support.reconcile.reconcile`)."""
        self._thread.join()
        valid = sum(self.summary.stats.valid_by_feed.values())
        wait_for(
            lambda: landed(self.settings) >= valid,
            timeout,
            interval=2,
            what=f"{valid} rows after: {what} ({worker.log_tail()})",
        )
        assert self.summary.errors == 0, f"{self.summary.errors} delivery errors"
        figures = reconcile(self.settings, self.summary, what)
        accounting = assert_accounting(worker)
        print(f"{what}: worker accounting {accounting} (consumed = written + duplicate + DLQ)")
        return figures


def instant(settings: Settings, expr: str) -> float:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{settings.prometheus_url}/api/v1/query?{q}", timeout=10) as resp:
        result = json.loads(resp.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def firing(settings: Settings, alertname: str) -> bool:
    return instant(settings, f'count(ALERTS{{alertname="{alertname}", alertstate="firing"}})') > 0


def wait_for_alert(settings: Settings, alertname: str, worker: Worker, timeout: float) -> float:
    """Seconds until ``alertname`` fired (the worker must stay alive meanwhile); -1: never."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert worker.alive(), f"worker died waiting for {alertname}:\n{worker.log_tail()}"
        if firing(settings, alertname):
            return time.monotonic() - started
        time.sleep(5)
    return -1.0
