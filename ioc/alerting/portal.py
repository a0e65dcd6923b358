"""The public-service portal's alerts (docs/portal.md), listed by :func:`ioc.alerting.rules.alerts`.

- ``PortalSyncSilent``: a desk's LGSP sync silent in working hours (the portal's down alert).
- ``PortalOnTimeRateLow``: a unit's on-time rate below target over a week.
- ``PortalPaymentsFailing``: online payments collapsing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ioc.alerting.rules import (
    Alert,
    Example,
    _down,
    _humanize_percentage,
    _max,
    duration_text,
    num,
    percent,
)
from ioc.contract import metrics as m
from ioc.contract.thresholds import Thresholds


def portal_alerts(th: Thresholds) -> tuple[Alert, ...]:
    """The public-service portal's alerts (docs/portal.md): a desk's LGSP sync silent in
    working hours (the workers' state machine decides, ``portal_silent_ms`` and
    ``portal_working_hours``), a unit's on-time rate below target over a week, and online
    payments collapsing."""
    silent = _down(th, "portal", "PortalSyncSilent", "portal", "Portal desk")
    silent_min = num(th.portal_silent_ms / 60_000)
    unit = {"unit": "991", "unit_name": "Demo City", "level": "district"}
    selector = ",".join(f'{k}="{v}"' for k, v in unit.items())
    ontime_low = round(th.portal_ontime_min * 0.6, 6)
    paid_low = round(th.portal_payment_success_min / 3, 6)

    def policy(name: str) -> dict[str, Any]:
        p = th.alerts[name]
        return {"name": name, "for_s": p.for_s, "severity": p.severity}

    return (
        dataclasses.replace(
            silent,
            summary="Portal desk {{ $labels.device_id }}: LGSP sync silent in working hours",
            description=(
                f"Nothing has arrived from the one-stop desk {{{{ $labels.device_id }}}} (unit "
                f"{{{{ $labels.unit }}}}) through LGSP for over {silent_min} minutes of working "
                f"hours ({th.portal_working_hours}, Vietnam time). Its network path (via "
                "{{ $labels.upstream_node }}) is up, so the desk's sync or LGSP itself is "
                "the cause. Its events are not lost: they land, late, when the sync resumes."
            ),
        ),
        Alert(
            **policy("PortalOnTimeRateLow"),
            expr=f"{_max(m.PORTAL_ONTIME_RATIO)} < {num(th.portal_ontime_min)}",
            domain="portal",
            summary="Only {{ $value | humanizePercentage }} of dossiers resolved on time in "
            "{{ $labels.unit_name }}",
            description=(
                f"Over the last {th.portal_ontime_days} days, {{{{ $labels.level }}}} "
                f"{{{{ $labels.unit_name }}}} ({{{{ $labels.unit }}}}) resolved fewer than "
                f"{percent(th.portal_ontime_min)} of its dossiers on time: the unit is "
                "falling behind and its overdue backlog grows (Decision 766 progress group)."
            ),
            example=Example(
                {
                    f'{m.PORTAL_ONTIME_RATIO.series}{{{selector},instance="w1"}}': (
                        f"{num(ontime_low)}+0x100"
                    )
                },
                unit,
                {"{{ $value | humanizePercentage }}": _humanize_percentage(ontime_low)},
            ),
        ),
        Alert(
            **policy("PortalPaymentsFailing"),
            expr=(f"{_max(m.PORTAL_PAYMENT_SUCCESS_RATIO)} < {num(th.portal_payment_success_min)}"),
            domain="portal",
            summary="Only {{ $value | humanizePercentage }} of online payments succeed in "
            "{{ $labels.unit_name }}",
            description=(
                f"Fewer than {percent(th.portal_payment_success_min)} of the online payments "
                f"of {{{{ $labels.level }}}} {{{{ $labels.unit_name }}}} "
                f"({{{{ $labels.unit }}}}) succeeded over the last "
                f"{duration_text(th.portal_payment_window_s)} (normally about two in three): "
                "the payment gateway or the bank link is failing."
            ),
            example=Example(
                {
                    f'{m.PORTAL_PAYMENT_SUCCESS_RATIO.series}{{{selector},instance="w1"}}': (
                        f"{num(paid_low)}+0x60"
                    )
                },
                unit,
                {"{{ $value | humanizePercentage }}": _humanize_percentage(paid_low)},
            ),
        ),
    )
