"""Wazuh ``alerts.json`` -> the ``soc`` contract (:class:`~ioc.contract.soc.SocAlert`).

One line of the manager's ``/var/ossec/logs/alerts/alerts.json`` is one alert, as Wazuh
writes it: ``timestamp`` (``2024-03-15T10:22:33.123+0000``), ``rule`` (``id`` as text,
``level`` 0-16, ``description``, ``groups``, ``mitre.id``), ``agent`` (``id``, ``name``,
``ip``), and the decoded fields in ``data`` (``srcip``, ``srcport``, ``dstip``, ``dstport``,
``protocol``; as text). The alert belongs to the site of its agent (:class:`SiteMap` by agent
name), else to the site whose subnet holds the agent's address or ``data.dstip``.

The category comes from the MITRE technique where it says one (T1110 brute force,
T1046/T1595 scan, T1498/T1499 denial of service), else from the rule groups.
"""

from __future__ import annotations

from typing import Any, Final

from ioc.adapters.native import AdapterError, Sequencer, document
from ioc.adapters.socmap import (
    SiteMap,
    address,
    build,
    integer,
    section,
    text,
    timestamp,
)
from ioc.contract import soc

__all__ = ["AdapterError", "WazuhAdapter", "category_of"]

MITRE_CATEGORY: Final[dict[str, soc.Category]] = {
    "T1110": "brute_force",
    "T1046": "scan",
    "T1595": "scan",
    "T1498": "ddos",
    "T1499": "ddos",
    "T1190": "exploit",
    "T1203": "exploit",
    "T1204": "malware",
    "T1105": "malware",
}
GROUP_CATEGORY: Final[tuple[tuple[frozenset[str], soc.Category], ...]] = (
    (frozenset({"authentication_failures", "authentication_failed", "brute_force"}), "brute_force"),
    (frozenset({"recon", "scan", "portscan", "nmap"}), "scan"),
    (frozenset({"dos", "ddos"}), "ddos"),
    (frozenset({"rootcheck", "malware", "virustotal", "trojan", "yara"}), "malware"),
    (frozenset({"web", "web_scan", "sql_injection", "xss"}), "web_attack"),
    (frozenset({"exploit", "exploit_attempt", "vulnerability-detector"}), "exploit"),
    (frozenset({"policy_violation", "sca", "policy_monitoring"}), "policy"),
)


def category_of(techniques: list[str], groups: list[str]) -> soc.Category:
    for technique in techniques:
        found = MITRE_CATEGORY.get(technique.split(".", 1)[0])
        if found is not None:
            return found
    present = set(groups)
    for wanted, category in GROUP_CATEGORY:
        if present & wanted:
            return category
    return "other"


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AdapterError(f"{what}: expected a list of strings")
    return value


class WazuhAdapter:
    """Maps alerts.json lines onto ``soc.alert`` messages of the site they concern."""

    def __init__(self, sites: SiteMap, sequencer: Sequencer | None = None) -> None:
        self.sites = sites
        self.seq = sequencer or Sequencer()

    def alert(self, payload: dict[str, Any] | bytes | str) -> soc.SocAlert:
        what = "wazuh alert"
        doc = document(payload, what)
        rule = section(doc, "rule", what)
        agent = section(doc, "agent", what)
        data = doc.get("data") or {}
        if not isinstance(data, dict):
            raise AdapterError(f"{what}: 'data' must be an object")
        mitre = rule.get("mitre") or {}
        if not isinstance(mitre, dict):
            raise AdapterError(f"{what}: 'rule.mitre' must be an object")
        techniques = _strings(mitre.get("id"), f"{what}: rule.mitre.id")
        groups = _strings(rule.get("groups"), f"{what}: rule.groups")
        level = integer(rule.get("level"), f"{what}: rule.level", 0, 16)
        agent_name = text(agent.get("name"), f"{what}: agent.name")
        src = address(data.get("srcip"), f"{what}: data.srcip")
        dst = address(data.get("dstip"), f"{what}: data.dstip")
        device_id = (
            self.sites.agents.get(agent_name)
            or self.sites.by_address(address(agent.get("ip"), f"{what}: agent.ip"))
            or self.sites.by_address(dst)
        )
        if device_id is None:
            raise AdapterError(f"{what}: agent {agent_name!r:.64} is on no monitored site")
        fields: dict[str, Any] = {
            "device_id": device_id,
            "ts_ms": timestamp(doc.get("timestamp"), what),
            "source": "wazuh",
            "rule_id": integer(rule.get("id"), f"{what}: rule.id"),
            "level": level,
            "severity": soc.severity_of(level),
            "category": category_of(techniques, groups),
            "signature": text(rule.get("description"), f"{what}: rule.description"),
            "mitre": ",".join(techniques)[:128] or None,
            "rule_groups": ",".join(groups)[:128] or None,
            "agent": agent_name,
            "src_ip": src,
            "dst_ip": dst,
            "src_port": _port(data.get("srcport"), f"{what}: data.srcport"),
            "dst_port": _port(data.get("dstport"), f"{what}: data.dstport"),
            "proto": text(data["protocol"], f"{what}: data.protocol", 16)
            if data.get("protocol")
            else None,
        }
        return build(soc.SocAlert, fields, what, self.seq)


def _port(value: Any, what: str) -> int | None:
    return None if value is None or value == "" else integer(value, what, 0, 65_535)
