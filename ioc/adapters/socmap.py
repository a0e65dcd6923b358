"""What the SOC adapters share: where an alert belongs, its sequence number, its parsing.

:class:`SiteMap` maps a Wazuh agent name, a Suricata sensor name or an address onto the
``soc`` sensor of a site (ioc/contract/soc.py), from the topology's address plan: each sensor
device's attributes hold its site's ``subnet`` (``10.15.4.0/24``), its Wazuh ``agents`` and
its IDS ``sensor`` name. :func:`build` numbers each sensor's messages with a
:class:`~ioc.adapters.native.Sequencer` (one counter per device, shared by the Wazuh and the
Suricata adapter, as one collector would). Bad native input raises
:class:`~ioc.adapters.native.AdapterError`, for the collector to dead-letter, never anything
else."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec

from ioc.adapters.native import AdapterError, Sequencer, validated
from ioc.contract import schemas as s
from ioc.contract.feeds import Feed
from ioc.contract.topology import Device, Topology

M = TypeVar("M", bound=s.Message)


class SiteMap:
    """Agent, sensor and address -> the id of the ``soc`` sensor of that site."""

    def __init__(self, devices: Iterable[Device]) -> None:
        self.agents: dict[str, str] = {}
        self.sensors: dict[str, str] = {}
        nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
        for dev in devices:
            if dev.device_class != Feed.SOC:
                continue
            attrs = dev.attributes
            for agent in attrs.get("agents") or ():
                self.agents[str(agent)] = dev.id
            if attrs.get("sensor"):
                self.sensors[str(attrs["sensor"])] = dev.id
            if attrs.get("subnet"):
                nets.append((ipaddress.ip_network(str(attrs["subnet"]), strict=False), dev.id))
        # the most specific network first
        self.networks = sorted(nets, key=lambda item: -item[0].prefixlen)

    @classmethod
    def from_topology(cls, topology: Topology) -> SiteMap:
        return cls(topology.devices_of(Feed.SOC))

    def by_address(self, address: str | None) -> str | None:
        if address is None:
            return None
        ip = ipaddress.ip_address(address)
        for net, dev_id in self.networks:
            if ip.version == net.version and ip in net:
                return dev_id
        return None


def section(doc: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise AdapterError(f"{what}: '{key}' must be an object")
    return value


def integer(value: Any, what: str, low: int = 0, high: int = s.INT4_MAX) -> int:
    """An integer given as a number or as decimal text (Wazuh writes ids and ports as text)."""
    if isinstance(value, bool):
        raise AdapterError(f"{what}: expected an integer, got {value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or not low <= value <= high:
        raise AdapterError(f"{what}: expected an integer in [{low}, {high}], got {value!r:.40}")
    return value


def text(value: Any, what: str, limit: int = 128) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AdapterError(f"{what}: expected a non-empty string, got {value!r:.40}")
    return value.strip()[:limit]


def address(value: Any, what: str) -> str | None:
    """An IP address in the contract's form (dotted IPv4, exploded IPv6); None if absent."""
    if value is None or value == "":
        return None
    try:
        ip = ipaddress.ip_address(str(value))
    except ValueError:
        raise AdapterError(f"{what}: {value!r:.45} is not an IP address") from None
    return ip.exploded if ip.version == 6 else str(ip)


def timestamp(value: Any, what: str) -> int:
    """Epoch ms from Wazuh's / Suricata's ``timestamp`` (``2024-03-15T10:22:33.123+0000``)."""
    if not isinstance(value, str):
        raise AdapterError(f"{what}: 'timestamp' must be a string")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            when = dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
        return int(when.timestamp() * 1000)
    raise AdapterError(f"{what}: 'timestamp' {value!r:.40} is not ISO 8601 with a UTC offset")


def format_timestamp(ts_ms: int, micros: bool = False) -> str:
    """The inverse of :func:`timestamp`: how Wazuh (ms) and Suricata (us) write it."""
    when = dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)
    frac = f"{when.microsecond:06d}" if micros else f"{when.microsecond // 1000:03d}"
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + frac + "+0000"


def build(kind: type[M], fields: dict[str, Any], what: str, sequencer: Sequencer) -> M:
    """The contract message, validated like the workers will (bounds, patterns), numbered
    only once it is valid (a refused payload leaves no gap in the device's sequence)."""
    message = validated(kind, {"v": s.SCHEMA_VERSION, "seq": 1, **fields}, what)
    return msgspec.structs.replace(message, seq=sequencer.next(message.device_id))
