"""The round skips devices whose verdict is last round's very object and that were steady.

A national round looked at all 100,000 devices in a Python loop although about 1 % of them
change; the machine now looks only at devices whose raw verdict is a different object from
last round's, or that stepped last round, or that have down-times or a blip
(:meth:`StateMachine._to_look_at`). That is only right if it changes nothing: here a machine
that skips and one made to look at every device every round go through the same random
faults (silent and frozen cameras, nodes cut and back, flapping, held outages, a restore),
and every round's transitions, states, raw states and down-times must be the same.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Set as AbstractSet
from itertools import chain

import pytest

from ioc.contract import tables as t
from ioc.streams.state import StateMachine, Verdict
from tests.unit.test_state import T0, TOPO, World


class Counting(StateMachine):
    """The machine as it is, counting the devices it looked at."""

    looked_at = 0

    def _to_look_at(
        self,
        verdicts: list[tuple[str, str]],
        last: list[tuple[str, str]] | None,
        blips: AbstractSet[str],
    ) -> list[bool]:
        look = super()._to_look_at(verdicts, last, blips)
        self.looked_at += sum(look)
        return look


class LooksAtAll(StateMachine):
    """The machine without the skip: every device looked at, every round."""

    def _to_look_at(self, verdicts: list[tuple[str, str]], *_: object) -> list[bool]:
        return [True] * len(verdicts)


def _snapshot(machine: StateMachine, verdict: Verdict) -> object:
    return (
        verdict.transitions,
        {d: dataclasses.astuple(c) for d, c in verdict.states.items()},
        dict(machine.raw_prev),
        {d: list(times) for d, times in machine.downs.items()},
        verdict.root_causes,
    )


CAMERAS = sorted(d.id for d in TOPO.devices.values() if d.device_class == "camera")
NODES = sorted(d.id for d in TOPO.devices.values() if d.device_class == "netnode")


@pytest.mark.parametrize("seed", range(6))
def test_skipping_steady_devices_changes_nothing(seed: int) -> None:
    rng = random.Random(seed)
    skipping, full = World(), World()
    skipping.machine, full.machine = Counting(TOPO), LooksAtAll(TOPO)
    now, seen = T0, set()
    for step in range(240):
        now += 5000
        # the same fault script for both worlds
        for change in _faults(rng, step):
            for world in (skipping, full):
                _apply(world, change)
        suppress: bool | frozenset[str] = (
            frozenset({"camera"}) if step % 50 in (1, 2) else step % 97 == 3
        )
        if step == 150:  # a new term: both restore from what they hold
            for world in (skipping, full):
                m = world.machine
                m.restore(dict(m.current), {d: list(times) for d, times in m.downs.items()})
        a = skipping.advance(now, suppress=suppress)
        b = full.advance(now, suppress=suppress)
        assert _snapshot(skipping.machine, a) == _snapshot(full.machine, b), (seed, step)
        seen |= {c.state for c in a.states.values()}
    # the skip did skip: most devices, most rounds, were not looked at
    assert isinstance(skipping.machine, Counting)
    assert skipping.machine.looked_at < 240 * len(TOPO.devices) / 2
    # and the script went through every kind of outage
    assert {t.STATE_DOWN, t.STATE_FLAPPING, t.STATE_UNREACHABLE, t.STATE_DEGRADED} <= seen


def _faults(rng: random.Random, step: int) -> list[tuple[str, str]]:
    """This step's changes: (which set of the world to toggle a device in, the device), or
    ("clear", "") when everything comes back."""
    changes: list[tuple[str, str]] = []
    if rng.random() < 0.3:
        changes.append(("silent", rng.choice(CAMERAS)))
    if rng.random() < 0.15:
        changes.append(("frozen", rng.choice(CAMERAS)))
    if rng.random() < 0.08:
        changes.append(("unreachable", rng.choice(NODES)))
    if step % 40 == 39:  # everything comes back now and then
        changes.append(("clear", ""))
    return changes


def _apply(world: World, change: tuple[str, str]) -> None:
    kind, device = change
    sets = {"silent": world.silent, "frozen": world.frozen, "unreachable": world.unreachable}
    if kind == "clear":
        for faults in sets.values():
            faults.clear()
    else:
        sets[kind].symmetric_difference_update({device})


def test_a_verdict_behind_a_down_node_is_one_object_per_node() -> None:
    """Devices cut off by the same node share its verdict object, round after round: a new
    tuple per device per round would make the skip look at all of them every round."""
    world = World()
    node = "nn-992"
    now = T0
    for _ in range(4):
        now += 5000
        world.advance(now)
    world.unreachable.add(node)
    verdicts = []
    for _ in range(12):
        now += 5000
        verdicts.append(world.advance(now))
    behind = verdicts[-1].root_causes.get(node, [])
    assert behind
    objects = {id(world.machine.last_verdicts[world.machine.position[d]]) for d in behind}  # type: ignore[index]
    assert len(objects) == 1
    assert set(chain.from_iterable(v.root_causes.get(node, []) for v in verdicts[-2:])) == set(
        behind
    )


def test_down_times_restored_for_a_device_no_longer_listed_do_not_stop_the_round() -> None:
    """A restore reads down-times from every interval in the flap window, also those of a
    device removed from the inventory since: the skip must not look it up by position."""
    world = World()
    now = T0
    for _ in range(3):
        now += 5000
        world.advance(now)
    m = world.machine
    m.restore(dict(m.current), {"cam-removed-from-inventory": [now - 60_000]})
    for _ in range(3):
        now += 5000
        world.advance(now)
    assert "cam-removed-from-inventory" in m.downs
