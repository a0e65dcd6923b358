"""The SOC sensors' simulator, their faults and their place in the generated topology; the
sensors' states and the incidents they call for (pure parts, no stack)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from ioc.contract import schemas as s
from ioc.contract import soc
from ioc.contract import tables as t
from ioc.contract.thresholds import THRESHOLDS
from ioc.contract.topology import load_scenario, load_yaml
from ioc.simulators import province
from ioc.simulators.engine import Simulator
from ioc.simulators.faults import FaultPlan, FaultPlanError, _parse_one, resolve_targets
from ioc.streams.incidents import incident_for
from ioc.streams.state import Facts, StateMachine, raw_state


def plan(*items: dict[str, Any]) -> FaultPlan:
    return FaultPlan([_parse_one(item, "test", i) for i, item in enumerate(items)])


def run(fault_plan: FaultPlan, seconds: int = 60) -> Counter[tuple[str, str, str, str]]:
    topology = load_scenario("demo")
    now = int(time.time() * 1000)
    sim = Simulator(topology, resolve_targets(fault_plan, topology), seed=3, start_ms=now)
    seen: Counter[tuple[str, str, str, str]] = Counter()
    for out in sim.advance(now + seconds * 1000):
        if out.feed != "soc":
            continue
        msg = s.decode(out.value, feed="soc", key=out.key, now_ms=now)
        if isinstance(msg, soc.SocAlert):
            seen[(msg.device_id, msg.kind, msg.severity, msg.category)] += 1
        else:
            seen[(msg.device_id, msg.kind, "", "")] += 1
    return seen


def test_sensors_report_stats_and_only_background_alerts_without_faults() -> None:
    seen = run(FaultPlan())
    sensors = {dev for dev, kind, _, _ in seen if kind == "soc.sensor"}
    assert sensors == {d.id for d in load_scenario("demo").devices_of("soc")}
    assert all(n == 12 for (_, kind, _, _), n in seen.items() if kind == "soc.sensor")
    assert not [k for k in seen if k[2] in ("critical", "high")]


@pytest.mark.parametrize(
    ("target", "campaign", "sensor", "critical", "category"),
    [
        ("soc-991", "brute_force", "soc-991", True, "brute_force"),
        ("nn-992-001", "ddos", "soc-992-001", True, "ddos"),
        ("nn-991-001", "scan", "soc-991-001", False, "scan"),
    ],
)
def test_a_campaign_floods_its_site_with_native_alerts(
    target: str, campaign: str, sensor: str, critical: bool, category: str
) -> None:
    seen = run(
        plan(
            {
                "type": "soc_campaign",
                "target": target,
                "at": 10,
                "duration": 30,
                "campaign": campaign,
            }
        )
    )
    mine = {k: n for k, n in seen.items() if k[0] == sensor and k[1] == "soc.alert"}
    assert sum(n for k, n in mine.items() if k[3] == category) >= 12
    assert any(k[2] == "critical" for k in mine) is critical
    others = [k for k in seen if k[0] != sensor and k[2] in ("critical", "high")]
    assert not others


def test_campaign_plans_are_checked() -> None:
    with pytest.raises(FaultPlanError, match="campaign 'phishing'"):
        plan({"type": "soc_campaign", "target": "nn-991", "campaign": "phishing"})
    topology = load_scenario("demo")
    with pytest.raises(FaultPlanError, match="needs a soc"):
        resolve_targets(plan({"type": "soc_campaign", "target": "cam-991-001"}), topology)
    resolved = resolve_targets(plan({"type": "soc_campaign", "target": "soc#0"}), topology)
    assert resolved.faults[0].target == "soc-99-core"
    assert resolved.faults[0].params["campaign"] == "brute_force"


def test_sensors_sit_behind_their_node_and_leave_other_devices_unchanged() -> None:
    text = province.builtin_specs()["demo"]
    doc = load_yaml(text, "demo")
    with_soc = province.generate(doc, "demo")
    del doc["generate"]["soc"]
    without = province.generate(doc, "demo")
    assert [d for d in with_soc["devices"] if d["class"] != "soc"] == without["devices"]
    sensors = [d for d in with_soc["devices"] if d["class"] == "soc"]
    nodes = {d["id"]: d for d in with_soc["devices"] if d["class"] == "netnode"}
    assert len(sensors) == 5
    for sensor in sensors:
        node = nodes[sensor["upstream"]]
        assert sensor["site"] == node["site"]
        assert sensor["attributes"]["subnet"].startswith("10.99.")
    assert len({s["attributes"]["subnet"] for s in sensors}) == len(sensors)


def test_bad_soc_sections_are_refused() -> None:
    doc = load_yaml(province.builtin_specs()["demo"], "demo")
    doc["generate"]["soc"] = {"communes": -1}
    with pytest.raises(province.GenerateError, match="communes"):
        province.generate(doc, "demo")


# --- states and incidents ---


def test_a_sensor_is_degraded_while_a_critical_or_correlated_alert_is_recent() -> None:
    now = 1_800_000_000_000
    reason = soc.alert_reason("critical", "brute_force", "sshd brute force")
    f = Facts(last_ts=now - 1000, alert_ts=now - 60_000, alert_reason=reason)
    assert raw_state("soc", f, now, THRESHOLDS) == (t.STATE_DEGRADED, reason)
    f.alert_ts = now - THRESHOLDS.soc_alert_hold_ms - 1
    assert raw_state("soc", f, now, THRESHOLDS)[0] == t.STATE_UP
    f.last_ts = now - 31_000
    assert raw_state("soc", f, now, THRESHOLDS)[0] == t.STATE_DOWN


def test_an_alert_that_turns_critical_is_a_transition_of_its_own() -> None:
    topology = load_scenario("demo")
    machine = StateMachine(topology)
    now = 1_800_000_000_000
    facts = {d: Facts(last_ts=now, probe_ts=now, probe_reachable=True) for d in topology.devices}
    scan = soc.alert_reason("high", "scan", "ET SCAN")
    facts["soc-991-001"].alert_ts, facts["soc-991-001"].alert_reason = now, scan
    first = machine.evaluate(facts, now)
    assert first.states["soc-991-001"].state == "degraded"
    assert first.states["soc-991"].state == "up"
    facts["soc-991-001"].alert_reason = soc.alert_reason("critical", "scan", "ET SCAN 2")
    later = machine.evaluate(facts, now + 5000)
    assert [(x.device_id, x.new) for x in later.transitions] == [("soc-991-001", "degraded")]
    same = machine.evaluate(facts, now + 10_000)
    assert not same.transitions


def test_only_a_critical_alert_opens_a_security_incident() -> None:
    topology = load_scenario("demo")
    critical = soc.alert_reason("critical", "brute_force", "sshd")
    wanted = incident_for(topology, "soc-991", t.STATE_DEGRADED, critical)
    assert wanted is not None
    assert (wanted.root, wanted.kind, wanted.affected) == (
        "soc-991",
        t.INCIDENT_SECURITY,
        ("soc-991",),
    )
    assert "critical-brute_force" in wanted.title
    high = soc.alert_reason("high", "ddos", "ET DOS")
    assert incident_for(topology, "soc-991", t.STATE_DEGRADED, high) is None
    down = incident_for(topology, "soc-991", t.STATE_DOWN, "no report for 31 s")
    assert down is not None and down.kind == t.INCIDENT_DEVICE_DOWN
    assert THRESHOLDS.incident_severity[(t.INCIDENT_SECURITY, "soc")] == "critical"


def test_the_fault_log_names_the_attacked_sensor() -> None:
    topology = load_scenario("demo")
    resolved = resolve_targets(
        plan({"type": "soc_campaign", "target": "nn-991-001", "at": 1, "campaign": "scan"}),
        topology,
    )
    sim = Simulator(topology, resolved, seed=3, start_ms=0)
    record = sim.fault_record(resolved.faults[0], "start", 1000)
    assert record.affected == ["nn-991-001", "soc-991-001"]
    assert record.params["campaign"] == "scan"
