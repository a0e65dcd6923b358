"""What machine a benchmark ran on (written into every result file), and the small measures
every benchmark takes the same way (percentiles, a process's memory from /proc)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def results_dir() -> Path:
    """Where benchmarks write their results: bench/results (committed), or
    ``IOC_BENCH_RESULTS`` (``bench/all.py --quick`` points it under bench/out)."""
    return Path(os.environ.get("IOC_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def status_mib(field: str = "VmRSS", pid: int | str = "self") -> float:
    """A memory line of /proc/PID/status (``VmRSS``, ``VmHWM``, ...) in MiB; 0 if absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0
