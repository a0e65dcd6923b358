"""Project processes in a test namespace: ``ioc worker`` and any other ``ioc`` command.

Spawning, readiness and stopping are :mod:`ioc.processes` (the main job and the benchmarks
use it too); this only fixes what the tests want by default.
"""

from __future__ import annotations

from pathlib import Path

from ioc.config import Settings
from ioc.processes import Process, WorkerProcess, ioc_command, ioc_env

__all__ = ["Worker", "ioc_command", "ioc_env", "ioc_process"]

Worker = WorkerProcess
"""``Worker(settings, scenario, log, name="w1").start()``: ``ioc worker`` with /metrics on a
free port (read back from its log); ``stop()``, ``kill()``, ``alive()``, ``log_tail()``,
``metric_totals()``."""


def ioc_process(settings: Settings, log: Path, *args: str) -> Process:
    """``ioc ARGS`` (e.g. ``"pager"``) in the namespace of ``settings``; not started yet."""
    return Process(ioc_command(*args), log, env=ioc_env(settings), name=f"ioc {args[0]}")
