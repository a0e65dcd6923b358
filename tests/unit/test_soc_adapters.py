"""The SOC adapters on real-looking native payloads: Wazuh alerts.json lines, Suricata EVE."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ioc.adapters.native import AdapterError, Sequencer
from ioc.adapters.socmap import SiteMap, format_timestamp, timestamp
from ioc.adapters.suricata import SuricataAdapter
from ioc.adapters.wazuh import WazuhAdapter, category_of
from ioc.contract import schemas as s
from ioc.contract import soc
from ioc.contract.topology import Device, load_scenario

SENSOR = Device(
    "soc-991-001",
    "soc",
    "site-991-001-office",
    21.0,
    105.0,
    "nn-991-001",
    {"subnet": "10.99.4.0/24", "agents": ["wz-991-001-01"], "sensor": "ids-991-001"},
)
CORE = Device(
    "soc-99-core",
    "soc",
    "site-99-core",
    21.0,
    105.0,
    "nn-99-core",
    {"subnet": "10.99.0.0/16", "agents": ["wz-99-core-01"], "sensor": "ids-99-core"},
)

# A line of /var/ossec/logs/alerts/alerts.json, as Wazuh 4.x writes it.
WAZUH_LINE = json.dumps(
    {
        "timestamp": "2026-03-16T02:15:04.412+0000",
        "rule": {
            "level": 10,
            "description": "sshd: brute force trying to get access to the system. "
            "Non existent user.",
            "id": "5712",
            "mitre": {
                "id": ["T1110"],
                "tactic": ["Credential Access"],
                "technique": ["Brute Force"],
            },
            "frequency": 8,
            "firedtimes": 3,
            "mail": False,
            "groups": ["syslog", "sshd", "authentication_failures"],
            "pci_dss": ["11.4", "10.2.4", "10.2.5"],
            "gdpr": ["IV_35.7.d", "IV_32.2"],
        },
        "agent": {"id": "004", "name": "wz-991-001-01", "ip": "10.99.4.21"},
        "manager": {"name": "soc-wazuh-manager"},
        "id": "1773627304.2174311",
        "full_log": "Mar 16 02:15:03 srv sshd[20931]: Invalid user admin from 203.0.113.77 "
        "port 51122",
        "decoder": {"parent": "sshd", "name": "sshd"},
        "data": {"srcip": "203.0.113.77", "srcport": "51122", "srcuser": "admin"},
        "location": "/var/log/auth.log",
    }
)

# An EVE alert (eve.json), as Suricata 7 writes it with sensor-name set.
EVE_ALERT = json.dumps(
    {
        "timestamp": "2026-03-16T02:15:05.120437+0000",
        "flow_id": 1205961273546931,
        "in_iface": "eth1",
        "event_type": "alert",
        "src_ip": "198.51.100.23",
        "src_port": 44321,
        "dest_ip": "10.99.4.20",
        "dest_port": 123,
        "proto": "UDP",
        "pkt_src": "wire/pcap",
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": 2017919,
            "rev": 3,
            "signature": "ET DOS Possible NTP DDoS Inbound Frequent Un-Authed MON_LIST "
            "Requests IMPL 0x03",
            "category": "Attempted Denial of Service",
            "severity": 2,
            "metadata": {"mitre_technique_id": ["T1498"], "signature_severity": ["Major"]},
        },
        "app_proto": "ntp",
        "host": "ids-991-001",
    }
)
EVE_STATS: dict[str, Any] = {
    "timestamp": "2026-03-16T02:15:08.000312+0000",
    "event_type": "stats",
    "stats": {
        "uptime": 86_412,
        "capture": {"kernel_packets": 912_341_223, "kernel_drops": 1_203},
        "detect": {"alert": 77},
    },
    "host": "ids-991-001",
}


def adapters() -> tuple[WazuhAdapter, SuricataAdapter]:
    sites = SiteMap([SENSOR, CORE])
    seq = Sequencer()
    return WazuhAdapter(sites, seq), SuricataAdapter(sites, seq)


def test_wazuh_alert_maps_onto_the_site_of_its_agent() -> None:
    wazuh, _ = adapters()
    msg = wazuh.alert(WAZUH_LINE)
    assert isinstance(msg, soc.SocAlert)
    assert (msg.device_id, msg.seq, msg.source) == ("soc-991-001", 1, "wazuh")
    assert (msg.rule_id, msg.level, msg.severity, msg.category) == (
        5712,
        10,
        "high",
        "brute_force",
    )
    assert msg.mitre == "T1110" and msg.agent == "wz-991-001-01"
    assert msg.rule_groups == "syslog,sshd,authentication_failures"
    assert (msg.src_ip, msg.src_port, msg.dst_ip) == ("203.0.113.77", 51122, None)
    assert msg.ts_ms == timestamp("2026-03-16T02:15:04.412+0000", "t")
    # a valid contract message: it round-trips through the workers' decoder
    decoded: s.Message = s.decode(s.encode(msg), feed="soc")
    assert decoded == msg


def test_suricata_alert_maps_by_destination_most_specific_subnet_first() -> None:
    _, suricata = adapters()
    msg = suricata.event(EVE_ALERT)
    assert isinstance(msg, soc.SocAlert)
    # 10.99.4.20 is in both 10.99.0.0/16 (core) and 10.99.4.0/24: the /24 wins
    assert msg.device_id == "soc-991-001"
    assert (msg.source, msg.rule_id, msg.severity, msg.category) == (
        "suricata",
        2017919,
        "high",
        "ddos",
    )
    assert (msg.src_ip, msg.dst_ip, msg.dst_port, msg.proto) == (
        "198.51.100.23",
        "10.99.4.20",
        123,
        "UDP",
    )
    assert msg.mitre == "T1498" and msg.rule_groups == "Attempted Denial of Service"


def test_suricata_severity_one_is_critical_and_outbound_maps_by_source() -> None:
    _, suricata = adapters()
    doc = json.loads(EVE_ALERT)
    doc["alert"]["severity"] = 1
    doc["src_ip"], doc["dest_ip"] = "10.99.4.33", "192.0.2.9"
    msg = suricata.alert(doc)
    assert (msg.device_id, msg.level, msg.severity) == ("soc-991-001", 12, "critical")


def test_suricata_stats_is_the_sensor_heartbeat() -> None:
    _, suricata = adapters()
    msg = suricata.event(EVE_STATS)
    assert isinstance(msg, soc.SocSensor)
    assert (msg.device_id, msg.uptime_s, msg.packets, msg.drops, msg.alerts_total) == (
        "soc-991-001",
        86_412,
        912_341_223,
        1_203,
        77,
    )


def test_one_sequence_per_device_across_both_sources() -> None:
    wazuh, suricata = adapters()
    seqs = [
        wazuh.alert(WAZUH_LINE).seq,
        suricata.event(EVE_ALERT).seq,
        suricata.event(EVE_STATS).seq,
    ]
    assert seqs == [1, 2, 3]


def test_ipv6_addresses_are_exploded() -> None:
    sites = SiteMap([Device("soc-x", "soc", "s", 0.0, 0.0, None, {"subnet": "2001:db8:15::/48"})])
    doc = json.loads(EVE_ALERT)
    doc["src_ip"], doc["dest_ip"] = "2001:db8:ff::7", "2001:db8:15::20"
    msg = SuricataAdapter(sites).alert(doc)
    assert msg.dst_ip == "2001:0db8:0015:0000:0000:0000:0000:0020"
    decoded: s.Message = s.decode(s.encode(msg), feed="soc")
    assert decoded == msg


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({"rule": {}, "agent": {"name": "wz-991-001-01"}}), "rule.level"),
        (
            WAZUH_LINE.replace('"wz-991-001-01"', '"wz-elsewhere"').replace(
                '"10.99.4.21"', '"172.16.0.1"'
            ),
            "on no monitored site",
        ),
        (WAZUH_LINE.replace('"level": 10', '"level": 17'), "rule.level"),
        (WAZUH_LINE.replace('"203.0.113.77"', '"203.0.113.777"'), "not an IP address"),
        (WAZUH_LINE.replace("+0000", ""), "UTC offset"),
    ],
)
def test_bad_wazuh_input_raises_a_clear_adapter_error(payload: str | bytes, why: str) -> None:
    wazuh, _ = adapters()
    with pytest.raises(AdapterError, match=why):
        wazuh.alert(payload)
    assert wazuh.seq.last == {}  # a refused payload consumes no sequence number


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"event_type": "flow"}, "neither alert nor stats"),
        ({"dest_ip": "192.0.2.1", "src_ip": "192.0.2.2", "host": "nobody"}, "monitored subnet"),
        ({"alert": "x"}, "'alert' must be an object"),
        ({"dest_port": 70000}, "dest_port"),
    ],
)
def test_bad_eve_input_raises_a_clear_adapter_error(change: dict[str, Any], why: str) -> None:
    _, suricata = adapters()
    doc = {**json.loads(EVE_ALERT), **change}
    with pytest.raises(AdapterError, match=why):
        suricata.event(doc)


def test_categories_from_mitre_then_groups() -> None:
    assert category_of(["T1046"], []) == "scan"
    assert category_of(["T1110.001"], ["web"]) == "brute_force"
    assert category_of([], ["ossec", "syscheck"]) == "other"
    assert category_of([], ["web", "attack", "sql_injection"]) == "web_attack"
    assert category_of([], ["rootcheck"]) == "malware"


def test_severity_bands_and_reasons() -> None:
    assert [soc.severity_of(x) for x in (0, 3, 4, 7, 8, 11, 12, 16)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "critical",
        "critical",
    ]
    reason = soc.alert_reason("critical", "ddos", "ET DOS x")
    assert reason.split(" ")[0] == "critical-ddos"
    assert soc.parse_reason(reason) == (True, "ddos")
    assert soc.parse_reason("link loss 10.0%") is None
    assert soc.escalated(soc.alert_reason("high", "scan", "s"), reason)
    assert not soc.escalated(reason, soc.alert_reason("critical", "scan", "y"))


def test_timestamps_round_trip_in_both_formats() -> None:
    for micros in (False, True):
        text = format_timestamp(1_773_627_304_412, micros=micros)
        assert timestamp(text, "t") == 1_773_627_304_412


def test_the_scenarios_address_plan_maps_every_sensor() -> None:
    topology = load_scenario("yen-bai-2022")
    sites = SiteMap.from_topology(topology)
    sensors = topology.devices_of("soc")
    assert len(sensors) == 82
    for dev in sensors:
        first = str(dev.attributes["subnet"]).replace(".0/24", ".10")
        assert sites.by_address(first) == dev.id
        for agent in dev.attributes["agents"]:
            assert sites.agents[agent] == dev.id
        assert sites.sensors[dev.attributes["sensor"]] == dev.id
