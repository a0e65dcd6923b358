"""Alertmanager routing, generated: severity and domain routes, grouping, inhibition.

The alert names it inhibits come from :mod:`ioc.alerting.rules`; the receivers point at the
pager (``ioc pager``). Written by ``ioc alerts build`` as the local stack's template
(``$pager_url``/``$token_file`` filled in by ``ioc stack up``) and the compose config.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from ioc.alerting.rules import (
    CONSEQUENCES,
    FLAPPING,
    INHIBITED_BY_ISOLATION,
    STALLED_DATA,
    UNREACHABLE,
)
from ioc.contract.thresholds import CRITICAL, INFO, NONE, WARNING

CRITICAL_GROUP_WAIT = "0s"
WARNING_GROUP_WAIT = "10s"
"""How long Alertmanager gathers a new group's alerts before the first page (latency budget:
critical pages within 30 s of the fault, warnings within 45 s)."""
CRITICAL_GROUP_INTERVAL = "5s"
WARNING_GROUP_INTERVAL = "10s"
"""How long an alert that joins a group already notified (a second device of the site, the
same device down again before its group was gone) waits for the group's next flush: a step
of the same budget. At 30 s every page behind an earlier one of its group came up to 30 s
late; a group whose resolution one pager did not take stays alive, so that was often."""
ROUTE_DOMAINS = ("network", "camera", "telehealth", "pipeline", "vconf", "portal")
GROUP_BY = {
    "pipeline": ["alertname", "feed"],
    # one notification per meeting and cause, listing its points (not one per commune)
    "vconf": ["alertname", "meeting_id", "cause"],
    # one notification per unit: its silent desks, or its KPI (a unit has no site)
    "portal": ["alertname", "unit"],
}


def alertmanager_document(pager_url: str | Sequence[str], token_file: str) -> dict[str, Any]:
    """Routing by severity and domain, grouping by unit and site, storm control.

    With several pager URLs each receiver notifies every pager (one webhook each), so a page
    goes out while any pager is up; the pagers share the database and record and send each
    page once (:mod:`ioc.services.pager`)."""
    urls = [pager_url] if isinstance(pager_url, str) else list(pager_url)
    webhooks = [
        {
            "url": url,
            "send_resolved": True,
            "max_alerts": 0,
            "http_config": {"authorization": {"type": "Bearer", "credentials_file": token_file}},
        }
        for url in urls
    ]

    def domain_routes(group_wait: str, group_interval: str, repeat: str) -> list[dict[str, Any]]:
        routes = []
        for domain in ROUTE_DOMAINS:
            group_by = GROUP_BY.get(domain, ["alertname", "unit", "site"])
            routes.append(
                {
                    "receiver": "pager",
                    "matchers": [f'domain="{domain}"'],
                    "group_by": group_by,
                    "group_wait": group_wait,
                    "group_interval": group_interval,
                    "repeat_interval": repeat,
                }
            )
        return routes

    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "pager",
            "group_by": ["alertname", "unit", "site"],
            "group_wait": "10s",
            "group_interval": "30s",
            "repeat_interval": "4h",
            "routes": [
                # The dead-man's switch: a steady heartbeat to the pager, every minute.
                {
                    "receiver": "watchdog",
                    "matchers": ['alertname="Watchdog"'],
                    "group_wait": "0s",
                    "group_interval": "1m",
                    "repeat_interval": "1m",
                },
                # group_wait is a step of the page latency budget (docs/alerting.md): an
                # outage's alerts of one evaluation still arrive together
                {
                    "receiver": "pager",
                    "matchers": [f'severity="{CRITICAL}"'],
                    "group_wait": CRITICAL_GROUP_WAIT,
                    "group_interval": CRITICAL_GROUP_INTERVAL,
                    "repeat_interval": "1h",
                    "routes": domain_routes(CRITICAL_GROUP_WAIT, CRITICAL_GROUP_INTERVAL, "1h"),
                },
                {
                    "receiver": "pager",
                    "matchers": [f'severity="{WARNING}"'],
                    "group_wait": WARNING_GROUP_WAIT,
                    "group_interval": WARNING_GROUP_INTERVAL,
                    "repeat_interval": "4h",
                    "routes": domain_routes(WARNING_GROUP_WAIT, WARNING_GROUP_INTERVAL, "4h"),
                },
                {"receiver": "null", "matchers": [f'severity=~"{INFO}|{NONE}"']},
            ],
        },
        "inhibit_rules": [
            # A cut node explains every device alert behind it: page for the node only.
            {
                "source_matchers": ['alertname="SiteIsolated"'],
                "target_matchers": [f'alertname=~"{"|".join(INHIBITED_BY_ISOLATION)}"'],
                "equal": ["upstream_node"],
            },
            # Unit-level consequences (a district's or the province's online ratio, sessions
            # dropped in a district) of an isolated or flapping node there: its page covers
            # them. A consequence that resolves while inhibited gets no resolved notification
            # from Alertmanager; the pager records it (ioc.services.resolutions).
            *(
                {
                    "source_matchers": [f'alertname="{source}"'],
                    "target_matchers": [f'alertname=~"{"|".join(CONSEQUENCES)}"'],
                    "equal": [scope],
                }
                for source in ("SiteIsolated", FLAPPING)
                for scope in ("region", "province")
            ),
            # A worker that cannot reach its broker or database stops the data: its page
            # covers the stale, stalled and lagging feeds that follow. No label to compare
            # (the cause is per worker, the consequences per feed); the workers share one
            # broker and one database, and the cause keeps firing 30 s after it clears
            # (keep_firing_for) so the consequences resolve under it rather than page after.
            {
                "source_matchers": [f'alertname=~"{"|".join(UNREACHABLE)}"'],
                "target_matchers": [f'alertname=~"{"|".join(STALLED_DATA)}"'],
            },
            # When data is stale, device and pipeline symptoms follow from it.
            {
                "source_matchers": ['alertname="DataStale"'],
                "target_matchers": ['alertname=~"ConsumerLagGrowing|DeadLetterRateHigh"'],
                "equal": ["feed"],
            },
        ],
        "receivers": [
            {"name": "pager", "webhook_configs": webhooks},
            {
                "name": "watchdog",
                "webhook_configs": [copy.deepcopy(w) | {"send_resolved": False} for w in webhooks],
            },
            {"name": "null"},
        ],
    }
