"""Prometheus plumbing shared by every process: collectors from the contract, /metrics.

Collectors are built from :mod:`ioc.contract.metrics` specs, so a process cannot export a
name the alert rules and dashboards do not know. :func:`counter`, :func:`gauge` and
:func:`histogram` return the prometheus_client type of the spec (``.labels(...).inc()`` is
type-checked) and refuse a spec of another type. Each process that serves metrics also
registers itself as a file_sd target of the local stack's Prometheus (and removes itself at
exit), so the scrape config never lists ports by hand.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server

from ioc.config import Settings
from ioc.contract.metrics import MetricSpec
from ioc.errors import IocError

_C = TypeVar("_C", Counter, Gauge, Histogram)

_CACHE_ATTR = "_ioc_collectors"


def _collector(
    spec: MetricSpec, registry: CollectorRegistry, cls: type[_C], make: Callable[[], _C]
) -> _C:
    """The collector for ``spec``, created once per registry. The cache lives on the registry
    itself: keyed by ``id(registry)`` it outlived short-lived registries, and a new one that
    reused a freed id got the old registry's collectors (and none of its own samples)."""
    kind = cls.__name__.lower()  # the spec's type: counter | gauge | histogram
    if spec.type != kind:
        raise TypeError(f"metric {spec.name} is a {spec.type}, not a {kind}")
    made_here: dict[str, Counter | Gauge | Histogram] | None = getattr(registry, _CACHE_ATTR, None)
    if made_here is None:
        made_here = {}
        setattr(registry, _CACHE_ATTR, made_here)
    existing = made_here.get(spec.name)
    if existing is None:
        made = make()
        made_here[spec.name] = made
        return made
    if not isinstance(existing, cls):  # pragma: no cover - the type check above
        raise TypeError(f"metric {spec.name} was made as a {type(existing).__name__}")
    return existing


def counter(spec: MetricSpec, registry: CollectorRegistry = REGISTRY) -> Counter:
    """The counter for a ``counter`` spec."""
    return _collector(
        spec,
        registry,
        Counter,
        lambda: Counter(spec.name, spec.help, labelnames=spec.labels, registry=registry),
    )


def gauge(spec: MetricSpec, registry: CollectorRegistry = REGISTRY) -> Gauge:
    """The gauge for a ``gauge`` spec."""
    return _collector(
        spec,
        registry,
        Gauge,
        lambda: Gauge(spec.name, spec.help, labelnames=spec.labels, registry=registry),
    )


def histogram(spec: MetricSpec, registry: CollectorRegistry = REGISTRY) -> Histogram:
    """The histogram for a ``histogram`` spec (the spec's buckets, else the default ones)."""
    return _collector(
        spec,
        registry,
        Histogram,
        lambda: Histogram(
            spec.name,
            spec.help,
            labelnames=spec.labels,
            registry=registry,
            buckets=spec.buckets or Histogram.DEFAULT_BUCKETS,
        ),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_metrics(settings: Settings, service: str, port: int, host: str | None = None) -> int:
    """Serve /metrics on ``port`` (0: any free port) at ``host`` (default
    ``IOC_BIND_HOST``); returns the port."""
    host = host or settings.bind_host
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
