"""Prometheus plumbing shared by every process: collectors from the contract, /metrics.

Collectors are built from :mod:`ioc.contract.metrics` specs, so a process cannot export a
name the alert rules and dashboards do not know. Each process that serves metrics also
registers itself as a file_sd target of the local stack's Prometheus (and removes itself at
exit), so the scrape config never lists ports by hand.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server

from ioc.config import Settings
from ioc.contract.metrics import MetricSpec
from ioc.errors import IocError

_collectors: dict[tuple[int, str], Any] = {}


def collector(spec: MetricSpec, registry: CollectorRegistry = REGISTRY) -> Any:
    """The (process-wide, created once) prometheus_client collector for ``spec``."""
    key = (id(registry), spec.name)
    existing = _collectors.get(key)
    if existing is not None:
        return existing
    kwargs: dict[str, Any] = {"labelnames": spec.labels, "registry": registry}
    if spec.type == "counter":
        made: Any = Counter(spec.name, spec.help, **kwargs)
    elif spec.type == "gauge":
        made = Gauge(spec.name, spec.help, **kwargs)
    elif spec.type == "histogram":
        made = Histogram(
            spec.name, spec.help, buckets=spec.buckets or Histogram.DEFAULT_BUCKETS, **kwargs
        )
    else:  # pragma: no cover - specs are static
        raise ValueError(f"unknown metric type {spec.type}")
    _collectors[key] = made
    return made


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_metrics(settings: Settings, service: str, port: int, host: str = "127.0.0.1") -> int:
    """Serve /metrics on ``port`` (0: any free port); returns the port."""
    port = port or _free_port()
    try:
        _start_http_server(port, addr=host)
    except OSError as exc:
        raise IocError(
            f"cannot serve metrics on {host}:{port} ({exc}); "
            "set IOC_METRICS_PORT or --metrics-port to a free port"
        ) from None
    register_target(settings, service, port)
    return port


def register_target(settings: Settings, service: str, port: int) -> Path | None:
    """Announce this process to the local stack's Prometheus (file_sd)."""
    targets = settings.stack_dir / "prometheus" / "targets"
    if not targets.parent.exists():
        return None
    targets.mkdir(parents=True, exist_ok=True)
    path = targets / f"{service}-{os.getpid()}-{port}.json"
    doc = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"service": service, "pid": str(os.getpid())}}
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)
    atexit.register(lambda: path.unlink(missing_ok=True))
    return path
