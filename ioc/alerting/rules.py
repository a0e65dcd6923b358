"""Alert and recording rules, generated from the contract (monitoring-mixin style).

Every expression is built from the metric names of :mod:`ioc.contract.metrics`, every number
(threshold, window, ``for:``, severity) from :class:`ioc.contract.thresholds.Thresholds`, and
every target selector from :mod:`ioc.alerting.scrape`; changing any of them changes the rules
(and the committed YAML goes stale, which a test catches). Each alert carries ``severity``,
``domain``, ``summary``, ``description`` and ``runbook_url``, and an example that fires it,
from which :mod:`ioc.alerting.promtool` generates ``promtool test rules`` cases at the ``for:``
boundary. Expensive queries are recording rules (``level:metric:operations``) in their own
group, used by the alerts and the dashboards, each with an example too.

Device-down alerts are hand-written for the built-in device classes (:data:`DOWN_ALERTS`); any
other registered feed (:mod:`ioc.contract.feeds`) gets the generic :data:`FEED_DEVICE_DOWN`
from its declaration (:func:`feed_down_alerts`), so a new feed pages without a change here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ioc.alerting import scrape
from ioc.contract import feeds
from ioc.contract import metrics as m
from ioc.contract import tables as t
from ioc.contract.thresholds import THRESHOLDS, WARNING, AlertPolicy, Thresholds

RUNBOOK_BASE = "docs/runbooks"
# Labels that identify which process exported a series, not what it is about.
PROC = "instance, job, pid, service"
ALERT_GROUP = "ioc.alerts"
RECORDING_GROUP = "ioc.recording"


# --- number formatting: one value, written the same way everywhere ---


def num(value: float) -> str:
    """A threshold as PromQL and YAML write it: ``1``, ``0.8``, ``10000``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def window(seconds: int) -> str:
    """A PromQL range: ``600`` -> ``10m``."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def percent(ratio: float) -> str:
    """``0.8`` -> ``80%``."""
    return f"{num(round(ratio * 100, 6))}%"


def duration_text(seconds: float) -> str:
    """``1`` -> ``a second``, ``30`` -> ``30 seconds``, ``600`` -> ``10 minutes``."""
    if seconds == 1:
        return "a second"
    if seconds == 60:
        return "a minute"
    if seconds % 60 == 0:
        return f"{num(seconds // 60)} minutes"
    return f"{num(seconds)} seconds"


_WORDS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten")


def count_text(n: int) -> str:
    """A count at the start of a sentence: ``3`` -> ``Three``."""
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def quantile_name(q: float) -> str:
    """``0.99`` -> ``p99``."""
    return f"p{num(round(q * 100, 6))}"


# --- recorded series: the names the alerts and the dashboards query ---

ONLINE_STATES = f"{t.STATE_UP}|{t.STATE_DEGRADED}"
ONLINE_RATIO = f"device_class:{m.DEVICES_BY_STATE.name}_online:ratio"
"""Share of a device class that is up or degraded (province-wide)."""
DB_WRITE_QUANTILE = f"feed_quantile:{m.DB_WRITE_SECONDS.name}:histogram_quantile"


def db_write_buckets(th: Thresholds = THRESHOLDS) -> str:
    """Per-feed rate of the batch write time buckets."""
    return f"feed_le:{m.DB_WRITE_SECONDS.bucket_series}:rate{window(th.db_write_window_s)}"


def db_write_quantile(q: float) -> str:
    """The recorded ``q`` quantile of batch write time per feed (a selector)."""
    return f'{DB_WRITE_QUANTILE}{{quantile="{num(q)}"}}'


def dlq_rate(th: Thresholds = THRESHOLDS) -> str:
    return f"feed:{m.DLQ_MESSAGES.name}:rate{window(th.dlq_rate_window_s)}"


def consumed_rate(th: Thresholds = THRESHOLDS) -> str:
    return f"feed:{m.EVENTS_CONSUMED.name}:rate{window(th.dlq_rate_window_s)}"


def dlq_ratio(th: Thresholds = THRESHOLDS) -> str:
    """Dead letters per consumed message, per feed."""
    return (
        f"feed:{m.DLQ_MESSAGES.name}_per_{m.EVENTS_CONSUMED.name.removeprefix('ioc_')}:"
        f"ratio_rate{window(th.dlq_rate_window_s)}"
    )


@dataclass(frozen=True)
class Example:
    """Input series (promtool notation) that make the alert fire, and the labels it fires with."""

    series: dict[str, str]
    labels: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)  # "{{ $value ... }}" -> rendered
    starts_s: int = 0  # when the condition starts to hold (counter examples: after a flat 10m)
    interval: str = "5s"  # sample spacing of the input series
    ends_s: int | None = None  # when it stops holding (the keep_firing_for boundary is tested)


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
    keep_firing_s: int = 0

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
        if self.keep_firing_s:
            rule["keep_firing_for"] = f"{self.keep_firing_s}s"
        rule["labels"] = {"severity": self.severity, "domain": self.domain, **self.extra_labels}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": self.runbook,
        }
        return rule


@dataclass(frozen=True)
class Sample:
    """One expected output sample of a recording rule (promtool ``exp_samples``)."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Recording:
    """A recording rule and an input that proves what it records."""

    record: str
    expr: str
    series: dict[str, str]  # promtool input series
    expected: tuple[Sample, ...]
    eval_time_s: int
    interval: str = "1m"
    labels: dict[str, str] = field(default_factory=dict)
    round_to: float | None = None  # compare round(value, round_to): float rates

    @property
    def selector(self) -> str:
        matchers = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.record}{{{matchers}}}" if matchers else self.record

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"record": self.record, "expr": self.expr}
        if self.labels:
            rule["labels"] = dict(self.labels)
        return rule


def _max(spec: m.MetricSpec, selector: str = "") -> str:
    return f"max without ({PROC}) ({spec.series}{selector})"


def _sel(op: str = "=", **labels: str) -> str:
    """A label selector, e.g. ``_sel(device_class="camera")`` -> ``{device_class="camera"}``."""
    return "{" + ",".join(f'{k}{op}"{v}"' for k, v in labels.items()) + "}"


def _sum_by(by: str, inner: str) -> str:
    return f"sum by ({by}) ({inner})"


def _humanize_duration(seconds: float) -> str:
    """Prometheus's ``humanizeDuration`` for values of a second or more."""
    if seconds < 1:
        raise ValueError(f"example value {seconds} s: add sub-second humanizeDuration")
    whole = int(seconds)
    minutes, hours, days = (whole // 60) % 60, (whole // 3600) % 24, whole // 86400
    secs = whole % 60
    if days:
        return f"{days}d {hours}h {minutes}m {secs}s"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{seconds:.4g}s"


def _humanize_percentage(ratio: float) -> str:
    return f"{ratio * 100:.4g}%"


def recordings(th: Thresholds = THRESHOLDS) -> tuple[Recording, ...]:
    buckets = db_write_buckets(th)
    raw_bucket = m.DB_WRITE_SECONDS.bucket_series
    # write times: all in the (1, 2.5] bucket, 10 batches a minute, from minute 10 on
    write_series = {
        f'{raw_bucket}{{feed="camera",le="0.5",instance="w1"}}': "0x40",
        f'{raw_bucket}{{feed="camera",le="1",instance="w1"}}': "0x40",
        f'{raw_bucket}{{feed="camera",le="2.5",instance="w1"}}': "0x10 0+10x30",
        f'{raw_bucket}{{feed="camera",le="+Inf",instance="w1"}}': "0x10 0+10x30",
    }
    # steady counters: the rates do not depend on the window
    dlq_series = {
        f'{m.DLQ_MESSAGES.series}{{feed="camera",reason="schema",instance="w1"}}': "0+60x40",
        f'{m.DLQ_MESSAGES.series}{{feed="camera",reason="size",instance="w2"}}': "0+60x40",
        f'{m.EVENTS_CONSUMED.series}{{feed="camera",instance="w1"}}': "0+600x40",
        f'{m.EVENTS_CONSUMED.series}{{feed="camera",instance="w2"}}': "0+600x40",
    }
    devices = m.DEVICES_BY_STATE.series
    device_series = {
        f'{devices}{{device_class="camera",state="up",unit="99",instance="w1"}}': "7+0x10",
        f'{devices}{{device_class="camera",state="degraded",unit="99",instance="w1"}}': "2+0x10",
        f'{devices}{{device_class="camera",state="down",unit="99",instance="w1"}}': "1+0x10",
        f'{devices}{{device_class="netnode",state="up",unit="99",instance="w1"}}': "3+0x10",
        f'{devices}{{device_class="netnode",state="unknown",unit="99",instance="w1"}}': "1+0x10",
    }
    quantiles = (th.db_write_quantile, th.db_write_median_quantile)
    return (
        Recording(
            record=buckets,
            expr=_sum_by("feed, le", f"rate({raw_bucket}[{window(th.db_write_window_s)}])"),
            series=write_series,
            expected=(
                Sample({"feed": "camera", "le": "0.5"}, 0),
                Sample({"feed": "camera", "le": "1"}, 0),
                Sample({"feed": "camera", "le": "2.5"}, 10 / 60),
                Sample({"feed": "camera", "le": "+Inf"}, 10 / 60),
            ),
            eval_time_s=1200,
            round_to=0.0001,
        ),
        *(
            Recording(
                record=DB_WRITE_QUANTILE,
                expr=f"histogram_quantile({num(q)}, {buckets})",
                labels={"quantile": num(q)},
                series=write_series,
                # linear within the (1, 2.5] bucket that holds every write
                expected=(Sample({"feed": "camera", "quantile": num(q)}, 1 + 1.5 * q),),
                eval_time_s=1200,
                round_to=0.0001,
            )
            for q in quantiles
        ),
        Recording(
            record=dlq_rate(th),
            expr=_sum_by("feed", f"rate({m.DLQ_MESSAGES.series}[{window(th.dlq_rate_window_s)}])"),
            series=dlq_series,
            expected=(Sample({"feed": "camera"}, 2),),
            eval_time_s=1200,
            round_to=0.0001,
        ),
        Recording(
            record=consumed_rate(th),
            expr=_sum_by(
                "feed", f"rate({m.EVENTS_CONSUMED.series}[{window(th.dlq_rate_window_s)}])"
            ),
            series=dlq_series,
            expected=(Sample({"feed": "camera"}, 20),),
            eval_time_s=1200,
            round_to=0.0001,
        ),
        Recording(
            record=dlq_ratio(th),
            expr=f"{dlq_rate(th)} / {consumed_rate(th)}",
            series=dlq_series,
            expected=(Sample({"feed": "camera"}, 0.1),),
            eval_time_s=1200,
            round_to=0.0001,
        ),
        Recording(
            record=ONLINE_RATIO,
            expr=(
                f"{_sum_by('device_class', devices + _sel('=~', state=ONLINE_STATES))} / "
                f"{_sum_by('device_class', devices)}"
            ),
            series=device_series,
            expected=(
                Sample({"device_class": "camera"}, 0.9),
                Sample({"device_class": "netnode"}, 0.75),
            ),
            eval_time_s=300,
        ),
    )


DOWN_ALERTS = {
    "camera": "CameraDown",
    "telehealth": "TelehealthStationDown",
    "netnode": "NetworkNodeDown",
    "portal": "PortalSyncSilent",
    "vconf": "VconfDeviceDown",
    "soc": "SocSensorDown",
}
"""Device class -> its hand-written down alert (in :func:`alerts`)."""
FEED_DEVICE_DOWN = "FeedDeviceDown"
"""The down alert generated for every other registered feed, one rule per feed."""


def _down(
    th: Thresholds,
    cls: str,
    name: str,
    domain: str,
    what: str,
    policy: AlertPolicy | None = None,
    extra_labels: dict[str, str] | None = None,
) -> Alert:
    labels = {
        "device_id": f"x-{cls}",
        "device_class": cls,
        "unit": "u1",
        "site": "s1",
        "upstream_node": "nn-1",
    }
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    policy = policy or th.alerts[name]
    return Alert(
        name=name,
        expr=f"{_max(m.DEVICE_DOWN, _sel(device_class=cls))} > 0",
        for_s=policy.for_s,
        severity=policy.severity,
        domain=domain,
        summary=f"{what} {{{{ $labels.device_id }}}} is down",
        description=(
            f"{what} {{{{ $labels.device_id }}}} at site {{{{ $labels.site }}}} "
            f"(unit {{{{ $labels.unit }}}}) has not reported within its heartbeat "
            f"timeout. Its network path (via {{{{ $labels.upstream_node }}}}) is up, "
            f"so the device itself is the root cause."
        ),
        example=Example({f'{m.DEVICE_DOWN.series}{{{selector},instance="w1"}}': "1+0x20"}, labels),
        extra_labels=extra_labels or {},
    )


def workers_missing(th: Thresholds = THRESHOLDS) -> str:
    """Stream workers missing: the desired count the live workers export minus those up,
    when positive; or, with no worker up at all, the worker targets that are down. A stale
    scrape target (a worker killed and replaced, or scaled in) is down but not missing, so
    the alert resolves by itself; a graceful stop of every worker removes their targets and
    pages nothing (a shutdown), every worker killed pages until one is back."""
    desired = m.STREAM_WORKERS_DESIRED.series
    up = f'up{{job="{scrape.IOC_JOB}", service="{scrape.WORKER}"}}'
    return (
        f"(max({desired}) - (count({up} > 0) or vector(0)) > 0)"
        f" or (count({up} == 0) unless count({up} > 0))"
    )


def feed_down_alerts(th: Thresholds = THRESHOLDS) -> tuple[Alert, ...]:
    """:data:`FEED_DEVICE_DOWN` for each registered feed whose device class has no
    hand-written down alert: ``for:`` from ``FeedSpec.down_alert_for_s``, severity the
    device-down incident's (``incident_severity``), labels ``feed`` and ``domain`` its name."""
    out: list[Alert] = []
    done = set(DOWN_ALERTS)
    for spec in feeds.specs():
        if spec.cls in done:
            continue
        done.add(spec.cls)
        severity = th.incident_severity.get((t.INCIDENT_DEVICE_DOWN, spec.cls), WARNING)
        out.append(
            _down(
                th,
                spec.cls,
                FEED_DEVICE_DOWN,
                str(spec.name),
                f"{spec.title} device",
                AlertPolicy(spec.down_alert_for_s, severity),
                {"feed": str(spec.name)},
            )
        )
    return tuple(out)


FLAPPING = "DeviceFlapping"
"""One rule per device class: a device or node that keeps going down pages once, as flapping
(its outages are not paged one by one: ioc.streams.state confirms an outage first)."""


def flapping_alerts(th: Thresholds = THRESHOLDS) -> tuple[Alert, ...]:
    """:data:`FLAPPING` per registered device class: severity the flapping incident's,
    ``domain`` the class's routing domain."""
    out: list[Alert] = []
    policy = th.alerts[FLAPPING]
    seen: set[str] = set()
    for spec in feeds.specs():
        cls = str(spec.cls)
        if cls in seen:
            continue
        seen.add(cls)
        labels = {
            "device_id": f"x-{cls}",
            "device_class": cls,
            "unit": "u1",
            "site": "s1",
            "upstream_node": "nn-1",
            "region": "r1",
            "province": "p1",
        }
        selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
        out.append(
            Alert(
                name=FLAPPING,
                expr=f"{_max(m.DEVICE_FLAPPING, _sel(device_class=cls))} > 0",
                for_s=policy.for_s,
                severity=th.incident_severity.get((t.INCIDENT_FLAPPING, cls), policy.severity),
                domain=feeds.domain_of(cls),
                summary=f"{spec.title} {{{{ $labels.device_id }}}} is flapping",
                description=(
                    f"{spec.title} {{{{ $labels.device_id }}}} at site {{{{ $labels.site }}}} "
                    f"(unit {{{{ $labels.unit }}}}) went down {th.flap_count} times or more "
                    f"within {duration_text(th.flap_window_ms // 1000)}. One incident and this "
                    "one page cover the whole episode; it is up again after "
                    f"{duration_text(th.flap_quiet_ms // 1000)} without a cut. Check its power, "
                    "link and uplink port."
                ),
                example=Example(
                    {f'{m.DEVICE_FLAPPING.series}{{{selector},instance="w1"}}': "1+0x20"},
                    labels,
                ),
            )
        )
    return tuple(out)


def _degraded(th: Thresholds, cls: str, name: str, domain: str, **text: str) -> Alert:
    device_id, site, reason = {
        "telehealth": ("th-1", "s1", "session"),
        "netnode": ("nn-2", "s2", "link"),
        "camera": ("cam-1", "s1", "frozen"),
    }[cls]
    labels = {
        "device_id": device_id,
        "device_class": cls,
        "unit": "u1",
        "site": site,
        "reason": reason,
        "upstream_node": "nn-1",
    }
    series = (
        f'{m.DEVICE_DEGRADED.series}{{device_id="{device_id}",device_class='
        f'"{cls}",unit="u1",site="{site}",reason="{reason}",upstream_node="nn-1",'
        f'instance="w1"}}'
    )
    policy = th.alerts[name]
    return Alert(
        name=name,
        expr=f"{_max(m.DEVICE_DEGRADED, _sel(device_class=cls))} > 0",
        for_s=policy.for_s,
        severity=policy.severity,
        domain=domain,
        summary=text["summary"],
        description=text["description"],
        example=Example({series: "1+0x40"}, labels),
    )


def alerts(th: Thresholds = THRESHOLDS) -> tuple[Alert, ...]:
    """Every alert, with its numbers from ``th``."""

    def policy(name: str) -> dict[str, Any]:
        p = th.alerts[name]
        return {
            "name": name,
            "for_s": p.for_s,
            "severity": p.severity,
            "keep_firing_s": p.keep_firing_s,
        }

    ratio_low = 0.5 if th.camera_online_ratio_min > 0.5 else th.camera_online_ratio_min / 2
    stale = th.data_stale_s * 4
    stalled_from = (th.partition_stalled_s // 5 + 1) * 5  # the first 5 s sample above it
    stalled_at = stalled_from + th.alerts["PartitionStalled"].for_s
    dropped_window = th.sessions_dropped_window_s
    dropped = m.TELEHEALTH_SESSIONS_DROPPED.series
    lag_trend = window(th.consumer_lag_trend_window_s)
    worker_series = (
        f'up{{job="{scrape.IOC_JOB}",service="{scrape.WORKER}",instance="127.0.0.1:9464"}}'
    )
    write_q = th.db_write_quantile
    # Each feed's own alerts live in its module, which imports this one's helpers.
    from ioc.alerting.portal import portal_alerts
    from ioc.alerting.soc import soc_alerts
    from ioc.alerting.vconf import vconf_alerts

    return (
        _down(th, "camera", "CameraDown", "camera", "Camera"),
        _down(th, "telehealth", "TelehealthStationDown", "telehealth", "Telehealth station"),
        _down(th, "netnode", "NetworkNodeDown", "network", "Network node"),
        *feed_down_alerts(th),
        *flapping_alerts(th),
        *portal_alerts(th),
        *soc_alerts(th),
        Alert(
            **policy("SiteIsolated"),
            expr=f"{_max(m.SITE_ISOLATED)} > 0",
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
                    f'upstream_node="nn-9",region="r1",province="p1",instance="w1"}}': "12+0x20"
                },
                {
                    "node_id": "nn-9",
                    "unit": "u1",
                    "site": "s9",
                    "upstream_node": "nn-9",
                    "region": "r1",
                    "province": "p1",
                },
                {"{{ $value }}": "12"},
            ),
        ),
        Alert(
            **policy("CameraOnlineRatioLow"),
            # the unit's code again as "region" (a district) or "province": the label a
            # site-isolated or flapping node carries, so it inhibits this consequence
            expr=" or ".join(
                f"label_replace({_max(m.CAMERA_ONLINE_RATIO, _sel(level=level))} "
                f'< {num(th.camera_online_ratio_min)}, "{label}", "$1", "unit", "(.*)")'
                for level, label in (("district", "region"), ("province", "province"))
            ),
            domain="camera",
            summary="Only {{ $value | humanizePercentage }} of cameras online in "
            "{{ $labels.unit_name }}",
            description=(
                f"Fewer than {percent(th.camera_online_ratio_min)} of the cameras of "
                "{{ $labels.level }} {{ $labels.unit_name }} ({{ $labels.unit }}) are online."
            ),
            example=Example(
                {
                    f'{m.CAMERA_ONLINE_RATIO.series}{{unit="132",unit_name="City",'
                    f'level="district",instance="w1"}}': f"{num(ratio_low)}+0x40"
                },
                {"unit": "132", "unit_name": "City", "level": "district", "region": "132"},
                {"{{ $value | humanizePercentage }}": _humanize_percentage(ratio_low)},
            ),
        ),
        _degraded(
            th,
            "telehealth",
            "TelehealthQualityDegraded",
            "telehealth",
            summary="Telehealth session quality degraded at {{ $labels.device_id }}",
            description=(
                "Remote consultation from {{ $labels.device_id }} (site "
                "{{ $labels.site }}) has poor media quality ({{ $labels.reason }})."
            ),
        ),
        Alert(
            **policy("TelehealthSessionsDropping"),
            # unit is a region (district) here: also as "region", which an isolated or
            # flapping node behind which the sessions were lost carries (inhibition)
            expr=(
                f"label_replace({_sum_by('unit', f'increase({dropped}[{window(dropped_window)}])')}"
                f' >= {num(th.sessions_dropped_max)}, "region", "$1", "unit", "(.*)")'
            ),
            domain="telehealth",
            summary="Telehealth sessions dropping in unit {{ $labels.unit }}",
            description=f"{count_text(th.sessions_dropped_max)} or more remote consultations "
            f"dropped in the last {duration_text(dropped_window)} in "
            "unit {{ $labels.unit }}: check the stations' links and the video bridge.",
            example=Example(
                # flat for a window, then one drop a minute: the count is reached exactly at
                # the end of the window that starts with the first drop
                {
                    f'{m.TELEHEALTH_SESSIONS_DROPPED.series}{{unit="u1",instance="w1"}}': (
                        f"0x{dropped_window // 60} 0+1x30"
                    )
                },
                {"unit": "u1", "region": "u1"},
                starts_s=dropped_window + 60 * (th.sessions_dropped_max + 1),
                interval="1m",
            ),
        ),
        _degraded(
            th,
            "netnode",
            "NetworkLinkDegraded",
            "network",
            summary="Link to node {{ $labels.device_id }} degraded ({{ $labels.reason }})",
            description=(
                "Probes from the provincial core to {{ $labels.device_id }} (site "
                "{{ $labels.site }}) show high {{ $labels.reason }} loss or latency."
            ),
        ),
        _degraded(
            th,
            "camera",
            "CameraStreamFrozen",
            "camera",
            summary="Camera {{ $labels.device_id }} stream {{ $labels.reason }}",
            description=(
                "Camera {{ $labels.device_id }} at site {{ $labels.site }} reports a "
                "frozen picture or collapsed frame rate ({{ $labels.reason }})."
            ),
        ),
        Alert(
            **policy("ConsumerLagGrowing"),
            expr=(
                f"{_sum_by('feed', m.CONSUMER_LAG.series)} > {num(th.consumer_lag_max_messages)}"
                " and "
                f"{_sum_by('feed', f'deriv({m.CONSUMER_LAG.series}[{lag_trend}])')} > 0"
            ),
            domain="pipeline",
            summary="Stream workers are falling behind on the {{ $labels.feed }} feed",
            description=f"More than {th.consumer_lag_max_messages:,} {{{{ $labels.feed }}}} "
            "messages are waiting and the backlog keeps growing: add workers or find what slows "
            "them (DB latency?).",
            example=Example(
                {
                    f'{m.CONSUMER_LAG.series}{{feed="camera",partition="0",instance="w1"}}': (
                        f"{2 * th.consumer_lag_max_messages}x10 "
                        f"{2 * th.consumer_lag_max_messages}+1000x30"
                    )
                },
                {"feed": "camera"},
                starts_s=720,
                interval="1m",
            ),
        ),
        Alert(
            **policy("DataStale"),
            expr=f"max by (feed) ({m.EVENT_FRESHNESS.series}) > {num(th.data_stale_s)}",
            domain="pipeline",
            summary="No fresh {{ $labels.feed }} data for {{ $value | humanizeDuration }}",
            description="The newest {{ $labels.feed }} event in the database is older than "
            f"{duration_text(th.data_stale_s)}: feeds, Kafka, workers or the database are "
            "stuck. Operators are looking at stale dashboards.",
            example=Example(
                {f'{m.EVENT_FRESHNESS.series}{{feed="netnode",instance="w1"}}': f"{stale}+0x40"},
                {"feed": "netnode"},
                {"{{ $value | humanizeDuration }}": _humanize_duration(stale)},
            ),
        ),
        Alert(
            **policy("PartitionStalled"),
            expr=f"{_max(m.PARTITION_STALLED)} > {num(th.partition_stalled_s)}",
            domain="pipeline",
            summary="{{ $labels.feed }} partition {{ $labels.partition }} stalled for "
            "{{ $value | humanizeDuration }}",
            description="Partition {{ $labels.partition }} of the {{ $labels.feed }} feed has "
            "consumer lag but has made no progress for {{ $value | humanizeDuration }}, "
            "whatever the cause: a poison record, the database or the broker away, a stuck "
            "write. The {{ $labels.feed }} data behind it is not landing.",
            example=Example(
                {
                    f'{m.PARTITION_STALLED.series}{{feed="camera",partition="3",'
                    f'instance="w1"}}': f"0+5x{max(40, stalled_at // 5 + 2)}"
                },
                {"feed": "camera", "partition": "3"},
                {"{{ $value | humanizeDuration }}": _humanize_duration(stalled_at)},
                starts_s=stalled_from,
            ),
        ),
        Alert(
            **policy("DeadLetterRateHigh"),
            expr=f"{dlq_ratio(th)} > {num(th.dlq_ratio_max)}",
            domain="pipeline",
            summary="{{ $value | humanizePercentage }} of {{ $labels.feed }} messages are invalid",
            description=f"More than {percent(th.dlq_ratio_max)} of the {{{{ $labels.feed }}}} "
            "feed goes to the dead-letter topic (see ioc_dlq_messages_total by reason): a "
            "device firmware or a producer is sending bad data.",
            # 10% from the start: the ratio exists once the window holds two samples
            example=Example(
                {
                    f'{m.DLQ_MESSAGES.series}{{feed="camera",reason="schema",'
                    f'instance="w1"}}': "0+60x40",
                    f'{m.EVENTS_CONSUMED.series}{{feed="camera",instance="w1"}}': "0+600x40",
                },
                {"feed": "camera"},
                {"{{ $value | humanizePercentage }}": "10%"},
                starts_s=60,
                interval="1m",
            ),
        ),
        Alert(
            **policy("StreamWorkerDown"),
            expr=workers_missing(th),
            domain="pipeline",
            summary="{{ $value }} stream worker(s) missing",
            description="Fewer stream workers answer Prometheus than the deployment runs "
            f"({m.STREAM_WORKERS_DESIRED.name}), or none answers while worker targets are "
            "down; their partitions moved to the others, if any are left. A worker that was "
            "scaled in, or killed and replaced, does not count: this resolves by itself once "
            "the desired number is up.",
            example=Example(
                {
                    f'{m.STREAM_WORKERS_DESIRED.series}{{instance="127.0.0.1:9464"}}': "2+0x40",
                    worker_series: "1+0x40",
                    worker_series.replace("9464", "9465"): "0+0x40",
                },
                {},
                {"{{ $value }}": "1"},
            ),
        ),
        Alert(
            **policy("DatabaseWritesFailing"),
            expr=(
                f"sum by (feed) (increase({m.DB_WRITE_ERRORS.series}"
                f"[{window(th.write_errors_window_s)}])) > 0"
            ),
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
            **policy("DeadLetterSendFailing"),
            expr=(
                f"sum by (feed) (increase({m.DLQ_SEND_ERRORS.series}"
                f"[{window(th.write_errors_window_s)}])) > 0"
            ),
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
            **policy("CollectorSpoolDropping"),
            expr=(
                f"sum by (instance) (increase({m.COLLECT_SPOOL_DROPPED.series}"
                f"[{window(th.write_errors_window_s)}])) > 0"
            ),
            domain="pipeline",
            summary="Collector {{ $labels.instance }} drops records: its disk spool is full",
            description="The collector at {{ $labels.instance }} cannot hand its records to "
            "Kafka and its disk spool reached its bound (--spool-max-mb): it drops its oldest "
            "records, which are lost (counted in ioc_collector_spool_dropped_total). Restore "
            "the broker or the collector's access to it; give the spool more room to ride out "
            "a longer outage.",
            example=Example(
                {f'{m.COLLECT_SPOOL_DROPPED.series}{{instance="c1"}}': "0x10 0+40x30"},
                {"instance": "c1"},
                starts_s=720,
                interval="1m",
            ),
        ),
        Alert(
            **policy("DatabaseWritesSlow"),
            expr=f"{db_write_quantile(write_q)} > {num(th.db_write_max_s)}",
            domain="pipeline",
            summary=f"{{{{ $labels.feed }}}} batch writes take {{{{ $value | humanizeDuration }}}}"
            f" ({quantile_name(write_q)})",
            description="Writing one {{ $labels.feed }} batch to TimescaleDB takes over "
            f"{duration_text(th.db_write_max_s)} ({quantile_name(write_q)} over "
            f"{duration_text(th.db_write_window_s)}): the database is slow (load, I/O, locks, "
            "network). Data still lands, but lag and freshness will follow if it continues.",
            example=Example(
                {
                    f'{m.DB_WRITE_SECONDS.bucket_series}{{feed="camera",le="0.5",'
                    f'instance="w1"}}': "0x40",
                    f'{m.DB_WRITE_SECONDS.bucket_series}{{feed="camera",le="1",'
                    f'instance="w1"}}': "0x40",
                    f'{m.DB_WRITE_SECONDS.bucket_series}{{feed="camera",le="2.5",'
                    f'instance="w1"}}': "0x10 0+10x30",
                    f'{m.DB_WRITE_SECONDS.bucket_series}{{feed="camera",le="+Inf",'
                    f'instance="w1"}}': "0x10 0+10x30",
                },
                # every write in the (1, 2.5] bucket: linear interpolation inside it
                {"feed": "camera", "quantile": num(write_q)},
                {"{{ $value | humanizeDuration }}": _humanize_duration(1 + 1.5 * write_q)},
                starts_s=720,
                interval="1m",
            ),
        ),
        *dependency_alerts(th),
        *vconf_alerts(th),
        Alert(
            **policy("Watchdog"),
            expr="vector(1)",
            domain="meta",
            summary="Alerting pipeline heartbeat (always firing)",
            description="Always firing, so that its absence at the pager proves that "
            "Prometheus, Alertmanager or the pager is broken (a dead-man's switch).",
            example=Example({}, {}),
        ),
    )


def _humanize(value: float) -> str:
    """Prometheus's ``humanize`` for values from a thousandth up to a thousand."""
    if not 0.001 <= value < 1000:
        raise ValueError(f"example value {value}: add this range to _humanize")
    return f"{value * 1000:.4g}m" if value < 1 else f"{value:.4g}"


def dependency_alerts(th: Thresholds = THRESHOLDS) -> tuple[Alert, ...]:
    """A stream worker that cannot reach Kafka or the database (its own probes, every 5 s:
    ``ioc.streams.dependencies``), and slow round trips to the brokers."""
    timeout = duration_text(th.dependency_probe_timeout_s)
    worker = "worker-1"
    out: list[Alert] = []
    for name, dependency, text in (
        (
            "StreamWorkerCannotReachKafka",
            m.DEPENDENCY_KAFKA,
            "Stream worker {{ $labels.worker }} gets no answer from the Kafka brokers (a "
            f"metadata request on its feed consumer every 5 s, given up after {timeout}): the "
            "network "
            "between them is cut or dropping everything, the brokers are down, or they refuse "
            "its connection (listener, credentials). It reads and commits nothing meanwhile; "
            "the data waits in Kafka and nothing is lost. DataStale, PartitionStalled and "
            "ConsumerLagGrowing that follow are inhibited while this fires.",
        ),
        (
            "StreamWorkerCannotReachDatabase",
            m.DEPENDENCY_DATABASE,
            "Stream worker {{ $labels.worker }} gets no answer to SELECT 1 from TimescaleDB (on "
            f"a connection of its own every 5 s, given up after {timeout}): the database is "
            "down or "
            "restarting, the network between them is cut, or it refuses connections "
            "(max_connections, credentials). Its batch writes wait or are retried and its "
            "offsets stay uncommitted: nothing is lost, nothing lands. A write to a partitioned "
            "database hangs rather than fails, so DatabaseWritesFailing comes late or never; "
            "DataStale, PartitionStalled and ConsumerLagGrowing that follow are inhibited while "
            "this fires.",
        ),
    ):
        policy = th.alerts[name]
        starts = th.evaluation_interval_s * 2
        # the condition holds past the for: boundary, then the probe answers again
        ends = starts + policy.for_s + th.evaluation_interval_s * 4
        samples = ends // th.evaluation_interval_s
        out.append(
            Alert(
                name=name,
                expr=f"{_max(m.DEPENDENCY_UP, _sel(dependency=dependency))} == 0",
                for_s=policy.for_s,
                severity=policy.severity,
                domain="pipeline",
                summary=f"Stream worker {{{{ $labels.worker }}}} cannot reach "
                f"{'Kafka' if dependency == m.DEPENDENCY_KAFKA else 'the database'}",
                description=text,
                example=Example(
                    {
                        f'{m.DEPENDENCY_UP.series}{{worker="{worker}",dependency="{dependency}",'
                        f'instance="w1"}}': f"1x{starts // th.evaluation_interval_s - 1} "
                        f"0x{samples - starts // th.evaluation_interval_s - 1} 1x40"
                    },
                    {"worker": worker, "dependency": dependency},
                    starts_s=starts,
                    ends_s=ends,
                    interval=f"{th.evaluation_interval_s}s",
                ),
                keep_firing_s=policy.keep_firing_s,
            )
        )
    policy = th.alerts["KafkaLatencyHigh"]
    slow = th.kafka_rtt_max_s * 2
    out.append(
        Alert(
            name="KafkaLatencyHigh",
            expr=f"{_max(m.KAFKA_RTT)} > {num(th.kafka_rtt_max_s)}",
            for_s=policy.for_s,
            severity=policy.severity,
            domain="pipeline",
            summary="Kafka round trips from stream worker {{ $labels.worker }} take "
            "{{ $value | humanize }}s (99th percentile)",
            description="The 99th percentile round trip of the worker's requests to its "
            "consumer group's coordinator (heartbeats and offset commits, over librdkafka's 5 s "
            "statistics "
            f"window) is above {num(round(th.kafka_rtt_max_s * 1000, 6))} ms: the network to "
            "the brokers is slow (latency, retransmissions) or a broker is overloaded (request "
            "queue, GC pauses, disk). Data still flows but slower: lag and freshness follow, "
            "and a slower coordinator risks session timeouts and rebalances.",
            example=Example(
                {f'{m.KAFKA_RTT.series}{{worker="{worker}",instance="w1"}}': f"{num(slow)}+0x40"},
                {"worker": worker},
                {"{{ $value | humanize }}": _humanize(slow)},
            ),
        )
    )
    return tuple(out)


CONSEQUENCES = ("CameraOnlineRatioLow", "TelehealthSessionsDropping")
"""Unit-level alerts that an isolated or flapping node in the same region (district) or
province explains: inhibited while it is open (ioc.alerting.alertmanager)."""

UNREACHABLE = ("StreamWorkerCannotReachKafka", "StreamWorkerCannotReachDatabase")
"""A worker that cannot reach its broker or database: the root cause of the data alerts in
:data:`STALLED_DATA`, which Alertmanager inhibits while one of these fires."""
STALLED_DATA = ("DataStale", "PartitionStalled", "ConsumerLagGrowing")
"""Data that stopped moving, whatever the cause; they clear once the backlog is in, which the
root cause's ``keep_firing_for`` covers. (Not the write- and send-error alerts: their 2 min
windows outlast the cause, so they would page when its inhibition ends.)"""

ALERTS: tuple[Alert, ...] = alerts()
RECORDINGS: tuple[Recording, ...] = recordings()

INHIBITED_BY_ISOLATION = (
    "CameraDown",
    "TelehealthStationDown",
    "NetworkNodeDown",
    FEED_DEVICE_DOWN,
    "PortalSyncSilent",
    "TelehealthQualityDegraded",
    "NetworkLinkDegraded",
    "CameraStreamFrozen",
    "VconfPointNotJoined",
    "VconfDeviceDown",
    "SocSensorDown",
)


def rules_document(th: Thresholds = THRESHOLDS) -> dict[str, Any]:
    interval = f"{th.evaluation_interval_s}s"
    return {
        "groups": [
            {
                "name": RECORDING_GROUP,
                "interval": interval,
                "rules": [r.rule() for r in recordings(th)],
            },
            {
                "name": ALERT_GROUP,
                "interval": interval,
                "rules": [a.rule() for a in alerts(th)],
            },
        ]
    }
