"""Faust's table recovery, watched: say what it waits for when it takes too long.

The incident agent's table (open incidents per correlation key) is rebuilt from its changelog
after every rebalance, and no agent runs until that recovery ends. Twice in CI
(tests/chaos/test_leader_killed.py) the survivor of a killed leader logged Faust's "No event
received for active tp ... since recovery start" for a minute and opened no incident; the
log said which partitions, not why. This says, for each changelog partition still being
recovered: the offset Faust wants to reach, where it has read to, where the consumer stands,
the partition's end, and whether Faust or the consumer has it paused, so the next occurrence
shows whether nothing was fetched (paused or never sought) or Faust's count is off (the
consumer at the end, Faust still waiting).

Reads Faust's internals (faust-streaming 0.15): every read is guarded, a missing attribute
is reported as such rather than raised.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

STUCK_AFTER_S = 30.0
"""A recovery running longer than this is described (a demo table recovers in a second)."""


def _get(obj: Any, *path: str) -> Any:
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


async def describe(app: Any) -> str | None:
    """The state of a recovery running for more than :data:`STUCK_AFTER_S`, else None."""
    recovery = _get(app, "tables", "recovery")
    started = _get(recovery, "_recovery_started_at")
    if recovery is None or not getattr(recovery, "in_recovery", False) or started is None:
        return None
    running = time.monotonic() - started
    if running < STUCK_AFTER_S:
        return None
    consumer = getattr(app, "consumer", None)
    paused_by_faust = set(getattr(consumer, "_paused_partitions", set()) or set())
    wanted = dict(getattr(recovery, "active_highwaters", {}) or {})
    have = dict(getattr(recovery, "active_offsets", {}) or {})
    received = dict(getattr(recovery, "_active_events_received_at", {}) or {})
    parts = []
    for tp in sorted(wanted, key=lambda tp: (tp.topic, tp.partition)):
        if have.get(tp) is not None and have[tp] >= wanted[tp]:
            continue  # this one is done
        try:
            position = await consumer.position(tp) if consumer is not None else None
        except Exception as exc:  # a diagnostic must not fail the worker
            position = f"? ({type(exc).__name__})"
        try:
            end = consumer.highwater(tp) if consumer is not None else None
        except Exception as exc:
            end = f"? ({type(exc).__name__})"
        last = received.get(tp)
        parts.append(
            f"{tp.topic}[{tp.partition}]: wants offset {wanted[tp]}, read to {have.get(tp)}, "
            f"consumer at {position}, end {end}, "
            f"{'paused by Faust' if tp in paused_by_faust else 'not paused by Faust'}, "
            + (
                "no event yet"
                if last is None
                else f"last event {time.monotonic() - last:.0f} s ago"
            )
        )
    flow = _get(app, "flow_control")
    return (
        f"table recovery running for {running:.0f} s "
        f"(flow control {'active' if getattr(flow, 'is_active', lambda: '?')() else 'suspended'}): "
        + ("; ".join(parts) or "every partition at its highwater, recovery not ended")
    )
