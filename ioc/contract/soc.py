"""The security-operations feed (``soc``): the provincial SOC's high-level alerts.

The provincial SOC stays the system of record; the IOC receives what an operator on the wall
needs: Wazuh alerts (``alerts.json``: rule id, level 0-16, groups, MITRE technique, agent) and
Suricata EVE alerts (signature id, category, severity, addresses and ports), each mapped onto
the topology by :mod:`ioc.adapters.wazuh` and :mod:`ioc.adapters.suricata`.

Device model: one ``soc`` device per monitored site, the SOC's *sensor* there (the site's
Wazuh agents and the IDS tap on its network node), at the node's site and behind that node
(``upstream``), so a node outage explains a silent sensor and a sensor's events share the
node's correlation key. A sensor's attributes hold the site's address plan (``subnet``) and
its Wazuh agent names (``agents``); the adapters map an alert's agent name, or the address it
concerns, onto the sensor (:class:`ioc.adapters.socmap.SiteMap`). The sensor reports every
5 s (Suricata's ``stats`` event, :class:`SocSensor`): that is its heartbeat.

Counts by severity, category and unit are the rollups. A *critical* alert (level >= 12)
makes the sensor degraded for ``Thresholds.soc_alert_hold_ms`` and opens a ``security-alert``
incident; a DDoS or scan alert (any severity) on a node whose link is degraded joins the link's
incident instead (``ioc.streams.soc``). Raw addresses are sensitive: the Grafana role cannot
select the address columns of ``raw_soc`` (``private_columns``) and sees them aggregated in
the view ``soc_sources_1h`` (/24 networks, /48 for IPv6, and counts of distinct addresses).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Annotated, Final, Literal

from msgspec import Meta

from ioc.contract import schemas as s
from ioc.contract import tables as t
from ioc.contract.feeds import Aggregate, Feed, FeedSpec
from ioc.contract.thresholds import CRITICAL, WARNING
from ioc.contract.topics import DAY_MS, TopicSpec

_INT4: Final = {"column": "integer"}
_TEXT: Final = {"column": "text"}

Severity = Literal["low", "medium", "high", "critical"]
Category = Literal[
    "brute_force", "scan", "ddos", "malware", "exploit", "web_attack", "policy", "other"
]
SEVERITIES: Final[tuple[Severity, ...]] = ("critical", "high", "medium", "low")
CATEGORIES: Final[tuple[Category, ...]] = (
    "brute_force",
    "scan",
    "ddos",
    "malware",
    "exploit",
    "web_attack",
    "policy",
    "other",
)
CORRELATED_CATEGORIES: Final = frozenset({"ddos", "scan"})
"""Alerts of these categories on a node whose link is degraded join the link's incident."""

Level = Annotated[int, Meta(ge=0, le=16, extra=_INT4)]
"""Wazuh's rule level (0-16); Suricata severities are mapped onto it (:func:`level_of_suricata`)."""
RuleId = Annotated[int, Meta(ge=0, le=s.INT4_MAX, extra=_INT4)]
Port = Annotated[int, Meta(ge=0, le=65_535, extra=_INT4)]
IpAddress = Annotated[str, Meta(min_length=2, max_length=45, pattern=s.STORABLE_TEXT, extra=_TEXT)]
"""An IP address as the adapters write it (:func:`ioc.adapters.socmap.address`: dotted IPv4,
exploded lower-case IPv6), so the aggregate view can take the network prefix by text. The
adapters check the form; the contract only bounds what the column stores."""

CRITICAL_LEVEL: Final = 12
HIGH_LEVEL: Final = 8
MEDIUM_LEVEL: Final = 4


def severity_of(level: int) -> Severity:
    """Wazuh's level bands: 12-16 critical, 8-11 high, 4-7 medium, 0-3 low."""
    if level >= CRITICAL_LEVEL:
        return "critical"
    if level >= HIGH_LEVEL:
        return "high"
    if level >= MEDIUM_LEVEL:
        return "medium"
    return "low"


def level_of_suricata(severity: int) -> int:
    """Suricata's ``alert.severity`` (1 highest .. 4) on Wazuh's scale: 1 -> 12 (critical),
    2 -> 8 (high), 3 -> 5 (medium), anything lower -> 3 (low)."""
    return {1: CRITICAL_LEVEL, 2: HIGH_LEVEL, 3: 5}.get(severity, 3)


class SocSensor(s.Message, tag="soc.sensor", frozen=True, kw_only=True):
    """A site sensor's periodic status (Suricata's ``stats`` event): the heartbeat."""

    uptime_s: s.Counter64
    packets: s.Counter64
    drops: s.Counter64
    alerts_total: s.Counter64


class SocAlert(s.Message, tag="soc.alert", frozen=True, kw_only=True):
    """One SOC alert, from Wazuh or Suricata, on the site (sensor) it concerns."""

    source: Literal["wazuh", "suricata"]
    rule_id: RuleId
    """Wazuh ``rule.id`` or Suricata ``alert.signature_id``."""
    level: Level
    severity: Severity
    category: Category
    signature: s.ShortText
    """Wazuh ``rule.description`` or Suricata ``alert.signature`` (cut to 128 characters)."""
    mitre: s.ShortText | None = None
    """MITRE ATT&CK technique ids, comma-separated (``T1110,T1021``)."""
    rule_groups: s.ShortText | None = None
    """Wazuh rule groups or the Suricata category, comma-separated."""
    agent: s.ShortText | None = None
    """Wazuh agent name or the Suricata sensor (EVE ``host``)."""
    src_ip: IpAddress | None = None
    dst_ip: IpAddress | None = None
    src_port: Port | None = None
    dst_port: Port | None = None
    proto: s.ShortText | None = None


PRIVATE_COLUMNS: Final = ("src_ip", "dst_ip", "src_port", "dst_port")
"""Columns of ``raw_soc`` the read-only (Grafana) role may not select."""

SOURCES_VIEW: Final = "soc_sources_1h"

_NETWORK: Final = (
    "CASE WHEN src_ip IS NULL THEN NULL "
    "WHEN position('.' IN src_ip) > 0 THEN regexp_replace(src_ip, '[.][0-9]+$', '.0/24') "
    "ELSE substr(src_ip, 1, 14) || '::/48' END"
)

TOPIC: Final = TopicSpec(
    "ioc.soc.v1",
    3,
    7 * DAY_MS,
    description="SOC sensors: Wazuh and Suricata alerts mapped onto sites, sensor status",
)


def _a(name: str, type_: str, expr: str, not_null: bool = False) -> Aggregate:
    return Aggregate(name, type_, expr, not_null)


def _count(where: str) -> str:
    return f"sat_int4(count(*) FILTER (WHERE {where}))"


def _sum(column: str) -> str:
    return f"sat_int4(coalesce(sum(r.{column}), 0))"


_BY_SEVERITY: Final = tuple(
    _a(sev, "integer", _count(f"kind = 'soc.alert' AND severity = '{sev}'")) for sev in SEVERITIES
)
_BY_CATEGORY: Final = tuple(
    _a(cat, "integer", _count(f"kind = 'soc.alert' AND category = '{cat}'"))
    for cat in CATEGORIES
    if cat not in ("policy", "other")
)

FEED: Final = FeedSpec(
    name=Feed.SOC,
    title="Security operations",
    messages=(SocSensor, SocAlert),
    topic=TOPIC,
    device_rollup=(
        _a("reports", "integer", "sat_int4(count(*))", True),
        _a("alerts", "integer", _count("kind = 'soc.alert'"), True),
        *_BY_SEVERITY,
        *_BY_CATEGORY,
        _a("other_alerts", "integer", _count("category IN ('policy', 'other')")),
        _a("wazuh_alerts", "integer", _count("source = 'wazuh'")),
        _a("suricata_alerts", "integer", _count("source = 'suricata'")),
        # distinct addresses do not add up over minutes: the busiest minute's count, a lower
        # bound of the hour's (soc_sources_1h counts them exactly, from raw)
        Aggregate("sources", "integer", "sat_int4(count(DISTINCT src_ip))", over_time="max"),
        _a("level_max", "integer", "max(level)"),
    ),
    unit_rollup=(
        _a("sensors", "integer", "sat_int4(count(*))", True),
        _a("sensors_reporting", "integer", "sat_int4(count(r.device_id))", True),
        _a("alerts", "integer", _sum("alerts"), True),
        *(_a(a.name, "integer", _sum(a.name)) for a in (*_BY_SEVERITY, *_BY_CATEGORY)),
        _a("other_alerts", "integer", _sum("other_alerts")),
        _a("sources", "integer", _sum("sources")),
        _a("level_max", "integer", "max(r.level_max)"),
    ),
    heartbeat_timeout_ms=15_000,
    incident_severity=MappingProxyType(
        {
            t.INCIDENT_DEVICE_DOWN: WARNING,
            t.INCIDENT_FLAPPING: WARNING,
            t.INCIDENT_SECURITY: CRITICAL,
        }
    ),
    behaviour="ioc.simulators.soc:SocSim",
    extra_ddl=(
        # Raw addresses aggregated: the only way the read-only role sees where alerts come from.
        f"CREATE OR REPLACE VIEW {SOURCES_VIEW} AS "
        f"SELECT time_bucket('1 hour', ts) AS bucket, device_id, category, severity, "
        f"{_NETWORK} AS src_network, count(*)::integer AS alerts, "
        f"count(DISTINCT src_ip)::integer AS addresses "
        f"FROM raw_soc WHERE kind = 'soc.alert' GROUP BY 1, 2, 3, 4, 5",
    ),
    private_columns=PRIVATE_COLUMNS,
)

# --- the sensor's state reason: what the incident agent and the alert rules read -------------


def alert_reason(severity: str, category: str, signature: str) -> str:
    """The degraded reason of a sensor: its first word (the ``reason`` label of
    ``ioc_device_degraded``) is ``critical-<category>`` or ``<category>``."""
    head = f"critical-{category}" if severity == "critical" else category
    return f"{head} alert ({severity}): {signature}"


def parse_reason(reason: str) -> tuple[bool, str] | None:
    """(critical, category) of a sensor's degraded reason, None for any other reason."""
    head = reason.split(" ", 1)[0]
    critical = head.startswith("critical-")
    category = head.removeprefix("critical-")
    if category not in CATEGORIES or " alert (" not in reason:
        return None
    return critical, category


def alert_class(reason: str) -> tuple[bool, bool] | None:
    """(critical, correlated category) of a sensor's degraded reason; None for another reason."""
    parsed = parse_reason(reason)
    return None if parsed is None else (parsed[0], parsed[1] in CORRELATED_CATEGORIES)


def escalated(old_reason: str, new_reason: str) -> bool:
    """A degraded sensor whose alert class changed (a DDoS alert turned critical, or the
    reverse): a transition of its own, so the incident agent sees it."""
    new = alert_class(new_reason)
    return new is not None and alert_class(old_reason) != new
