"""The video-conference feed without a stack: placement by the province generator, the
simulated bridges, points and booking calendar (native payloads through the adapter), the
meetings and their faults, and the readiness causes the leader computes."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from ioc.contract import schemas as s
from ioc.contract import tables as t
from ioc.contract import vconf as vc
from ioc.contract.topology import Topology, load_scenario, load_yaml
from ioc.simulators import province
from ioc.simulators.engine import Out, Simulator
from ioc.simulators.faults import FaultPlan, FaultPlanError, load_plan, resolve_targets
from ioc.simulators.faults import _parse_one as _parse_fault
from ioc.simulators.vconf import JOIN_MAX_LOSS_PCT, Schedule
from ioc.streams.state import Current, Verdict
from ioc.streams.vconf import Meeting, ReadinessMonitor

START = int(dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC).timestamp() * 1000)  # Thu 10:00 VN
PLAN = """
faults:
  - {type: vconf_meeting, target: vc-99, at: 30, duration: 600, title: Province test}
  - {type: node_down, target: nn-992-002, at: 0}
  - {type: link_degraded, target: nn-991-002, at: 0, loss_pct: 30, latency_ms: 200}
  - {type: vconf_no_join, target: vc-992-001, at: 0}
  - {type: vconf_licence, target: vc-99-mcu-1, at: 0, ports: 3}
"""


def _run(plan: FaultPlan, seconds: int, shard: int = 0, shards: int = 1) -> list[Out]:
    topo = load_scenario("demo")
    sim = Simulator(
        topo, resolve_targets(plan, topo), seed=7, start_ms=START, shard=shard, shards=shards
    )
    out: list[Out] = []
    for second in range(5, seconds + 1, 5):
        out += sim.advance(START + second * 1000)
    return out + sim.finish()


def _vconf(records: list[Out]) -> list[s.Message]:
    return [s.decode(r.value, feed="vconf", key=r.key) for r in records if r.feed == "vconf"]


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> FaultPlan:
    path = Path(tmp_path_factory.mktemp("vconf")) / "plan.yaml"
    path.write_text(PLAN)
    return load_plan(str(path))


def test_one_point_per_unit_behind_its_node_and_the_bridges_at_the_data_centre() -> None:
    for name, points, mcus in (("demo", 7, 2), ("yen-bai-2022", 183, 2), ("two-tier-2025", 13, 1)):
        topo = load_scenario(name)
        devices = topo.devices_of("vconf")
        roles = Counter(d.attributes["role"] for d in devices)
        assert roles == {"endpoint": points, "mcu": mcus, "booking": 1}, name
        assert points == len(topo.units)
        for d in devices:
            node = topo.devices[d.upstream or ""]
            assert node.device_class == "netnode" and node.site == d.site
            if d.attributes["role"] != "endpoint":
                assert topo.sites[d.site].kind == "provincial_core"
        units = {topo.unit_of_device[d.id] for d in devices if d.attributes["role"] == "endpoint"}
        assert units == set(topo.units)


def test_the_vconf_section_leaves_every_other_device_as_it_was() -> None:
    for name, text in province.builtin_specs().items():
        doc = load_yaml(text, name)
        if "vconf" not in doc["generate"]:
            continue  # national: provinces generated as these are, with its per-province vconf
        with_vconf = province.generate(doc, name)
        doc["generate"].pop("vconf")
        without = province.generate(doc, name)
        assert [d for d in with_vconf["devices"] if d["class"] != "vconf"] == without["devices"]
        assert with_vconf["sites"] == without["sites"] and with_vconf["units"] == without["units"]


def test_a_planned_meeting_with_the_feeds_faults(plan: FaultPlan) -> None:
    msgs = _vconf(_run(plan, 90))
    joins: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for m in msgs:
        if isinstance(m, vc.VconfJoin):
            joins[m.device_id].append((m.event, m.reason))
    # joined before the start: the ones that can, up to the 3 licensed ports
    joined = {dev for dev, events in joins.items() if ("joined", None) in events}
    assert len(joined) == 3
    refused = {dev for dev, events in joins.items() if ("failed", vc.REASON_LICENCE) in events}
    assert len(refused) == 1 and not refused & joined
    assert joins["vc-991-002"][0] == ("failed", vc.REASON_MEDIA)  # its link loses 30 %
    assert "vc-992-001" not in joins  # never tries
    assert "vc-992-002" not in joins  # cut off (and silent) from the start
    assert not any(m.device_id == "vc-992-002" for m in msgs)
    # the bridge counts the same points, and its licence
    bridge = [m for m in msgs if isinstance(m, vc.VconfBridge) and m.device_id == "vc-99-mcu-1"]
    assert max(m.participants for m in bridge) == 3
    assert {m.ports_licensed for m in bridge} == {3}
    assert bridge[-1].conferences == 1 and bridge[-1].conferences_partially_failed == 1
    # the calendar says it is in sync every 10 s (its heartbeat), and announces the meeting
    syncs = [m for m in msgs if isinstance(m, vc.VconfCalendar)]
    assert len(syncs) >= 8 and {m.upcoming_meetings for m in syncs} == {1}
    meetings = [m for m in msgs if isinstance(m, vc.VconfMeeting)]
    assert len(meetings) >= 8 and {m.scope_unit for m in meetings} == {"99"}
    assert {m.starts_at_ms for m in meetings} == {START + 30_000}
    assert {m.expected_points for m in meetings} == {7}
    # points in the meeting report media figures, the others idle
    media = [m for m in msgs if isinstance(m, vc.VconfEndpoint) and m.in_meeting]
    assert {m.device_id for m in media} == joined
    assert all(m.loss_pct is not None and m.loss_pct < JOIN_MAX_LOSS_PCT for m in media)


def test_sequences_are_contiguous_and_shards_agree(plan: FaultPlan) -> None:
    one = _run(plan, 60)
    seqs: dict[str, list[int]] = defaultdict(list)
    for m in _vconf(one):
        seqs[m.device_id].append(m.seq)
    for dev, values in seqs.items():
        assert values == list(range(1, len(values) + 1)), dev
    split = _run(plan, 60, 0, 2) + _run(plan, 60, 1, 2)

    def per_device(records: list[Out]) -> dict[str, list[bytes]]:
        result: dict[str, list[bytes]] = defaultdict(list)
        for r in records:
            if r.feed == "vconf":
                result[r.device_id].append(r.value)
        return dict(result)

    assert per_device(one) == per_device(split)


def test_the_bridge_down_drops_its_points_and_they_come_back() -> None:
    plan = load_plan(None, ["vconf_meeting:vc-99@20+600", "vconf_mcu_down:vc-99-mcu-1@40+20"])
    msgs = _vconf(_run(plan, 120))
    assert not any(
        isinstance(m, vc.VconfBridge)
        and m.device_id == "vc-99-mcu-1"
        and START + 40_000 <= m.ts_ms < START + 60_000
        for m in msgs
    )
    events = [(m.device_id, m.event, m.reason) for m in msgs if isinstance(m, vc.VconfJoin)]
    assert ("vc-991", "left", vc.REASON_BRIDGE) in events
    assert ("vc-991", "failed", vc.REASON_BRIDGE) in events  # it retried while down
    assert [e for e in events if e[0] == "vc-991"][-1] == ("vc-991", "joined", None)


def test_the_weekly_meeting_is_monday_8am_and_everyone_joins_in_the_last_minutes() -> None:
    topo = load_scenario("yen-bai-2022")
    monday = int(dt.datetime(2026, 11, 30, 0, 0, tzinfo=dt.UTC).timestamp() * 1000)  # 07:00 VN
    sched = Schedule(topo, FaultPlan(), 2022, monday)
    weekly = [m for m in sched.meetings(monday, monday + 7_200_000) if "weekly" in m.meeting_id]
    assert len(weekly) == 1
    meeting = weekly[0]
    assert dt.datetime.fromtimestamp(meeting.start_ms / 1000, dt.UTC).hour == 1  # 08:00 +07
    assert len(sched.expected(meeting)) == 183
    leads = [meeting.start_ms - sched.join_at(p, meeting) for p in sched.expected(meeting)]
    assert all(20_000 <= lead <= 620_000 for lead in leads)
    assert sum(lead <= 120_000 for lead in leads) > len(leads) / 2  # the 08:00 burst
    statuses = Counter(
        sched.status(p, meeting, meeting.start_ms).state for p in sched.expected(meeting)
    )
    assert statuses == {"joined": 183}


def _verdict(topo: Topology, states: dict[str, str]) -> Verdict:
    current = {d: Current(states.get(d, t.STATE_UP), "", START) for d in topo.devices}
    return Verdict(current, [], {})


def test_readiness_names_the_cause_and_the_device_it_is_about() -> None:
    topo = load_scenario("demo")
    monitor = ReadinessMonitor(topo)
    meeting = Meeting("m1", "Province test", "99", START, 3600, "vc-99-mcu-1")
    last: dict[tuple[str, str], tuple[str, str | None]] = {
        ("m1", "vc-99"): ("joined", None),
        ("m1", "vc-991"): ("failed", vc.REASON_LICENCE),
        ("m1", "vc-991-002"): ("failed", vc.REASON_MEDIA),
        ("m1", "vc-992"): ("failed", vc.REASON_MEDIA),
        ("m1", "vc-992-002"): ("joined", None),  # said so before its node went down
    }
    verdict = _verdict(
        topo,
        {
            "nn-992-002": t.STATE_DOWN,
            "vc-992-002": t.STATE_UNREACHABLE,
            "nn-991-002": t.STATE_DEGRADED,
        },
    )
    readiness = monitor.readiness([meeting], last, verdict, START + 30_000)
    causes = {miss.device_id: (miss.cause, miss.cause_device) for miss in readiness.missing}
    assert causes == {
        "vc-991": ("licence_exhausted", "vc-99-mcu-1"),
        "vc-991-001": ("not_joined", "vc-991-001"),
        "vc-991-002": ("link_degraded", "nn-991-002"),
        "vc-992": ("join_failed", "vc-992"),
        "vc-992-001": ("not_joined", "vc-992-001"),
        "vc-992-002": ("site_isolated", "nn-992-002"),
    }
    assert readiness.expected == {"m1": 7} and readiness.joined == {"m1": 1}
    assert {miss.seconds_since_start for miss in readiness.missing} == {30.0}
    # a district node down isolates its communes: the highest node down is the cause
    verdict = _verdict(topo, {"nn-992": t.STATE_DOWN, "vc-992-001": t.STATE_UNREACHABLE})
    readiness = monitor.readiness([meeting], last, verdict, START)
    causes = {miss.device_id: (miss.cause, miss.cause_device) for miss in readiness.missing}
    assert causes["vc-992-001"] == ("site_isolated", "nn-992")
    # the bridge down explains every point that is not in
    verdict = _verdict(topo, {"vc-99-mcu-1": t.STATE_DOWN})
    readiness = monitor.readiness([meeting], {}, verdict, START)
    assert {miss.cause for miss in readiness.missing} == {"bridge_down"}


def test_readiness_exports_what_the_alert_and_the_panel_read() -> None:
    topo = load_scenario("demo")
    monitor = ReadinessMonitor(topo)
    meeting = Meeting("m1", "Province test", "991", START, 3600, "vc-99-mcu-1")
    verdict = _verdict(topo, {"nn-991-001": t.STATE_DOWN})
    readiness = monitor.readiness(
        [meeting],
        {("m1", "vc-991"): ("joined", None)},
        verdict,
        START + 45_000,
        {"vc-99-mcu-1": (3, 3, 0.1)},
    )
    monitor.export(readiness)
    samples: dict[str, list[Any]] = defaultdict(list)
    for family in (monitor.not_joined, monitor.points, monitor.ports_used):
        for metric in family.collect():
            for sample in metric.samples:
                samples[sample.name].append((sample.labels, sample.value))
    (missing,) = [v for v in samples["ioc_vconf_point_not_joined"] if v[0]["cause"] != "not_joined"]
    assert missing[0]["device_id"] == "vc-991-001" and missing[0]["cause"] == "site_isolated"
    assert (
        missing[0]["cause_device"] == "nn-991-001" and missing[0]["upstream_node"] == "nn-991-001"
    )
    assert missing[1] == 45.0
    states = {lab["state"]: v for lab, v in samples["ioc_vconf_meeting_points"]}
    assert states == {"expected": 3, "joined": 1, "not_joined": 2}
    monitor.clear()
    assert not next(iter(monitor.not_joined.collect())).samples


def test_the_feeds_faults_check_their_targets_and_parameters() -> None:
    topo = load_scenario("demo")
    with pytest.raises(FaultPlanError, match="needs a vconf mcu"):
        resolve_targets(load_plan(None, ["vconf_licence:vc-99@0"]), topo)
    with pytest.raises(FaultPlanError, match="needs a vconf endpoint"):
        resolve_targets(load_plan(None, ["vconf_meeting:vc-99-mcu-1@30"]), topo)
    with pytest.raises(FaultPlanError, match="needs a vconf"):
        resolve_targets(load_plan(None, ["vconf_no_join:nn-991@0"]), topo)
    with pytest.raises(FaultPlanError, match="'ports' must be a whole number"):
        _parse_fault({"type": "vconf_licence", "target": "vc-99-mcu-1", "ports": "x"}, "t", 0)
    assert load_plan(None, ["vconf_licence:vc-99-mcu-1@0"]).faults[0].params == {"ports": 0}
