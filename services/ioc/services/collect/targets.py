"""What ``ioc collect`` polls: the topology's network nodes that have an address.

The inventory import (:mod:`ioc.inventory.build`) stores a device's poll address in
``attributes["address"]``: an IP address, a host name (optionally ``:port``) or a URL. A
collector polls the host part. Several collectors split the targets with ``--shard K
--shards N``: a device belongs to shard ``blake2b(device id) mod N``, which depends on nothing
but the id and N, so every collector computes the same split without talking to the others,
a device added to the inventory lands in one shard, and the shards cover every device once.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import socket
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from ioc.contract.feeds import Feed
from ioc.contract.topology import Topology
from ioc.errors import IocError

log = logging.getLogger(__name__)


class TargetError(IocError):
    """A shard specification or an inventory that gives a collector nothing it can poll."""


@dataclass(frozen=True)
class Target:
    """One device to poll: its id and the host part of its inventory address."""

    device_id: str
    host: str


def shard_of(device_id: str, shards: int) -> int:
    """The shard (0..shards-1) that polls ``device_id``: stable across processes, releases
    and Python's hash randomisation."""
    if shards < 1:
        raise TargetError(f"--shards {shards}: must be at least 1")
    digest = hashlib.blake2b(device_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def host_of(address: str) -> str | None:
    """The host part of an inventory address (IP, ``host``, ``host:port``, ``[v6]:port``
    or a URL); None when there is none."""
    text = address.strip()
    if not text:
        return None
    if "://" in text:
        return urllib.parse.urlsplit(text).hostname or None
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    if text.startswith("["):  # [v6]:port
        inner, _, _ = text[1:].partition("]")
        return inner or None
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text or None


def select(
    topology: Topology, shard: int = 0, shards: int = 1, device_class: str = Feed.NETNODE
) -> list[Target]:
    """The devices of ``device_class`` with an address that belong to ``shard`` of
    ``shards``, in device id order."""
    if shards < 1 or not 0 <= shard < shards:
        raise TargetError(f"--shard {shard} --shards {shards}: need 0 <= shard < shards")
    chosen: list[Target] = []
    for device in sorted(topology.devices_of(device_class), key=lambda d: d.id):
        address = device.attributes.get("address")
        host = host_of(str(address)) if address else None
        if host is None:
            continue
        if shard_of(device.id, shards) == shard:
            chosen.append(Target(device.id, host))
    return chosen


def without_address(topology: Topology, device_class: str = Feed.NETNODE) -> list[str]:
    """Ids of the devices of ``device_class`` a collector cannot poll (no address)."""
    return sorted(
        d.id
        for d in topology.devices_of(device_class)
        if not (d.attributes.get("address") and host_of(str(d.attributes["address"])))
    )


async def resolve(targets: Iterable[Target]) -> tuple[dict[str, str], list[str]]:
    """Each target's IPv4 address (a literal as is, a name through the resolver, all at
    once); returns (device id -> address, ids that did not resolve to IPv4)."""
    loop = asyncio.get_running_loop()
    items = list(targets)

    async def one(target: Target) -> str | None:
        try:
            ip = ipaddress.ip_address(target.host)
        except ValueError:
            pass
        else:
            return str(ip) if ip.version == 4 else None
        try:
            infos = await loop.getaddrinfo(target.host, None, family=socket.AF_INET)
        except OSError as exc:
            log.warning("%s: cannot resolve %s (%s)", target.device_id, target.host, exc)
            return None
        return str(infos[0][4][0]) if infos else None

    found = await asyncio.gather(*(one(t) for t in items))
    addresses = {t.device_id: a for t, a in zip(items, found, strict=True) if a is not None}
    missing = [t.device_id for t, a in zip(items, found, strict=True) if a is None]
    return addresses, missing
