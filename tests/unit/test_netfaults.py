"""The network-fault helpers of the chaos tests (tests/chaos/netfaults.py): the delay proxy
and the figures a fault's watch derives, checked without the stack or root."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import cast

import pytest

from ioc.config import Settings
from tests.chaos.netfaults import FaultRow, LatencyProxy, Sample, Watch
from tests.support.processes import Worker


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _round_trip(sock: socket.socket, size: int = 100) -> float:
    started = time.monotonic()
    sock.sendall(b"x" * size)
    got = 0
    while got < size:
        got += len(sock.recv(size))
    return time.monotonic() - started


def test_the_proxy_delays_answers_only_while_told(echo_port: int) -> None:
    with LatencyProxy(echo_port) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as s:
        assert _round_trip(s) < 0.2
        proxy.delay = 0.3
        assert 0.29 <= _round_trip(s) < 0.6
        proxy.delay = 0.0
        time.sleep(0.05)
        assert _round_trip(s) < 0.2


def test_the_proxy_is_a_delay_line_not_a_queue(echo_port: int) -> None:
    """Chunks in flight together arrive together, 300 ms later: throughput is not capped."""
    with LatencyProxy(echo_port) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as s:
        proxy.delay = 0.3
        started = time.monotonic()
        for _ in range(5):
            s.sendall(b"y" * 10)
            time.sleep(0.02)
        got = 0
        while got < 50:
            got += len(s.recv(100))
        assert time.monotonic() - started < 0.8


def _watch(samples: list[Sample]) -> Watch:
    watch = Watch(Settings(), cast(Worker, None))
    watch.samples = samples
    return watch


def _s(at: float, landed: int, lag: int = 0, fresh: float = 1.0, *firing: str) -> Sample:
    return Sample(at, landed, lag, fresh, frozenset(firing))


def test_pause_catch_up_staleness_and_new_alerts() -> None:
    watch = _watch(
        [
            _s(0, 100, 10, 1, "Watchdog"),
            _s(1, 200, 10, 1, "Watchdog", "DeadLetterRateHigh"),
            _s(2, 200, 500, 10, "Watchdog"),  # the fault starts at 2: nothing lands
            _s(3, 200, 900, 31),
            _s(4, 200, 1200, 32, "DataStale"),
            _s(5, 300, 400, 33, "DataStale"),  # healed at 5
            _s(6, 400, 8, 2),
        ]
    )
    assert watch.longest_pause(2, 6) == 2  # nothing landed from 2 to 4 (within the window)
    assert watch.longest_pause(0, 6) == 3  # ... and since 1
    assert watch.caught_up_after(5, 10) == 1
    assert watch.caught_up_after(5, 5) == -1
    assert watch.stale_for(30, 0) == 2
    assert watch.stale_for(30, 0, 4) == 1
    # DeadLetterRateHigh fired before the fault and stopped: not the fault's
    assert watch.fired(2) == {"DataStale": 2}
    assert watch.max_lag(2) == 1200
    assert watch.max_freshness(0, 3) == 31


def test_the_table_row_lines_up_with_its_header() -> None:
    row = FaultRow("30 s partition", 28_350, 28_076, 274, 0, 0, 405, 29.4, 10.2, "none")
    line = row.line()
    assert line.startswith("30 s partition")
    assert "28,350" in line and "29s" in line and "10s" in line
    assert len(line.split("  none")[0]) == len(FaultRow.HEADER.split("  alerts")[0])
