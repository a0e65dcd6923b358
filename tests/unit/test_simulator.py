"""Simulator engine: realistic shape, faults do what the plan says, runs are reproducible."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from ioc.config import load_settings
from ioc.contract import schemas as s
from ioc.contract.topology import load_scenario
from ioc.simulators.behaviour import clinic_curve, traffic_curve
from ioc.simulators.engine import Out, Simulator
from ioc.simulators.faults import FaultPlan, FaultPlanError, load_plan, parse_flag, resolve_targets
from ioc.simulators.run import SimConfig, run_simulation

START = 1_654_045_200_000  # 2022-06-01 08:00 +07:00


def simulate(
    scenario: str,
    seconds: int,
    plan: FaultPlan | None = None,
    *,
    shard: int = 0,
    shards: int = 1,
    speedup: float = 1.0,
    seed: int = 1,
) -> list[Out]:
    topo = load_scenario(scenario)
    sim = Simulator(
        topo,
        resolve_targets(plan or FaultPlan(), topo),
        seed=seed,
        start_ms=START,
        speedup=speedup,
        shard=shard,
        shards=shards,
    )
    out: list[Out] = []
    for t in range(1, seconds + 1):
        out += sim.advance(START + t * 1000)
    return out + sim.finish()


def decoded(records: list[Out]) -> list[s.Message]:
    return [
        s.decode(r.value, feed=r.feed, key=r.key) for r in records if r.valid and r.feed != "faults"
    ]


def test_every_device_class_reports_with_contiguous_sequence_numbers() -> None:
    records = simulate("demo", 120)
    msgs = decoded(records)
    kinds = {m.kind for m in msgs}
    assert {
        "camera.heartbeat",
        "camera.stream",
        "camera.traffic",
        "telehealth.heartbeat",
        "netnode.probe",
        "netnode.counters",
    } <= kinds
    seqs: dict[str, list[int]] = defaultdict(list)
    for m in msgs:
        seqs[m.device_id].append(m.seq)
        assert START <= m.ts_ms < START + 120_000
    topo = load_scenario("demo")
    assert set(seqs) == set(topo.devices)
    for dev, values in seqs.items():
        assert values == list(range(1, len(values) + 1)), dev


def test_same_seed_same_stream_and_shards_partition_it() -> None:
    one = simulate("demo", 60)
    assert one == simulate("demo", 60)
    assert one != simulate("demo", 60, seed=2)
    sharded = simulate("demo", 60, shard=0, shards=2) + simulate("demo", 60, shard=1, shards=2)

    def per_device(records: list[Out]) -> dict[str, list[bytes]]:
        result: dict[str, list[bytes]] = defaultdict(list)
        for r in records:
            result[r.device_id].append(r.value)
        return dict(result)

    assert per_device(one) == per_device(sharded)


def test_node_down_silences_everything_behind_it_and_logs_the_fault() -> None:
    topo = load_scenario("demo")
    node = "nn-992"
    behind = set(topo.devices_behind(node))
    plan = load_plan(None, [f"node_down:{node}@20+30"])
    records = simulate("demo", 90, plan)
    window = (START + 20_000, START + 50_000)
    for m in decoded(records):
        in_window = window[0] <= m.ts_ms < window[1]
        if in_window and m.device_id in behind | {node} and m.kind != "netnode.probe":
            pytest.fail(f"{m.device_id} reported {m.kind} while cut off")
        if in_window and m.kind == "netnode.probe" and m.device_id in behind | {node}:
            assert isinstance(m, s.NetnodeProbe) and not m.reachable
    links = [m for m in decoded(records) if isinstance(m, s.NetnodeLink)]
    assert [(m.device_id, m.interface, m.state) for m in links] == [
        ("nn-99-core", f"to-{node}", "down"),
        ("nn-99-core", f"to-{node}", "up"),
    ]
    faults = [r for r in records if r.feed == "faults"]
    assert [r.label for r in faults] == ["fault.start", "fault.end"]
    import orjson

    start = orjson.loads(faults[0].value)
    assert start["target"] == node and set(start["affected"]) == behind | {node}
    # devices behind resume after the outage
    assert any(m.device_id in behind and m.ts_ms >= window[1] for m in decoded(records))


def test_rated_faults_duplicate_delay_and_corrupt_but_lose_nothing() -> None:
    plan = load_plan(None, ["duplicate:0.05", "late:0.05", "malformed:0.05"])
    clean = simulate("demo", 120)
    faulty = simulate("demo", 120, plan)
    clean_set = {(r.device_id, r.seq) for r in clean if r.valid and r.feed != "faults"}
    valid = [r for r in faulty if r.valid and r.feed != "faults"]
    assert {(r.device_id, r.seq) for r in valid} == clean_set  # nothing valid lost
    assert len(valid) > len(clean_set)  # duplicates
    invalid = [r for r in faulty if not r.valid]
    assert invalid
    for r in invalid:
        with pytest.raises(s.InvalidMessage) as info:
            s.decode(r.value, feed=r.feed, key=r.key)
        assert info.value.reason == r.label
    # late messages arrive after later ones of the same device
    order: dict[str, list[int]] = defaultdict(list)
    for r in valid:
        order[r.device_id].append(r.seq)
    assert any(seq != sorted(seq) for seq in order.values())


def test_degraded_link_and_frozen_camera_show_in_the_values() -> None:
    topo = load_scenario("demo")
    node = "nn-991-001"
    cam = next(d for d in topo.devices_behind(node) if d.startswith("cam"))
    plan = load_plan(None, [f"link_degraded:{node}@0+120", f"camera_frozen:{cam}@0+120"])
    msgs = decoded(simulate("demo", 120, plan))
    probes = [m for m in msgs if isinstance(m, s.NetnodeProbe) and m.device_id == node]
    assert probes and min(p.rtt_ms or 0 for p in probes) > 250
    streams = [m for m in msgs if isinstance(m, s.CameraStream) and m.device_id == cam]
    assert streams and all(m.frozen for m in streams)


def test_clock_skew_shifts_event_times() -> None:
    plan = load_plan(None, ["clock_skew:camera#0@0+60"])
    msgs = decoded(simulate("demo", 60, plan))
    cam = sorted(d for d in load_scenario("demo").devices if d.startswith("cam"))[0]
    assert all(m.ts_ms >= START + 300_000 for m in msgs if m.device_id == cam)


def test_load_mode_compresses_periods() -> None:
    slow = simulate("demo", 10)
    fast = simulate("demo", 10, speedup=20)
    assert len(fast) > 15 * len(slow)


def test_diurnal_curves_peak_at_rush_hour_and_clinic_hours() -> None:
    assert traffic_curve(17.5) > traffic_curve(12.0) > traffic_curve(3.0)
    assert traffic_curve(7.5) > 3 * traffic_curve(2.0)
    assert clinic_curve(9.0, True) > 5 * clinic_curve(22.0, True)
    assert clinic_curve(9.0, False) < clinic_curve(9.0, True)


@pytest.mark.parametrize(
    ("flag", "fragment"),
    [
        ("explode:cam@1+2", "not one of"),
        ("node_down:@1+2", "needs a 'target'"),
        ("duplicate:2", "rate"),
        ("late", "expected TYPE"),
    ],
)
def test_bad_fault_flags_are_explained(flag: str, fragment: str) -> None:
    with pytest.raises(FaultPlanError, match=fragment):
        parse_flag(flag, 0)


def test_fault_plan_yaml_and_target_resolution(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "faults:\n  - {type: node_down, target: 'netnode#1', at: 5, duration: 10}\n"
        "  - {type: malformed, rate: 0.01, variants: [bad_json]}\n"
    )
    plan = resolve_targets(load_plan(str(path)), load_scenario("demo"))
    assert (
        plan.faults[0].target
        == sorted(d.id for d in load_scenario("demo").devices_of("netnode"))[1]
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults:\n  - {type: node_down, target: cam-991-001, at: 5}\n")
    with pytest.raises(FaultPlanError, match="needs a netnode"):
        resolve_targets(load_plan(str(bad)), load_scenario("demo"))
    with pytest.raises(FaultPlanError, match="not a device"):
        resolve_targets(load_plan(None, ["device_dark:nope@1+1"]), load_scenario("demo"))


def test_file_output_is_identical_for_the_same_seed(tmp_path: Path) -> None:
    settings = load_settings()
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for path in paths:
        summary = run_simulation(
            settings,
            SimConfig(
                scenario="demo",
                mode="virtual",
                duration_s=300,
                start_ms=START,
                out=str(path),
                fault_flags=["node_down:netnode#2@60+60", "duplicate:0.01"],
                progress=False,
            ),
        )
        assert summary.errors == 0 and summary.sent > 1000
    assert paths[0].read_bytes() == paths[1].read_bytes()
