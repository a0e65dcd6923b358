"""Device state machine and cross-domain root cause (pure logic, no I/O).

Per evaluation round, from the latest facts per device (``device_last_seen``) and the event-time
watermark:

1. **Raw state** per class: a camera or telehealth station silent for longer than its
   heartbeat timeout is *down*; a network node is *down* when the core's probes say it is
   unreachable (or no probe arrived within the timeout). Fresh quality below thresholds is
   *degraded* (frozen picture or fps collapse; telehealth loss or jitter; link loss or RTT).
   Any other class (a feed added by declaration, docs/adding-a-feed.md) gets the heartbeat
   rule alone, with its declared timeout.
2. **Root cause**: a device that is down while a node on its upstream path is down is
   *unreachable-upstream*, not down. The highest down node is the root cause, and one
   *site-isolated* incident names it and lists what it cut off.
3. **Hysteresis**: a device that went down ``flap_count`` times within ``flap_window`` is
   *flapping*; it keeps one incident and stops changing state until it has been stable for
   ``flap_quiet``. Recovery needs a good reading, and timeouts include a grace for late data.
   An outage is confirmed before it becomes a state: a device's by its heartbeat timeout, a
   node's by ``node_down_confirm_ms`` of failed probes (the devices behind it are unreachable
   meanwhile). A shorter cut is a blip that only counts towards flapping, so a flapping node
   yields one incident and one page, the flapping ones, never a site-isolated incident first.
   A node whose probe failed is not blamed while its upstream node's newer probe is still
   outstanding (probes of parent and child are not in phase), so one cut produces one
   incident at the top, not one per node below it.

Every number (timeouts, quality thresholds, flapping window) comes from
:class:`ioc.contract.thresholds.Thresholds`, which the alert rules and dashboards read too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import call, is_not
from typing import Protocol

from ioc.contract import soc, workhours
from ioc.contract import tables as t
from ioc.contract.feeds import Feed
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.contract.topology import Topology

__all__ = [
    "Current",
    "Facts",
    "FactsView",
    "StateMachine",
    "Thresholds",
    "Transition",
    "Verdict",
    "raw_state",
]


@dataclass(slots=True)
class Facts:
    """What ``device_last_seen`` says about one device (times in epoch ms)."""

    last_ts: int | None = None
    probe_ts: int | None = None
    probe_reachable: bool | None = None
    quality_ts: int | None = None
    fps: float | None = None
    frozen: bool | None = None
    rtt_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    sessions_active: int | None = None
    probe_ok_ts: int | None = None
    probe_fail_ts: int | None = None
    """A node's newest reachable and unreachable probe: a cut that came and went between two
    rounds shows in them, not in the newest probe (:meth:`StateMachine.unseen_cuts`)."""
    seen_ms: int | None = None
    """When its newest batch arrived (wall clock): the portal's liveness is arrival, not event
    time, since its events come hours late through LGSP (unset: ``last_ts`` stands in)."""
    alert_ts: int | None = None
    alert_reason: str | None = None
    """A SOC sensor's newest critical, DDoS or scan alert and its reason (ioc.streams.soc)."""


class FactsView(Protocol):
    """What the rules read of a device's facts: a :class:`Facts`, or the facts query's row
    read in place (``ioc.streams.evaluator.FactsRecord``: a national round built 100,000
    ``Facts`` only to read a few attributes of each once)."""

    @property
    def last_ts(self) -> int | None: ...
    @property
    def probe_ts(self) -> int | None: ...
    @property
    def probe_reachable(self) -> bool | None: ...
    @property
    def quality_ts(self) -> int | None: ...
    @property
    def fps(self) -> float | None: ...
    @property
    def frozen(self) -> bool | None: ...
    @property
    def rtt_ms(self) -> float | None: ...
    @property
    def jitter_ms(self) -> float | None: ...
    @property
    def loss_pct(self) -> float | None: ...
    @property
    def sessions_active(self) -> int | None: ...
    @property
    def probe_ok_ts(self) -> int | None: ...
    @property
    def probe_fail_ts(self) -> int | None: ...
    @property
    def seen_ms(self) -> int | None: ...
    @property
    def alert_ts(self) -> int | None: ...
    @property
    def alert_reason(self) -> str | None: ...


@dataclass
class Current:
    state: str
    reason: str
    since_ms: int


@dataclass(frozen=True)
class Transition:
    device_id: str
    old: str
    new: str
    reason: str
    at_ms: int


@dataclass
class Verdict:
    """The outcome of one round: every device's state and what changed."""

    states: dict[str, Current]
    transitions: list[Transition]
    root_causes: dict[str, list[str]]  # down node -> devices it cuts off
    changed: AbstractSet[str] | None = None
    """The devices whose state entry was replaced this round (a transition, or a first
    placeholder): the only ones whose state can differ from the previous round's verdict,
    so the gauges recount those alone. None: unknown (a restoring round), recount all."""
    round_no: int = 0
    """The machine's round counter: an exporter that missed a round (one that failed after
    its verdict) sees the gap and recounts every device."""


Judge = Callable[[FactsView | None, int], tuple[str, str]]
"""A device class's raw-state rule: (facts, event time) -> (state, reason)."""

_NEVER = (t.STATE_UNKNOWN, "never reported")
_NO_PROBE = (t.STATE_UNKNOWN, "no probe result yet")
_HEARTBEAT_OK = (t.STATE_UP, "heartbeat ok")
_PROBE_OK = (t.STATE_UP, "probe ok")
_CUT = (t.STATE_DOWN, "unreachable from the provincial core")
_FROZEN = (t.STATE_DEGRADED, "frozen picture")


def judge_for(device_class: str, th: Thresholds) -> Judge:
    """The raw-state rule of ``device_class`` with its thresholds bound: a national round
    judges 100,000 devices, so the class dispatch and threshold lookups happen once, here,
    and an unchanged verdict is a shared tuple, not a new one."""
    timeout = th.heartbeat_timeout_ms[device_class]
    max_age = th.quality_max_age_ms

    def silent_for(silent: int) -> tuple[str, str]:
        return t.STATE_DOWN, f"no report for {silent // 1000} s"

    if device_class == Feed.PORTAL:
        return lambda f, now_ms: _portal_state(f, now_ms, th)
    quality: Callable[[FactsView, int], tuple[str, str] | None] | None = None
    if device_class == Feed.CAMERA:
        min_fps = th.camera_min_fps

        def picture(f: FactsView, now_ms: int) -> tuple[str, str] | None:
            at = f.quality_ts  # each attribute read once: 85,000 cameras a national round
            if at is not None and now_ms - at <= max_age:
                if f.frozen:
                    return _FROZEN
                fps = f.fps
                if fps is not None and fps < min_fps:
                    return t.STATE_DEGRADED, f"fps collapsed to {fps:.1f}"
            return None

        quality = picture
    elif device_class == Feed.TELEHEALTH:
        max_loss, max_jitter = th.telehealth_max_loss_pct, th.telehealth_max_jitter_ms

        def session(f: FactsView, now_ms: int) -> tuple[str, str] | None:
            if (
                f.quality_ts is not None
                and now_ms - f.quality_ts <= max_age
                and (f.sessions_active or 0) > 0
            ):
                if f.loss_pct is not None and f.loss_pct > max_loss:
                    return t.STATE_DEGRADED, f"session packet loss {f.loss_pct:.1f}%"
                if f.jitter_ms is not None and f.jitter_ms > max_jitter:
                    return t.STATE_DEGRADED, f"session jitter {f.jitter_ms:.0f} ms"
            return None

        quality = session
    elif device_class == Feed.SOC:
        hold = th.soc_alert_hold_ms

        def alerts(f: FactsView, now_ms: int) -> tuple[str, str] | None:
            if f.alert_ts is not None and f.alert_reason and now_ms - f.alert_ts <= hold:
                return t.STATE_DEGRADED, f.alert_reason
            return None

        quality = alerts

    def heartbeat(f: FactsView | None, now_ms: int) -> tuple[str, str]:
        """Silent past the class's timeout: down; else its quality rule, if it has one (a
        node's probes are judged below; a feed added by declaration has none)."""
        if f is None:
            return _NEVER
        last = f.last_ts  # read once: 100,000 devices a national round
        if last is None:
            return _NEVER
        silent = now_ms - last
        if silent > timeout:
            return silent_for(silent)
        if quality is not None:
            return quality(f, now_ms) or _HEARTBEAT_OK
        return _HEARTBEAT_OK

    if device_class == Feed.NETNODE:
        max_loss, max_rtt = th.link_max_loss_pct, th.link_max_rtt_ms

        def node(f: FactsView | None, now_ms: int) -> tuple[str, str]:
            if f is None or f.probe_ts is None:  # no probe: its own reports, if any
                return _NO_PROBE if f is None or f.last_ts is None else heartbeat(f, now_ms)
            if now_ms - f.probe_ts > timeout:
                return t.STATE_DOWN, f"no probe result for {(now_ms - f.probe_ts) // 1000} s"
            if f.probe_reachable is False:
                return _CUT
            if f.loss_pct is not None and f.loss_pct > max_loss:
                return t.STATE_DEGRADED, f"link loss {f.loss_pct:.1f}%"
            if f.rtt_ms is not None and f.rtt_ms > max_rtt:
                return t.STATE_DEGRADED, f"link latency {f.rtt_ms:.0f} ms"
            return _PROBE_OK

        return node
    return heartbeat


def raw_state(
    device_class: str, f: FactsView | None, now_ms: int, th: Thresholds
) -> tuple[str, str]:
    """One device's raw state (the state machine binds each class's rule once: judge_for)."""
    return judge_for(device_class, th)(f, now_ms)


QUIET = "quiet"
"""Reason prefix of a device that is up but has not reported for longer than its heartbeat
timeout (a portal desk outside working hours): unreachable if a node before it is down."""


def _portal_state(f: FactsView | None, now_ms: int, th: Thresholds) -> tuple[str, str]:
    """A portal desk is down when nothing has arrived from its LGSP sync channel for
    ``portal_silent_ms`` of working hours: nights, lunch and weekends do not count."""
    seen = None if f is None else f.seen_ms if f.seen_ms is not None else f.last_ts
    if seen is None:
        return t.STATE_UNKNOWN, "never reported"
    silent = workhours.working_ms(seen, now_ms, th.portal_working_hours)
    if silent > th.portal_silent_ms:
        return t.STATE_DOWN, f"LGSP sync silent for {silent // 60_000} min of working hours"
    quiet = now_ms - seen
    if quiet > th.heartbeat_timeout_ms[Feed.PORTAL]:
        # not down (nights, weekends, a quiet hour), but cut off if its node is down
        return t.STATE_UP, f"{QUIET} for {quiet // 1000} s"
    return t.STATE_UP, "syncing"


_STEADY = frozenset((t.STATE_UP, t.STATE_DEGRADED, t.STATE_UNKNOWN, t.STATE_UNREACHABLE))
"""States a device that keeps them passes a round in without a step of the state machine:
not an outage to confirm or count (down), not an episode to close (flapping)."""

_NO_DOWNS: deque[int] = deque(maxlen=0)
"""The down-times of a device that has none (shared, and nothing can be appended)."""


class StateMachine:
    """Holds current states and recent down-transitions; :meth:`evaluate` runs one round."""

    def __init__(self, topology: Topology, thresholds: Thresholds | None = None) -> None:
        self.topology = topology
        self.th = thresholds or THRESHOLDS
        self.current: dict[str, Current] = {}
        self.downs: dict[str, deque[int]] = {}
        self.raw_prev: dict[str, str] = {}
        self.failing_since: dict[str, int] = {}
        self.failing_seen: dict[str, int] = {}
        """Per node failing now, the first round that saw it: its cut counts from there, also
        when it then waited for its upstream node's verdict (up to ``confirm_upstream_ms``)."""
        self.recovered: dict[str, int] = {}
        self.probes_seen: dict[str, tuple[int, int, bool | None]] = {}
        """Per node, last round: its newest failed and good probe, whether the newest failed."""
        self.cuts_to_judge: dict[str, tuple[int, bool]] = {}
        """Nodes with a new cut not yet counted or blamed upstream: its newest failed probe,
        and whether a good probe came since the last round, before it."""
        self.looked = False
        self.nodes = [d.id for d in topology.devices_of(Feed.NETNODE)]
        self.sensors = frozenset(d.id for d in topology.devices_of(Feed.SOC))
        classes = {d.device_class for d in topology.devices.values()}
        rules = {cls: judge_for(cls, self.th) for cls in classes}
        self.ids = list(topology.devices)
        """Every device, in the topology's order."""
        self.position = {dev_id: i for i, dev_id in enumerate(self.ids)}
        """Each device's position in ``ids`` (the evaluator's gauges use it too)."""
        self.judges = [rules[dev.device_class] for dev in topology.devices.values()]
        """Each device's class's raw-state rule, in the same order."""
        self.round_no = 0
        self.restored = True
        """The next verdict follows a (re)start: its ``changed`` is unknown (None)."""
        self.last_verdicts: list[tuple[str, str]] | None = None
        """Last round's raw verdict (after root cause) of every device, in ``ids``' order."""
        self.stepped: set[str] = set()
        """The devices that took a step of the machine last round (not the steady path)."""
        self.unreachable: dict[str, tuple[str, str]] = {}
        """Per node that ever cut devices off, their verdict (:meth:`_cut_off`)."""

    def restore(self, current: dict[str, Current], downs: dict[str, list[int]]) -> None:
        """Resume from the database after a restart or a leader change."""
        self.current = dict(current)
        self.downs = {dev: deque(times) for dev, times in downs.items()}
        self.raw_prev = {dev: cur.state for dev, cur in current.items()}
        self.probes_seen, self.cuts_to_judge, self.looked = {}, {}, False
        self.failing_since, self.failing_seen = {}, {}  # another leader may have judged since
        self.restored = True
        self.last_verdicts = None

    def evaluate(
        self,
        facts: Mapping[str, FactsView],
        now_ms: int,
        suppress_new_outages: bool | AbstractSet[str] = False,
    ) -> Verdict:
        """One round at event time ``now_ms``.

        ``suppress_new_outages`` holds devices in their current state instead of marking them
        down while the pipeline catches up (after a stall, the first batches move the
        watermark before every device's reports are in): True for every device, or the set
        of device classes still held (each class for its own heartbeat timeout).
        """
        topo, th = self.topology, self.th
        # every device judged by C loops (map, zip, dict): a national round's 100,000 judges
        # called from a dict comprehension spent a third of its time in the loop itself
        ids = self.ids
        raw = dict(
            zip(ids, map(call, self.judges, map(facts.get, ids), repeat(now_ms)), strict=True)
        )
        # A node whose probe failed while an upstream node has no newer probe yet may be
        # collateral damage of that upstream node: wait (briefly) for its verdict.
        pending: set[str] = set()
        for dev_id in self.nodes:  # only nodes are probed (and fail probes)
            state = raw[dev_id][0]
            f = facts.get(dev_id)
            if (
                state != t.STATE_DOWN
                or f is None
                or f.probe_ts is None
                or f.probe_reachable is not False
            ):
                self.failing_since.pop(dev_id, None)
                self.failing_seen.pop(dev_id, None)
                continue
            since = self.failing_since.setdefault(dev_id, f.probe_ts)
            self.failing_seen.setdefault(dev_id, now_ms)
            if now_ms - since >= th.confirm_upstream_ms:
                continue
            for up in topo.upstream_chain(dev_id):
                if raw[up][0] == t.STATE_DOWN:
                    break
                uf = facts.get(up)
                if uf is None or uf.probe_ts is None:
                    continue  # never probed (no address in the inventory): no verdict comes
                if uf.probe_ts < since:
                    pending.add(dev_id)  # no word from upstream since this node failed
                    break
        down_nodes = {d for d in self.nodes if raw[d][0] == t.STATE_DOWN}
        root_causes: dict[str, list[str]] = {}
        # no node down (most rounds): nothing is cut off, every device is as judged
        resolved: dict[str, tuple[str, str]] = {} if down_nodes else raw
        for dev_id, verdict in raw.items() if down_nodes else ():
            state, reason = verdict
            if (
                state in (t.STATE_DOWN, t.STATE_UNKNOWN)
                or (state == t.STATE_DEGRADED and topo.devices[dev_id].upstream in down_nodes)
                or reason.startswith(QUIET)  # silent, not yet judged (the portal): cut off?
            ):
                blocker = next(
                    (n for n in reversed(topo.upstream_chain(dev_id)) if n in down_nodes), None
                )
                if blocker is not None:
                    resolved[dev_id] = self._cut_off(blocker)
                    root_causes.setdefault(blocker, []).append(dev_id)
                    continue
            resolved[dev_id] = verdict  # the rule's object: unchanged verdicts stay the same

        blips = self.unseen_cuts(facts, resolved, pending, now_ms)
        transitions: list[Transition] = []
        outage = (t.STATE_DOWN, t.STATE_UNREACHABLE, t.STATE_FLAPPING)
        for dev_id in self.nodes:
            state = resolved[dev_id][0]
            before = self.current.get(dev_id)
            if state not in outage and (
                (before is not None and before.state in outage)
                # a blip (down, not yet confirmed): the devices behind it were unreachable
                or self.raw_prev.get(dev_id) == t.STATE_DOWN
            ):
                self.recovered[dev_id] = now_ms
        current, downs_of, raw_prev = self.current, self.downs, self.raw_prev
        changed: set[str] = set()  # whose entry in ``current`` is replaced below
        stepped: set[str] = set()
        verdicts = list(resolved.values())  # in ``ids``' order, as ``raw`` was built
        last, self.last_verdicts = self.last_verdicts, None  # set again once this round is done
        for dev_id, (state, reason) in compress(
            resolved.items(), self._to_look_at(verdicts, last, blips)
        ):
            old = current.get(dev_id)
            if (
                old is not None
                and old.state == state
                and state in _STEADY
                and dev_id not in downs_of
                and dev_id not in blips
                and (state != t.STATE_DEGRADED or dev_id not in self.sensors)
            ):
                # as it was, nothing to count: what the steps below would do for it, without
                # them (most devices whose verdict changed wording, say a portal's quiet time)
                raw_prev[dev_id] = state
                old.reason = reason
                continue
            stepped.add(dev_id)
            if (
                state == t.STATE_DOWN
                and (old is None or old.state != t.STATE_DOWN)
                and any(
                    now_ms - self.recovered.get(up, -(2**62))
                    <= th.heartbeat_timeout_ms[topo.devices[dev_id].device_class]
                    for up in topo.upstream_chain(dev_id)
                )
            ):
                # Its path just came back: give it a heartbeat period to report. Also when it
                # was never judged unreachable (a new leader held it while the node was down).
                continue
            downs = self.downs.get(dev_id, _NO_DOWNS)
            if dev_id in blips:
                downs = self._went_down(dev_id, now_ms)
            if topo.devices[dev_id].device_class == Feed.NETNODE and dev_id not in pending:
                # a node's cut counts from when it was first seen, also while new outages are
                # held (a new leader catching up) or it waited for its upstream node's verdict:
                # its confirmation is not delayed by either
                if state == t.STATE_DOWN and self.raw_prev.get(dev_id) != t.STATE_DOWN:
                    downs = self._went_down(dev_id, self.failing_seen.get(dev_id, now_ms))
                self.raw_prev[dev_id] = state
            if (
                (
                    dev_id in pending
                    or suppress_new_outages is True
                    or (
                        not isinstance(suppress_new_outages, bool)
                        and topo.devices[dev_id].device_class in suppress_new_outages
                    )
                )
                and state in outage
                and (old is None or old.state not in outage)
            ):
                if old is None:
                    self.current[dev_id] = Current(t.STATE_UNKNOWN, "awaiting data", now_ms)
                    changed.add(dev_id)
                continue
            if state == t.STATE_DOWN and self.raw_prev.get(dev_id) != t.STATE_DOWN:
                downs = self._went_down(dev_id, now_ms)
            self.raw_prev[dev_id] = state
            if downs:
                while downs and now_ms - downs[0] > th.flap_window_ms:
                    downs.popleft()
                if not downs:  # a deque per device that ever went down would stay (100k)
                    del self.downs[dev_id]
            if old is not None and old.state == t.STATE_FLAPPING:
                quiet = not downs or now_ms - downs[-1] > th.flap_quiet_ms
                if not (quiet and state == t.STATE_UP):
                    continue  # one state (and one incident) for the whole episode
            new_state = state
            if (state == t.STATE_DOWN or dev_id in blips) and len(downs) >= th.flap_count:
                new_state = t.STATE_FLAPPING
                reason = f"went down {len(downs)} times in {th.flap_window_ms // 60_000} min"
            elif (
                new_state == t.STATE_DOWN
                and topo.devices[dev_id].device_class == Feed.NETNODE
                and (old is None or old.state not in outage)
                and downs
                and now_ms - downs[-1] < th.node_down_confirm_ms
            ):
                # not confirmed yet: a blip if it comes back (counted above, for flapping)
                if old is None:
                    self.current[dev_id] = Current(t.STATE_UNKNOWN, "awaiting data", now_ms)
                    changed.add(dev_id)
                continue
            if (
                old is None
                or old.state != new_state
                or (
                    new_state == t.STATE_DEGRADED
                    and topo.devices[dev_id].device_class == Feed.SOC
                    and soc.escalated(old.reason, reason)
                )
            ):
                transitions.append(
                    Transition(
                        dev_id, old.state if old else t.STATE_UNKNOWN, new_state, reason, now_ms
                    )
                )
                self.current[dev_id] = Current(new_state, reason, now_ms)
                changed.add(dev_id)
            else:
                old.reason = reason
        for node in root_causes:
            root_causes[node].sort()
        self.last_verdicts, self.stepped = verdicts, stepped
        self.round_no += 1
        first, self.restored = self.restored, False
        return Verdict(
            dict(self.current),
            transitions,
            root_causes,
            changed=None if first else changed,
            round_no=self.round_no,
        )

    def _cut_off(self, blocker: str) -> tuple[str, str]:
        """The verdict of a device behind down node ``blocker``: one object per node, kept
        from round to round like the rules' own (:meth:`_to_look_at` compares objects)."""
        verdict = self.unreachable.get(blocker)
        if verdict is None:
            verdict = self.unreachable[blocker] = (
                t.STATE_UNREACHABLE,
                f"upstream node {blocker} is down",
            )
        return verdict

    def _to_look_at(
        self,
        verdicts: list[tuple[str, str]],
        last: list[tuple[str, str]] | None,
        blips: AbstractSet[str],
    ) -> list[bool]:
        """Per device in ``ids``' order, whether the round must look at it. Not at one whose
        verdict is last round's very object (a rule returns a shared tuple for a verdict that
        does not change: :func:`judge_for`) and that passed last round on the steady path: its
        state, reason and raw state are already what that path would set. Most devices, most
        rounds: a national round looked at all 100,000 in a Python loop (0.1 s).
        Always at the devices with down-times to count or expire and this round's blips."""
        if last is None:
            return [True] * len(verdicts)
        look = list(map(is_not, verdicts, last))
        position = self.position
        for dev_id in chain(self.stepped, self.downs, blips):
            i = position.get(dev_id)  # restored down-times may name a device no longer listed
            if i is not None:
                look[i] = True
        return look

    def _went_down(self, dev_id: str, at_ms: int) -> deque[int]:
        downs = self.downs.get(dev_id)
        if downs is None:
            downs = self.downs[dev_id] = deque()
        downs.append(at_ms)
        return downs

    def unseen_cuts(
        self,
        facts: Mapping[str, FactsView],
        resolved: dict[str, tuple[str, str]],
        pending: AbstractSet[str],
        now_ms: int,
    ) -> set[str]:
        """The nodes cut since the last round whose cut no round saw go down, to count
        towards flapping.

        A round sees a node's newest probe only: an 8 s cut between two rounds 5 s apart, or
        one that ended while the node waited for its upstream node's verdict, left no down
        state, and a flapping node was recognised cuts late. Its newest failed probe is newer
        than last round's, and either its newest probe then was good or a good one came in
        between: a new cut. A cut a round sees going down is counted there; one that an
        upstream node's failed probes explain (from shortly before it on) is the upstream
        node's.
        """
        first_look, self.looked = not self.looked, True
        blips: set[str] = set()
        for dev_id in self.nodes:
            f = facts.get(dev_id)
            if f is not None:
                fail, ok = f.probe_fail_ts or 0, f.probe_ok_ts or 0
                seen_fail, seen_ok, seen_failing = self.probes_seen.get(dev_id, (0, 0, None))
                self.probes_seen[dev_id] = (fail, ok, f.probe_reachable)
                came_back = seen_ok < ok < fail  # a good probe since last round, then a cut
                if (
                    not first_look  # a start or a new leader: earlier cuts are history
                    and fail > seen_fail
                    and (seen_failing is not False or came_back)
                ):
                    self.cuts_to_judge[dev_id] = (fail, came_back)
            judge = self.cuts_to_judge.get(dev_id)
            if judge is None or dev_id in pending:
                continue  # nothing new, or waiting for the upstream node's verdict
            cut, came_back = judge
            state = resolved[dev_id][0]
            if state == t.STATE_DOWN and (
                self.raw_prev.get(dev_id) != t.STATE_DOWN  # a round sees it go down: counted
                or not came_back  # down all along (its probes had stopped): the same outage
            ):
                del self.cuts_to_judge[dev_id]
                continue
            blamed = state == t.STATE_UNREACHABLE or self._upstream_failed(
                dev_id, cut, facts, now_ms
            )
            if blamed is None:
                continue  # no word from upstream since: judged next round
            del self.cuts_to_judge[dev_id]
            if not blamed:
                blips.add(dev_id)
                self.recovered[dev_id] = now_ms  # the devices behind it were cut off too
        return blips

    def _upstream_failed(
        self, dev_id: str, cut_ms: int, facts: Mapping[str, FactsView], now_ms: int
    ) -> bool | None:
        """Whether an upstream node's probes failed from shortly before ``cut_ms`` on (None:
        one has not been probed since, and the wait for its verdict is not over)."""
        window = self.th.confirm_upstream_ms
        for up in self.topology.upstream_chain(dev_id):
            uf = facts.get(up)
            if uf is None or uf.probe_ts is None:
                continue  # never probed (no address in the inventory): no verdict comes
            if uf.probe_fail_ts is not None and uf.probe_fail_ts >= cut_ms - window:
                return True
            if uf.probe_ts < cut_ms and now_ms - cut_ms < window:
                return None
        return False
