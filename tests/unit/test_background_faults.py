"""The background of everyday failures `ioc run` adds: seeded, at the declared rates, with the
first failures in the first minutes, and valid for the simulator."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path

from ioc.contract.feeds import Feed
from ioc.contract.topology import load_scenario
from ioc.simulators.background import (
    BACKGROUND_PREFIX,
    DAY_S,
    DEFAULT_PROFILE,
    BackgroundProfile,
    background_plan,
    commune_nodes,
    maintenance_node,
)
from ioc.simulators.engine import Simulator
from ioc.simulators.faults import FaultPlan, resolve_targets

START = 1_654_045_200_000  # 2022-06-01 08:00 +07:00


def _key(plan: FaultPlan) -> list[tuple[str, str, int, int, str | None]]:
    return [(f.id, f.type, f.start_ms, f.end_ms, f.target) for f in plan.faults]


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    topo = load_scenario("yen-bai-2022")
    a = background_plan(topo, seed=7, horizon_s=2 * DAY_S)
    b = background_plan(topo, seed=7, horizon_s=2 * DAY_S)
    c = background_plan(topo, seed=8, horizon_s=2 * DAY_S)
    assert _key(a) == _key(b)
    assert _key(a) != _key(c)
    assert all(f.id.startswith(BACKGROUND_PREFIX) for f in a.faults)
    assert len({f.id for f in a.faults}) == len(a.faults)


def test_rates_roughly_as_declared() -> None:
    topo = load_scenario("yen-bai-2022")
    days = 30
    plan = background_plan(
        topo, seed=1, horizon_s=days * DAY_S, profile=BackgroundProfile(DEFAULT_PROFILE.classes)
    )
    by_class = Counter(topo.devices[f.target].device_class for f in plan.faults if f.target)
    for model in DEFAULT_PROFILE.classes:
        devices = [d for d in topo.devices_of(model.device_class) if d.upstream is not None]
        mean_repair_days = sum(model.repair_s) / 2 / DAY_S
        # a renewal process: up time is what fails; the down time (repair) does not
        cycle = 1 / (model.failures_per_day_per_100 / 100) + mean_repair_days
        expected = len(devices) * days / cycle
        got = by_class[model.device_class]
        assert abs(got - expected) < 4 * expected**0.5 + 2, (model.device_class, got, expected)


def test_repairs_within_range_and_no_overlap_per_device() -> None:
    topo = load_scenario("yen-bai-2022")
    plan = background_plan(topo, seed=3, horizon_s=10 * DAY_S)
    models = {m.device_class: m for m in DEFAULT_PROFILE.classes}
    warm_ids = {f.id for f in sorted(plan.faults, key=lambda f: f.start_ms)[:3]}
    by_device: dict[str, list[tuple[int, int]]] = {}
    for f in plan.faults:
        assert f.target is not None
        dev = topo.devices[f.target]
        assert dev.upstream is not None, "the core node is never background"
        assert f.type in dict(models[dev.device_class].kinds) or f.id in warm_ids
        lo, hi = models[dev.device_class].repair_s
        if f.id not in warm_ids:
            assert lo * 1000 <= f.end_ms - f.start_ms <= hi * 1000
        by_device.setdefault(f.target, []).append((f.start_ms, f.end_ms))
    for spans in by_device.values():
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(spans))


def test_first_failures_come_in_the_first_minutes() -> None:
    for scenario in ("demo", "yen-bai-2022"):
        topo = load_scenario(scenario)
        plan = background_plan(topo, seed=topo.seed, horizon_s=DAY_S)
        early = [f for f in plan.faults if f.start_ms < 3 * 60_000]
        classes = {topo.devices[f.target].device_class for f in early if f.target}
        assert {Feed.CAMERA, Feed.TELEHEALTH, Feed.NETNODE} <= classes, scenario
        node = next(f for f in early if f.type == "node_down")
        assert node.target in commune_nodes(topo)
        # the warm-up failures are independent incidents: none behind another's node
        targets = {f.target for f in early if f.target}
        assert not targets.intersection(topo.devices_behind(node.target or ""))
        # one repairs within minutes, one stays long enough to escalate
        durations = sorted(f.end_ms - f.start_ms for f in early)
        assert durations[0] <= 5 * 60_000
        assert durations[-1] >= 6 * 60_000  # the telehealth level 2 is due after 5 min


def test_horizon_bounds_the_plan() -> None:
    topo = load_scenario("demo")
    plan = background_plan(topo, seed=1, horizon_s=60)
    assert all(f.end_ms <= 60_000 and f.start_ms < 60_000 for f in plan.faults)
    assert len(plan.faults) == 1  # only the camera of the warm-up starts before 60 s


def test_plan_drives_the_simulator() -> None:
    topo = load_scenario("demo")
    plan = resolve_targets(background_plan(topo, seed=1, horizon_s=DAY_S), topo)
    sim = Simulator(topo, plan, seed=1, start_ms=START)
    out = sim.advance(START + 5 * 60_000)
    fault_logs = [o for o in out if o.feed == "faults"]
    assert fault_logs, "the warm-up failures are logged on the faults topic"
    assert sim.stats.suppressed > 0


def test_maintenance_node_is_a_commune_node() -> None:
    topo = load_scenario("demo")
    node = maintenance_node(topo)
    assert node is not None and node in commune_nodes(topo)
    assert topo.units[topo.unit_of_device[node]].level_name == "commune"


def test_a_simulation_run_takes_the_background(tmp_path: Path) -> None:
    from ioc.config import load_settings
    from ioc.simulators.run import SimConfig, run_simulation

    cfg = SimConfig(
        scenario="demo",
        mode="virtual",
        duration_s=300,
        seed=2,
        start_ms=START,
        fault_flags=["device_dark:camera#0@10+20"],
        out=str(tmp_path / "out.jsonl"),
        progress=False,
        background_faults=True,
    )
    summary = run_simulation(load_settings(), cfg)
    ids = [f["fault_id"] for f in summary.faults]
    assert ids[0] == "f000-device_dark"
    assert [i for i in ids if i.startswith(BACKGROUND_PREFIX)], "the warm-up failures ran"
    assert summary.stats.suppressed > 0
