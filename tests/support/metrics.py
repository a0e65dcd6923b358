"""Samples a live worker exposes on /metrics (``Worker.metric_totals()`` sums them by name)."""

from __future__ import annotations

from ioc.processes import WorkerProcess


def max_metric(worker: WorkerProcess, name: str) -> float:
    """The largest sample of ``name`` a live worker exposes (0 if it has none or is gone)."""
    if not worker.alive():
        return 0.0
    try:
        samples = worker.scrape()
    except OSError:
        return 0.0
    return max((value for sample, _labels, value in samples if sample == name), default=0.0)
