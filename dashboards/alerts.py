"""Alert rules, generated from the contract's metric names (monitoring-mixin style).

Every expression is built from :mod:`ioc.contract.metrics`, so renaming a metric there changes
the rules too (and the committed YAML goes stale, which a test catches). Each alert carries
``severity``, ``domain``, ``summary``, ``description`` and ``runbook_url``, and an example
that fires it: ``promtool test rules`` cases are generated from those examples, firing exactly
at the ``for:`` boundary and not one evaluation before.

    ioc alerts build    # writes deploy/prometheus/ioc-alerts.yml and its promtool tests
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ioc.contract import metrics as m

RUNBOOK_BASE = "docs/runbooks"
# Labels that identify which process exported a series, not what it is about.
PROC = "instance, job, pid, service"
EVAL_INTERVAL_S = 5


@dataclass(frozen=True)
class Example:
    """Input series (promtool notation) that make the alert fire, and the labels it fires with."""

    series: dict[str, str]
    labels: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)  # "{{ $value ... }}" -> rendered
    starts_s: int = 0  # when the condition starts to hold (counter examples: after a flat 10m)
    interval: str = "5s"  # sample spacing of the input series


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_s: int
    severity: str
    domain: str
    summary: str
    description: str
    example: Example
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def runbook(self) -> str:
        return f"{RUNBOOK_BASE}/{self.slug}.md"

    @property
    def slug(self) -> str:
        out = []
        for i, ch in enumerate(self.name):
            if ch.isupper() and i:
                out.append("-")
            out.append(ch.lower())
        return "".join(out)

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_s:
            rule["for"] = f"{self.for_s}s"
        rule["labels"] = {"severity": self.severity, "domain": self.domain, **self.extra_labels}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": self.runbook,
        }
        return rule


def _max(spec: m.MetricSpec, selector: str = "") -> str:
    return f"max without ({PROC}) ({spec.series}{selector})"


def _sel(op: str = "=", **labels: str) -> str:
    """A label selector, e.g. ``_sel(device_class="camera")`` -> ``{device_class="camera"}``."""
    return "{" + ",".join(f'{k}{op}"{v}"' for k, v in labels.items()) + "}"


def _sum_by(by: str, inner: str) -> str:
    return f"sum by ({by}) ({inner})"


DEVICE_LABELS = ("device_id", "device_class", "unit", "site", "upstream_node")


def _down(cls: str, name: str, severity: str, domain: str, what: str) -> Alert:
    labels = {
        "device_id": f"x-{cls}",
        "device_class": cls,
        "unit": "u1",
        "site": "s1",
        "upstream_node": "nn-1",
    }
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return Alert(
        name=name,
        expr=f"{_max(m.DEVICE_DOWN, _sel(device_class=cls))} > 0",
        for_s=15,
        severity=severity,
        domain=domain,
        summary=f"{what} {{{{ $labels.device_id }}}} is down",
        description=(
            f"{what} {{{{ $labels.device_id }}}} at site {{{{ $labels.site }}}} "
            f"(unit {{{{ $labels.unit }}}}) has not reported within its heartbeat "
            f"timeout. Its network path (via {{{{ $labels.upstream_node }}}}) is up, "
            f"so the device itself is the root cause."
        ),
        example=Example({f'{m.DEVICE_DOWN.series}{{{selector},instance="w1"}}': "1+0x20"}, labels),
    )


ALERTS: tuple[Alert, ...] = (
    _down("camera", "CameraDown", "warning", "camera", "Camera"),
    _down("telehealth", "TelehealthStationDown", "critical", "telehealth", "Telehealth station"),
    _down("netnode", "NetworkNodeDown", "warning", "network", "Network node"),
    Alert(
        name="SiteIsolated",
        expr=f"{_max(m.SITE_ISOLATED)} > 0",
        for_s=10,
        severity="critical",
        domain="network",
        summary="Site isolated: node {{ $labels.node_id }} is down",
        description=(
            "Network node {{ $labels.node_id }} at site {{ $labels.site }} (unit "
            "{{ $labels.unit }}) is unreachable from the provincial core; "
            "{{ $value }} devices behind it are cut off. Device alerts behind it are "
            "inhibited: fix the node first."
        ),
        example=Example(
            {
                f'{m.SITE_ISOLATED.series}{{node_id="nn-9",unit="u1",site="s9",'
                f'upstream_node="nn-9",instance="w1"}}': "12+0x20"
            },
            {"node_id": "nn-9", "unit": "u1", "site": "s9", "upstream_node": "nn-9"},
            {"{{ $value }}": "12"},
        ),
    ),
    Alert(
        name="CameraOnlineRatioLow",
        expr=f"{_max(m.CAMERA_ONLINE_RATIO, _sel('=~', level='province|district'))} < 0.8",
        for_s=120,
        severity="warning",
        domain="camera",
        summary="Only {{ $value | humanizePercentage }} of cameras online in "
        "{{ $labels.unit_name }}",
        description=(
            "Fewer than 80% of the cameras of {{ $labels.level }} "
            "{{ $labels.unit_name }} ({{ $labels.unit }}) are online."
        ),
        example=Example(
            {
                f'{m.CAMERA_ONLINE_RATIO.series}{{unit="132",unit_name="City",'
                f'level="district",instance="w1"}}': "0.5+0x40"
            },
            {"unit": "132", "unit_name": "City", "level": "district"},
            {"{{ $value | humanizePercentage }}": "50%"},
        ),
    ),
    Alert(
        name="TelehealthQualityDegraded",
        expr=f"{_max(m.DEVICE_DEGRADED, _sel(device_class='telehealth'))} > 0",
        for_s=60,
        severity="warning",
        domain="telehealth",
        summary="Telehealth session quality degraded at {{ $labels.device_id }}",
        description=(
            "Remote consultation from {{ $labels.device_id }} (site "
            "{{ $labels.site }}) has poor media quality ({{ $labels.reason }})."
        ),
        example=Example(
            {
                f'{m.DEVICE_DEGRADED.series}{{device_id="th-1",device_class='
                f'"telehealth",unit="u1",site="s1",reason="session",'
                f'upstream_node="nn-1",instance="w1"}}': "1+0x40"
            },
            {
                "device_id": "th-1",
                "device_class": "telehealth",
                "unit": "u1",
                "site": "s1",
                "reason": "session",
                "upstream_node": "nn-1",
            },
        ),
    ),
    Alert(
        name="TelehealthSessionsDropping",
        expr=(f"{_sum_by('unit', f'increase({m.TELEHEALTH_SESSIONS_DROPPED.series}[10m])')} >= 3"),
        for_s=0,
        severity="warning",
        domain="telehealth",
        summary="Telehealth sessions dropping in unit {{ $labels.unit }}",
        description="Three or more remote consultations dropped in the last 10 minutes in "
        "unit {{ $labels.unit }}: check the stations' links and the video bridge.",
        example=Example(
            {f'{m.TELEHEALTH_SESSIONS_DROPPED.series}{{unit="u1",instance="w1"}}': "0x10 0+1x30"},
            {"unit": "u1"},
            starts_s=840,
            interval="1m",
        ),
    ),
    Alert(
        name="NetworkLinkDegraded",
        expr=f"{_max(m.DEVICE_DEGRADED, _sel(device_class='netnode'))} > 0",
        for_s=120,
        severity="warning",
        domain="network",
        summary="Link to node {{ $labels.device_id }} degraded ({{ $labels.reason }})",
        description=(
            "Probes from the provincial core to {{ $labels.device_id }} (site "
            "{{ $labels.site }}) show high {{ $labels.reason }} loss or latency."
        ),
        example=Example(
            {
                f'{m.DEVICE_DEGRADED.series}{{device_id="nn-2",device_class='
                f'"netnode",unit="u1",site="s2",reason="link",upstream_node="nn-1",'
                f'instance="w1"}}': "1+0x40"
            },
            {
                "device_id": "nn-2",
                "device_class": "netnode",
                "unit": "u1",
                "site": "s2",
                "reason": "link",
                "upstream_node": "nn-1",
            },
        ),
    ),
    Alert(
        name="CameraStreamFrozen",
        expr=f"{_max(m.DEVICE_DEGRADED, _sel(device_class='camera'))} > 0",
        for_s=60,
        severity="warning",
        domain="camera",
        summary="Camera {{ $labels.device_id }} stream {{ $labels.reason }}",
        description=(
            "Camera {{ $labels.device_id }} at site {{ $labels.site }} reports a "
            "frozen picture or collapsed frame rate ({{ $labels.reason }})."
        ),
        example=Example(
            {
                f'{m.DEVICE_DEGRADED.series}{{device_id="cam-1",device_class='
                f'"camera",unit="u1",site="s1",reason="frozen",upstream_node="nn-1",'
                f'instance="w1"}}': "1+0x40"
            },
            {
                "device_id": "cam-1",
                "device_class": "camera",
                "unit": "u1",
                "site": "s1",
                "reason": "frozen",
                "upstream_node": "nn-1",
            },
        ),
    ),
    Alert(
        name="ConsumerLagGrowing",
        expr=(
            f"{_sum_by('feed', m.CONSUMER_LAG.series)} > 10000 and "
            f"{_sum_by('feed', f'deriv({m.CONSUMER_LAG.series}[5m])')} > 0"
        ),
        for_s=300,
        severity="warning",
        domain="pipeline",
        summary="Stream workers are falling behind on the {{ $labels.feed }} feed",
        description="More than 10,000 {{ $labels.feed }} messages are waiting and the backlog "
        "keeps growing: add workers or find what slows them (DB latency?).",
        example=Example(
            {
                f'{m.CONSUMER_LAG.series}{{feed="camera",partition="0",'
                f'instance="w1"}}': "20000x10 20000+1000x30"
            },
            {"feed": "camera"},
            starts_s=720,
            interval="1m",
        ),
    ),
    Alert(
        name="DataStale",
        expr=f"max by (feed) ({m.EVENT_FRESHNESS.series}) > 30",
        for_s=15,
        severity="critical",
        domain="pipeline",
        summary="No fresh {{ $labels.feed }} data for {{ $value | humanizeDuration }}",
        description="The newest {{ $labels.feed }} event in the database is older than 30 "
        "seconds: feeds, Kafka, workers or the database are stuck. Operators are "
        "looking at stale dashboards.",
        example=Example(
            {f'{m.EVENT_FRESHNESS.series}{{feed="netnode",instance="w1"}}': "120+0x40"},
            {"feed": "netnode"},
            {"{{ $value | humanizeDuration }}": "2m 0s"},
        ),
    ),
    Alert(
        name="PartitionStalled",
        expr=f"{_max(m.PARTITION_STALLED)} > 60",
        for_s=30,
        severity="critical",
        domain="pipeline",
        summary="{{ $labels.feed }} partition {{ $labels.partition }} stalled for "
        "{{ $value | humanizeDuration }}",
        description="Partition {{ $labels.partition }} of the {{ $labels.feed }} feed has "
        "consumer lag but has made no progress for {{ $value | humanizeDuration }}, whatever "
        "the cause: a poison record, the database or the broker away, a stuck write. The "
        "{{ $labels.feed }} data behind it is not landing.",
        example=Example(
            {
                f'{m.PARTITION_STALLED.series}{{feed="camera",partition="3",'
                f'instance="w1"}}': "0+5x40"
            },
            {"feed": "camera", "partition": "3"},
            {"{{ $value | humanizeDuration }}": "1m 35s"},
            starts_s=65,
        ),
    ),
    Alert(
        name="DeadLetterRateHigh",
        expr=(
            f"{_sum_by('feed', f'rate({m.DLQ_MESSAGES.series}[5m])')} / "
            f"{_sum_by('feed', f'rate({m.EVENTS_CONSUMED.series}[5m])')} > 0.01"
        ),
        for_s=300,
        severity="warning",
        domain="pipeline",
        summary="{{ $value | humanizePercentage }} of {{ $labels.feed }} messages are invalid",
        description="More than 1% of the {{ $labels.feed }} feed goes to the dead-letter topic "
        "(see ioc_dlq_messages_total by reason): a device firmware or a producer "
        "is sending bad data.",
        example=Example(
            {
                f'{m.DLQ_MESSAGES.series}{{feed="camera",reason="schema",'
                f'instance="w1"}}': "0x10 0+60x30",
                f'{m.EVENTS_CONSUMED.series}{{feed="camera",instance="w1"}}': "0+600x40",
            },
            {"feed": "camera"},
            {"{{ $value | humanizePercentage }}": "10%"},
            starts_s=720,
            interval="1m",
        ),
    ),
    Alert(
        name="StreamWorkerDown",
        expr='up{job="ioc", service="worker"} == 0',
        for_s=60,
        severity="critical",
        domain="pipeline",
        summary="Stream worker {{ $labels.instance }} is down",
        description="Prometheus cannot scrape stream worker {{ $labels.instance }}; its "
        "partitions move to the other workers, if any are left.",
        example=Example(
            {'up{job="ioc",service="worker",instance="127.0.0.1:9464"}': "0+0x40"},
            {"job": "ioc", "service": "worker", "instance": "127.0.0.1:9464"},
        ),
    ),
    Alert(
        name="DatabaseWritesFailing",
        expr=f"sum by (feed) (increase({m.DB_WRITE_ERRORS.series}[2m])) > 0",
        for_s=60,
        severity="critical",
        domain="pipeline",
        summary="Writes of the {{ $labels.feed }} feed to TimescaleDB are failing",
        description="Batch writes keep failing and are being retried; nothing is lost yet "
        "(offsets are not committed) but data is not landing.",
        example=Example(
            {f'{m.DB_WRITE_ERRORS.series}{{feed="camera",instance="w1"}}': "0x10 0+5x30"},
            {"feed": "camera"},
            starts_s=720,
            interval="1m",
        ),
    ),
    Alert(
        name="DeadLetterSendFailing",
        expr=f"sum by (feed) (increase({m.DLQ_SEND_ERRORS.series}[2m])) > 0",
        for_s=60,
        severity="critical",
        domain="pipeline",
        summary="Dead letters of the {{ $labels.feed }} feed cannot be sent",
        description="Producing {{ $labels.feed }} dead letters keeps failing: the broker "
        "refuses them or is unreachable. They are retried, never dropped, but the batches "
        "holding them wait with their offsets, so the feed does not advance.",
        example=Example(
            {f'{m.DLQ_SEND_ERRORS.series}{{feed="netnode",instance="w1"}}': "0x10 0+3x30"},
            {"feed": "netnode"},
            starts_s=720,
            interval="1m",
        ),
    ),
    Alert(
        name="DatabaseWritesSlow",
        expr=(
            "histogram_quantile(0.99, sum by (feed, le) "
            f"(rate({m.DB_WRITE_SECONDS.bucket_series}[2m]))) > 1"
        ),
        for_s=60,
        severity="warning",
        domain="pipeline",
        summary="{{ $labels.feed }} batch writes take {{ $value | humanizeDuration }} (p99)",
        description="Writing one {{ $labels.feed }} batch to TimescaleDB takes over a second "
        "(p99 over 2 minutes): the database is slow (load, I/O, locks, network). Data still "
        "lands, but lag and freshness will follow if it continues.",
        example=Example(
            {
                f'{m.DB_WRITE_SECONDS.bucket_series}{{feed="camera",le="0.5",instance="w1"}}': (
                    "0x40"
                ),
                f'{m.DB_WRITE_SECONDS.bucket_series}{{feed="camera",le="1",instance="w1"}}': (
                    "0x40"
                ),
                f'{m.DB_WRITE_SECONDS.bucket_series}{{feed="camera",le="2.5",instance="w1"}}': (
                    "0x10 0+10x30"
                ),
                f'{m.DB_WRITE_SECONDS.bucket_series}{{feed="camera",le="+Inf",instance="w1"}}': (
                    "0x10 0+10x30"
                ),
            },
            {"feed": "camera"},
            {"{{ $value | humanizeDuration }}": "2.485s"},
            starts_s=720,
            interval="1m",
        ),
    ),
    Alert(
        name="Watchdog",
        expr="vector(1)",
        for_s=0,
        severity="none",
        domain="meta",
        summary="Alerting pipeline heartbeat (always firing)",
        description="Always firing, so that its absence at the pager proves that Prometheus, "
        "Alertmanager or the pager is broken (a dead-man's switch).",
        example=Example({}, {}),
    ),
)

INHIBITED_BY_ISOLATION = (
    "CameraDown",
    "TelehealthStationDown",
    "NetworkNodeDown",
    "TelehealthQualityDegraded",
    "NetworkLinkDegraded",
    "CameraStreamFrozen",
)


def rules_document() -> dict[str, Any]:
    return {
        "groups": [
            {
                "name": "ioc.alerts",
                "interval": f"{EVAL_INTERVAL_S}s",
                "rules": [a.rule() for a in ALERTS],
            }
        ]
    }


def render(template: str, labels: dict[str, str], values: dict[str, str]) -> str:
    """The subset of Prometheus templating the annotations use, for expected test output."""
    for snippet, text in values.items():
        template = template.replace(snippet, text)
    for key, value in labels.items():
        template = template.replace(f"{{{{ $labels.{key} }}}}", value)
    if "{{" in template:
        raise ValueError(f"unrendered template left in {template!r}: add it to Example.values")
    return template


def _test_case(alert: Alert) -> dict[str, Any]:
    """Fires at the ``for:`` boundary, not one evaluation before."""
    labels = {"severity": alert.severity, "domain": alert.domain, **alert.example.labels}
    annotations = {
        key: render(text, alert.example.labels, alert.example.values)
        for key, text in alert.rule()["annotations"].items()
    }
    fires_at = alert.example.starts_s + alert.for_s
    cases: list[dict[str, Any]] = [
        {
            "eval_time": f"{fires_at}s",
            "alertname": alert.name,
            "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}],
        },
    ]
    if fires_at >= EVAL_INTERVAL_S:  # one evaluation earlier it must not fire yet
        cases.append(
            {
                "eval_time": f"{fires_at - EVAL_INTERVAL_S}s",
                "alertname": alert.name,
                "exp_alerts": [],
            }
        )
    return {
        "name": f"{alert.name} fires at its for: boundary",
        "interval": alert.example.interval,
        "input_series": [{"series": k, "values": v} for k, v in alert.example.series.items()],
        "alert_rule_test": cases,
    }


def _quiet_case() -> dict[str, Any]:
    """A healthy province: nothing but the Watchdog fires."""
    series = {
        f'{m.CAMERA_ONLINE_RATIO.series}{{unit="132",unit_name="City",level="district",'
        f'instance="w1"}}': "1+0x40",
        f'{m.EVENT_FRESHNESS.series}{{feed="camera",instance="w1"}}': "2+0x40",
        f'{m.CONSUMER_LAG.series}{{feed="camera",partition="0",instance="w1"}}': "10+0x40",
        'up{job="ioc",service="worker",instance="127.0.0.1:9464"}': "1+0x40",
        f'{m.DB_WRITE_ERRORS.series}{{feed="camera",instance="w1"}}': "0+0x40",
        f'{m.PARTITION_STALLED.series}{{feed="camera",partition="0",instance="w1"}}': "0+0x40",
        f'{m.DLQ_SEND_ERRORS.series}{{feed="camera",instance="w1"}}': "0+0x40",
    }
    return {
        "name": "healthy province: only the Watchdog",
        "interval": "1m",
        "input_series": [{"series": k, "values": v} for k, v in series.items()],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": a.name, "exp_alerts": []}
            for a in ALERTS
            if a.name != "Watchdog"
        ],
    }


def tests_document(rules_file: str) -> dict[str, Any]:
    cases = [_test_case(a) for a in ALERTS if a.example.series or a.name == "Watchdog"]
    return {
        "rule_files": [rules_file],
        "evaluation_interval": f"{EVAL_INTERVAL_S}s",
        "tests": [*cases, _quiet_case()],
    }


HEADER = (
    "# GENERATED by `ioc alerts build` from ioc/dashboards/alerts.py: do not edit.\n"
    "# Every metric name comes from ioc/contract/metrics.py.\n"
)


def dump(doc: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)


def build(out_dir: Path) -> list[Path]:
    """Write the rules and their promtool tests; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tests").mkdir(exist_ok=True)
    rules = out_dir / "ioc-alerts.yml"
    tests = out_dir / "tests" / "ioc-alerts.test.yml"
    rules.write_text(dump(rules_document()))
    tests.write_text(dump(tests_document("../ioc-alerts.yml")))
    return [rules, tests]


# --- Alertmanager ---

ROUTE_DOMAINS = ("network", "camera", "telehealth", "pipeline")


def alertmanager_document(pager_url: str, token_file: str) -> dict[str, Any]:
    """Routing by severity and domain, grouping by unit and site, storm control."""
    webhook = {
        "url": pager_url,
        "send_resolved": True,
        "max_alerts": 0,
        "http_config": {"authorization": {"type": "Bearer", "credentials_file": token_file}},
    }

    def domain_routes(group_wait: str, repeat: str) -> list[dict[str, Any]]:
        routes = []
        for domain in ROUTE_DOMAINS:
            group_by = (
                ["alertname", "feed"] if domain == "pipeline" else ["alertname", "unit", "site"]
            )
            routes.append(
                {
                    "receiver": "pager",
                    "matchers": [f'domain="{domain}"'],
                    "group_by": group_by,
                    "group_wait": group_wait,
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
                {
                    "receiver": "pager",
                    "matchers": ['severity="critical"'],
                    "group_wait": "10s",
                    "repeat_interval": "1h",
                    "routes": domain_routes("10s", "1h"),
                },
                {
                    "receiver": "pager",
                    "matchers": ['severity="warning"'],
                    "group_wait": "15s",
                    "repeat_interval": "4h",
                    "routes": domain_routes("15s", "4h"),
                },
                {"receiver": "null", "matchers": ['severity=~"info|none"']},
            ],
        },
        "inhibit_rules": [
            # A cut node explains every device alert behind it: page for the node only.
            {
                "source_matchers": ['alertname="SiteIsolated"'],
                "target_matchers": [f'alertname=~"{"|".join(INHIBITED_BY_ISOLATION)}"'],
                "equal": ["upstream_node"],
            },
            # Low online ratio in a unit is explained by an isolated site in that unit.
            {
                "source_matchers": ['alertname="SiteIsolated"'],
                "target_matchers": ['alertname="CameraOnlineRatioLow"'],
                "equal": ["unit"],
            },
            # When data is stale, device and pipeline symptoms follow from it.
            {
                "source_matchers": ['alertname="DataStale"'],
                "target_matchers": ['alertname=~"ConsumerLagGrowing|DeadLetterRateHigh"'],
                "equal": ["feed"],
            },
        ],
        "receivers": [
            {"name": "pager", "webhook_configs": [webhook]},
            {
                "name": "watchdog",
                "webhook_configs": [copy.deepcopy(webhook) | {"send_resolved": False}],
            },
            {"name": "null"},
        ],
    }


AM_TEMPLATE_HEADER = (
    "# GENERATED by `ioc alerts build` from ioc/dashboards/alerts.py: do not "
    "edit.\n# $pager_url and $token_file are filled in by `ioc stack up` "
    "(deploy/local) or are fixed in deploy/compose.\n"
)


def build_all(deploy: Path) -> list[Path]:
    written = build(deploy / "prometheus")
    template = deploy / "alertmanager" / "alertmanager.yml"
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_text(
        AM_TEMPLATE_HEADER
        + yaml.safe_dump(
            alertmanager_document("$pager_url", "$token_file"), sort_keys=False, width=100
        )
    )
    compose = deploy / "compose" / "alertmanager" / "alertmanager.yml"
    compose.write_text(
        HEADER
        + yaml.safe_dump(
            alertmanager_document(
                "http://host.docker.internal:9480/alertmanager/webhook",
                "/etc/alertmanager/pager.token",
            ),
            sort_keys=False,
            width=100,
        )
    )
    return [*written, template, compose]
