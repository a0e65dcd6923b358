"""The video-conference feed's alerts (docs/vconf.md), listed by :func:`ioc.alerting.rules.alerts`.

- ``VconfPointNotJoined``: an expected bridge point is not in a meeting that has started
  (meeting readiness, :mod:`ioc.streams.vconf`); one alert per point, with the cause and the
  device it is about, so the notification of a meeting lists the communes that did not join
  and says when their network node is the cause. Behind an isolated site it is inhibited by
  ``SiteIsolated`` like every device alert (same ``upstream_node``): the node is what to fix.
- ``VconfLicenceExhausted``: a bridge uses all its licensed ports; further points are refused.

- ``VconfDeviceDown``: a bridge, a bridge point or the booking calendar stopped reporting
  while its network path is up (behind a down node it is unreachable, not down).
"""

from __future__ import annotations

from ioc.alerting.rules import PROC, Alert, Example, _down, duration_text, num
from ioc.contract import metrics as m
from ioc.contract.feeds import Feed
from ioc.contract.thresholds import Thresholds

DOMAIN: str = Feed.VCONF.value


def vconf_alerts(th: Thresholds) -> tuple[Alert, ...]:
    not_joined = m.VCONF_POINT_NOT_JOINED
    point = {
        "meeting_id": "weekly-15-20261130",
        "meeting_title": "Yen Bai weekly meeting",
        "device_id": "vc-138-007",
        "unit": "138-007",
        "unit_name": "Xa Minh An",
        "site": "site-138-007-office",
        "cause": "site_isolated",
        "cause_device": "nn-138-007",
        "upstream_node": "nn-138-007",
    }
    point_series = ",".join(f'{k}="{v}"' for k, v in point.items())
    lead = th.evaluation_interval_s * 4  # the series starts before the meeting does
    bridge = {"device_id": "vc-15-mcu-1"}
    used, licensed = m.VCONF_BRIDGE_PORTS_USED, m.VCONF_BRIDGE_PORTS_LICENSED
    return (
        _down(th, DOMAIN, "VconfDeviceDown", DOMAIN, "Video-conference device"),
        Alert(
            name="VconfPointNotJoined",
            expr=f"max without ({PROC}) ({not_joined.series}) >= 0",
            for_s=th.alerts["VconfPointNotJoined"].for_s,
            severity=th.alerts["VconfPointNotJoined"].severity,
            domain=DOMAIN,
            summary="{{ $labels.unit_name }} has not joined {{ $labels.meeting_title }} "
            "({{ $labels.cause }} {{ $labels.cause_device }})",
            description=(
                "Bridge point {{ $labels.device_id }} of {{ $labels.unit_name }} "
                "({{ $labels.unit }}) is not in meeting {{ $labels.meeting_id }}, which has "
                "started. Cause: {{ $labels.cause }} ({{ $labels.cause_device }}). "
                "site_isolated: its network node is down, fix the node, not the room; "
                "link_degraded: its link loses too much to carry the media; bridge_down or "
                "licence_exhausted: the bridge; point_down: the room system; not_joined: "
                "call the commune. The list is on the meeting-readiness panel, from "
                f"{duration_text(th.vconf_readiness_before_s)} before the start."
            ),
            example=Example(
                {f'{not_joined.series}{{{point_series},instance="w1"}}': f"-{lead}+5x40"},
                point,
                starts_s=lead,
            ),
        ),
        Alert(
            name="VconfLicenceExhausted",
            # the ratio per exporter first: figures of two workers never mix
            expr=(
                f"max without ({PROC}) ({used.series} / {licensed.series}) "
                f">= {num(th.vconf_ports_use_max)}"
            ),
            for_s=th.alerts["VconfLicenceExhausted"].for_s,
            severity=th.alerts["VconfLicenceExhausted"].severity,
            domain=DOMAIN,
            summary="Bridge {{ $labels.device_id }} has no licensed port left",
            description=(
                "Video bridge {{ $labels.device_id }} uses all its licensed ports: points "
                "that join now are refused (licence_exhausted on the meeting-readiness "
                "panel). Free ports (end idle conferences), move a meeting to the other "
                "bridge, or extend the licence."
            ),
            example=Example(
                {
                    f'{used.series}{{device_id="vc-15-mcu-1",instance="w1"}}': "250+0x40",
                    f'{licensed.series}{{device_id="vc-15-mcu-1",instance="w1"}}': "250+0x40",
                },
                bridge,
            ),
        ),
    )
