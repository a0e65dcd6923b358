"""Replay load: cycles stay one contiguous sequence per device at moving event times."""

from __future__ import annotations

from collections import defaultdict

import pytest

from ioc.config import load_settings
from ioc.contract import schemas as s
from ioc.contract.topology import load_scenario
from ioc.contract.vconf import VconfMeeting
from ioc.errors import IocError
from ioc.simulators.engine import Out, Simulator
from ioc.simulators.faults import FaultPlan, load_plan, resolve_targets
from ioc.simulators.replay import ReplayCycle, epoch_fields, outage_devices
from ioc.simulators.run import SimConfig, run_simulation

START = 1_654_045_200_000  # 2022-06-01 08:00 +07:00
TICK = 100


def capture(cycle_ms: int = 2_000, plan: FaultPlan | None = None) -> ReplayCycle:
    topo = load_scenario("demo")
    sim = Simulator(
        topo, resolve_targets(plan or FaultPlan(), topo), seed=1, start_ms=START, speedup=20.0
    )
    return ReplayCycle(sim, START, cycle_ms, TICK)


def decoded(records: list[Out]) -> list[s.Message]:
    return [s.decode(r.value, feed=r.feed, key=r.key) for r in records]


def test_epoch_fields_are_the_ones_bounded_like_event_times() -> None:
    assert epoch_fields(VconfMeeting) == ("ts_ms", "starts_at_ms")
    assert epoch_fields(s.NetnodeProbe) == ("ts_ms",)


def test_cycles_continue_every_sequence_and_move_event_times_by_the_cycle() -> None:
    replay = capture()
    replay.begin(START, START + 60_000)
    end = replay.end_for(5.0)  # 5 s of 2 s cycles: three whole cycles
    assert end == START + 60_000 + 6_000
    records = replay.advance(end) + replay.finish()
    assert len(records) == 3 * replay.events
    messages = decoded(records)
    seqs: dict[str, list[int]] = defaultdict(list)
    for m in messages:
        seqs[m.device_id].append(m.seq)
        assert START + 60_000 - 1_000 <= m.ts_ms < end + 1_000
    for device, got in seqs.items():
        assert sorted(got) == list(range(1, len(got) + 1)), device
    first, third = messages[0], messages[2 * replay.events]
    assert (first.device_id, first.kind) == (third.device_id, third.kind)
    assert third.ts_ms - first.ts_ms == 4_000
    assert sum(replay.stats.valid_by_feed.values()) == len(records)
    assert replay.stats.valid_by_kind[first.kind] > 0


def test_sends_tick_by_tick_and_a_stopped_run_still_ends_on_a_whole_cycle() -> None:
    replay = capture()
    replay.begin(START, START)
    early = replay.advance(START + 350)  # three whole ticks
    assert early and len(early) < replay.events
    assert replay.advance(START + 399) == []
    rest = replay.finish()
    assert len(early) + len(rest) == replay.events
    assert replay.finish() == []


def test_an_outage_silences_the_node_and_all_behind_it_and_their_seq_goes_on() -> None:
    """A replayed node_down: nothing from the node or behind it during the window but the
    core's probes of it, unreachable; the rest as usual; and afterwards every sequence is
    still contiguous (reconciliation holds)."""
    topo = load_scenario("demo")
    plan = resolve_targets(load_plan(None, ["node_down:nn-992@2+2"]), topo)
    silenced = set(outage_devices(topo, plan.faults[0]))
    assert "nn-992" in silenced and len(silenced) > 1
    replay = capture()
    replay.begin(START, START)
    replay.silence(silenced, 2_000, 4_000)
    records = replay.advance(START + 10_000) + replay.finish()
    messages = decoded(records)
    during = [m for m in messages if START + 2_000 + 500 <= m.ts_ms < START + 4_000 - 500]
    from_silenced = [m for m in during if m.device_id in silenced]
    assert during and from_silenced, "the core's probes of the dark node go on"
    assert all(
        isinstance(m, s.NetnodeProbe) and not m.reachable and m.rtt_ms is None
        for m in from_silenced
    ), from_silenced
    before = {m.device_id for m in messages if m.ts_ms < START + 1_500}
    after = {m.device_id for m in messages if m.ts_ms >= START + 4_000}
    assert silenced & before and silenced & before <= after, "the outage ended"
    seqs: dict[str, list[int]] = defaultdict(list)
    for m in messages:
        seqs[m.device_id].append(m.seq)
    for device, got in seqs.items():
        assert sorted(got) == list(range(1, len(got) + 1)), device
    assert sum(replay.stats.valid_by_feed.values()) == len(records) < 5 * replay.events


def test_refuses_what_it_cannot_repeat() -> None:
    with pytest.raises(IocError, match="whole number"):
        capture(cycle_ms=250)
    plan = load_plan(None, ["malformed:0.5"])
    with pytest.raises(IocError, match="healthy cycle"):
        capture(plan=plan)


@pytest.mark.parametrize(
    ("mode", "flags"),
    [("realtime", []), ("rate", ["duplicate:0.01"]), ("rate", ["camera_frozen:camera#1@5+5"])],
)
def test_a_run_refuses_replay_outside_healthy_load_mode(mode: str, flags: list[str]) -> None:
    cfg = SimConfig(scenario="demo", mode=mode, rate=1000.0, replay_cycle_s=10.0, fault_flags=flags)
    with pytest.raises(IocError, match="--replay-cycle"):
        run_simulation(load_settings(), cfg)
