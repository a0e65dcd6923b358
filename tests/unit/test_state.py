"""Device state machine and root cause: pure logic, driven round by round."""

from __future__ import annotations

from ioc.contract import tables as t
from ioc.contract.topology import load_scenario
from ioc.streams.incidents import wanted_incidents
from ioc.streams.state import Facts, StateMachine, Transition, Verdict

TOPO = load_scenario("demo")
T0 = 1_700_000_000_000


class World:
    """Every device reporting every 5 s until told otherwise."""

    def __init__(self) -> None:
        self.machine = StateMachine(TOPO)
        self.silent: set[str] = set()
        self.unreachable: set[str] = set()
        self.frozen: set[str] = set()
        self.unprobed: set[str] = set()  # nodes nobody probes (no address in the inventory)
        self.facts: dict[str, Facts] = {d: Facts() for d in TOPO.devices}
        self.phase = {d: i * 700 % 5000 for i, d in enumerate(sorted(TOPO.devices))}
        self.reconnect_at: int | None = None  # devices behind a node come back 4 s after it

    def advance(self, now: int, *, suppress: bool | frozenset[str] = False) -> Verdict:
        self.report(now)
        return self.machine.evaluate(self.facts, now, suppress)

    def report(self, now: int) -> None:
        """The facts as the writers leave them at ``now`` (what a round would read)."""
        for dev_id, f in self.facts.items():
            last_report = now - (now - T0 - self.phase[dev_id]) % 5000
            if last_report < T0:
                continue
            cls = TOPO.devices[dev_id].device_class
            if cls == "netnode" and dev_id in self.unprobed:
                continue
            if cls == "netnode":
                if f.probe_ts is not None and last_report <= f.probe_ts:
                    continue  # that probe's result is in: a probe fails if the cut is on then
                f.probe_ts = last_report
                f.probe_reachable = dev_id not in self.unreachable and not any(
                    up in self.unreachable for up in TOPO.upstream_chain(dev_id)
                )
                f.rtt_ms, f.loss_pct = 20.0, 0.1
                if f.probe_reachable:
                    f.last_ts = f.probe_ok_ts = last_report
                else:
                    f.probe_fail_ts = last_report
            elif dev_id not in self.silent and not any(
                up in self.unreachable for up in TOPO.upstream_chain(dev_id)
            ):
                if self.reconnect_at is not None and last_report < self.reconnect_at + 4000:
                    continue
                f.last_ts = last_report
                f.quality_ts = last_report
                f.fps, f.frozen = 25.0, dev_id in self.frozen

    def rounds(self, start: int, end: int, offset: int = 0, step: int = 1000) -> list[Transition]:
        """Facts every ``step`` ms, a round every 5 s (the workers' period) ``offset`` ms of
        event time after them: between two rounds the facts move as they do in the database."""
        transitions: list[Transition] = []
        for now in range(start, end, step):
            self.report(now)
            if (now - T0) % 5000 == 0:
                transitions += self.machine.evaluate(self.facts, now + offset).transitions
        return transitions

    def flap(
        self, node: str, start: int, cycles: int, offset: int = 0, step: int = 1000
    ) -> list[Transition]:
        """``node`` cut for 8 s every 16 s (the simulator's flapping fault) from ``start``."""
        transitions: list[Transition] = []
        for cycle in range(cycles):
            at = start + cycle * 16_000
            self.unreachable.add(node)
            transitions += self.rounds(at, at + 8000, offset, step)
            self.unreachable.discard(node)
            transitions += self.rounds(at + 8000, at + 16_000, offset, step)
        return transitions

    def run(self, start: int, end: int, step: int = 5000) -> tuple[Verdict, list[Transition]]:
        verdict = None
        transitions: list[Transition] = []
        for now in range(start, end + 1, step):
            verdict = self.advance(now)
            transitions += verdict.transitions
        assert verdict is not None, "no round between start and end"
        return verdict, transitions


def test_everything_up_when_reporting() -> None:
    world = World()
    verdict, _ = world.run(T0 + 5000, T0 + 60_000)
    assert {c.state for c in verdict.states.values()} == {t.STATE_UP}


def test_silent_camera_goes_down_within_30_s_and_opens_one_incident() -> None:
    world = World()
    world.run(T0 + 5000, T0 + 60_000)
    cam = "cam-991-001"
    world.silent.add(cam)
    verdict, transitions = world.run(T0 + 65_000, T0 + 120_000)
    down = [tr for tr in transitions if tr.device_id == cam and tr.new == t.STATE_DOWN]
    assert len(down) == 1
    assert down[0].at_ms - (T0 + 60_000) <= 30_000
    wanted = wanted_incidents(TOPO, verdict)
    assert list(wanted) == [(cam, t.INCIDENT_DEVICE_DOWN)]


def test_node_down_blames_the_node_and_marks_everything_behind_unreachable() -> None:
    world = World()
    world.run(T0 + 5000, T0 + 60_000)
    node = "nn-992"
    world.unreachable.add(node)
    verdict, transitions = world.run(T0 + 61_000, T0 + 150_000, step=1000)
    assert verdict.states[node].state == t.STATE_DOWN
    for dev in TOPO.devices_behind(node):
        assert verdict.states[dev].state == t.STATE_UNREACHABLE, dev
    # nothing behind the node was ever "down" on its own: no alarm storm
    assert not [tr for tr in transitions if tr.new == t.STATE_DOWN and tr.device_id != node]
    wanted = wanted_incidents(TOPO, verdict)
    assert list(wanted) == [(node, t.INCIDENT_SITE_ISOLATED)]
    assert set(wanted[(node, t.INCIDENT_SITE_ISOLATED)].affected) == set(TOPO.devices_behind(node))
    first_down = next(tr for tr in transitions if tr.device_id == node)
    assert first_down.at_ms - (T0 + 61_000) <= 30_000


def test_a_lone_node_failure_is_blamed_on_that_node() -> None:
    world = World()
    world.run(T0 + 5000, T0 + 60_000)
    child = "nn-992-001"
    world.unreachable.add(child)
    verdict, _ = world.run(T0 + 61_000, T0 + 120_000, step=1000)
    assert verdict.states[child].state == t.STATE_DOWN
    assert verdict.states["nn-992"].state == t.STATE_UP


def test_recovery_resolves_without_blaming_devices_that_have_not_reported_yet() -> None:
    world = World()
    world.run(T0 + 5000, T0 + 60_000)
    world.unreachable.add("nn-992")
    world.run(T0 + 65_000, T0 + 120_000)
    world.unreachable.clear()
    # the node's probe recovers first; devices behind report within their 5 s period
    world.reconnect_at = T0 + 120_500
    verdict, transitions = world.run(T0 + 121_000, T0 + 160_000, step=1000)
    assert not [tr for tr in transitions if tr.new == t.STATE_DOWN]
    assert {c.state for c in verdict.states.values()} == {t.STATE_UP}
    assert wanted_incidents(TOPO, verdict) == {}


def test_flapping_device_keeps_one_state_and_one_incident() -> None:
    world = World()
    world.run(T0 + 5000, T0 + 30_000)
    cam = "cam-992-001"
    transitions = []
    now = T0 + 30_000
    for _ in range(5):  # 30 s silent, 20 s back, five times
        world.silent.add(cam)
        _, trs = world.run(now + 5000, now + 30_000)
        transitions += trs
        world.silent.discard(cam)
        verdict, trs = world.run(now + 35_000, now + 50_000)
        transitions += trs
        now += 50_000
    states = [tr.new for tr in transitions if tr.device_id == cam]
    assert states.count(t.STATE_FLAPPING) == 1
    assert verdict.states[cam].state == t.STATE_FLAPPING
    assert list(wanted_incidents(TOPO, verdict)) == [(cam, t.INCIDENT_FLAPPING)]
    # quiet for longer than flap_quiet: back to up
    verdict, _ = world.run(now + 5000, now + 6 * 60_000)
    assert verdict.states[cam].state == t.STATE_UP


def test_frozen_camera_is_degraded() -> None:
    world = World()
    world.frozen.add("cam-991-002")
    verdict, _ = world.run(T0 + 5000, T0 + 30_000)
    assert verdict.states["cam-991-002"].state == t.STATE_DEGRADED
    assert "frozen" in verdict.states["cam-991-002"].reason


def test_catching_up_holds_new_outages() -> None:
    world = World()
    world.run(T0 + 5000, T0 + 30_000)
    world.silent.add("cam-991-003")
    for now in range(T0 + 35_000, T0 + 80_000, 5000):
        verdict = world.advance(now, suppress=True)
    assert verdict.states["cam-991-003"].state == t.STATE_UP
    verdict = world.advance(T0 + 85_000)
    assert verdict.states["cam-991-003"].state == t.STATE_DOWN


def test_catching_up_holds_only_the_classes_still_held() -> None:
    """The evaluator holds each device class for its own heartbeat timeout: a camera's
    outage is not held because another class (a slower feed) still is."""
    world = World()
    world.run(T0 + 5000, T0 + 30_000)
    world.silent.add("cam-991-003")
    for now in range(T0 + 35_000, T0 + 80_000, 5000):
        verdict = world.advance(now, suppress=frozenset({"vconf"}))
    assert verdict.states["cam-991-003"].state == t.STATE_DOWN


def _flap_node(world: World, node: str, start: int, down_ms: int, up_ms: int, cycles: int) -> int:
    now = start
    for _ in range(cycles):
        world.unreachable.add(node)
        for at in range(now + 1000, now + down_ms + 1, 1000):
            world.advance(at)
        world.unreachable.discard(node)
        for at in range(now + down_ms + 1000, now + down_ms + up_ms + 1, 1000):
            world.advance(at)
        now += down_ms + up_ms
    return now


def test_flapping_node_opens_one_flapping_incident_and_never_isolates_the_site_first() -> None:
    """Cuts shorter than node_down_confirm_ms are blips: the third makes the node flapping,
    and no down state (so no site-isolated incident, no critical page) came before it."""
    world = World()
    world.run(T0 + 5000, T0 + 60_000)
    node = "nn-992"
    seen: list[Transition] = []
    isolated: list[int] = []
    now = T0 + 60_000
    for _ in range(4):  # 8 s cut, 8 s back (the simulator's flapping fault, period 16 s)
        world.unreachable.add(node)
        for at in range(now + 1000, now + 8001, 1000):
            verdict = world.advance(at)
            seen += verdict.transitions
            isolated += [at for k in wanted_incidents(TOPO, verdict) if k[1] != "flapping"]
        world.unreachable.discard(node)
        for at in range(now + 9000, now + 16_001, 1000):
            verdict = world.advance(at)
            seen += verdict.transitions
            isolated += [at for k in wanted_incidents(TOPO, verdict) if k[1] != "flapping"]
        now += 16_000
    mine = [tr.new for tr in seen if tr.device_id == node]
    assert mine == [t.STATE_FLAPPING], mine
    assert not [tr for tr in seen if tr.new == t.STATE_DOWN]
    assert isolated == []
    assert list(wanted_incidents(TOPO, verdict)) == [(node, t.INCIDENT_FLAPPING)]
    flapping_at = next(tr.at_ms for tr in seen if tr.device_id == node)
    assert flapping_at - (T0 + 60_000) <= 2 * 16_000 + 10_000  # on its third cut


def test_a_cut_shorter_than_the_confirmation_is_never_an_outage_whatever_the_phases() -> None:
    """An 8 s cut shows as failed probes for up to 13 s (its last probe before the cut ended,
    then 5 s to the next). Confirming "down for 10 s at the rounds" made some of them
    outages (a critical page for a blip); the failed probes' own span never reaches 10 s."""
    confirmed: list[tuple[str, int, int]] = []
    # a node, and one behind a probed node (its cut counts from the round that first saw it,
    # not from the end of its wait for the upstream node's verdict)
    for node in ("nn-992", "nn-992-001"):
        for cut_phase in range(0, 5000, 500):  # the cut against the node's probes
            for round_phase in range(0, 5000, 1000):  # the rounds against both
                world = World()
                world.rounds(T0 + 5000, T0 + 60_001, round_phase)
                start = T0 + 60_000 + cut_phase
                seen = world.rounds(T0 + 60_250, start, round_phase, step=250)
                seen += world.flap(node, start, 1, round_phase, step=250)
                seen += world.rounds(start + 16_000, T0 + 90_001, round_phase, step=250)
                if any(tr.device_id == node and tr.new == t.STATE_DOWN for tr in seen):
                    confirmed.append((node, cut_phase, round_phase))
    assert not confirmed, confirmed


def test_the_wait_for_the_upstream_verdict_does_not_delay_the_confirmation() -> None:
    """A node behind a probed node waits (up to ``confirm_upstream_ms``) for that node's
    next probe before it is blamed; its 10 s confirmation counts from the round that first
    saw it fail, not from the end of that wait, which put SiteIsolated at 29-30 s of its
    30 s budget. Whatever the phases: down at most a probe period, the confirmation and a
    round after the cut."""
    node = "nn-992-001"
    confirm = StateMachine(TOPO).th.node_down_confirm_ms
    slow: list[tuple[int, int, int]] = []
    for cut_phase in range(0, 5000, 500):
        for round_phase in range(0, 5000, 1000):
            world = World()
            world.phase["nn-992"] = (world.phase[node] + 2500) % 5000  # out of phase
            world.rounds(T0 + 5000, T0 + 60_001, round_phase)
            start = T0 + 60_000 + cut_phase
            world.rounds(T0 + 60_250, start, round_phase, step=250)
            world.unreachable.add(node)
            seen = world.rounds(start, start + 40_000, round_phase, step=250)
            down = next(tr for tr in seen if tr.device_id == node)
            assert down.new == t.STATE_DOWN
            took = down.at_ms - round_phase - start
            if took > 5000 + confirm + 5000:
                slow.append((cut_phase, round_phase, took))
    assert not slow, slow


def test_a_flapping_node_is_recognised_on_its_third_cut_whatever_the_rounds_missed() -> None:
    """Rounds 5 s apart see a node's newest probe only: an 8 s cut can come and go between
    two of them, or end while the node waits for its upstream node's verdict. Whatever the
    phase of the rounds against the probes, the third cut makes the node flapping (it used
    to take a fourth or fifth cut: the page 16-32 s late)."""
    node = "nn-992-001"  # behind a probed node: it waits for its verdict
    late: list[tuple[int, int]] = []
    for offset in range(0, 5000, 250):
        world = World()
        world.rounds(T0 + 5000, T0 + 60_001, offset)
        start = T0 + 60_000 + 1000  # off the probes' phase
        seen = world.flap(node, start, 6, offset)
        mine = [tr for tr in seen if tr.device_id == node]
        assert [tr.new for tr in mine] == [t.STATE_FLAPPING], (offset, mine)
        assert not [tr for tr in seen if tr.new == t.STATE_DOWN]
        third_cut_over = start + 2 * 16_000 + 8000
        if mine[0].at_ms - offset > third_cut_over + 5000 + 5000:  # its probe, then a round
            late.append((offset, mine[0].at_ms - offset - start))
    assert not late, late


def test_a_blip_behind_a_cut_upstream_node_is_the_upstream_node_s() -> None:
    """Every node behind a node that blips fails its probes too: those cuts are not theirs,
    so an upstream node that flaps makes itself flapping, not the nodes behind it."""
    world = World()
    world.run(T0 + 5000, T0 + 60_000)
    upstream, child = "nn-992", "nn-992-001"
    assert upstream in TOPO.upstream_chain(child)
    seen = world.flap(upstream, T0 + 60_000 + 1000, 6)
    flapping = {tr.device_id for tr in seen if tr.new == t.STATE_FLAPPING}
    assert flapping == {upstream}, seen


def test_a_node_whose_probes_stopped_and_came_back_failing_is_down_once() -> None:
    """Down because no probe came (the collector stopped), then probes again, failing: the
    same outage, not a second cut counted towards flapping."""
    world = World()
    world.run(T0 + 5000, T0 + 60_000)
    node = "nn-992-001"
    world.unprobed.add(node)
    world.unreachable.add(node)
    world.run(T0 + 65_000, T0 + 100_000)
    assert world.machine.current[node].state == t.STATE_DOWN
    world.unprobed.discard(node)
    _, transitions = world.run(T0 + 101_000, T0 + 140_000, step=1000)
    assert not [tr for tr in transitions if tr.device_id == node]
    assert len(world.machine.downs[node]) == 1


def test_a_failing_node_whose_probes_then_stop_is_still_confirmed() -> None:
    """Its failed probes stop growing their span (the collector stopped too): the outage is
    confirmed by time, as for a node without probes, not held unconfirmed forever."""
    world = World()
    world.run(T0 + 5000, T0 + 60_000)
    node = "nn-992"
    world.unreachable.add(node)
    now = T0 + 61_000
    while world.facts[node].probe_reachable is not False:  # its first failed probe
        world.advance(now)
        now += 1000
    world.unprobed.add(node)
    _, transitions = world.run(now, now + 60_000, step=1000)
    assert [tr.new for tr in transitions if tr.device_id == node] == [t.STATE_DOWN]


def _cut_is_confirmed_in_time(world: World, node: str) -> Verdict:
    """Cut ``node`` after a minute of reports: its first transition is down, confirmed
    node_down_confirm_ms after its first failed probe (which arrives within 5 s)."""
    world.run(T0 + 5000, T0 + 60_000)
    world.unreachable.add(node)
    verdict, transitions = world.run(T0 + 61_000, T0 + 100_000, step=1000)
    first = next(tr for tr in transitions if tr.device_id == node)
    assert first.new == t.STATE_DOWN
    confirm = world.machine.th.node_down_confirm_ms
    assert confirm <= first.at_ms - (T0 + 61_000) <= confirm + 5000 + 1000
    return verdict


def test_a_node_down_for_longer_than_the_confirmation_isolates_its_site() -> None:
    node = "nn-992"
    verdict = _cut_is_confirmed_in_time(World(), node)
    assert list(wanted_incidents(TOPO, verdict)) == [(node, t.INCIDENT_SITE_ISOLATED)]


def test_a_node_whose_upstream_nobody_probes_is_confirmed_without_waiting_for_it() -> None:
    """The wait for an upstream node's verdict (``confirm_upstream_ms``) is for an upstream
    that is probed: one without an address never answers, so waiting only delays the page."""
    world = World()
    world.unprobed.add("nn-992")
    child = "nn-992-001"
    verdict = _cut_is_confirmed_in_time(world, child)
    assert verdict.states[child].state == t.STATE_DOWN


def test_devices_behind_a_blip_are_not_blamed_when_it_ends() -> None:
    """The devices behind a node that was cut for less than the confirmation were
    unreachable; when it comes back they get a heartbeat period to report."""
    world = World()
    world.run(T0 + 5000, T0 + 60_000)
    node = "nn-992"
    end = _flap_node(world, node, T0 + 60_000, 8000, 0, 1)
    world.reconnect_at = end
    verdict, transitions = world.run(end + 1000, end + 40_000, step=1000)
    assert not [tr for tr in transitions if tr.new == t.STATE_DOWN]
    assert {c.state for c in verdict.states.values()} == {t.STATE_UP}


def test_a_new_leader_catching_up_confirms_a_long_cut_as_soon_as_its_hold_ends() -> None:
    """The catch-up hold and the node's confirmation run side by side: a cut that began
    during the hold is confirmed when the hold ends, not node_down_confirm_ms later."""
    world = World()
    world.run(T0 + 5000, T0 + 60_000)
    node = "nn-992"
    world.unreachable.add(node)
    for now in range(T0 + 61_000, T0 + 90_001, 1000):
        verdict = world.advance(now, suppress=True)
    assert verdict.states[node].state == t.STATE_UP
    verdict = world.advance(T0 + 91_000)
    assert verdict.states[node].state == t.STATE_DOWN
