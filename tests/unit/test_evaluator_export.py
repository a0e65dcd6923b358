"""The leader's domain gauges, from one verdict: counted the plain way and compared.

The evaluator precomputes what each device contributes (its class and top unit, its camera
unit) because a national round walks 100,000 devices; the figures must not change for it.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Any, cast

from prometheus_client import REGISTRY

from ioc.contract import metrics as m
from ioc.contract import tables as t
from ioc.contract.feeds import Feed
from ioc.contract.topology import load_scenario
from ioc.streams.evaluator import _FACTS_SQL, Evaluator
from ioc.streams.state import Current, Facts, Verdict

TOPO = load_scenario("yen-bai-2022")
STATES = (t.STATE_UP, t.STATE_DEGRADED, t.STATE_DOWN, t.STATE_UNREACHABLE, t.STATE_FLAPPING)


def _value(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_gauges_match_a_plain_count_over_every_device() -> None:
    """Three rounds, the later ones changing some devices (a series is set only when its
    value changed): each round's gauges are the plain count of that round, and a series
    whose count went to nothing is gone."""
    rng = random.Random(7)
    evaluator = Evaluator(TOPO, cast(Any, None))
    states = {dev_id: Current(rng.choice(STATES), "link loss 9.0%", 0) for dev_id in TOPO.devices}
    for round_no in range(3):
        if round_no == 1:  # a few devices change
            for dev_id in rng.sample(sorted(states), 40):
                states[dev_id] = Current(rng.choice(STATES), "link loss 9.0%", 0)
        if round_no == 2:  # no device flaps or is down any more: those series go
            states = {
                d: cur if cur.state in (t.STATE_UP, t.STATE_DEGRADED) else Current("up", "", 0)
                for d, cur in states.items()
            }
        facts = {dev_id: Facts(sessions_active=rng.randint(0, 3)) for dev_id in TOPO.devices}
        evaluator._export(Verdict(dict(states), [], {}), facts, [])
        _check_gauges(states, facts)


def _check_gauges(states: dict[str, Current], facts: dict[str, Facts]) -> None:
    by_state: Counter[tuple[str, str, str]] = Counter()
    for dev_id, cur in states.items():
        dev = TOPO.devices[dev_id]
        by_state[(dev.device_class, cur.state, TOPO.region_of(dev_id))] += 1
    for (cls, state, unit), n in by_state.items():
        labels = {"device_class": cls, "state": state, "unit": unit}
        assert _value(m.DEVICES_BY_STATE.name, labels) == n, labels
    exported_states = {
        (s.labels["device_class"], s.labels["state"], s.labels["unit"])
        for metric in REGISTRY.collect()
        if metric.name == m.DEVICES_BY_STATE.name
        for s in metric.samples
    }
    assert exported_states == set(by_state)

    total: Counter[str] = Counter()
    online: Counter[str] = Counter()
    for dev in TOPO.devices_of(Feed.CAMERA):
        for unit in TOPO.ancestors(TOPO.unit_of_device[dev.id]):
            total[unit] += 1
            online[unit] += states[dev.id].state in (t.STATE_UP, t.STATE_DEGRADED)
    assert len(total) > 10
    for unit, n in total.items():
        u = TOPO.units[unit]
        labels = {"unit": unit, "unit_name": u.name, "level": u.level_name}
        got = _value(m.CAMERA_ONLINE_RATIO.name, labels)
        assert got == online[unit] / n, (labels, got)

    sessions: Counter[str] = Counter()
    for dev in TOPO.devices_of(Feed.TELEHEALTH):
        if states[dev.id].state not in (t.STATE_DOWN, t.STATE_UNREACHABLE):
            sessions[TOPO.region_of(dev.id)] += facts[dev.id].sessions_active or 0
    for unit in {TOPO.region_of(d.id) for d in TOPO.devices_of(Feed.TELEHEALTH)}:
        assert _value(m.TELEHEALTH_SESSIONS.name, {"unit": unit}) == sessions[unit]

    flapping = {d for d, cur in states.items() if cur.state == t.STATE_FLAPPING}
    exported = {
        s.labels["device_id"]
        for metric in REGISTRY.collect()
        if metric.name == m.DEVICE_FLAPPING.name
        for s in metric.samples
    }
    assert exported == flapping


def test_the_facts_query_reads_the_columns_in_the_order_of_facts() -> None:
    """``Facts(*row[1:])``: a field added to Facts in the middle would shift every value."""
    select = _FACTS_SQL.removeprefix("SELECT device_id, ").rsplit(" FROM ", 1)[0]
    columns = select.replace("date_part('epoch', ", "epoch_of(").split(", ")
    names = [f.name for f in dataclasses.fields(Facts)]
    assert names[-2:] == ["alert_ts", "alert_reason"]  # filled by ioc.streams.soc, not read
    expected = [{"seen_ms": "updated_at"}.get(n, n) for n in names[:-2]]
    got = [c.split("epoch_of(")[-1].split(")")[0] for c in columns]
    assert got == expected
