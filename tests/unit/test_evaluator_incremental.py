"""The gauges counted from the round's changes only, and the facts rows read in place.

A national round recounted every device's state for the gauges (0.2 s of 100,000) although
about 1 % change in a round; the evaluator now moves the previous round's counts by the
devices the machine says it changed (``Verdict.changed``). That is only right if every
device whose state differs from the previous verdict is in ``changed``, and if a verdict that
was never exported (a round that failed after its verdict) makes the next export recount.
"""

from __future__ import annotations

import dataclasses
from itertools import pairwise
from typing import Any, cast

from ioc.contract import metrics as m
from ioc.contract import tables as t
from ioc.streams.evaluator import _FACT_COLUMNS, Evaluator, FactsRecord
from ioc.streams.state import Facts, Verdict
from tests.unit.test_state import T0, TOPO, World

NODE = "nn-992"  # the demo node with cameras behind it (tests/unit/test_state.py)
CAM = "cam-992-001"


def _plain(evaluator: Evaluator, verdict: Verdict) -> dict[str, Any]:
    """What ``_count_all`` finds for ``verdict``, zero counts left out."""
    fresh = evaluator._count_all(verdict)
    return _comparable(fresh)


def _comparable(counted: Any) -> dict[str, Any]:
    return {
        "state_at": list(counted.state_at),
        "by_group": {k: n for k, n in counted.by_group.items() if n},
        "cams_up": {k: n for k, n in counted.cams_up.items() if n},
        "notable": set(counted.notable),
    }


def _script(world: World) -> list[Verdict]:
    """Rounds 5 s apart through outages of every kind: a silent camera, a frozen one, a
    node cut (everything behind it unreachable) and back, a flapping camera."""
    verdicts = []
    now = T0
    for step in range(120):
        now += 5000
        if step == 10:
            world.silent.add(CAM)
        if step == 20:
            world.frozen.add("cam-991-002")
        if step == 30:
            world.unreachable.add(NODE)
        if step == 60:
            world.unreachable.discard(NODE)
        if step == 70:
            world.silent.discard(CAM)
            world.frozen.discard("cam-991-002")
        if 80 <= step < 115:  # 30 s silent, 20 s back: flapping
            (world.silent.add if (step - 80) % 10 < 6 else world.silent.discard)(CAM)
        verdicts.append(world.advance(now))
    return verdicts


def test_every_state_that_changed_is_in_changed() -> None:
    """Between two verdicts, a device whose state differs is in the second's ``changed``;
    the first verdict, and the first after a restore, say they do not know (None)."""
    world = World()
    verdicts = _script(world)
    assert verdicts[0].changed is None
    moved = 0
    for before, after in pairwise(verdicts):
        assert after.changed is not None
        assert after.round_no == before.round_no + 1
        differ = {
            d
            for d, cur in after.states.items()
            if d not in before.states or before.states[d].state != cur.state
        }
        assert differ <= after.changed
        moved += len(differ)
    assert moved > 20  # the script moved states: the check above was not vacuous
    world.machine.restore({d: dataclasses.replace(c) for d, c in verdicts[-1].states.items()}, {})
    assert world.advance(T0 + 121 * 5000).changed is None


def test_counts_moved_by_the_changes_equal_a_recount_every_round() -> None:
    world = World()
    evaluator = Evaluator(TOPO, cast(Any, None))
    try:
        for verdict in _script(world):
            facts = {d: Facts() for d in TOPO.devices}
            evaluator._export(verdict, facts, [])
            assert evaluator._counted is not None
            assert _comparable(evaluator._counted) == _plain(evaluator, verdict)
            exported = {k: v[1] for k, v in evaluator._children[m.DEVICES_BY_STATE.name].items()}
            plain: dict[tuple[str, ...], float] = {}
            for dev_id, cur in verdict.states.items():
                dev = TOPO.devices[dev_id]
                key = (dev.device_class, cur.state, TOPO.region_of(dev_id))
                plain[key] = plain.get(key, 0) + 1
            assert exported == plain
    finally:
        evaluator.clear_gauges()


def test_a_verdict_that_was_not_exported_makes_the_next_export_recount() -> None:
    """A round that failed after its verdict (the transaction rolled back) was never
    exported: its changes are not in the next verdict's, so counting those alone would
    keep the failed round's moves out of the gauges for the rest of the term."""
    world = World()
    evaluator = Evaluator(TOPO, cast(Any, None))
    try:
        verdicts = _script(world)
        missed = 0
        for verdict in verdicts:
            if verdict.changed and missed % 2 == 0:  # every other changing round's export
                missed += 1  # never happens
                continue
            missed += bool(verdict.changed)
            evaluator._export(verdict, {}, [])
            assert evaluator._counted is not None
            assert _comparable(evaluator._counted) == _plain(evaluator, verdict)
        assert missed > 4
    finally:
        evaluator.clear_gauges()


def test_a_camera_going_offline_moves_the_online_ratio_of_every_unit_above_it() -> None:
    world = World()
    evaluator = Evaluator(TOPO, cast(Any, None))
    try:
        for verdict in _script(world)[:28]:  # before its node is cut
            evaluator._export(verdict, {}, [])
        assert verdict.states[CAM].state == t.STATE_DOWN
        counted = evaluator._counted
        assert counted is not None
        unit = TOPO.unit_of_device[CAM]
        for up in TOPO.ancestors(unit):
            cams = [
                c for c in evaluator.camera_unit_of if up in TOPO.ancestors(TOPO.unit_of_device[c])
            ]
            online = sum(verdict.states[c].state in (t.STATE_UP, t.STATE_DEGRADED) for c in cams)
            assert counted.cams_up[up] == online < len(cams)
    finally:
        evaluator.clear_gauges()


def test_a_facts_record_reads_the_columns_as_facts_does() -> None:
    """``FactsRecord``'s attributes are ``itemgetter``s of the query's columns, in
    :class:`Facts`' order after ``device_id``; its alert fields are None (ioc.streams.soc)."""
    values = tuple(100 + i for i in range(len(_FACT_COLUMNS)))
    row = ("dev-1", *values)
    expected = Facts(*cast(Any, values))
    for field in dataclasses.fields(Facts):
        attribute = FactsRecord.__dict__.get(field.name)
        if field.name in ("alert_ts", "alert_reason"):
            assert attribute is None
            continue
        assert isinstance(attribute, property), field.name
        assert attribute.fget is not None
        assert attribute.fget(row) == getattr(expected, field.name), field.name
