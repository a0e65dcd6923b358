"""A network node's peer in a network namespace behind a veth pair, for the collector's tests.

Needs root and ``ip`` (iproute2). The namespace's address answers pings like a node would;
taking its interface down inside the namespace is the node going down, as the collector (on
the host side) sees it. :func:`peer` makes one per test and removes it in a ``finally``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

NEEDS_ROOT_AND_IP = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, raw ICMP"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs `ip` (iproute2)"),
]
"""``pytestmark`` for a test module that makes peers."""


def ip(*args: str) -> None:
    """``ip ARGS``, raising with its stderr on failure."""
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Peer:
    """One namespace behind a veth pair in a random /29 of 10.249.0.0/16 (random names, so
    concurrent tests do not collide)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.netns = f"ioccol{tag}"
        self.host_if = f"vch{tag}"
        self.peer_if = f"vcn{tag}"
        octet = secrets.randbelow(200) + 20
        self.host_ip = f"10.249.{octet}.1"
        self.peer_ip = f"10.249.{octet}.2"
        self.silent_ip = f"10.249.{octet}.5"  # in the subnet, nobody answers

    def up(self) -> None:
        ip("netns", "add", self.netns)
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        ip("link", "set", self.peer_if, "netns", self.netns)
        ip("addr", "add", f"{self.host_ip}/29", "dev", self.host_if)
        ip("link", "set", self.host_if, "up")
        ip("-n", self.netns, "addr", "add", f"{self.peer_ip}/29", "dev", self.peer_if)
        ip("-n", self.netns, "link", "set", "lo", "up")
        ip("-n", self.netns, "link", "set", self.peer_if, "up")

    def cut(self) -> None:
        """The node's interface goes down, inside its namespace."""
        ip("-n", self.netns, "link", "set", self.peer_if, "down")

    def restore(self) -> None:
        """The node's interface comes back up (its address stays configured)."""
        ip("-n", self.netns, "link", "set", self.peer_if, "up")

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


@pytest.fixture
def peer() -> Iterator[Peer]:
    """A live peer, removed afterwards; skips where namespaces cannot be made."""
    made = Peer()
    try:
        try:
            made.up()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot make a network namespace here: {exc.stderr.strip()}")
        yield made
    finally:
        made.remove()
