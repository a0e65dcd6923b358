"""Free loopback ports for servers a test starts later (a child process, a second run).

A port the kernel hands out for ``bind(("127.0.0.1", 0))`` comes from the ephemeral range,
the same range every outgoing connection takes its source port from. Released and bound again
seconds later, it can meanwhile be the source port of a Kafka, database or HTTP client
connection, and the server then fails to listen (CI saw `ioc ops serve` exit so). These ports
come from below the ephemeral range instead, where no client connection lands.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive free ports below the ephemeral range (the services
    serve /metrics on port + 1: ask for 2)."""
    low, high = 20000, min(_ephemeral_low(), 65536) - count
    for _ in range(500):
        port = random.randrange(low, high)
        if all(_free(port + i) for i in range(count)):
            return port
    raise RuntimeError(f"no {count} consecutive free ports in {low}-{high + count}")
