"""Typed collectors from the contract's metric specs: the right prometheus_client type, the
spec's name, labels and buckets, one collector per metric and registry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ioc.contract import metrics as m
from ioc.contract.metrics import ALL_METRICS, MetricSpec
from ioc.observability import counter, gauge, histogram

MAKERS: dict[str, Callable[[MetricSpec, CollectorRegistry], Counter | Gauge | Histogram]] = {
    "counter": counter,
    "gauge": gauge,
    "histogram": histogram,
}
TYPES: dict[str, type] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


@pytest.mark.parametrize("spec", ALL_METRICS, ids=lambda spec: spec.name)
def test_every_spec_makes_its_collector(spec: MetricSpec) -> None:
    registry = CollectorRegistry()
    made = MAKERS[spec.type](spec, registry)
    assert isinstance(made, TYPES[spec.type])
    assert made._labelnames == spec.labels
    assert MAKERS[spec.type](spec, registry) is made  # created once per registry
    families = {family.name: family for family in registry.collect()}
    assert spec.name in families and families[spec.name].type == spec.type
    if spec.type == "histogram" and spec.buckets:
        assert isinstance(made, Histogram)
        assert list(made._upper_bounds[:-1]) == [float(b) for b in spec.buckets]


@pytest.mark.parametrize("spec", ALL_METRICS, ids=lambda spec: spec.name)
def test_a_spec_of_another_type_is_refused(spec: MetricSpec) -> None:
    for kind, make in MAKERS.items():
        if kind != spec.type:
            with pytest.raises(TypeError, match=f"{spec.name} is a {spec.type}, not a {kind}"):
                make(spec, CollectorRegistry())


def test_typed_collectors_record() -> None:
    registry = CollectorRegistry()
    counter(m.EVENTS_CONSUMED, registry).labels("camera").inc(3)
    gauge(m.CONSUMER_LAG, registry).labels("camera", "0").set(7)
    histogram(m.BATCH_SIZE, registry).labels("camera").observe(42)
    assert registry.get_sample_value(m.EVENTS_CONSUMED.series, {"feed": "camera"}) == 3
    assert registry.get_sample_value(m.CONSUMER_LAG.name, {"feed": "camera", "partition": "0"}) == 7
    assert registry.get_sample_value(f"{m.BATCH_SIZE.name}_count", {"feed": "camera"}) == 1


def test_a_new_registry_gets_its_own_collectors_even_at_a_freed_registrys_address() -> None:
    """CPython reuses a freed object's address, so a cache keyed by ``id(registry)`` handed
    a fresh registry the dead one's collectors: its samples went nowhere (a flaky unit test
    in CI). Many short-lived registries in a row reuse addresses; each must count its own."""
    seen: set[int] = set()
    reused = False
    for _ in range(200):
        registry = CollectorRegistry()
        reused = reused or id(registry) in seen
        seen.add(id(registry))
        counter(m.EVENTS_CONSUMED, registry).labels("camera").inc()
        assert registry.get_sample_value(m.EVENTS_CONSUMED.series, {"feed": "camera"}) == 1
        del registry
    assert reused  # the situation the test is about did occur
