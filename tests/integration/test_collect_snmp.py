"""The SNMP collector against real peers: Debian's ``snmpd`` on loopback, ``snmptrap``, and
the local stack's Kafka.

Each test starts its own ``snmpd`` (net-snmp) on a free UDP port of 127.0.0.1 and 127.0.0.2
with a generated configuration: a v2c community and a v3 authPriv user (SHA + AES), both
random. Node ``A`` (127.0.0.1) is polled over v2c and sends the traps, node ``B``
(127.0.0.2) over v3. The collector runs in-process (``ioc.services.collect.cli.collect``,
what ``ioc collect`` runs) into a private topic prefix, and the test reads its topic back:

- v2c and v3 polls land as ``netnode.counters``, and a ``linkDown`` sent with ``snmptrap``
  lands as ``netnode.link`` named like the polled interface;
- a veth pair the test makes (root and ``ip``), taken down and up again, is seen by the polls
  as ``netnode.link`` down then up (no trap: the agent's own table);
- with the collector pointed at a closed port (the broker "down": the shared broker itself is
  never stopped), the messages stay in the disk spool; a collector started on the same spool
  with the real broker sends them first, then its own, each node's in sequence order.

net-snmp is installed by ``make install`` (``python -m ioc.deploy.local.snmp_peers``) or here
on first use (root); without root and without it the tests skip, saying why.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from ioc.config import Settings
from ioc.contract import metrics as m
from ioc.contract import schemas as s
from ioc.contract.feeds import Collection
from ioc.contract.topology import load_scenario
from ioc.deploy.local.snmp_peers import agent_conf
from ioc.services.collect import snmp
from ioc.services.collect.cli import Plan, collect
from ioc.services.collect.spool import SpoolingSink
from ioc.sinks import Record, Sink
from tests.support.collect import closed_port, collect_plan, read_back

COLLECTION = Collection(
    interval_s={"netnode.probe": 5.0, "netnode.counters": 2.0}, timeout_s=1.0, echoes=1
)
QUIET = {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}
"""net-snmp without MIB files (Debian ships none): numeric OIDs only, no warnings."""


def _tools() -> dict[str, str]:
    from ioc.deploy.local.process import StackError
    from ioc.deploy.local.snmp_peers import ensure_snmp_tools

    try:
        return ensure_snmp_tools()
    except StackError as exc:
        pytest.skip(str(exc))


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Agent:
    port: int
    community: str
    user: str
    auth_key: str
    priv_key: str
    snmptrap: str
    engine_id: str = ""
    """snmpd's snmpEngineID, which its v3 traps carry (snmptrap ``-e``): the collector learns
    it from node B's polls (it is not in the credentials)."""

    def credentials(self, path: Path) -> Path:
        snmp.secure_write(
            path,
            f'[profiles.default]\nversion = "2c"\ncommunity = "{self.community}"\n'
            f"port = {self.port}\n"
            f'[profiles.v3]\nversion = "3"\nuser = "{self.user}"\n'
            f'auth_key = "{self.auth_key}"\npriv_key = "{self.priv_key}"\n'
            f'auth_protocol = "sha"\npriv_protocol = "aes"\nport = {self.port}\n',
        )
        return path


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    """A real snmpd on 127.0.0.1 and 127.0.0.2, stopped (by its pid) after the test."""
    tools = _tools()
    port = _free_udp_port()
    agent = Agent(
        port=port,
        community=f"c{secrets.token_hex(6)}",
        user=f"u{secrets.token_hex(3)}",
        auth_key=secrets.token_hex(8),
        priv_key=secrets.token_hex(8),
        snmptrap=tools["snmptrap"],
    )
    conf = tmp_path / "snmpd.conf"
    conf.write_text(
        agent_conf(agent.community, "127.0.0.0/8", agent.user, agent.auth_key, agent.priv_key)
    )
    log = tmp_path / "snmpd.log"
    proc = subprocess.Popen(
        [
            tools["snmpd"],
            "-f",
            "-Lf",
            str(log),
            "-C",
            "-c",
            str(conf),
            f"--persistentDir={tmp_path / 'persist'}",
            "-p",
            str(tmp_path / "snmpd.pid"),
            f"udp:127.0.0.1:{port},udp:127.0.0.2:{port}",
        ],
        env=QUIET,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not _answers(agent):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"snmpd did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        yield agent
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(agent: Agent) -> bool:
    """The agent answers a v2c get (a UDP probe without any library)."""

    async def probe() -> bool:
        poller = snmp.SnmpPoller(0.5)
        try:
            target = snmp.SnmpTarget(
                "probe",
                "127.0.0.1",
                snmp.Profile.model_validate(
                    {"version": "2c", "community": agent.community, "port": agent.port}
                ),
            )
            await poller.poll(target, lambda: 0)
            return True
        except snmp.PollFailed:
            return False
        finally:
            poller.close()

    return asyncio.run(probe())


def _scenario(tmp_path: Path) -> tuple[Path, str, str]:
    """The demo scenario with node A at 127.0.0.1 (v2c) and node B at 127.0.0.2 (v3)."""
    topo = load_scenario("demo")
    a, b = sorted(topo.devices_of("netnode"), key=lambda d: d.id)[:2]
    a.attributes["address"] = "127.0.0.1"
    b.attributes["address"] = "127.0.0.2"
    b.attributes["snmp_profile"] = "v3"
    path = tmp_path / "province.yaml"
    path.write_text(yaml.safe_dump(topo.to_document(), allow_unicode=True))
    return path, a.id, b.id


def _plan(scenario: Path, credentials: Path, trap_port: int | None) -> Plan:
    return collect_plan(scenario, "snmp", trap_port=trap_port, snmp_credentials=str(credentials))


async def _first_interface(agent: Agent) -> tuple[int, str]:
    """ifIndex and name of the agent's first interface that is up and not a loopback (a
    linkDown trap for it is a change; for one already down it would be a repeat); notes the
    agent's engine id."""
    poller = snmp.SnmpPoller(1.0)
    try:
        profile = snmp.Profile.model_validate(
            {"version": "2c", "community": agent.community, "port": agent.port}
        )
        sample = await poller.poll(snmp.SnmpTarget("x", "127.0.0.1", profile), lambda: 0)
    finally:
        poller.close()
    assert sample.engine_id, "snmpd answers snmpEngineID.0"
    agent.engine_id = sample.engine_id
    for row in sorted(sample.rows.values(), key=lambda r: r.index):
        if row.type != snmp.SOFTWARE_LOOPBACK and row.oper == snmp.STATUS_UP:
            return row.index, row.name
    pytest.skip("this host has no interface that is up besides the loopback")


async def _send_link(
    agent: Agent, trap_port: int, if_index: int, trap: str = "3", inform: bool = False
) -> None:
    """``snmptrap`` a linkDown (trap 3) or linkUp (4); an inform (``-Ci``) fails unless the
    receiver acknowledges it (net-snmp retries, then exits non-zero)."""
    proc = await asyncio.create_subprocess_exec(
        agent.snmptrap,
        "-v2c",
        *(["-Ci", "-t", "1", "-r", "1"] if inform else []),
        "-c",
        agent.community,
        f"127.0.0.1:{trap_port}",
        "",
        f".1.3.6.1.6.3.1.1.5.{trap}",
        f".1.3.6.1.2.1.2.2.1.1.{if_index}",
        "i",
        str(if_index),
        f".1.3.6.1.2.1.2.2.1.8.{if_index}",
        "i",
        "2" if trap == "3" else "1",
        env=QUIET,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err


async def _send_v3_link_down(agent: Agent, trap_port: int, if_index: int) -> None:
    """``snmptrap`` an SNMPv3 authPriv linkDown from node B (127.0.0.2), with its user and
    the agent's engine (as the agent itself would send it)."""
    proc = await asyncio.create_subprocess_exec(
        agent.snmptrap,
        "--clientaddr=127.0.0.2",
        "-v3",
        "-l",
        "authPriv",
        "-e",
        f"0x{agent.engine_id}",
        "-u",
        agent.user,
        "-a",
        "SHA",
        "-A",
        agent.auth_key,
        "-x",
        "AES",
        "-X",
        agent.priv_key,
        f"127.0.0.1:{trap_port}",
        "",
        ".1.3.6.1.6.3.1.1.5.3",
        f".1.3.6.1.2.1.2.2.1.1.{if_index}",
        "i",
        str(if_index),
        env=QUIET,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err


async def test_snmpd_v2c_v3_and_a_trap_into_kafka(
    agent: Agent, topics: Settings, tmp_path: Path
) -> None:
    scenario, node_a, node_b = _scenario(tmp_path)
    plan = await asyncio.to_thread(
        _plan, scenario, agent.credentials(tmp_path / "snmp.toml"), trap_port=0
    )
    assert {t.device_id: t.profile.version for t in plan.snmp} == {node_a: "2c", node_b: "3"}
    if_index, if_name = await _first_interface(agent)
    registry = CollectorRegistry()
    sink = SpoolingSink(
        topics, tmp_path / "spool", client_id="ioc-collector-test", registry=registry
    )
    trap_port = TrapPort()
    stop = asyncio.Event()
    task = asyncio.create_task(
        collect(
            plan,
            sink,
            COLLECTION,
            stop,
            rounds=3,
            registry=registry,
            on_trap_port=trap_port.bound,
        )
    )
    port = await trap_port.wait()
    await asyncio.sleep(2.5)  # after the first round named the interfaces
    sent_at = time.time() * 1000
    await _send_link(agent, port, if_index)
    await _send_link(agent, port, if_index, trap="4", inform=True)  # acknowledged, or fails
    await _send_v3_link_down(agent, port, if_index)
    summary = await asyncio.wait_for(task, 30)
    await asyncio.to_thread(sink.flush, 30.0)
    sink.close()
    assert summary.snmp_rounds == 3 and summary.traps["link"] == 3
    assert sink.errors == 0 and sink.spool.depth == 0

    messages = await read_back(topics, ["netnode"], sink.sent, "snmp")
    assert len(messages) == sink.sent
    counters = [x for x in messages if isinstance(x, s.NetnodeCounters)]
    assert {x.device_id for x in counters} == {node_a, node_b}  # v2c and v3
    assert all(x.interval_s in (1, 2, 3) and x.capacity_bps >= 1 for x in counters)
    links = [x for x in messages if isinstance(x, s.NetnodeLink)]
    trap = [x for x in links if x.state == "down" and x.device_id == node_a]
    assert len(trap) == 1 and (trap[0].device_id, trap[0].interface) == (node_a, if_name)
    assert trap[0].ts_ms - sent_at < 2000  # at once, not at the next poll
    informed = [
        x
        for x in links
        if x.device_id == node_a and x.state == "up" and x.ts_ms < trap[0].ts_ms + 1000
    ]
    assert [x.interface for x in informed] == [if_name]
    v3 = [x for x in links if x.device_id == node_b and x.state == "down"]
    assert [x.interface for x in v3] == [if_name] and v3[0].ts_ms - sent_at < 3000

    def value(spec: m.MetricSpec, **labels: str) -> float:
        return registry.get_sample_value(spec.series, labels) or 0.0

    assert value(m.COLLECT_REQUESTS, protocol="snmp") >= 6
    assert value(m.COLLECT_REPLIES, protocol="snmp") == value(m.COLLECT_REQUESTS, protocol="snmp")
    assert value(m.COLLECT_TRAPS, outcome="link") == 3
    assert value(m.COLLECT_MESSAGES, kind="netnode.counters") == len(counters)


async def test_the_spool_survives_a_broker_outage(
    agent: Agent, topics: Settings, tmp_path: Path
) -> None:
    scenario, node_a, node_b = _scenario(tmp_path)
    credentials = agent.credentials(tmp_path / "snmp.toml")
    spool = tmp_path / "spool"
    if_index, _ = await _first_interface(agent)

    # 1. The broker is "down": the collector points at a port where nothing listens.
    closed = topics.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{closed_port()}"})
    registry = CollectorRegistry()
    down = await asyncio.to_thread(
        SpoolingSink, closed, spool, client_id="ioc-collector-test", registry=registry
    )
    trap_port = TrapPort()
    plan = await asyncio.to_thread(_plan, scenario, credentials, 0)
    task = asyncio.create_task(
        collect(
            plan,
            down,
            COLLECTION,
            asyncio.Event(),
            rounds=3,
            registry=registry,
            on_trap_port=trap_port.bound,
        )
    )
    port = await trap_port.wait()
    await asyncio.sleep(2.5)
    await _send_link(agent, port, if_index)
    await asyncio.wait_for(task, 30)
    await asyncio.to_thread(down.flush, 1.0)
    assert down.sent == 0 and down.errors == 0
    spooled = [s.decode(r.value, feed="netnode") for r in down.spool.records()]
    assert len(spooled) == down.spool.depth >= 5  # 2 nodes' counters x 2 rounds and the trap
    assert any(isinstance(x, s.NetnodeLink) for x in spooled)
    assert registry.get_sample_value(m.COLLECT_SPOOL_RECORDS.name) == len(spooled)
    down.close()

    # 2. A collector on the same spool with the broker back: the spool first, then its own.
    up = SpoolingSink(topics, spool, client_id="ioc-collector-test", registry=CollectorRegistry())
    assert up.spool.recovered == len(spooled)
    summary = await collect(
        await asyncio.to_thread(_plan, scenario, credentials, None),
        up,
        COLLECTION,
        asyncio.Event(),
        rounds=2,
        registry=CollectorRegistry(),
    )
    await asyncio.to_thread(up.flush, 30.0)
    up.close()
    assert summary.snmp_rounds == 2 and up.errors == 0 and up.spool.depth == 0
    messages = await read_back(topics, ["netnode"], up.sent, "snmp")
    assert len(messages) == up.sent > len(spooled)
    assert messages.count(spooled[0]) == 1 and all(x in messages for x in spooled)
    for node in (node_a, node_b):  # a node's messages are one partition: in order
        seqs = [x.seq for x in messages if x.device_id == node]
        spooled_seqs = [x.seq for x in spooled if x.device_id == node]
        assert seqs == sorted(seqs) and seqs[: len(spooled_seqs)] == spooled_seqs


class TrapPort:
    """The port the collector's trap receiver bound, awaited by the test."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.port = 0

    def bound(self, port: int) -> None:
        self.port = port
        self._event.set()

    async def wait(self) -> int:
        await self._event.wait()
        return self.port


class MemorySink(Sink):
    def __init__(self) -> None:
        self.messages: list[s.Message] = []

    def send(self, record: Record) -> None:
        self.messages.append(s.decode(record.value, feed="netnode"))
        self.sent += 1


async def _ip(*args: str, check: bool = True) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0 or not check, f"ip {' '.join(args)}: {err.decode()}"


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes a veth pair")
@pytest.mark.skipif(shutil.which("ip") is None, reason="needs `ip` (iproute2)")
async def test_an_interface_taken_down_and_up_is_seen_by_the_polls(
    agent: Agent, tmp_path: Path
) -> None:
    scenario, node_a, _ = _scenario(tmp_path)
    plan = await asyncio.to_thread(_plan, scenario, agent.credentials(tmp_path / "s.toml"), None)
    plan.snmp = [t for t in plan.snmp if t.device_id == node_a]
    tag = secrets.token_hex(3)
    near, far = f"iocsa{tag}", f"iocsb{tag}"  # 11 characters: within IFNAMSIZ
    sink = MemorySink()
    stop = asyncio.Event()
    await _ip("link", "add", near, "type", "veth", "peer", "name", far)
    try:
        await _ip("link", "set", near, "up")
        await _ip("link", "set", far, "up")
        task = asyncio.create_task(
            collect(plan, sink, COLLECTION, stop, registry=CollectorRegistry())
        )

        def link(state: str) -> bool:
            return any(
                isinstance(x, s.NetnodeLink) and x.interface == far and x.state == state
                for x in sink.messages
            )

        def counted() -> bool:
            return any(
                isinstance(x, s.NetnodeCounters) and x.interface == far for x in sink.messages
            )

        await _until(counted, 15, f"counters of {far}")  # two polls saw it up
        await _ip("link", "set", far, "down")
        await _until(lambda: link("down"), 15, f"{far} down")
        await _ip("link", "set", far, "up")
        await _until(lambda: link("up"), 15, f"{far} up again")
        stop.set()
        await asyncio.wait_for(task, 15)
    finally:
        stop.set()
        await _ip("link", "del", near, check=False)
    links = [x for x in sink.messages if isinstance(x, s.NetnodeLink) and x.interface == far]
    assert [x.state for x in links] == ["down", "up"] and {x.device_id for x in links} == {node_a}
    seqs = [x.seq for x in sink.messages]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
