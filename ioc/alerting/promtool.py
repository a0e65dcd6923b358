"""``promtool test rules`` cases, generated from the rules' examples.

Every alert fires exactly at its ``for:`` boundary and not one evaluation before (and one with
``keep_firing_for`` resolves exactly that long after its condition stops holding); every
recording rule records the expected samples from its example input; a healthy province fires
nothing but the Watchdog.
"""

from __future__ import annotations

import math
from typing import Any

from ioc.alerting import scrape
from ioc.alerting.rules import (
    ALERT_GROUP,
    RECORDING_GROUP,
    Alert,
    Recording,
    alerts,
    num,
    recordings,
)
from ioc.contract import metrics as m
from ioc.contract.thresholds import THRESHOLDS, Thresholds


def render(template: str, labels: dict[str, str], values: dict[str, str]) -> str:
    """The subset of Prometheus templating the annotations use, for expected test output."""
    for snippet, text in values.items():
        template = template.replace(snippet, text)
    for key, value in labels.items():
        template = template.replace(f"{{{{ $labels.{key} }}}}", value)
    if "{{" in template:
        raise ValueError(f"unrendered template left in {template!r}: add it to Example.values")
    return template


def _alert_case(alert: Alert, th: Thresholds) -> dict[str, Any]:
    """Fires at the ``for:`` boundary, not one evaluation before."""
    labels = {
        "severity": alert.severity,
        "domain": alert.domain,
        **alert.extra_labels,
        **alert.example.labels,
    }
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
    if fires_at >= th.evaluation_interval_s:  # one evaluation earlier it must not fire yet
        cases.append(
            {
                "eval_time": f"{fires_at - th.evaluation_interval_s}s",
                "alertname": alert.name,
                "exp_alerts": [],
            }
        )
    if alert.keep_firing_s and alert.example.ends_s is not None:
        # keep_firing_for: still firing one evaluation before it has passed since the
        # condition stopped holding, resolved when it has
        resolves_at = alert.example.ends_s + alert.keep_firing_s
        cases += [
            {
                "eval_time": f"{resolves_at - th.evaluation_interval_s}s",
                "alertname": alert.name,
                "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}],
            },
            {"eval_time": f"{resolves_at}s", "alertname": alert.name, "exp_alerts": []},
        ]
    return {
        "name": f"{alert.name} fires at its for: boundary",
        "interval": alert.example.interval,
        "input_series": [{"series": k, "values": v} for k, v in alert.example.series.items()],
        "alert_rule_test": cases,
    }


def _round(value: float, to: float) -> float:
    """PromQL's ``round(v, to)``."""
    inverse = 1.0 / to
    return math.floor(value * inverse + 0.5) / inverse


def _recording_case(rec: Recording) -> dict[str, Any]:
    expr = rec.selector if rec.round_to is None else f"round({rec.selector}, {num(rec.round_to)})"
    name = rec.record if rec.round_to is None else ""
    samples = []
    for sample in rec.expected:
        labels = {**sample.labels, **rec.labels}
        matchers = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        value = sample.value if rec.round_to is None else _round(sample.value, rec.round_to)
        samples.append({"labels": f"{name}{{{matchers}}}", "value": value})
    return {
        "name": f"{rec.selector} records its example",
        "interval": rec.interval,
        "input_series": [{"series": k, "values": v} for k, v in rec.series.items()],
        "promql_expr_test": [
            {"expr": expr, "eval_time": f"{rec.eval_time_s}s", "exp_samples": samples}
        ],
    }


def _quiet_case(th: Thresholds) -> dict[str, Any]:
    """A healthy province: nothing but the Watchdog fires."""
    worker = f'up{{job="{scrape.IOC_JOB}",service="{scrape.WORKER}",instance="127.0.0.1:9464"}}'
    series = {
        f'{m.CAMERA_ONLINE_RATIO.series}{{unit="132",unit_name="City",level="district",'
        f'instance="w1"}}': "1+0x40",
        f'{m.EVENT_FRESHNESS.series}{{feed="camera",instance="w1"}}': "2+0x40",
        f'{m.CONSUMER_LAG.series}{{feed="camera",partition="0",instance="w1"}}': "10+0x40",
        worker: "1+0x40",
        # a killed worker's stale target, replaced: down, but not missing (desired 1, 1 up)
        worker.replace("9464", "9465"): "0+0x40",
        f'{m.STREAM_WORKERS_DESIRED.series}{{instance="127.0.0.1:9464"}}': "1+0x40",
        f'{m.DB_WRITE_ERRORS.series}{{feed="camera",instance="w1"}}': "0+0x40",
        f'{m.PARTITION_STALLED.series}{{feed="camera",partition="0",instance="w1"}}': "0+0x40",
        f'{m.DLQ_SEND_ERRORS.series}{{feed="camera",instance="w1"}}': "0+0x40",
        **{
            f'{m.DEPENDENCY_UP.series}{{worker="w1",dependency="{dep}",instance="w1"}}': "1+0x40"
            for dep in (m.DEPENDENCY_KAFKA, m.DEPENDENCY_DATABASE)
        },
        f'{m.KAFKA_RTT.series}{{worker="w1",instance="w1"}}': "0.004+0x40",
    }
    return {
        "name": "healthy province: only the Watchdog",
        "interval": "1m",
        "input_series": [{"series": k, "values": v} for k, v in series.items()],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": a.name, "exp_alerts": []}
            for a in alerts(th)
            if a.name != "Watchdog"
        ],
    }


def tests_document(rules_file: str, th: Thresholds = THRESHOLDS) -> dict[str, Any]:
    cases = [_alert_case(a, th) for a in alerts(th) if a.example.series or a.name == "Watchdog"]
    cases += [_recording_case(r) for r in recordings(th)]
    return {
        "rule_files": [rules_file],
        "evaluation_interval": f"{th.evaluation_interval_s}s",
        # recorded series first, as the alerts read them in the same evaluation
        "group_eval_order": [RECORDING_GROUP, ALERT_GROUP],
        "tests": [*cases, _quiet_case(th)],
    }
