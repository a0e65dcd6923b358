"""Fault plans: what to break, when, and for how long.

A plan is YAML (``--faults FILE``) or CLI flags (``--fault TYPE:TARGET@START+DURATION``)::

    faults:
      - {type: node_down, target: nn-138, at: 60, duration: 120}
      - {type: device_dark, target: "camera#3", at: 30, duration: 90}
      - {type: flapping, target: nn-132-004, at: 0, duration: 300, period: 20}
      - {type: link_degraded, target: nn-135, at: 10, duration: 60, loss_pct: 8, latency_ms: 300}
      - {type: camera_frozen, target: cam-132-001, at: 10, duration: 60}
      - {type: session_drops, target: th-138-hosp-1, at: 0, duration: 120}
      - {type: clock_skew, target: cam-133-002, at: 0, duration: 600, skew_s: 300}
      - {type: lgsp_outage, target: portal-132, at: 0, duration: 21600}   # 6 h, then a batch
      - {type: payment_gateway_failure, target: "portal#0", at: 60, duration: 600}
      - {type: unit_backlog, target: portal-133, at: 0}
      - {type: late, rate: 0.01, delay_s: 30}           # no target: every device
      - {type: duplicate, rate: 0.01}
      - {type: malformed, rate: 0.001, variants: [bad_json, wrong_type, unknown_version, oversized]}

``at`` and ``duration`` are seconds from the start of the run (duration omitted: to the end).
A target is a device id, or ``CLASS#N`` for the N-th device of a class (0-based, in id order),
so a plan can be written for any scenario. Every fault is a pure function of the plan and
time, so several simulator processes agree on what is broken without talking to each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ioc.contract import feeds
from ioc.contract.feeds import Feed
from ioc.contract.topology import Topology, load_yaml
from ioc.errors import IocError

TARGETED = (
    "device_dark",
    "node_down",
    "flapping",
    "link_degraded",
    "camera_frozen",
    "session_drops",
    "clock_skew",
    *("vconf_no_join", "vconf_licence", "vconf_mcu_down", "vconf_meeting"),
    "soc_campaign",
    *("lgsp_outage", "payment_gateway_failure", "unit_backlog"),
)
PORTAL_FAULTS = ("lgsp_outage", "payment_gateway_failure", "unit_backlog")
"""The portal feed's (ioc.simulators.portal): a desk's LGSP sync down then one catch-up
batch, its payments failing at the gateway, its unit falling behind (overdue dossiers)."""
CONDITION_FAULTS = ("payment_gateway_failure", "unit_backlog")
"""Faults a behaviour reads from ``Conditions.active`` (by type)."""
HOLDING_FAULTS = ("lgsp_outage",)
"""Faults that hold a device's records back and deliver them all when they end."""
RATED = ("late", "duplicate", "malformed")
FAULT_TYPES = TARGETED + RATED
VCONF_FAULTS = ("vconf_no_join", "vconf_licence", "vconf_mcu_down", "vconf_meeting")
"""The video-conference feed's (ioc.simulators.vconf; vconf_meeting schedules a meeting)."""
VCONF_ROLES = {
    "vconf_no_join": "endpoint",
    "vconf_meeting": "endpoint",
    "vconf_licence": "mcu",
    "vconf_mcu_down": "mcu",
}
MALFORMED_VARIANTS = ("bad_json", "wrong_type", "unknown_version", "oversized")
SOC_CAMPAIGNS = ("brute_force", "scan", "ddos")
"""``soc_campaign``'s ``campaign`` (ioc.simulators.soc): on a network node (its site's SOC
sensor) or a sensor; with the node's link degraded too, add ``link_degraded`` on the node."""
FOREVER_MS = 2**62


class FaultPlanError(IocError):
    pass


@dataclass(frozen=True)
class Fault:
    id: str
    type: str
    start_ms: int  # relative to the run start
    end_ms: int
    target: str | None = None
    rate: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def active(self, rel_ms: int) -> bool:
        return self.start_ms <= rel_ms < self.end_ms


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.faults)


def _parse_one(item: Any, where: str, index: int) -> Fault:
    if not isinstance(item, dict):
        raise FaultPlanError(f"{where}: fault #{index} must be a mapping")
    line = getattr(item, "line", 0)
    at = f"{where}:{line}" if line else where
    ftype = item.get("type")
    if ftype not in FAULT_TYPES:
        raise FaultPlanError(f"{at}: fault type {ftype!r} is not one of {', '.join(FAULT_TYPES)}")
    try:
        start = float(item.get("at", 0))
        duration = item.get("duration")
        end = FOREVER_MS if duration is None else int((start + float(duration)) * 1000)
        rate = float(item.get("rate", 0.0))
    except (TypeError, ValueError) as exc:
        raise FaultPlanError(f"{at}: {ftype}: {exc}") from None
    if start < 0 or end <= start * 1000:
        raise FaultPlanError(f"{at}: {ftype}: 'at' must be >= 0 and 'duration' > 0")
    target = item.get("target")
    if ftype in TARGETED and not target:
        raise FaultPlanError(f"{at}: {ftype} needs a 'target' (device id or CLASS#N)")
    if ftype in RATED and not 0 < rate <= 1:
        raise FaultPlanError(f"{at}: {ftype} needs a 'rate' in (0, 1], got {rate}")
    params = {
        k: v for k, v in item.items() if k not in ("type", "at", "duration", "target", "rate")
    }
    if ftype == "soc_campaign" and params.setdefault("campaign", "brute_force") not in (
        SOC_CAMPAIGNS
    ):
        raise FaultPlanError(
            f"{at}: soc_campaign: campaign {params['campaign']!r} is not one of "
            f"{', '.join(SOC_CAMPAIGNS)}"
        )
    if ftype == "malformed":
        variants = params.setdefault("variants", list(MALFORMED_VARIANTS))
        bad = [v for v in variants if v not in MALFORMED_VARIANTS]
        if bad:
            raise FaultPlanError(
                f"{at}: unknown malformed variant(s) {bad}; "
                f"choose from {', '.join(MALFORMED_VARIANTS)}"
            )
    for key, default in (
        ("period", 20.0),
        ("loss_pct", 10.0),
        ("latency_ms", 300.0),
        ("skew_s", 300.0),
        ("delay_s", 30.0),
    ):
        if key in params:
            try:
                params[key] = float(params[key])
            except (TypeError, ValueError):
                raise FaultPlanError(f"{at}: {ftype}: '{key}' must be a number") from None
        elif (
            ftype
            in {
                "period": ("flapping",),
                "loss_pct": ("link_degraded",),
                "latency_ms": ("link_degraded",),
                "skew_s": ("clock_skew",),
                "delay_s": ("late",),
            }[key]
        ):
            params[key] = default
    if ftype == "vconf_licence":  # the bridge's licensed ports (default 0: the licence expired)
        try:
            params["ports"] = int(params.get("ports", 0))
        except (TypeError, ValueError):
            raise FaultPlanError(f"{at}: {ftype}: 'ports' must be a whole number") from None
    return Fault(
        id=f"f{index:03d}-{ftype}",
        type=ftype,
        start_ms=int(start * 1000),
        end_ms=end,
        target=str(target) if target else None,
        rate=rate,
        params=params,
    )


def parse_flag(text: str, index: int) -> Fault:
    """``TYPE:TARGET@START+DURATION`` or ``TYPE:RATE`` (for late/duplicate/malformed)."""
    try:
        ftype, rest = text.split(":", 1)
        if ftype in RATED:
            return _parse_one({"type": ftype, "rate": float(rest)}, "--fault", index)
        target, _, timing = rest.partition("@")
        start, _, duration = timing.partition("+")
        item: dict[str, Any] = {"type": ftype, "target": target, "at": float(start or 0)}
        if duration:
            item["duration"] = float(duration)
        return _parse_one(item, "--fault", index)
    except ValueError:
        raise FaultPlanError(
            f"--fault {text!r}: expected TYPE:TARGET@START+DURATION or TYPE:RATE"
        ) from None


def load_plan(path: str | None, flags: list[str] | None = None) -> FaultPlan:
    faults: list[Fault] = []
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise FaultPlanError(f"{path}: cannot read fault plan: {exc}") from None
        doc = load_yaml(text, path)
        items = doc.get("faults") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise FaultPlanError(f"{path}: expected a top-level 'faults:' list")
        faults += [_parse_one(item, path, i) for i, item in enumerate(items)]
    for flag in flags or []:
        faults.append(parse_flag(flag, len(faults)))
    return FaultPlan(faults)


def resolve_targets(plan: FaultPlan, topology: Topology) -> FaultPlan:
    """Replace ``CLASS#N`` targets with device ids; unknown targets are errors."""
    by_class = {
        cls: sorted(d.id for d in topology.devices_of(cls)) for cls in feeds.device_classes()
    }
    resolved = []
    for fault in plan.faults:
        target = fault.target
        if target is not None:
            if "#" in target:
                cls, _, n = target.partition("#")
                ids = by_class.get(cls)
                if ids is None or not n.isdigit() or int(n) >= len(ids):
                    raise FaultPlanError(
                        f"fault {fault.id}: target {target!r} does not exist in scenario "
                        f"{topology.name}"
                    )
                target = ids[int(n)]
            if target not in topology.devices:
                raise FaultPlanError(
                    f"fault {fault.id}: target {target!r} is not a device of scenario "
                    f"{topology.name}"
                )
            dev = topology.devices[target]
            expected = {
                "node_down": Feed.NETNODE,
                "link_degraded": Feed.NETNODE,
                "camera_frozen": Feed.CAMERA,
                "session_drops": Feed.TELEHEALTH,
                **dict.fromkeys(VCONF_FAULTS, Feed.VCONF),
                **dict.fromkeys(PORTAL_FAULTS, Feed.PORTAL),
            }
            need = expected.get(fault.type)
            if fault.type == "soc_campaign" and dev.device_class not in (Feed.NETNODE, Feed.SOC):
                need = Feed.SOC
            if need and dev.device_class != need:
                raise FaultPlanError(
                    f"fault {fault.id}: {fault.type} needs a {need}, "
                    f"{target} is a {dev.device_class}"
                )
            role = VCONF_ROLES.get(fault.type)
            if role and dev.attributes.get("role") != role:
                raise FaultPlanError(f"fault {fault.id}: {fault.type} needs a vconf {role}")
        ftype = fault.type
        if (
            ftype == "device_dark"
            and target
            and topology.devices[target].device_class == Feed.NETNODE
        ):
            ftype = "node_down"  # a dark node takes everything behind it down with it
        resolved.append(
            Fault(fault.id, ftype, fault.start_ms, fault.end_ms, target, fault.rate, fault.params)
        )
    return FaultPlan(resolved)
