"""Network faults between a worker and its broker and database, on loopback.

The kernel here has no ``netem``, so the faults come from two places:

- :class:`LatencyProxy`: a userspace TCP proxy that holds every server->client chunk for
  ``delay`` seconds (a delay line: chunks keep their spacing, so throughput is not capped at
  one chunk per delay). The worker reaches the database through one (its DSN names the
  proxy's port) and the broker through another: the broker's PROXIED listener advertises
  ``IOC_KAFKA_PROXY_PORT``, so after bootstrapping there every connection the worker opens,
  to whichever broker metadata names, goes through the proxy (:func:`behind_proxies`).
- :class:`PacketFilter`: nftables rules in a table of their own (``inet ioc_chaos``) that
  drop a share of the packets (``numgen random``) or all of them, for TCP to or from the
  proxies' front ports. Those ports carry only the worker's connections, so the producer,
  Prometheus and every other test keep their network. On loopback a packet crosses the output
  hook once and the input hook once: the rules sit on output only, matching the port as
  destination (worker -> proxy) and as source (proxy -> worker), so each packet is judged once.

nftables is installed from Debian on first use (``apt-get``, as the local stack installs its
packages); the table is removed before each fault run (a previous run may have died) and in
``finally``.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from pydantic import SecretStr

from ioc.config import Settings
from ioc.contract.topics import FEED_TOPICS
from ioc.deploy.local.install import apt_install
from ioc.kafka_clients import librdkafka_consumer
from ioc.streams.consumer import consumer_group
from tests.support.db import landed
from tests.support.processes import Worker

NFT_TABLE = "ioc_chaos"
"""The nftables table (family ``inet``) holding every rule a fault test adds."""
DB_PROXY_PORT = 19132
"""Where the worker's database proxy listens (helper C's port range 19130-19149)."""
PIPELINE_DOMAIN = "pipeline"
"""The ``domain`` label of the alerts a fault between workers, broker and database can raise
(DataStale, PartitionStalled, ConsumerLagGrowing, DatabaseWrites*, ...)."""


class LatencyProxy:
    """TCP proxy on 127.0.0.1:``port`` (0: any free port) to 127.0.0.1:``target_port``; every
    server->client chunk is held ``delay`` seconds (settable while it runs)."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self.port = port
        self.delay = 0.0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="latency-proxy")
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError(f"the proxy to port {self.target_port} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        finally:
            self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, delayed=False),
                self._pipe(up_reader, writer, delayed=True),
            )
        finally:
            self._writers -= {writer, up_writer}

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, delayed: bool
    ) -> None:
        """Copy ``src`` to ``dst``, each chunk sent ``delay`` s after it arrived."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def send() -> None:
            try:
                while (item := await line.get()) is not None:
                    due, data = item
                    if (wait := due - loop.time()) > 0:
                        await asyncio.sleep(wait)
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        sender = asyncio.ensure_future(send())
        try:
            while data := await src.read(65536):
                line.put_nowait((loop.time() + (self.delay if delayed else 0.0), data))
        except OSError:
            pass
        finally:
            line.put_nowait(None)
            await sender


def behind_proxies(settings: Settings, kafka: LatencyProxy, db: LatencyProxy) -> Settings:
    """``settings`` for a worker whose broker and database connections all cross the proxies."""
    assert kafka.port == settings.kafka_proxy_port, "the Kafka proxy must be the advertised one"
    direct = settings.database_dsn()
    port = f":{settings.postgres_port}/"
    assert port in direct, direct
    return settings.model_copy(
        update={
            "kafka_bootstrap_servers": f"127.0.0.1:{kafka.port}",
            "kafka_security_protocol": "PLAINTEXT",
            "db_dsn": SecretStr(direct.replace(port, f":{db.port}/")),
        }
    )


# --- nftables ---------------------------------------------------------------------------------
def ensure_nft() -> str:
    """The ``nft`` binary; installs Debian's nftables on first use (root, as in CI)."""
    found = shutil.which("nft")
    if found:
        return found
    log = Path(tempfile.gettempdir()) / "ioc-chaos-nftables-install.log"
    print(f"network-fault tests need nftables: installing it with apt-get (log: {log})")
    apt_install(["nftables"], log, print)
    found = shutil.which("nft")
    if not found:
        raise RuntimeError(f"apt-get installed nftables but `nft` is not on PATH; see {log}")
    return found


class PacketFilter:
    """Loss or a partition for TCP to and from ``ports`` on loopback (one nftables table,
    replaced or removed atomically)."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = tuple(ports)
        self.nft = ""

    def __enter__(self) -> PacketFilter:
        self.nft = ensure_nft()
        self.heal()  # a previous run may have died with its rules in place
        return self

    def __exit__(self, *exc: object) -> None:
        self.heal()

    def _run(self, script: str) -> None:
        done = subprocess.run(
            [self.nft, "-f", "-"], input=script, text=True, capture_output=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"nft failed ({done.returncode}): {done.stderr.strip()}\n{script}")

    def _apply(self, verdict: str) -> None:
        ports = ", ".join(str(p) for p in self.ports)
        # "add table" then "delete table" makes the delete safe when it does not exist; all
        # of it is one transaction, so the rules change at once.
        self._run(
            f"add table inet {NFT_TABLE}\n"
            f"delete table inet {NFT_TABLE}\n"
            f"table inet {NFT_TABLE} {{\n"
            "  chain output {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    tcp dport {{ {ports} }} {verdict}\n"
            f"    tcp sport {{ {ports} }} {verdict}\n"
            "  }\n"
            "}\n"
        )

    def loss(self, percent: int) -> None:
        """Drop ``percent`` % of the packets, each direction judged on its own."""
        self._apply(f"numgen random mod 100 < {percent} counter drop")

    def partition(self) -> None:
        """Drop every packet: no connection gets through, no new one opens."""
        self._apply("counter drop")

    def heal(self) -> None:
        self._run(f"add table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n")

    def dropped(self) -> int:
        """Packets the current rules dropped so far."""
        done = subprocess.run(
            [self.nft, "list", "table", "inet", NFT_TABLE], capture_output=True, text=True
        )
        total = 0
        for word in done.stdout.split("counter packets ")[1:]:
            total += int(word.split()[0])
        return total


# --- watching a run ---------------------------------------------------------------------------
class GroupLag:
    """Messages the workers' consumer group has not committed yet, read from the broker
    directly (not through the proxy): the catch-up clock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer = Consumer(
            librdkafka_consumer(
                settings,
                consumer_group(settings),
                "ioc-chaos-lag",
                **{"enable.auto.commit": False},
            )
        )
        self._partitions: list[TopicPartition] = []

    def close(self) -> None:
        self._consumer.close()

    def __call__(self) -> int:
        if not self._partitions:
            feeds = {self.settings.topic(spec.name) for spec in FEED_TOPICS.values()}
            topics = self._consumer.list_topics(timeout=10).topics
            self._partitions = [
                TopicPartition(name, p)
                for name, meta in topics.items()
                if name in feeds
                for p in meta.partitions
            ]
        committed = self._consumer.committed(self._partitions, timeout=10)
        total = 0
        for tp in committed:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=10
            )
            total += max(0, high - (tp.offset if tp.offset >= 0 else low))
        return total


@dataclass
class Sample:
    at: float  # seconds since the watch started
    landed: int
    lag: int
    freshness: float
    firing: frozenset[str]
    pending: frozenset[str] = frozenset()
    """Alerts whose condition holds but whose ``for:`` has not passed yet."""


@dataclass
class Watch:
    """Samples a run once a second on a thread: rows landed, group lag, the worker's data
    freshness and the pipeline alerts firing; :meth:`mark` notes when a fault starts/ends."""

    settings: Settings
    worker: Worker
    samples: list[Sample] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = field(default_factory=time.monotonic)

    def __enter__(self) -> Watch:
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-watch")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def now(self) -> float:
        return time.monotonic() - self._started

    def mark(self, name: str) -> None:
        self.marks[name] = self.now()
        print(f"[{self.marks[name]:6.1f} s] {name}")

    def _freshness(self) -> float:
        try:
            values = [v for n, _l, v in self.worker.scrape() if n == "ioc_event_freshness_seconds"]
        except OSError:
            return -1.0
        return max(values, default=-1.0)

    def _alerts(self) -> tuple[frozenset[str], frozenset[str]]:
        """Pipeline alerts (firing, pending)."""
        try:
            rows = _query(self.settings, f'ALERTS{{domain="{PIPELINE_DOMAIN}"}}')
        except OSError:
            return frozenset(), frozenset()
        by_state: dict[str, set[str]] = {"firing": set(), "pending": set()}
        for r in rows:
            by_state.setdefault(r["metric"]["alertstate"], set()).add(r["metric"]["alertname"])
        return frozenset(by_state["firing"]), frozenset(by_state["pending"])

    def _run(self) -> None:
        lag = GroupLag(self.settings)
        try:
            while not self._stop.is_set():
                tick = time.monotonic()
                try:
                    at, rows = self.now(), landed(self.settings)
                    sample = Sample(at, rows, lag(), self._freshness(), *self._alerts())
                except Exception as exc:  # a sample lost is not a reason to stop watching
                    print(f"watch: sample failed: {exc}")
                else:
                    self.samples.append(sample)
                self._stop.wait(max(0.0, 1.0 - (time.monotonic() - tick)))
        finally:
            lag.close()

    def active_now(self) -> frozenset[str]:
        """Pipeline alerts firing or pending at the last sample."""
        last = self.samples[-1] if self.samples else None
        return last.firing | last.pending if last else frozenset()

    # --- figures ---
    def between(self, start: float, end: float | None = None) -> list[Sample]:
        return [s for s in self.samples if s.at >= start and (end is None or s.at <= end)]

    def longest_pause(self, start: float, end: float) -> float:
        """Longest time within [start, end] in which no row landed."""
        samples = self.between(start, end)
        longest, since = 0.0, None
        for prev, cur in itertools.pairwise(samples):
            if cur.landed == prev.landed:
                since = prev.at if since is None else since
                longest = max(longest, cur.at - since)
            else:
                since = None
        return longest

    def caught_up_after(self, healed: float, baseline_lag: int) -> float:
        """Seconds from ``healed`` until the group lag is back at its pre-fault level
        (-1: not yet)."""
        for s in self.between(healed):
            if s.lag <= baseline_lag:
                return s.at - healed
        return -1.0

    def fired(self, start: float, end: float | None = None) -> dict[str, float]:
        """Alerts that started firing in [start, end], with seconds from ``start`` (not
        those already firing or pending when it started: another cause's)."""
        earlier = [s for s in self.samples if s.at < start]
        before = earlier[-1].firing | earlier[-1].pending if earlier else frozenset()
        out: dict[str, float] = {}
        for s in self.between(start, end):
            for name in s.firing - before:
                out.setdefault(name, s.at - start)
        return out

    def max_freshness(self, start: float, end: float | None = None) -> float:
        return max((s.freshness for s in self.between(start, end)), default=-1.0)

    def stale_for(self, threshold_s: float, start: float, end: float | None = None) -> float:
        """Longest stretch in [start, end] in which the worker's data was older than
        ``threshold_s`` (what DataStale's ``for:`` counts)."""
        longest, since = 0.0, None
        for s in self.between(start, end):
            if s.freshness > threshold_s:
                since = s.at if since is None else since
                longest = max(longest, s.at - since)
            else:
                since = None
        return longest

    def max_lag(self, start: float, end: float | None = None) -> int:
        return max((s.lag for s in self.between(start, end)), default=0)


def _query(settings: Settings, expr: str) -> list[dict[str, Any]]:
    import json
    import urllib.parse
    import urllib.request

    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{settings.prometheus_url}/api/v1/query?{q}", timeout=5) as resp:
        result: list[dict[str, Any]] = json.loads(resp.read())["data"]["result"]
    return result


@dataclass(frozen=True)
class FaultRow:
    """One line of the reconciliation table."""

    fault: str
    produced: int
    stored: int
    dead_lettered: int
    duplicates: int
    """Stored twice (must be 0)."""
    lost: int
    replayed: int
    """Read twice by the worker (a batch redelivered after a rejoin), absorbed as duplicates."""
    pause_s: float
    """Longest time in which no row landed."""
    catch_up_s: float
    """From the end of the fault until the group lag was back at its normal level."""
    alerts: str

    HEADER = (
        f"{'fault':<36} {'produced':>8} {'stored':>8} {'DLQ':>4} {'dup':>3} {'lost':>4} "
        f"{'replayed':>8} {'pause':>6} {'catch-up':>8}  alerts fired"
    )

    def line(self) -> str:
        return (
            f"{self.fault:<36} {self.produced:>8,} {self.stored:>8,} {self.dead_lettered:>4} "
            f"{self.duplicates:>3} {self.lost:>4} {self.replayed:>8,} {self.pause_s:>5.0f}s "
            f"{self.catch_up_s:>7.0f}s  {self.alerts}"
        )


__all__ = [
    "DB_PROXY_PORT",
    "PIPELINE_DOMAIN",
    "FaultRow",
    "GroupLag",
    "LatencyProxy",
    "PacketFilter",
    "Watch",
    "behind_proxies",
    "ensure_nft",
]
