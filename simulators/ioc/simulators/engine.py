"""The simulation engine: advances time, asks devices for due reports, applies faults.

The engine is pure (no I/O): :meth:`Simulator.advance` returns :class:`Out` records that a
sink sends to Kafka or a file. Time is event time in epoch ms. A shard (``index`` of
``count``) simulates every ``count``-th device, so processes split the load and still produce
exactly the stream a single process would, device by device.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
import orjson

from ioc.contract import faults as fl
from ioc.contract import schemas as s
from ioc.contract.feeds import Feed
from ioc.contract.topology import Topology
from ioc.simulators.behaviour import (
    Conditions,
    DeviceSim,
    NetnodeSim,
    Weather,
    describe,
)
from ioc.simulators.faults import CONDITION_FAULTS, HOLDING_FAULTS, Fault, FaultPlan


class Out(NamedTuple):
    feed: str  # a registered feed (ioc.contract.feeds) or "faults"
    key: bytes
    value: bytes
    valid: bool
    label: str  # kind for valid messages, malformed variant / reason otherwise
    device_id: str
    seq: int


@dataclass
class Stats:
    valid_by_feed: Counter[str] = field(default_factory=Counter)
    valid_by_kind: Counter[str] = field(default_factory=Counter)
    invalid_by_reason: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    late: int = 0
    suppressed: int = 0  # reports not sent because the device (or its path) was down
    fault_events: int = 0

    def merge(self, other: dict[str, Any]) -> None:
        self.valid_by_feed.update(other["valid_by_feed"])
        self.valid_by_kind.update(other["valid_by_kind"])
        self.invalid_by_reason.update(other["invalid_by_reason"])
        self.duplicates += other["duplicates"]
        self.late += other["late"]
        self.suppressed += other["suppressed"]
        self.fault_events += other["fault_events"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid_by_feed": dict(self.valid_by_feed),
            "valid_by_kind": dict(self.valid_by_kind),
            "invalid_by_reason": dict(self.invalid_by_reason),
            "duplicates": self.duplicates,
            "late": self.late,
            "suppressed": self.suppressed,
            "fault_events": self.fault_events,
        }


Window = tuple[int, int, Fault]


class FaultIndex:
    """Per-device lookups of the plan, precomputed so the hot loop stays cheap."""

    def __init__(self, plan: FaultPlan, topology: Topology) -> None:
        self.silence: dict[str, list[Window]] = {}
        self.unreachable: dict[str, list[Window]] = {}
        self.degraded: dict[str, list[Window]] = {}
        self.frozen: dict[str, list[Window]] = {}
        self.drops: dict[str, list[Window]] = {}
        self.skew: dict[str, list[Window]] = {}
        self.active: dict[str, list[Window]] = {}  # faults.CONDITION_FAULTS -> cond.active
        self.held: dict[str, list[Window]] = {}  # faults.HOLDING_FAULTS: delivered at the end
        self.rated: list[Fault] = []
        self.link_events: list[
            tuple[int, str, str, s.LinkState]
        ] = []  # (rel_ms, parent, iface, state)

        def add(index: dict[str, list[Window]], dev: str, fault: Fault) -> None:
            index.setdefault(dev, []).append((fault.start_ms, fault.end_ms, fault))

        for fault in plan.faults:
            target = fault.target
            if fault.type in ("late", "duplicate", "malformed"):
                self.rated.append(fault)
            elif target is None:
                continue
            elif fault.type in ("node_down", "flapping"):
                behind = (
                    topology.devices_behind(target)
                    if (topology.devices[target].device_class == Feed.NETNODE)
                    else []
                )
                for dev in (target, *behind):
                    add(self.silence, dev, fault)
                    if topology.devices[dev].device_class == Feed.NETNODE:
                        add(self.unreachable, dev, fault)
                parent = topology.devices[target].upstream
                if parent is not None and topology.devices[target].device_class == Feed.NETNODE:
                    for rel, state in self._transitions(fault):
                        self.link_events.append((rel, parent, f"to-{target}", state))
            elif fault.type in ("device_dark", "vconf_mcu_down"):
                add(self.silence, target, fault)
            elif fault.type == "link_degraded":
                for dev in (target, *topology.devices_behind(target)):
                    add(self.degraded, dev, fault)
            elif fault.type == "camera_frozen":
                add(self.frozen, target, fault)
            elif fault.type == "session_drops":
                add(self.drops, target, fault)
            elif fault.type == "clock_skew":
                add(self.skew, target, fault)
            elif fault.type in CONDITION_FAULTS:
                add(self.active, target, fault)
            elif fault.type in HOLDING_FAULTS:
                add(self.held, target, fault)
        self.link_events.sort()
        self.conditioned = set(self.degraded) | set(self.frozen) | set(self.drops)
        self.conditioned |= set(self.active)

    @staticmethod
    def _transitions(fault: Fault) -> list[tuple[int, s.LinkState]]:
        if fault.type != "flapping":
            return [(fault.start_ms, "down"), (fault.end_ms, "up")]
        half = max(1, int(fault.params.get("period", 20.0) * 500))
        out: list[tuple[int, s.LinkState]] = []
        t = fault.start_ms
        state: s.LinkState = "down"
        end = min(fault.end_ms, fault.start_ms + 86_400_000)
        while t < end:
            out.append((t, state))
            state = "up" if state == "down" else "down"
            t += half
        if state == "up":  # the last transition was "down": recover at the end
            out.append((end, "up"))
        return out

    @staticmethod
    def _hit(windows: list[Window] | None, rel_ms: int) -> Fault | None:
        if not windows:
            return None
        for start, end, fault in windows:
            if start <= rel_ms < end:
                if fault.type == "flapping":
                    half = max(1, int(fault.params.get("period", 20.0) * 500))
                    if ((rel_ms - start) // half) % 2 == 1:
                        continue  # the "up" half of a flap
                return fault
        return None

    def silent(self, dev: str, rel_ms: int) -> bool:
        return self._hit(self.silence.get(dev), rel_ms) is not None

    def reachable(self, node: str, rel_ms: int) -> bool:
        return self._hit(self.unreachable.get(node), rel_ms) is None

    def conditions(self, dev: str, rel_ms: int, weather: float) -> Conditions:
        cond = Conditions(weather=weather)
        if dev not in self.conditioned:
            return cond
        degraded = self._hit(self.degraded.get(dev), rel_ms)
        if degraded is not None:
            cond.extra_loss_pct = float(degraded.params.get("loss_pct", 10.0))
            cond.extra_latency_ms = float(degraded.params.get("latency_ms", 300.0))
        cond.frozen = self._hit(self.frozen.get(dev), rel_ms) is not None
        cond.session_drops = self._hit(self.drops.get(dev), rel_ms) is not None
        windows = self.active.get(dev)
        if windows:
            cond.active = frozenset(f.type for start, end, f in windows if start <= rel_ms < end)
        return cond

    def held_until(self, dev: str, rel_ms: int) -> int | None:
        """End (relative ms) of a fault that holds the device's records back now, if any."""
        fault = self._hit(self.held.get(dev), rel_ms) if self.held else None
        return None if fault is None else fault.end_ms

    def skew_ms(self, dev: str, rel_ms: int) -> int:
        fault = self._hit(self.skew.get(dev), rel_ms)
        return int(fault.params.get("skew_s", 300.0) * 1000) if fault else 0


class _Stream:
    __slots__ = ("due", "kind", "period")

    def __init__(self, kind: str, period: int, due: int) -> None:
        self.kind, self.period, self.due = kind, period, due


class Simulator:
    """Generates one shard of a scenario's feeds between ``start_ms`` and any later time."""

    def __init__(
        self,
        topology: Topology,
        plan: FaultPlan,
        *,
        seed: int,
        start_ms: int,
        speedup: float = 1.0,
        shard: int = 0,
        shards: int = 1,
        emit_fault_log: bool | None = None,
    ) -> None:
        from ioc.simulators.behaviour import sim_class

        self.topology = topology
        self.faults = FaultIndex(plan, topology)
        self.plan = plan
        self.start_ms = start_ms
        self.weather = Weather(seed)
        self.stats = Stats()
        self.now_ms = start_ms
        self.emit_fault_log = shard == 0 if emit_fault_log is None else emit_fault_log
        ids = sorted(topology.devices)
        mine = [dev_id for i, dev_id in enumerate(ids) if i % shards == shard]
        self.sims: dict[str, DeviceSim] = {}
        self.streams: list[tuple[DeviceSim, list[_Stream]]] = []
        for dev_id in mine:
            dev = topology.devices[dev_id]
            sim = sim_class(dev.device_class)(dev, topology.region_of(dev_id), seed, start_ms)
            sim.attach(plan, topology)
            self.sims[dev_id] = sim
            streams = []
            for kind, period in sim.periods.items():
                scaled = max(1, int(period / speedup))
                streams.append(_Stream(kind, scaled, start_ms + sim.rng.randint(0, scaled - 1)))
            self.streams.append((sim, streams))
        self._late: list[tuple[int, int, Out]] = []
        self._late_counter = 0
        self._fault_marks: list[tuple[int, int, str, Fault]] = sorted(
            [(f.start_ms, 0, "start", f) for f in plan.faults]
            + [(f.end_ms, 1, "end", f) for f in plan.faults if f.end_ms < 2**61],
            key=lambda x: (x[0], x[1], x[3].id),
        )
        self._fault_cursor = 0
        self._link_cursor = 0

    # --- the hot loop ---

    def advance(self, until_ms: int) -> list[Out]:
        """Every record due in ``[now, until_ms)``, in time order per device."""
        out: list[Out] = []
        if until_ms <= self.now_ms:
            return out
        faults, weather, start = self.faults, self.weather, self.start_ms
        silence = faults.silence
        self._emit_fault_log(until_ms, out)
        self._emit_link_events(until_ms, out)
        for sim, streams in self.streams:
            dev_id = sim.id
            cls = sim.device_class
            while True:
                stream = min(streams, key=_due)
                due = stream.due
                if due >= until_ms:
                    break
                stream.due = due + stream.period
                rel = due - start
                if cls == Feed.NETNODE and stream.kind == "netnode.probe":
                    # Probes come from the provincial core: sent even when the node is down.
                    assert isinstance(sim, NetnodeSim)
                    cond = faults.conditions(dev_id, rel, weather.intensity(sim.region, due))
                    msgs: list[s.Message] = [sim.probe(due, faults.reachable(dev_id, rel), cond)]
                elif silence and dev_id in silence and faults.silent(dev_id, rel):
                    self.stats.suppressed += 1
                    continue
                else:
                    cond = faults.conditions(dev_id, rel, weather.intensity(sim.region, due))
                    msgs = sim.emit(stream.kind, due, stream.period, cond)
                skew = faults.skew_ms(dev_id, rel) if faults.skew else 0
                for msg in msgs:
                    if skew:
                        msg = msgspec.structs.replace(msg, ts_ms=max(0, msg.ts_ms + skew))
                    self._deliver(sim, msg, rel, out)
        self._release_late(until_ms, out)
        self.now_ms = until_ms
        return out

    def finish(self) -> list[Out]:
        """Release every message still held back by a `late` fault (nothing valid is lost)."""
        out: list[Out] = []
        self._release_late(2**62, out)
        return out

    # --- helpers ---

    def _deliver(self, sim: DeviceSim, msg: s.Message, rel: int, out: list[Out]) -> None:
        kind = msg.kind
        feed = msg.feed
        key = msg.device_id.encode()
        record = Out(feed, key, s.encode(msg), True, kind, msg.device_id, msg.seq)
        self.stats.valid_by_feed[feed] += 1
        self.stats.valid_by_kind[kind] += 1
        held_until = self.faults.held_until(sim.id, rel)
        if held_until is not None:  # an outage upstream (LGSP): one catch-up batch at its end
            self._late_counter += 1
            release = self.start_ms + min(held_until, 2**61)
            heapq.heappush(self._late, (release, self._late_counter, record))
            self.stats.late += 1
            return
        delay = sim.delivery_delay_ms(msg)
        if delay > 0:  # the source's own delivery delay (not a fault): out of order
            self._late_counter += 1
            heapq.heappush(self._late, (msg.ts_ms + delay, self._late_counter, record))
            return
        if not self.faults.rated:
            out.append(record)
            return
        held = False
        for fault in self.faults.rated:
            if not fault.active(rel) or (fault.target and fault.target != sim.id):
                continue
            if sim.fault_rng.random() >= fault.rate:
                continue
            if fault.type == "late" and not held:
                self._late_counter += 1
                release = msg.ts_ms + int(fault.params.get("delay_s", 30.0) * 1000)
                heapq.heappush(self._late, (release, self._late_counter, record))
                self.stats.late += 1
                held = True
            elif fault.type == "duplicate":
                out.append(record)  # the duplicate goes first; the original follows
                self.stats.duplicates += 1
            elif fault.type == "malformed":
                variants = fault.params.get("variants") or ["bad_json"]
                variant = variants[sim.fault_rng.randrange(len(variants))]
                out.append(self._corrupt(record, msg, variant))
        if not held:
            out.append(record)

    def _corrupt(self, record: Out, msg: s.Message, variant: str) -> Out:
        if variant == "bad_json":
            value = record.value[: max(1, len(record.value) // 2)]
            reason = s.REASON_NOT_JSON
        else:
            doc = describe(msg)
            doc["kind"] = msg.kind
            if variant == "wrong_type":
                doc["seq"] = str(doc["seq"])
                reason = s.REASON_SCHEMA
            elif variant == "unknown_version":
                doc["v"] = 99
                reason = s.REASON_UNKNOWN_VERSION
            else:
                doc["padding"] = "x" * (s.MAX_MESSAGE_BYTES + 1024)
                reason = s.REASON_OVERSIZED
            value = orjson.dumps(doc)
        self.stats.invalid_by_reason[reason] += 1
        return Out(record.feed, record.key, value, False, reason, record.device_id, record.seq)

    def _release_late(self, until_ms: int, out: list[Out]) -> None:
        while self._late and self._late[0][0] < until_ms:
            out.append(heapq.heappop(self._late)[2])

    def _emit_link_events(self, until_ms: int, out: list[Out]) -> None:
        events = self.faults.link_events
        while self._link_cursor < len(events):
            rel, parent, iface, state = events[self._link_cursor]
            ts = self.start_ms + rel
            if ts >= until_ms:
                break
            self._link_cursor += 1
            sim = self.sims.get(parent)
            if sim is None or ts < self.now_ms or self.faults.silent(parent, rel):
                continue
            assert isinstance(sim, NetnodeSim)
            self._deliver(sim, sim.link(ts, iface, state), rel, out)

    def _emit_fault_log(self, until_ms: int, out: list[Out]) -> None:
        marks = self._fault_marks
        while self._fault_cursor < len(marks):
            rel, _, event, fault = marks[self._fault_cursor]
            ts = self.start_ms + rel
            if ts >= until_ms:
                break
            self._fault_cursor += 1
            if not self.emit_fault_log:
                continue
            out.append(
                Out(
                    "faults",
                    fault.id.encode(),
                    fl.encode(self.fault_record(fault, event, ts)),
                    True,
                    f"fault.{event}",
                    fault.target or "",
                    0,
                )
            )
            self.stats.fault_events += 1

    def fault_record(self, fault: Fault, event: str, ts_ms: int) -> fl.FaultRecord:
        affected: list[str] = []
        if fault.target:
            affected = [fault.target]
            if fault.type in ("node_down", "flapping", "link_degraded"):
                affected += self.topology.devices_behind(fault.target)
            elif fault.type == "soc_campaign":  # on a node: its site's SOC sensor is attacked
                affected += [
                    d.id for d in self.topology.devices_of(Feed.SOC) if d.upstream == fault.target
                ]
        return fl.FaultRecord(
            fault_id=fault.id,
            type=fault.type,
            event=event,
            ts_ms=ts_ms,
            start_ms=self.start_ms + fault.start_ms,
            end_ms=None if fault.end_ms >= 2**61 else self.start_ms + fault.end_ms,
            target=fault.target,
            rate=fault.rate or None,
            params=fault.params,
            affected=affected,
        )


def _due(stream: _Stream) -> int:
    return stream.due
