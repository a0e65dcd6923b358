"""The security-operations feed's alerts (docs/soc.md), from the workers' sensor states.

A SOC sensor is degraded while a critical, DDoS or scan alert of its site is recent
(``Thresholds.soc_alert_hold_ms``, ioc.streams.soc); the first word of its reason, the
``reason`` label of ``ioc_device_degraded``, is ``critical-<category>`` or ``<category>``.

- ``SecurityCriticalAlert``: a critical alert on a site (the ``security-alert`` incident).
- ``SecurityAttackOnDegradedLink``: a DDoS or scan alert on a node whose link is degraded at
  the same time (the incident agent correlates both into one incident).

The sensor's own silence is the generated ``FeedDeviceDown`` (``feed="soc"``).
"""

from __future__ import annotations

from typing import Any

from ioc.alerting.rules import Alert, Example, _down, _max, _sel
from ioc.contract import metrics as m
from ioc.contract import soc
from ioc.contract.feeds import Feed
from ioc.contract.thresholds import THRESHOLDS, Thresholds

CORRELATED = "|".join(sorted(soc.CORRELATED_CATEGORIES))


def soc_alerts(th: Thresholds = THRESHOLDS) -> tuple[Alert, ...]:
    def policy(name: str) -> dict[str, Any]:
        p = th.alerts[name]
        return {"name": name, "for_s": p.for_s, "severity": p.severity}

    degraded = m.DEVICE_DEGRADED.series
    hold = f"{th.soc_alert_hold_ms // 60_000} min"
    sensor = {
        "device_id": "soc-991-001",
        "device_class": str(Feed.SOC),
        "unit": "991-001",
        "site": "site-991-001-office",
        "upstream_node": "nn-991-001",
    }

    def series(labels: dict[str, str]) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return f'{degraded}{{{inner},instance="w1"}}'

    critical = {**sensor, "reason": "critical-brute_force"}
    ddos = {**sensor, "reason": "ddos"}
    link = {
        "device_id": "nn-991-001",
        "device_class": str(Feed.NETNODE),
        "unit": "991-001",
        "site": "site-991-001-office",
        "reason": "link",
        "upstream_node": "nn-991",
    }
    sensor_attack = f'{{device_class="{Feed.SOC}",reason=~"(critical-)?({CORRELATED})"}}'
    sensor_critical = f'{{device_class="{Feed.SOC}",reason=~"critical-.*"}}'
    node_link = (
        f"label_replace({_max(m.DEVICE_DEGRADED, _sel(device_class=str(Feed.NETNODE)))}, "
        f'"upstream_node", "$1", "device_id", "(.*)")'
    )
    return (
        _down(th, str(Feed.SOC), "SocSensorDown", str(Feed.SOC), "SOC sensor"),
        Alert(
            **policy("SecurityCriticalAlert"),
            expr=f"{_max(m.DEVICE_DEGRADED, sensor_critical)} > 0",
            domain=str(Feed.SOC),
            summary="Critical security alert at {{ $labels.site }} ({{ $labels.reason }})",
            description=(
                "The SOC reports a critical {{ $labels.reason }} alert (Wazuh level 12 or more, "
                "or Suricata severity 1) at site {{ $labels.site }} (unit {{ $labels.unit }}, "
                f"sensor {{{{ $labels.device_id }}}}); it holds for {hold} after the last one. "
                "The SOC is the system of record: follow its case, and check what the site "
                "runs (IOC incident security-alert)."
            ),
            example=Example({series(critical): "1+0x40"}, critical),
        ),
        Alert(
            **policy("SecurityAttackOnDegradedLink"),
            expr=(
                f"max by (device_id, unit, site, reason, upstream_node) "
                f"({degraded}{sensor_attack}) and on (upstream_node) {node_link}"
            ),
            domain=str(Feed.SOC),
            summary="{{ $labels.reason }} attack on node {{ $labels.upstream_node }} while its "
            "link is degraded",
            description=(
                "The SOC reports a {{ $labels.reason }} alert at site {{ $labels.site }} (unit "
                "{{ $labels.unit }}) while the link to its network node "
                "{{ $labels.upstream_node }} is degraded: the attack is the likely cause of the "
                "loss or latency. One incident holds both (the link's, or the security alert's "
                "if that came first)."
            ),
            example=Example(
                {series(ddos): "1+0x40", series(link): "1+0x40"},
                {k: v for k, v in ddos.items() if k != "device_class"},
            ),
        ),
    )
