"""The SOC sensor of a site: Suricata ``stats`` every 5 s, alerts from Wazuh and Suricata.

Each report is built as the native system writes it (a Suricata EVE ``stats`` or ``alert``
object, a Wazuh ``alerts.json`` object) and mapped onto the contract by the same adapters a
real collector uses (:mod:`ioc.adapters.wazuh`, :mod:`ioc.adapters.suricata`).

Everyday background: now and then a low or medium alert (a failed SSH login, a policy
violation, a file-integrity change), never a critical one. The fault ``soc_campaign``
(simulators/ioc/simulators/faults.py) on a network node or a sensor runs a campaign against
the site while it lasts, several alerts every 5 s from a few external addresses:

- ``brute_force``: Wazuh sshd brute force (rule 5712, level 10, T1110), with a critical
  "multiple authentication failures followed by a success" (rule 40112, level 12) first;
- ``scan``: Suricata ``ET SCAN`` signatures (severity 2: high, not critical);
- ``ddos``: Suricata ``ET DOS`` signatures, the first one at severity 1 (critical).

Degrading the node's link at the same time is the netnode feed's own ``link_degraded``
fault on the same node (the plan lists both).
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from ioc.adapters.native import Sequencer
from ioc.adapters.socmap import SiteMap, format_timestamp
from ioc.adapters.suricata import SuricataAdapter
from ioc.adapters.wazuh import WazuhAdapter
from ioc.contract import schemas as s
from ioc.contract.feeds import Feed
from ioc.contract.topology import Device, Topology
from ioc.simulators.behaviour import Conditions, DeviceSim
from ioc.simulators.faults import FaultPlan

CAMPAIGNS: Final = ("brute_force", "scan", "ddos")
ATTACKERS: Final = ("203.0.113.", "198.51.100.", "192.0.2.")
"""Documentation address ranges (RFC 5737): the simulated attackers."""

_SCANS: Final = (
    (2001219, "ET SCAN Potential SSH Scan", "Attempted Information Leak", 22),
    (2009582, "ET SCAN NMAP -sS window 1024", "Attempted Information Leak", 443),
    (2010937, "ET SCAN Suspicious inbound to mySQL port 3306", "Detection of a Network Scan", 3306),
)
_DOS: Final = (
    (2017919, "ET DOS Possible NTP DDoS Inbound Frequent Un-Authed MON_LIST Requests IMPL 0x03"),
    (2019102, "ET DOS Possible SSDP Amplification Scan in Progress"),
    (2016016, "ET DOS DNS Amplification Attack Inbound"),
)


class SocSim(DeviceSim):
    device_class = Feed.SOC
    periods: ClassVar[Mapping[str, int]] = {"soc.sensor": 5_000, "soc.alert": 5_000}

    def __init__(self, device: Device, region: str, seed: int, start_ms: int) -> None:
        super().__init__(device, region, seed, start_ms)
        self.start_ms = start_ms
        sites = SiteMap([device])
        sequencer = Sequencer()
        self.wazuh = WazuhAdapter(sites, sequencer)
        self.suricata = SuricataAdapter(sites, sequencer)
        attrs = device.attributes
        self.subnet = ipaddress.ip_network(str(attrs.get("subnet", "10.0.0.0/24")), strict=False)
        # the first 250 addresses, listed once (the same draws as listing the subnet's 254
        # for every alert, which showed in the load generator's profile)
        self.hosts = [str(h) for h in itertools.islice(self.subnet.hosts(), 250)]
        self.agents: list[str] = [str(a) for a in attrs.get("agents") or [f"wz-{device.id}"]]
        self.sensor = str(attrs.get("sensor") or f"ids-{device.id}")
        self.packets = self.rng.randint(10**6, 10**9)
        self.alerts_total = 0
        self.campaigns: list[tuple[int, int, str]] = []  # (start, end) relative ms, campaign
        self.seen_campaigns: set[tuple[int, str]] = set()

    def attach(self, plan: FaultPlan, topology: Topology) -> None:
        for fault in plan.faults:
            if fault.type == "soc_campaign" and fault.target in (self.id, self.device.upstream):
                campaign = str(fault.params.get("campaign", "brute_force"))
                self.campaigns.append((fault.start_ms, fault.end_ms, campaign))

    def campaign(self, ts_ms: int) -> str | None:
        rel = ts_ms - self.start_ms
        return next((c for start, end, c in self.campaigns if start <= rel < end), None)

    # --- native payloads ---

    def host(self) -> str:
        return self.hosts[self.rng.randrange(10, len(self.hosts))]

    def attacker(self) -> str:
        return f"{self.rng.choice(ATTACKERS)}{self.rng.randint(2, 254)}"

    def wazuh_alert(
        self,
        ts_ms: int,
        rule_id: int,
        level: int,
        description: str,
        groups: list[str],
        mitre: list[str],
        src: str | None,
    ) -> dict[str, Any]:
        agent = self.rng.choice(self.agents)
        data: dict[str, Any] = {"dstip": self.host()}
        if src is not None:
            data |= {"srcip": src, "srcport": str(self.rng.randint(1024, 65535)), "dstport": "22"}
        return {
            "timestamp": format_timestamp(ts_ms),
            "rule": {
                "level": level,
                "description": description,
                "id": str(rule_id),
                "mitre": {"id": mitre, "tactic": [], "technique": []},
                "firedtimes": self.rng.randint(1, 40),
                "mail": level >= 12,
                "groups": groups,
            },
            "agent": {"id": f"{self.rng.randint(1, 999):03d}", "name": agent},
            "manager": {"name": "soc-wazuh-manager"},
            "id": f"{ts_ms // 1000}.{self.rng.randint(1, 10**6)}",
            "decoder": {"name": "sshd"},
            "data": data,
            "location": "/var/log/auth.log",
        }

    def eve_alert(
        self, ts_ms: int, sid: int, signature: str, category: str, severity: int, port: int
    ) -> dict[str, Any]:
        return {
            "timestamp": format_timestamp(ts_ms, micros=True),
            "flow_id": self.rng.randint(1, 2**50),
            "in_iface": "eth1",
            "event_type": "alert",
            "src_ip": self.attacker(),
            "src_port": self.rng.randint(1024, 65535),
            "dest_ip": self.host(),
            "dest_port": port,
            "proto": "UDP" if category == "Attempted Denial of Service" else "TCP",
            "alert": {
                "action": "allowed",
                "gid": 1,
                "signature_id": sid,
                "rev": 3,
                "signature": signature,
                "category": category,
                "severity": severity,
                "metadata": {},
            },
            "host": self.sensor,
        }

    def eve_stats(self, ts_ms: int, period_ms: int) -> dict[str, Any]:
        self.packets += int(period_ms * self.rng.uniform(20, 200))
        return {
            "timestamp": format_timestamp(ts_ms, micros=True),
            "event_type": "stats",
            "stats": {
                "uptime": max(0, (ts_ms - self.boot_ms) // 1000),
                "capture": {"kernel_packets": self.packets, "kernel_drops": 0},
                "detect": {"alert": self.alerts_total},
            },
            "host": self.sensor,
        }

    # --- the schedule ---

    def emit(self, kind: str, ts_ms: int, period_ms: int, cond: Conditions) -> list[s.Message]:
        if kind == "soc.sensor":
            return [self.suricata.stats(self.eve_stats(ts_ms, period_ms))]
        natives = self.campaign_alerts(ts_ms) or self.background(ts_ms)
        out: list[s.Message] = []
        for source, payload in natives:
            self.alerts_total += 1
            out.append(
                self.wazuh.alert(payload) if source == "wazuh" else self.suricata.alert(payload)
            )
        return out

    def background(self, ts_ms: int) -> list[tuple[str, dict[str, Any]]]:
        rng = self.rng
        draw = rng.random()
        if draw < 0.03:
            return [
                (
                    "wazuh",
                    self.wazuh_alert(
                        ts_ms,
                        5710,
                        5,
                        "sshd: Attempt to login using a non-existent user",
                        ["syslog", "sshd", "invalid_login", "authentication_failed"],
                        ["T1110.001"],
                        self.attacker(),
                    ),
                )
            ]
        if draw < 0.05:
            return [
                (
                    "wazuh",
                    self.wazuh_alert(
                        ts_ms,
                        550,
                        7,
                        "Integrity checksum changed.",
                        ["ossec", "syscheck", "syscheck_entry_modified"],
                        [],
                        None,
                    ),
                )
            ]
        if draw < 0.06:
            return [
                (
                    "suricata",
                    self.eve_alert(
                        ts_ms,
                        2013028,
                        "ET POLICY curl User-Agent Outbound",
                        "Potential Corporate Privacy Violation",
                        3,
                        80,
                    ),
                )
            ]
        return []

    def campaign_alerts(self, ts_ms: int) -> list[tuple[str, dict[str, Any]]]:
        campaign = self.campaign(ts_ms)
        if campaign is None:
            return []
        rng = self.rng
        rel = ts_ms - self.start_ms
        start = next(st for st, end, c in self.campaigns if st <= rel < end and c == campaign)
        first = (start, campaign) not in self.seen_campaigns
        self.seen_campaigns.add((start, campaign))
        out: list[tuple[str, dict[str, Any]]] = []
        if campaign == "brute_force":
            src = self.attacker()
            if first or rng.random() < 0.2:
                out.append(
                    (
                        "wazuh",
                        self.wazuh_alert(
                            ts_ms,
                            40112,
                            12,
                            "Multiple authentication failures followed by a success.",
                            ["syslog", "attack", "authentication_success"],
                            ["T1110"],
                            src,
                        ),
                    )
                )
            for _ in range(rng.randint(2, 4)):
                out.append(
                    (
                        "wazuh",
                        self.wazuh_alert(
                            ts_ms,
                            5712,
                            10,
                            "sshd: brute force trying to get access to the system. "
                            "Non existent user.",
                            ["syslog", "sshd", "authentication_failures"],
                            ["T1110"],
                            src,
                        ),
                    )
                )
        elif campaign == "scan":
            for _ in range(rng.randint(2, 5)):
                sid, signature, category, port = rng.choice(_SCANS)
                out.append(("suricata", self.eve_alert(ts_ms, sid, signature, category, 2, port)))
        else:
            for i in range(rng.randint(3, 6)):
                sid, signature = rng.choice(_DOS)
                severity = 1 if (first and i == 0) or rng.random() < 0.1 else 2
                out.append(
                    (
                        "suricata",
                        self.eve_alert(
                            ts_ms, sid, signature, "Attempted Denial of Service", severity, 123
                        ),
                    )
                )
        return out


# --- topology: where the sensors are (the province generator's ``soc:`` section) ---


def place_devices(
    spec: Any,
    seed: int,
    units: list[dict[str, Any]],
    sites: list[dict[str, Any]],
    devices: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The SOC sensors of a generator spec's optional ``soc:`` section::

        soc: {tiers: [core, district], communes: 2, agents_per_site: 2}

    A sensor at the site of every network node of the listed tiers, plus ``communes``
    commune nodes drawn from the generator's seed and the feed's name (its own RNG: the
    devices of every other class stay byte-identical). Each sits at its node's site, behind
    the node, with the site's address plan: a /24 of ``10.<province>.<n>.0``, its Wazuh agent
    names and its IDS sensor name. Raises ValueError on a bad section."""
    if not spec:
        return []
    if not isinstance(spec, dict):
        raise ValueError("generate: 'soc' must be a mapping")
    tiers = spec.get("tiers", ["core"])
    communes = spec.get("communes", 0)
    per_site = spec.get("agents_per_site", 2)
    if not isinstance(tiers, list) or not all(isinstance(t, str) for t in tiers):
        raise ValueError("generate: soc: 'tiers' must be a list of node tiers")
    if isinstance(communes, bool) or not isinstance(communes, int) or communes < 0:
        raise ValueError("generate: soc: 'communes' must be a count")
    if isinstance(per_site, bool) or not isinstance(per_site, int) or not 1 <= per_site <= 9:
        raise ValueError("generate: soc: 'agents_per_site' must be 1..9")
    rng = random.Random(f"{seed}/{Feed.SOC}")
    nodes = [d for d in devices if d["class"] == Feed.NETNODE]
    chosen = [d for d in nodes if d.get("attributes", {}).get("tier") in tiers]
    commune_nodes = [d for d in nodes if d.get("attributes", {}).get("tier") == "commune"]
    if "commune" not in tiers:
        chosen += sorted(
            rng.sample(commune_nodes, min(communes, len(commune_nodes))), key=lambda d: d["id"]
        )
    if len(chosen) > 254:
        raise ValueError(f"generate: soc: {len(chosen)} sensors, the address plan holds 254")
    province = int("".join(ch for ch in str(units[0]["code"]) if ch.isdigit()) or 0) % 256
    out: list[dict[str, Any]] = []
    for n, node in enumerate(chosen, start=1):
        suffix = str(node["id"]).removeprefix("nn-")
        out.append(
            {
                "id": f"soc-{suffix}",
                "class": str(Feed.SOC),
                "site": node["site"],
                "lat": node["lat"],
                "lon": node["lon"],
                "upstream": node["id"],
                "attributes": {
                    "subnet": f"10.{province}.{n}.0/24",
                    "agents": [f"wz-{suffix}-{k:02d}" for k in range(1, per_site + 1)],
                    "sensor": f"ids-{suffix}",
                },
            }
        )
    return out
