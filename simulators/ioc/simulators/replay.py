"""Replay load: simulate one cycle once, then send it again and again, shifted in time.

The simulators cost about 40 us of CPU per event (the native-format adapters, conditions,
random draws), so on 2 shared cores a load test at 20,000 events/s spends most of a core on
its load generator. Load mode with ``--replay-cycle SECONDS`` runs the simulator for one
cycle of event time (the same compressed periods the rate asks for), keeps the messages, and
then sends cycle after cycle of them with every epoch-millisecond field (``ts_ms`` and any
field bounded by :data:`ioc.contract.schemas.MAX_EPOCH_MS`) moved forward by the cycle's
length and every device's ``seq`` moved on by its count per cycle, so what arrives is still
one contiguous, never-repeated sequence per device at wall-clock event times: the pipeline
validates, lands, rolls up and reconciles it exactly like simulated load. About 13 us of
CPU per event in all (20,000 ev/s in 0.27 cores): half re-encoding (msgspec), half the
producer.

What it cannot do: most faults and malformed input change from cycle to cycle, so a replay
refuses them (the caller injects faults into the infrastructure instead), and the device
behaviour repeats every cycle. Outages it can replay: ``device_dark`` and ``node_down``
(:meth:`ReplayCycle.silence`) keep the device, or the node and everything behind it, silent
for the fault's window, and their ``seq`` goes on where it stopped, so a national load test
can still open and resolve incidents. A silent node's probes go on, unreachable (they are
the core's prober's, not the node's): it is judged down as a live node is, from its failed
probes, before the devices behind it time out. Before, a silent node was judged down by its
heartbeat timeout only, the same as its cameras', and the national run opened a device-down
incident per camera before the node's site-isolated one. Link-down events are not replayed,
and the fault log gets no records.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from functools import cache
from typing import Any

import msgspec
import msgspec.inspect as mi

from ioc.contract import schemas as s
from ioc.contract.topology import Topology
from ioc.errors import IocError
from ioc.simulators.engine import Out, Simulator, Stats
from ioc.simulators.faults import Fault

REPLAYED_OUTAGES = ("device_dark", "node_down")
"""The fault types a replay can play: silences (:meth:`ReplayCycle.silence`)."""


def outage_devices(topology: Topology, fault: Fault) -> list[str]:
    """Who an outage silences: the device, or the node and everything behind it."""
    assert fault.target is not None and fault.type in REPLAYED_OUTAGES
    behind = topology.devices_behind(fault.target) if fault.type == "node_down" else []
    return [fault.target, *behind]


def describe(replay_cycle_s: float | None) -> str:
    """What produced a benchmark's load, for its result file."""
    if replay_cycle_s:
        return (
            f"replay: {replay_cycle_s:g} s of the simulators' load-mode output, generated once "
            "and re-sent with times and sequence numbers moved on (ioc.simulators.replay)"
        )
    return "the simulators in load mode (ioc simulate --rate)"


@cache
def epoch_fields(cls: type[s.Message]) -> tuple[str, ...]:
    """The fields of a message type that hold epoch milliseconds (bounded by MAX_EPOCH_MS)."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)

    def is_epoch(t: mi.Type) -> bool:
        if isinstance(t, mi.Metadata):
            return is_epoch(t.type)
        if isinstance(t, mi.UnionType):
            return any(is_epoch(member) for member in t.types)
        return isinstance(t, mi.IntType) and t.le == s.MAX_EPOCH_MS

    return tuple(f.name for f in info.fields if is_epoch(f.type))


class ReplayCycle:
    """One captured cycle, bucketed by the tick in which the simulator released each record.

    Duck-types the part of :class:`Simulator` that the run loop uses (``advance``,
    ``finish``, ``stats``), so load mode paces, sends and reports a replay the same way.
    """

    def __init__(self, sim: Simulator, capture_start_ms: int, cycle_ms: int, tick_ms: int) -> None:
        if cycle_ms < tick_ms or cycle_ms % tick_ms:
            raise IocError(
                f"--replay-cycle {cycle_ms / 1000:g} s must be a whole number of {tick_ms} ms ticks"
            )
        self.cycle_ms = cycle_ms
        self.tick_ms = tick_ms
        self.ticks = cycle_ms // tick_ms
        captured: list[list[tuple[s.Message, str, bytes]]] = []
        per_device: Counter[str] = Counter()
        seqs: dict[str, set[int]] = {}
        for i in range(self.ticks):
            records = sim.advance(capture_start_ms + (i + 1) * tick_ms)
            if i == self.ticks - 1:
                records += sim.finish()  # held-back records: released at the cycle's end
            bucket: list[tuple[s.Message, str, bytes]] = []
            for record in records:
                if not record.valid or record.feed == "faults":
                    raise IocError(
                        "a replay repeats one healthy cycle: faults and malformed input are "
                        "not replayed (inject faults into the infrastructure instead)"
                    )
                message = s.decode(record.value, feed=record.feed)
                bucket.append((message, record.feed, record.key))
                per_device[record.device_id] += 1
                seqs.setdefault(record.device_id, set()).add(message.seq)
            captured.append(bucket)
        gaps = [d for d, n in per_device.items() if seqs[d] != set(range(1, n + 1))]
        if gaps:  # cannot happen without faults; would make a replay lose or double events
            raise IocError(f"replay: {len(gaps)} devices have gaps in one cycle, e.g. {gaps[0]}")
        self.events = sum(per_device.values())
        # Per record what a send needs, looked up once: its device's events per cycle (the
        # seq step) and its type's epoch fields; per tick its counts by feed and kind.
        self.buckets = [
            [
                (m, feed, key, per_device[m.device_id], epoch_fields(type(m)))
                for m, feed, key in bucket
            ]
            for bucket in captured
        ]
        self._counts = [
            (Counter(feed for _m, feed, _k in bucket), Counter(m.kind for m, _f, _k in bucket))
            for bucket in captured
        ]
        self.stats = Stats()
        self._encoder = msgspec.json.Encoder()
        self._start_ms = 0
        self._shift_ms = 0
        self._next = 0  # index of the next tick to send, counted over all cycles
        self._silences: list[tuple[frozenset[str], int, int]] = []
        self._skipped: Counter[str] = Counter()
        """Per silenced device, the records it did not send: its seq goes on from there."""

    def silence(self, devices: Iterable[str], start_ms: int, end_ms: int) -> None:
        """Keep ``devices`` silent for ticks that start in ``[start_ms, end_ms)``, measured
        from the replay's start (an outage, as the simulators' fault plan times it)."""
        self._silences.append((frozenset(devices), start_ms, end_ms))

    def begin(self, capture_start_ms: int, replay_start_ms: int) -> None:
        """Start sending: cycle 0's event times move from the capture's to ``replay_start``."""
        self._start_ms = replay_start_ms
        self._shift_ms = replay_start_ms - capture_start_ms
        self._next = 0

    def end_for(self, duration_s: float | None) -> int:
        """Where a run of ``duration_s`` ends: whole cycles, so every device's seq stays
        contiguous (a cycle cut short would leave held-back records unsent)."""
        if duration_s is None:
            return 2**62
        cycles = max(1, math.ceil(duration_s * 1000 / self.cycle_ms))
        return self._start_ms + cycles * self.cycle_ms

    def _tick(self, index: int) -> list[Out]:
        cycle, tick = divmod(index, self.ticks)
        shift = self._shift_ms + cycle * self.cycle_ms
        replace, encode = msgspec.structs.replace, self._encoder.encode
        rel = index * self.tick_ms
        silent = frozenset().union(
            *(devices for devices, start, end in self._silences if start <= rel < end)
        )
        skipped = self._skipped
        out = []
        for message, feed, key, per_cycle, epochs in self.buckets[tick]:
            if message.device_id in silent:
                if not isinstance(message, s.NetnodeProbe):
                    skipped[message.device_id] += 1
                    continue
                # the core's prober goes on probing a dark node: it is unreachable
                message = replace(message, reachable=False, rtt_ms=None, loss_pct=100.0)
            seq = message.seq + cycle * per_cycle - skipped[message.device_id]
            changes: dict[str, Any] = {"seq": seq}
            for name in epochs:
                value = getattr(message, name)
                if value is not None:
                    changes[name] = value + shift
            moved = replace(message, **changes)
            out.append(Out(feed, key, encode(moved), True, message.kind, message.device_id, seq))
        if silent:
            feeds = Counter(o.feed for o in out)
            kinds = Counter(o.label for o in out)
        else:
            feeds, kinds = self._counts[tick]
        self.stats.valid_by_feed.update(feeds)
        self.stats.valid_by_kind.update(kinds)
        return out

    def advance(self, until_ms: int) -> list[Out]:
        """Every record of the ticks that end at or before ``until_ms``."""
        out: list[Out] = []
        while self._start_ms + (self._next + 1) * self.tick_ms <= until_ms:
            out += self._tick(self._next)
            self._next += 1
        return out

    def finish(self) -> list[Out]:
        """The rest of the current cycle (a run stopped early still ends on whole cycles)."""
        out: list[Out] = []
        while self._next % self.ticks:
            out += self._tick(self._next)
            self._next += 1
        return out
