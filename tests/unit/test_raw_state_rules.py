"""The per-class raw-state rules (``judge_for``) against the plain rule they replaced.

A national round judges 100,000 devices, so the state machine binds each class's rule and
thresholds once; the verdicts must be those of the plain, one-function rule below, for
every class (a declared feed included) and for facts at and around every threshold.
"""

from __future__ import annotations

import random

from ioc.contract import tables as t
from ioc.contract.feeds import Feed
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.streams.state import Facts, _portal_state, judge_for


def plain_rule(device_class: str, f: Facts | None, now_ms: int, th: Thresholds) -> tuple[str, str]:
    """The rule as one function (before the per-class binding), kept as the reference."""
    timeout = th.heartbeat_timeout_ms[device_class]

    def liveness(last_ts: int) -> tuple[str, str]:
        silent = now_ms - last_ts
        if silent > timeout:
            return t.STATE_DOWN, f"no report for {silent // 1000} s"
        return t.STATE_UP, "heartbeat ok"

    if device_class == Feed.NETNODE:
        if f is None or f.probe_ts is None:
            if f is None or f.last_ts is None:
                return t.STATE_UNKNOWN, "no probe result yet"
            return liveness(f.last_ts)
        if now_ms - f.probe_ts > timeout:
            return t.STATE_DOWN, f"no probe result for {(now_ms - f.probe_ts) // 1000} s"
        if f.probe_reachable is False:
            return t.STATE_DOWN, "unreachable from the provincial core"
        if f.loss_pct is not None and f.loss_pct > th.link_max_loss_pct:
            return t.STATE_DEGRADED, f"link loss {f.loss_pct:.1f}%"
        if f.rtt_ms is not None and f.rtt_ms > th.link_max_rtt_ms:
            return t.STATE_DEGRADED, f"link latency {f.rtt_ms:.0f} ms"
        return t.STATE_UP, "probe ok"
    if device_class == Feed.PORTAL:
        return _portal_state(f, now_ms, th)
    if f is None or f.last_ts is None:
        return t.STATE_UNKNOWN, "never reported"
    state, reason = liveness(f.last_ts)
    if state != t.STATE_UP:
        return state, reason
    fresh = f.quality_ts is not None and now_ms - f.quality_ts <= th.quality_max_age_ms
    if device_class == Feed.CAMERA and fresh:
        if f.frozen:
            return t.STATE_DEGRADED, "frozen picture"
        if f.fps is not None and f.fps < th.camera_min_fps:
            return t.STATE_DEGRADED, f"fps collapsed to {f.fps:.1f}"
    if device_class == Feed.TELEHEALTH and fresh and (f.sessions_active or 0) > 0:
        if f.loss_pct is not None and f.loss_pct > th.telehealth_max_loss_pct:
            return t.STATE_DEGRADED, f"session packet loss {f.loss_pct:.1f}%"
        if f.jitter_ms is not None and f.jitter_ms > th.telehealth_max_jitter_ms:
            return t.STATE_DEGRADED, f"session jitter {f.jitter_ms:.0f} ms"
    if (
        device_class == Feed.SOC
        and f.alert_ts is not None
        and f.alert_reason
        and now_ms - f.alert_ts <= th.soc_alert_hold_ms
    ):
        return t.STATE_DEGRADED, f.alert_reason
    return t.STATE_UP, "heartbeat ok"


def _around(rng: random.Random, limit: float) -> float | None:
    """None, or a value at, just under or just over ``limit``, or anywhere."""
    return rng.choice([None, limit, limit - 0.05, limit + 0.05, rng.uniform(0, 3 * limit)])


def _age(rng: random.Random, now_ms: int, limit: int) -> int | None:
    """None, or a time at, just inside or just outside ``limit`` ms before ``now_ms``."""
    return rng.choice(
        [
            None,
            now_ms - limit,
            now_ms - limit + 1,
            now_ms - limit - 1,
            now_ms - rng.randint(0, 2 * limit),
        ]
    )


def test_every_class_judges_as_the_plain_rule() -> None:
    th = THRESHOLDS
    rng = random.Random(18)
    now_ms = 1_764_000_000_000
    classes = sorted(th.heartbeat_timeout_ms)
    assert {Feed.CAMERA, Feed.TELEHEALTH, Feed.NETNODE, Feed.PORTAL, Feed.SOC, Feed.VCONF} <= set(
        classes
    )
    judged = 0
    for cls in classes:
        rule = judge_for(cls, th)
        timeout = th.heartbeat_timeout_ms[cls]
        assert rule(None, now_ms) == plain_rule(cls, None, now_ms, th)
        for _ in range(3000):
            f = Facts(
                last_ts=_age(rng, now_ms, timeout),
                probe_ts=_age(rng, now_ms, timeout),
                probe_reachable=rng.choice([None, True, False]),
                quality_ts=_age(rng, now_ms, th.quality_max_age_ms),
                fps=_around(rng, th.camera_min_fps),
                frozen=rng.choice([None, True, False]),
                rtt_ms=_around(rng, min(th.link_max_rtt_ms, th.telehealth_max_jitter_ms)),
                jitter_ms=_around(rng, th.telehealth_max_jitter_ms),
                loss_pct=_around(rng, th.link_max_loss_pct),
                sessions_active=rng.choice([None, 0, 1, 4]),
                seen_ms=_age(rng, now_ms, th.heartbeat_timeout_ms[cls]),
                alert_ts=_age(rng, now_ms, th.soc_alert_hold_ms),
                alert_reason=rng.choice([None, "", "ddos alert from 10.0.0.9"]),
            )
            assert rule(f, now_ms) == plain_rule(cls, f, now_ms, th), (cls, f)
            judged += 1
    assert judged == 3000 * len(classes)
