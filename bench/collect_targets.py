"""How many network nodes one collector polls per interval over ICMP and SNMP (issue 19).

The collector's own rounds (``Collector.probe_round`` with the real raw-socket
``IcmpEngine``, ``SnmpCollector.poll_round`` with the real pysnmp ``SnmpPoller``, the netnode
feed's declared schedule: a probe of 3 echoes every 5 s, a 2 s timeout, an SNMP walk of the
interface table every 15 s) against real peers: a network namespace behind a veth pair whose
loopback owns a whole subnet (``ip route add local 10.250.0.0/19 dev lo``: every address in
it answers pings, as thousands of nodes would), and ``--snmpd`` net-snmp agents in the same
namespace listening on every one of those addresses, with ``--interfaces`` more interfaces
each (a commune switch's ports, veth pairs), so every SNMP target is a distinct address.

A round starts its targets spread over the interval (less one target's longest duration), so
its wall time stays near the interval until the collector falls behind; what limits a
collector is then its **CPU** (one process, one event loop: at most one core) and whether
its answers stay **true** (a late reply read after its timeout is a false loss). Per target
count, over ``--repeat`` rounds, this prints the median round time, the collector's CPU per
round (and as a share of one core over the interval), its RSS, and the targets whose answers
were lost (all are alive, so any loss is the collector's); the largest count that kept its
interval with no loss is the measured capacity, and ``interval / (CPU per target)`` is where
one core would run out.

    sudo .venv/bin/python bench/collect_targets.py [--icmp 500,1000,2000,4000] \
        [--snmp 25,50] [--repeat 3] [--out bench/results/collect_targets.json]

Needs root (a network namespace, the raw ICMP socket) and ``ip``; net-snmp's ``snmpd`` is
installed as for the SNMP tests (``python -m ioc.deploy.local.snmp_peers``). No Kafka: the
messages go to a counting sink. The default run takes about four minutes. Results measured on a
machine doing other work (``--busy NOTE``) say so.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_machine import machine, results_dir, status_mib
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from ioc.contract import feeds
from ioc.contract import schemas as s
from ioc.contract.feeds import Collection, Feed
from ioc.deploy.local.snmp_peers import agent_conf, ensure_snmp_tools
from ioc.services.collect import snmp
from ioc.services.collect.collector import Collector, Sequences, SnmpCollector
from ioc.services.collect.icmp import IcmpEngine
from ioc.sinks import Record, Sink

RESULTS = results_dir()
SUBNET = ipaddress.ip_network("10.250.0.0/19")
"""The namespace's loopback answers for all of it: 8,190 node addresses."""
SNMPD_PORT = 1161
QUIET = {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}
"""net-snmp without MIB files (Debian ships none): numeric OIDs only, no warnings."""


class CountingSink(Sink):
    def send(self, record: Record) -> None:
        self.sent += 1


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib() -> float:
    return status_mib("VmRSS")


class Peers:
    """The namespace, its veth pair, the routed subnet and the snmpd agents in it."""

    def __init__(self, snmpds: int, interfaces: int, work: Path) -> None:
        tag = secrets.token_hex(3)
        self.netns = f"iocbench{tag}"
        self.host_if, self.peer_if = f"vbh{tag}", f"vbn{tag}"
        self.host_ip, self.peer_ip = "10.251.0.1", "10.251.0.2"
        self.snmpds = snmpds
        self.interfaces = interfaces
        self.work = work
        self.community = f"c{secrets.token_hex(6)}"
        # v3 authPriv (SHA, AES): the same agents answer both, so the versions compare on one
        # machine in one run.
        self.user = f"u{secrets.token_hex(3)}"
        self.auth_key, self.priv_key = secrets.token_hex(8), secrets.token_hex(8)
        self.agents: list[subprocess.Popen[bytes]] = []

    def up(self) -> None:
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        run("ip", "link", "set", self.peer_if, "netns", self.netns)
        run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        run("ip", "route", "add", str(SUBNET), "via", self.peer_ip)
        ns = ("ip", "-n", self.netns)
        run(*ns, "addr", "add", f"{self.peer_ip}/30", "dev", self.peer_if)
        run(*ns, "link", "set", "lo", "up")
        run(*ns, "link", "set", self.peer_if, "up")
        run(*ns, "route", "add", "local", str(SUBNET), "dev", "lo")
        run(*ns, "route", "add", "default", "via", self.host_ip)
        # A switch's ports: veth pairs inside the namespace (no dummy driver needed).
        for i in range(0, self.interfaces, 2):
            run(*ns, "link", "add", f"port{i}", "type", "veth", "peer", "name", f"port{i + 1}")
            run(*ns, "link", "set", f"port{i}", "up")
            run(*ns, "link", "set", f"port{i + 1}", "up")

    def start_agents(self, snmpd: str) -> None:
        conf = self.work / "snmpd.conf"
        conf.write_text(
            agent_conf(self.community, "10.251.0.0/30", self.user, self.auth_key, self.priv_key)
        )
        for i in range(self.snmpds):
            port = SNMPD_PORT + i
            self.agents.append(
                subprocess.Popen(
                    [
                        *("ip", "netns", "exec", self.netns, snmpd, "-f", "-Lf"),
                        str(self.work / f"snmpd{i}.log"),
                        *("-C", "-c", str(conf)),
                        f"--persistentDir={self.work / f'persist{i}'}",
                        f"udp:0.0.0.0:{port}",
                    ],
                    env=QUIET,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def remove(self) -> None:
        for agent in self.agents:
            agent.send_signal(signal.SIGTERM)
        for agent in self.agents:
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        subprocess.run(["ip", "route", "del", str(SUBNET)], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


@contextmanager
def peers(snmpds: int, interfaces: int) -> Iterator[Peers]:
    with tempfile.TemporaryDirectory(prefix="ioc-bench-") as work:
        made = Peers(snmpds, interfaces, Path(work))
        try:
            made.up()
            yield made
        finally:
            made.remove()


def addresses(count: int) -> list[str]:
    hosts = SUBNET.hosts()
    return [str(next(hosts)) for _ in range(count)]


def point(
    targets: int, interval: float, rounds: list[tuple[float, float, int]], rss: float
) -> dict[str, Any]:
    """One target count's figures from its rounds (wall s, CPU s, targets that lost)."""
    round_s = statistics.median(r[0] for r in rounds)
    cpu = statistics.median(r[1] for r in rounds)
    return {
        "targets": targets,
        "rounds": len(rounds),
        "round_s": [round(r[0], 2) for r in rounds],
        "round_s_median": round(round_s, 2),
        "collector_cpu_s_per_round_median": round(cpu, 3),
        "core_share_pct": round(100 * cpu / interval, 1),
        "cpu_ms_per_target": round(1000 * cpu / targets, 3),
        "targets_lost": [r[2] for r in rounds],
        "rss_mib": round(rss),
        "kept_interval": all(r[0] <= interval for r in rounds) and not any(r[2] for r in rounds),
    }


async def icmp_points(counts: list[int], repeat: int, collection: Collection) -> list[Any]:
    interval = collection.interval("netnode.probe")
    out: list[dict[str, Any]] = []
    async with IcmpEngine() as engine:
        assert engine.raw, "root: the collector's raw socket"
        for count in counts:
            nodes = {f"nn-{i:05d}": a for i, a in enumerate(addresses(count))}
            collector = Collector(
                nodes, CountingSink(), engine, collection, registry=CollectorRegistry()
            )
            await collector.probe_round()  # warm-up: ARP, first allocations
            rounds: list[tuple[float, float, int]] = []
            for _ in range(repeat):
                cpu0, started = cpu_s(), time.monotonic()
                got = await collector.probe_round()
                wall, cpu = time.monotonic() - started, cpu_s() - cpu0
                rounds.append((wall, cpu, sum(1 for p in got if p.loss_pct > 0)))
                await asyncio.sleep(max(0.0, interval - wall))
            out.append(point(count, interval, rounds, rss_mib()))
            p = out[-1]
            print(
                f"icmp {count:>6} targets: round {p['round_s_median']:.2f} s, "
                f"CPU {p['collector_cpu_s_per_round_median']:.3f} s/round "
                f"({p['core_share_pct']:.0f} % of a core), lost {p['targets_lost']}, "
                f"RSS {p['rss_mib']} MiB",
                flush=True,
            )
    return out


def snmp_profile(version: str, port: int, peers: Peers) -> snmp.Profile:
    """How the collector talks to one agent: v2c (community) or v3 authPriv (SHA, AES)."""
    if version == "2c":
        return snmp.Profile(version="2c", port=port, community=SecretStr(peers.community))
    return snmp.Profile(
        version="3",
        port=port,
        user=peers.user,
        auth_protocol="sha",
        auth_key=SecretStr(peers.auth_key),
        priv_protocol="aes",
        priv_key=SecretStr(peers.priv_key),
    )


async def snmp_points(
    counts: list[int], repeat: int, collection: Collection, peers: Peers, version: str
) -> list[Any]:
    interval = collection.interval(snmp.COUNTERS)
    profiles = [snmp_profile(version, SNMPD_PORT + i, peers) for i in range(peers.snmpds)]
    probe = snmp.SnmpPoller(1.0)
    try:
        target = snmp.SnmpTarget("nn-probe", addresses(1)[0], profiles[0])
        deadline = time.monotonic() + 20
        while True:  # the agents are up when each answers a walk
            try:
                for profile in profiles:
                    await probe.poll(snmp.SnmpTarget("nn-probe", target.address, profile), cpu_s)
                break
            except snmp.PollFailed:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
    finally:
        probe.close()
    out: list[dict[str, Any]] = []
    for count in counts:
        targets = [
            snmp.SnmpTarget(f"nn-{i:05d}", a, profiles[i % len(profiles)])
            for i, a in enumerate(addresses(count))
        ]
        poller = snmp.SnmpPoller(collection.timeout_s)
        try:
            collector = SnmpCollector(
                targets,
                CountingSink(),
                poller,
                collection,
                Sequences(1),
                snmp.Tracker(),
                registry=CollectorRegistry(),
            )
            await collector.poll_round()  # warm-up and the counters' baseline
            rounds: list[tuple[float, float, int]] = []
            for _ in range(repeat):
                cpu0, started = cpu_s(), time.monotonic()
                got = await collector.poll_round()
                wall, cpu = time.monotonic() - started, cpu_s() - cpu0
                answered = {m.device_id for m in got if isinstance(m, s.NetnodeCounters)}
                rounds.append((wall, cpu, count - len(answered)))
            out.append(point(count, interval, rounds, rss_mib()))
            out[-1]["requests_per_poll"] = round(poller.requests / ((repeat + 1) * count), 2)
        finally:
            poller.close()
        p = out[-1]
        print(
            f"snmp v{version} {count:>4} targets: round {p['round_s_median']:.2f} s, "
            f"CPU {p['collector_cpu_s_per_round_median']:.3f} s/round "
            f"({p['core_share_pct']:.0f} % of a core), lost {p['targets_lost']}, "
            f"RSS {p['rss_mib']} MiB",
            flush=True,
        )
    return out


def capacity(points: list[dict[str, Any]], interval: float) -> dict[str, Any]:
    """The largest count measured that kept its interval without loss, and where one core
    would run out at the largest count's CPU per target."""
    kept = [p["targets"] for p in points if p["kept_interval"]]
    top = points[-1]
    per_target_s = top["collector_cpu_s_per_round_median"] / top["targets"]
    return {
        "measured_targets_per_interval": max(kept, default=0),
        "one_core_targets_per_interval": int(interval / per_target_s) if per_target_s else None,
    }


def counts(text: str) -> list[int]:
    values = sorted(int(x) for x in text.split(",") if x.strip())
    if any(v < 1 or v > SUBNET.num_addresses - 2 for v in values):
        raise argparse.ArgumentTypeError(f"counts between 1 and {SUBNET.num_addresses - 2}")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--icmp", type=counts, default=[500, 1000, 2000, 4000])
    parser.add_argument("--snmp", type=counts, default=[25, 50])
    parser.add_argument(
        "--snmp-v3", type=counts, default=[25, 50], help="v3 authPriv (SHA/AES) counts"
    )
    parser.add_argument("--repeat", type=int, default=3, help="measured rounds per count")
    parser.add_argument("--snmpd", type=int, default=2, help="snmpd agents answering")
    parser.add_argument(
        "--interfaces", type=int, default=24, help="ports (veth, in pairs) per agent"
    )
    parser.add_argument("--busy", metavar="NOTE", help="what else the machine was doing")
    parser.add_argument("--out", type=Path, default=Path("/tmp/collect_targets.json"))
    parser.add_argument("--plot", type=Path, help="PNG (default: --out with .png)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: a network namespace and the raw ICMP socket", file=sys.stderr)
        return 2
    collection = feeds.spec(Feed.NETNODE).collection
    assert collection is not None
    tools = ensure_snmp_tools()
    # A stopped run (timeout, kill) still removes its namespace, route and agents.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    probe_interval = collection.interval("netnode.probe")
    counters_interval = collection.interval(snmp.COUNTERS)
    result: dict[str, Any] = {
        "machine": machine(),
        "machine_busy": args.busy,
        "schedule": {
            "probe_interval_s": probe_interval,
            "counters_interval_s": counters_interval,
            "timeout_s": collection.timeout_s,
            "echoes": collection.echoes,
        },
        "snmp_agents": args.snmpd,
        "snmp_interfaces_per_agent": 2 + 2 * ((args.interfaces + 1) // 2),
        "repeat": args.repeat,
        "complete": False,
    }

    def save() -> None:
        """Written after each protocol, so a run stopped in its SNMP part keeps ICMP's."""
        result["collector_max_rss_mib"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        result["duration_s"] = round(time.monotonic() - began)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    with peers(args.snmpd, args.interfaces) as made:
        made.start_agents(tools["snmpd"])
        icmp = asyncio.run(icmp_points(args.icmp, args.repeat, collection))
        result["icmp"] = {"points": icmp, **capacity(icmp, probe_interval)}
        save()
        for key, version, wanted in (("snmp", "2c", args.snmp), ("snmp_v3", "3", args.snmp_v3)):
            polled = asyncio.run(snmp_points(wanted, args.repeat, collection, made, version))
            result[key] = {
                "version": version,
                "points": polled,
                **capacity(polled, counters_interval),
            }
            save()
    result["complete"] = True
    save()
    for proto, interval in (
        ("icmp", probe_interval),
        ("snmp", counters_interval),
        ("snmp_v3", counters_interval),
    ):
        r = result[proto]
        print(
            f"{proto}: {r['measured_targets_per_interval']} targets per {interval:.0f} s "
            f"measured (largest count tried that kept up), one core would run out near "
            f"{r['one_core_targets_per_interval']}"
        )
    print(f"results: {args.out}" + (f" (machine busy: {args.busy})" if args.busy else ""))
    try:
        plot(result, args.plot or args.out.with_suffix(".png"))
    except ImportError:
        print("(matplotlib not installed: no plot; pip install -e '.[bench]')")
    return 0


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schedule = result["schedule"]
    every: list[tuple[str, str, float]] = [
        ("icmp", "ICMP probes (3 echoes)", schedule["probe_interval_s"]),
        ("snmp", "SNMP v2c interface walks", schedule["counters_interval_s"]),
        ("snmp_v3", "SNMP v3 authPriv (SHA/AES) walks", schedule["counters_interval_s"]),
    ]
    panels = [p for p in every if p[0] in result]  # results from before v3 have two
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5))
    for ax, (proto, title, interval) in zip(axes, panels, strict=True):
        points = result[proto]["points"]
        xs = [p["targets"] for p in points]
        ax.plot(xs, [p["round_s_median"] for p in points], "o-", label="round (median)")
        ax.axhline(interval, color="red", linewidth=0.8, label=f"interval {interval:.0f} s")
        ax.set_xlabel("targets")
        ax.set_ylabel("seconds")
        ax.set_ylim(0, interval * 1.5)
        share = ax.twinx()
        share.plot(
            xs, [p["core_share_pct"] for p in points], "s--", color="grey", label="CPU % of a core"
        )
        share.set_ylabel("collector CPU, % of one core")
        share.set_ylim(0, 100)
        ax.set_title(title)
        lines, labels = ax.get_legend_handles_labels()
        more, more_labels = share.get_legend_handles_labels()
        ax.legend(lines + more, labels + more_labels, loc="lower right")
        ax.grid(alpha=0.3)
    busy = " (machine busy)" if result.get("machine_busy") else ""
    cores = result["machine"]["cores"]
    fig.suptitle(f"Targets one collector polls per interval, {cores} cores{busy}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
