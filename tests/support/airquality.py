"""A test-only feed beside the six built-in ones: air-quality sensors (docs/adding-a-feed.md).

The whole feed is this file: its messages, its one declaration (:data:`FEED`) and its
simulator behaviour (:class:`AirQualitySim`). Nothing in ``streams/``, the writer, the
migrations or the simulators names it: tests register it in-process
(``ioc.contract.feeds.registered(FEED)``) and hand it to ``ioc`` child processes with
``IOC_EXTRA_FEEDS=tests.support.airquality:FEED``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar

import yaml
from msgspec import Meta

from ioc.contract import schemas as s
from ioc.contract import tables as t
from ioc.contract.feeds import Aggregate, FeedSpec
from ioc.contract.thresholds import INFO, WARNING
from ioc.contract.topics import DAY_MS, TopicSpec
from ioc.contract.topology import Topology
from ioc.simulators.behaviour import Conditions, DeviceSim

NAME = "airquality"
SPEC = f"{__name__}:FEED"
"""What ``IOC_EXTRA_FEEDS`` names to load this feed in an ``ioc`` process."""

Concentration = Annotated[float, Meta(ge=0.0, le=10_000.0, extra={"column": "real"})]


class AirQualityHeartbeat(s.Message, tag="airquality.heartbeat", frozen=True, kw_only=True):
    status: s.Status
    battery_pct: s.Percent


class AirQualityReading(s.Message, tag="airquality.reading", frozen=True, kw_only=True):
    pm25_ugm3: Concentration
    pm10_ugm3: Concentration
    aqi: Annotated[int, Meta(ge=0, le=999, extra={"column": "integer"})]


FEED = FeedSpec(
    name=NAME,
    title="Air quality",
    messages=(AirQualityHeartbeat, AirQualityReading),
    topic=TopicSpec(
        "ioc.airquality.v1", 2, 2 * DAY_MS, description="air-quality sensors (test-only feed)"
    ),
    device_rollup=(
        Aggregate("reports", "integer", "sat_int4(count(*))", not_null=True),
        Aggregate(
            "readings", "integer", "sat_int4(count(*) FILTER (WHERE kind = 'airquality.reading'))"
        ),
        Aggregate("pm25_avg", "real", "sat_real(avg(pm25_ugm3))"),
        Aggregate("pm25_max", "real", "max(pm25_ugm3)"),
        Aggregate("aqi_max", "integer", "max(aqi)"),
    ),
    unit_rollup=(
        Aggregate("sensors", "integer", "sat_int4(count(*))", not_null=True),
        Aggregate("sensors_reporting", "integer", "sat_int4(count(r.device_id))", not_null=True),
        Aggregate("pm25_avg", "real", "sat_real(avg(r.pm25_avg))"),
        Aggregate("aqi_max", "integer", "max(r.aqi_max)"),
    ),
    heartbeat_timeout_ms=30_000,
    incident_severity=MappingProxyType(
        {t.INCIDENT_DEVICE_DOWN: WARNING, t.INCIDENT_FLAPPING: INFO, t.INCIDENT_DEGRADED: INFO}
    ),
    behaviour=f"{__name__}:AirQualitySim",
)


class AirQualitySim(DeviceSim):
    """A sensor on a lamp post: a heartbeat every 5 s, a reading every 10 s."""

    device_class = NAME
    periods: ClassVar[Mapping[str, int]] = {
        "airquality.heartbeat": 5_000,
        "airquality.reading": 10_000,
    }

    def emit(self, kind: str, ts_ms: int, period_ms: int, cond: Conditions) -> list[s.Message]:
        rng = self.rng
        if kind == "airquality.heartbeat":
            return [
                AirQualityHeartbeat(
                    v=1,
                    device_id=self.id,
                    seq=self.next_seq(),
                    ts_ms=ts_ms,
                    status="ok",
                    battery_pct=round(rng.uniform(40.0, 100.0), 1),
                )
            ]
        pm25 = round(rng.uniform(5.0, 80.0) * (1.0 + cond.weather), 1)
        return [
            AirQualityReading(
                v=1,
                device_id=self.id,
                seq=self.next_seq(),
                ts_ms=ts_ms,
                pm25_ugm3=pm25,
                pm10_ugm3=round(pm25 * rng.uniform(1.2, 2.0), 1),
                aqi=min(999, int(pm25 * 4)),
            )
        ]


def scenario_with_sensors(base: Topology, path: Path, per_district: int = 2) -> Path:
    """``base`` plus ``per_district`` air-quality sensors at each district office, as an
    explicit scenario file (the feed must be registered to load it)."""
    doc: dict[str, Any] = base.to_document()
    doc["scenario"] = f"{base.name}-airquality"
    offices = [site for site in doc["sites"] if site["kind"] == "district_office"]
    node_of = {d["site"]: d["id"] for d in doc["devices"] if d["class"] == "netnode"}
    for site in offices:
        for i in range(per_district):
            doc["devices"].append(
                {
                    "id": f"aq-{site['unit']}-{i + 1:02d}",
                    "class": NAME,
                    "site": site["id"],
                    "lat": site["lat"],
                    "lon": site["lon"],
                    "upstream": node_of[site["id"]],
                }
            )
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
