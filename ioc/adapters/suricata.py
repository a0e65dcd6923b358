"""Suricata EVE JSON -> the ``soc`` contract.

Two EVE event types, one JSON object per line of ``eve.json`` as Suricata writes them:

- ``"event_type": "alert"``: ``timestamp`` (``2024-03-15T10:22:33.123456+0000``),
  ``src_ip``/``src_port``, ``dest_ip``/``dest_port``, ``proto``, ``host`` (the sensor's name,
  EVE's ``sensor-name``) and ``alert`` (``signature_id``, ``signature``, ``category`` as in
  ``classification.config``, ``severity`` 1 highest .. 4, ``metadata.mitre_technique_id``)
  -> :class:`~ioc.contract.soc.SocAlert`. It belongs to the site whose subnet holds the
  destination address, else the source address (outbound traffic), else the sensor's site.
- ``"event_type": "stats"``: the sensor's counters (``stats.uptime``,
  ``stats.capture.kernel_packets``/``kernel_drops``, ``stats.detect.alert``)
  -> :class:`~ioc.contract.soc.SocSensor`, the sensor's heartbeat.

Severity is put on Wazuh's level scale (:func:`ioc.contract.soc.level_of_suricata`); the
category comes from Suricata's classification text.
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
from ioc.contract import schemas as s
from ioc.contract import soc

__all__ = ["CATEGORY", "AdapterError", "SuricataAdapter"]

CATEGORY: Final[dict[str, soc.Category]] = {
    # classification.config descriptions (Suricata / Emerging Threats)
    "Attempted Denial of Service": "ddos",
    "Denial of Service": "ddos",
    "Detection of a Denial of Service Attack": "ddos",
    "Detection of a Network Scan": "scan",
    "Attempted Information Leak": "scan",
    "Attempted Administrator Privilege Gain": "exploit",
    "Successful Administrator Privilege Gain": "exploit",
    "Attempted User Privilege Gain": "exploit",
    "Executable code was detected": "exploit",
    "A Network Trojan was detected": "malware",
    "Malware Command and Control Activity Detected": "malware",
    "Web Application Attack": "web_attack",
    "Attempted Login with Suspicious Username": "brute_force",
    "Attempt to login by a default username and password": "brute_force",
    "Potential Corporate Privacy Violation": "policy",
    "Potentially Bad Traffic": "other",
    "Misc activity": "other",
    "Misc Attack": "other",
}


class SuricataAdapter:
    """Maps EVE ``alert`` and ``stats`` events onto the ``soc`` messages of their site."""

    def __init__(self, sites: SiteMap, sequencer: Sequencer | None = None) -> None:
        self.sites = sites
        self.seq = sequencer or Sequencer()

    def event(self, payload: dict[str, Any] | bytes | str) -> soc.SocAlert | soc.SocSensor:
        doc = document(payload, "suricata eve")
        kind = doc.get("event_type")
        if kind == "alert":
            return self.alert(doc)
        if kind == "stats":
            return self.stats(doc)
        raise AdapterError(f"suricata eve: event_type {kind!r:.40} is neither alert nor stats")

    def _sensor(self, doc: dict[str, Any], what: str) -> str | None:
        host = doc.get("host")
        return self.sites.sensors.get(host) if isinstance(host, str) else None

    def alert(self, payload: dict[str, Any] | bytes | str) -> soc.SocAlert:
        what = "suricata alert"
        doc = document(payload, what)
        alert = section(doc, "alert", what)
        src = address(doc.get("src_ip"), f"{what}: src_ip")
        dst = address(doc.get("dest_ip"), f"{what}: dest_ip")
        device_id = (
            self.sites.by_address(dst) or self.sites.by_address(src) or self._sensor(doc, what)
        )
        if device_id is None:
            raise AdapterError(
                f"{what}: neither {dst} nor {src} is in a monitored subnet, "
                f"and sensor {doc.get('host')!r:.40} is unknown"
            )
        classification = text(alert.get("category"), f"{what}: alert.category")
        level = soc.level_of_suricata(integer(alert.get("severity"), f"{what}: alert.severity"))
        metadata = alert.get("metadata") or {}
        techniques = metadata.get("mitre_technique_id") if isinstance(metadata, dict) else None
        if not isinstance(techniques, list):
            techniques = []
        fields: dict[str, Any] = {
            "device_id": device_id,
            "ts_ms": timestamp(doc.get("timestamp"), what),
            "source": "suricata",
            "rule_id": integer(alert.get("signature_id"), f"{what}: alert.signature_id"),
            "level": level,
            "severity": soc.severity_of(level),
            "category": CATEGORY.get(classification, "other"),
            "signature": text(alert.get("signature"), f"{what}: alert.signature"),
            "mitre": ",".join(str(t) for t in techniques)[:128] or None,
            "rule_groups": classification,
            "agent": host[:128] if isinstance(host := doc.get("host"), str) and host else None,
            "src_ip": src,
            "dst_ip": dst,
            "src_port": _port(doc.get("src_port"), f"{what}: src_port"),
            "dst_port": _port(doc.get("dest_port"), f"{what}: dest_port"),
            "proto": text(doc["proto"], f"{what}: proto", 16) if doc.get("proto") else None,
        }
        return build(soc.SocAlert, fields, what, self.seq)

    def stats(self, payload: dict[str, Any] | bytes | str) -> soc.SocSensor:
        what = "suricata stats"
        doc = document(payload, what)
        device_id = self._sensor(doc, what)
        if device_id is None:
            raise AdapterError(f"{what}: sensor {doc.get('host')!r:.40} is on no monitored site")
        stats = section(doc, "stats", what)
        capture = stats.get("capture") or {}
        detect = stats.get("detect") or {}
        if not isinstance(capture, dict) or not isinstance(detect, dict):
            raise AdapterError(f"{what}: 'stats.capture' and 'stats.detect' must be objects")
        big = s.MAX_COUNTER
        fields: dict[str, Any] = {
            "device_id": device_id,
            "ts_ms": timestamp(doc.get("timestamp"), what),
            "uptime_s": integer(stats.get("uptime"), f"{what}: stats.uptime", 0, big),
            "packets": integer(capture.get("kernel_packets", 0), f"{what}: packets", 0, big),
            "drops": integer(capture.get("kernel_drops", 0), f"{what}: kernel_drops", 0, big),
            "alerts_total": integer(detect.get("alert", 0), f"{what}: detect.alert", 0, big),
        }
        return build(soc.SocSensor, fields, what, self.seq)


def _port(value: Any, what: str) -> int | None:
    return None if value is None or value == "" else integer(value, what, 0, 65_535)
