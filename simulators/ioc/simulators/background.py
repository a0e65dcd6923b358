"""A seeded background of everyday failures, so the default scenario shows the operator loop.

A real province is never all green: a network node loses power once in a while, a camera is
knocked out by a storm, a telehealth station's PC hangs. ``ioc run`` adds such a background
to the scenario (``--no-background-faults`` turns it off) so that a new user sees incidents
open, page, escalate and resolve without writing a fault plan.

Each device class fails as a renewal process: exponential time to failure at the declared
rate (failures per day per 100 devices), then a repair time drawn uniformly from the class's
range, during which the same device cannot fail again. A short warm-up puts the first few
failures in the first minutes (a camera that comes back quickly, a critical telehealth
station left down long enough to escalate, a commune network node that cuts off the devices
behind it). Portal desks have LGSP sync stalls and SOC sensors see brute-force runs; the
bridges need none: their scheduled meetings (and who misses them) are their own background.
Everything is a pure function of the topology, the seed and the horizon, and the result is
an ordinary :class:`~ioc.simulators.faults.FaultPlan`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from ioc.contract.feeds import Feed
from ioc.contract.topology import Device, Topology
from ioc.simulators.faults import Fault, FaultPlan

BACKGROUND_PREFIX = "bg"
"""Fault ids of the background start with this (user plans use ``fNNN-``)."""
DAY_S = 86_400.0
DEFAULT_HORIZON_S = 30 * DAY_S
"""How far ahead a run without ``--duration`` gets background failures."""


@dataclass(frozen=True)
class ClassModel:
    """How one device class fails in the background."""

    device_class: str
    failures_per_day_per_100: float
    repair_s: tuple[float, float]
    """Repair time range (uniform), seconds."""
    kinds: tuple[tuple[str, float], ...]
    """Fault types with their relative weights; each must suit the class (faults.py)."""
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra fault parameters by fault type (e.g. link_degraded: loss_pct, latency_ms)."""

    @property
    def rate_per_s(self) -> float:
        """One device's failure rate (per second)."""
        return self.failures_per_day_per_100 / 100.0 / DAY_S


@dataclass(frozen=True)
class WarmupFault:
    """One of the early failures: which class, when (range, s) and for how long (range, s)."""

    device_class: str
    fault_type: str
    at_s: tuple[float, float]
    duration_s: tuple[float, float]


@dataclass(frozen=True)
class BackgroundProfile:
    classes: tuple[ClassModel, ...]
    warmup: tuple[WarmupFault, ...] = ()


DEFAULT_PROFILE = BackgroundProfile(
    classes=(
        # Power cuts and fibre breaks at a commune or district office; a technician is close.
        ClassModel(
            Feed.NETNODE,
            1.0,
            (300.0, 1800.0),
            (("node_down", 0.8), ("link_degraded", 0.2)),
            {"link_degraded": {"loss_pct": 8.0, "latency_ms": 400.0}},
        ),
        # Street cameras: weather, vandalism, frozen encoders; more often, slower to reach.
        ClassModel(
            Feed.CAMERA,
            3.0,
            (300.0, 2700.0),
            (("device_dark", 0.7), ("camera_frozen", 0.3)),
        ),
        # A clinic's station: the PC hangs or the link drops calls; staff restart it.
        ClassModel(
            Feed.TELEHEALTH,
            2.0,
            (300.0, 1800.0),
            (("device_dark", 0.7), ("session_drops", 0.3)),
        ),
        # A one-stop desk's LGSP sync stalls; its dossiers arrive in one late batch after.
        ClassModel(Feed.PORTAL, 2.0, (1800.0, 7200.0), (("lgsp_outage", 1.0),)),
        # A password-guessing run against a site's servers, seen by its SOC sensor.
        ClassModel(
            Feed.SOC,
            1.0,
            (300.0, 1200.0),
            (("soc_campaign", 1.0),),
            {"soc_campaign": {"campaign": "brute_force"}},
        ),
    ),
    warmup=(
        # A camera that comes back by itself after a few minutes: open -> page -> resolve.
        WarmupFault(Feed.CAMERA, "device_dark", (20.0, 40.0), (150.0, 240.0)),
        # A critical station nobody acknowledges: it escalates before it is repaired.
        WarmupFault(Feed.TELEHEALTH, "device_dark", (45.0, 75.0), (420.0, 540.0)),
        # A commune node: the site is isolated, alerts behind it are inhibited.
        WarmupFault(Feed.NETNODE, "node_down", (90.0, 150.0), (300.0, 480.0)),
    ),
)


def _is_core(device: Device) -> bool:
    return device.upstream is None


def _deepest_level(topology: Topology) -> int:
    return max(unit.level for unit in topology.units.values())


def commune_nodes(topology: Topology) -> list[str]:
    """Network nodes at the lowest tier (communes) with devices behind them, in id order."""
    deepest = _deepest_level(topology)
    return sorted(
        d.id
        for d in topology.devices_of(Feed.NETNODE)
        if not _is_core(d)
        and topology.units[topology.unit_of_device[d.id]].level == deepest
        and topology.devices_behind(d.id)
    )


def maintenance_node(topology: Topology) -> str | None:
    """The node of the default weekly maintenance window: the first commune node (None: the
    scenario has none)."""
    nodes = commune_nodes(topology)
    return nodes[0] if nodes else None


def _candidates(topology: Topology, device_class: str) -> list[str]:
    """Devices of a class that fail in the background: every one but the core node (its loss
    would cut off the whole province: a disaster to rehearse with a plan, not background)."""
    return sorted(d.id for d in topology.devices_of(device_class) if not _is_core(d))


def _pick_kind(rng: random.Random, kinds: tuple[tuple[str, float], ...]) -> str:
    total = sum(weight for _, weight in kinds)
    x = rng.random() * total
    for kind, weight in kinds:
        x -= weight
        if x < 0:
            return kind
    return kinds[-1][0]


def background_plan(
    topology: Topology,
    seed: int,
    horizon_s: float = DEFAULT_HORIZON_S,
    profile: BackgroundProfile = DEFAULT_PROFILE,
) -> FaultPlan:
    """The background failures of ``topology`` from 0 to ``horizon_s`` seconds of the run.

    Deterministic: the same topology, seed, horizon and profile give the same plan; each
    device draws from its own generator, so adding a device does not move the others'.
    """
    horizon_ms = int(horizon_s * 1000)
    busy_until: dict[str, int] = {}
    planned: list[tuple[int, str, str, int, dict[str, float]]] = []

    # Warm-up: unrelated devices (none behind another's node), so each is its own incident;
    # the node one a commune node with devices behind it.
    warm = random.Random(f"{seed}:warmup")
    related: set[str] = set()
    for w in profile.warmup:
        pool = commune_nodes(topology) if w.fault_type == "node_down" else []
        pool = pool or _candidates(topology, w.device_class)
        pool = [
            dev
            for dev in pool
            if dev not in related
            and not related.intersection(topology.upstream_chain(dev))
            and not related.intersection(topology.devices_behind(dev))
        ]
        if not pool:
            continue
        target = warm.choice(pool)
        start = int(warm.uniform(*w.at_s) * 1000)
        end = start + int(warm.uniform(*w.duration_s) * 1000)
        if start >= horizon_ms:
            continue
        planned.append((start, target, w.fault_type, min(end, horizon_ms), {}))
        busy_until[target] = end
        related.add(target)

    for model in profile.classes:
        if model.failures_per_day_per_100 <= 0:
            continue
        for dev in _candidates(topology, model.device_class):
            rng = random.Random(f"{seed}:{dev}")
            t = busy_until.get(dev, 0)
            while True:
                t += int(-math.log(1.0 - rng.random()) / model.rate_per_s * 1000)
                if t >= horizon_ms:
                    break
                kind = _pick_kind(rng, model.kinds)
                repair = int(rng.uniform(*model.repair_s) * 1000)
                planned.append(
                    (t, dev, kind, min(t + repair, horizon_ms), dict(model.params.get(kind, {})))
                )
                t += repair

    planned.sort(key=lambda p: (p[0], p[1]))
    return FaultPlan(
        [
            Fault(
                id=f"{BACKGROUND_PREFIX}{i:04d}-{kind}",
                type=kind,
                start_ms=start,
                end_ms=end,
                target=target,
                params=dict(params),
            )
            for i, (start, target, kind, end, params) in enumerate(planned)
            if end > start
        ]
    )
