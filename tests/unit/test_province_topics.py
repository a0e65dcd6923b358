"""Per-province feed topics (``IOC_KAFKA_PROVINCE_TOPICS``, docs/scaling.md): the pure logic.

Topic names and the subscription pattern, the ACLs and quotas of the provinces' users, the
province check of validation, the feed consumer's rounds across topics, the producers' routing
and the Kubernetes documents. Against the broker: tests/integration/test_province_topics.py.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from ioc.bootstrap import kafka_topics
from ioc.config import Settings
from ioc.contract import access
from ioc.contract import schemas as s
from ioc.contract import topics as t
from ioc.contract.topology import Topology, load_scenario
from ioc.deploy.k8s import manifests as m
from ioc.sinks import FileSink
from ioc.streams.consumer import FeedConsumer
from ioc.streams.processor import FeedProcessor, Record
from tests.unit.test_access import FakeAdmin, fake_admin  # noqa: F401 (fixture)
from tests.unit.test_feed_consumer import _Message, _Processor
from tests.unit.test_rows_and_processor import FakePool

NOW = int(time.time() * 1000)
PREFIX = "t0123456789."
TWO_PROVINCES = """\
scenario: two-provinces
levels: [province, commune]
units:
  - {code: "10", name: Lao Cai, level: province, lat: 22.4, lon: 104.0}
  - {code: 10-001, name: Xa A, level: commune, parent: "10", lat: 22.41, lon: 104.01}
  - {code: "20", name: Lang Son, level: province, lat: 21.85, lon: 106.76}
  - {code: 20-001, name: Xa B, level: commune, parent: "20", lat: 21.86, lon: 106.77}
sites:
  - {id: s-10, name: Lao Cai core, kind: provincial_core, unit: "10", lat: 22.4, lon: 104.0}
  - {id: s-10-1, name: Xa A office, kind: commune_office, unit: 10-001, lat: 22.41, lon: 104.01}
  - {id: s-20, name: Lang Son core, kind: provincial_core, unit: "20", lat: 21.85, lon: 106.76}
  - {id: s-20-1, name: Xa B office, kind: commune_office, unit: 20-001, lat: 21.86, lon: 106.77}
devices:
  - {id: nn-10, class: netnode, site: s-10}
  - {id: cam-10, class: camera, site: s-10-1, upstream: nn-10}
  - {id: nn-20, class: netnode, site: s-20}
  - {id: cam-20, class: camera, site: s-20-1, upstream: nn-20}
"""


@pytest.fixture
def two(tmp_path: Path) -> Topology:
    path = tmp_path / "two-provinces.yaml"
    path.write_text(TWO_PROVINCES)
    return load_scenario(str(path))


# --- names and pattern -------------------------------------------------------------------------
def test_a_province_topic_is_its_feed_topic_under_the_province_prefix() -> None:
    spec = t.province_topic(t.CAMERA, "15")
    assert spec.name == "ioc.p.15.camera.v1"
    assert spec.partitions == t.PROVINCE_PARTITIONS == 2
    assert spec.configs() == t.CAMERA.configs()


def test_every_feed_of_every_province_of_a_scenario(two: Topology) -> None:
    names = [spec.name for spec in t.province_topics(two)]
    feeds = [spec.name.removeprefix("ioc.") for spec in t.FEED_TOPICS.values()]
    assert names == [f"ioc.p.{p}.{f}" for p in ("10", "20") for f in feeds]
    assert len(t.province_topics(load_scenario("demo"))) == len(t.FEED_TOPICS)


def test_bootstrap_adds_them_only_when_the_setting_is_on(two: Topology) -> None:
    off = kafka_topics(Settings(), two)
    assert off == list(t.all_topics())
    on = kafka_topics(Settings(kafka_province_topics=True), two)
    assert on == [*t.all_topics(), *t.province_topics(two)]


@pytest.mark.parametrize("code", ["15.1", "a b", "", "x*"])
def test_a_code_that_cannot_name_a_topic_is_refused(code: str) -> None:
    with pytest.raises(t.ProvinceTopicError):
        t.province_topic(t.CAMERA, code)
    with pytest.raises(t.ProvinceTopicError):
        access.province_user(code)


def test_the_pattern_matches_the_feeds_province_topics_of_its_namespace_only() -> None:
    pattern = t.province_topic_pattern(PREFIX, t.CAMERA)
    assert pattern == r"^t0123456789\.ioc\.p\.[^.]+\.camera\.v1$"
    match = re.compile(pattern).match
    assert match(f"{PREFIX}ioc.p.15.camera.v1")
    assert match(f"{PREFIX}ioc.p.old-15.camera.v1")
    for other in (
        f"{PREFIX}ioc.camera.v1",  # the shared topic: subscribed by name
        f"{PREFIX}ioc.p.15.netnode.v1",  # another feed
        f"{PREFIX}ioc.p.15.camera.v10",
        "t9999999999.ioc.p.15.camera.v1",  # another namespace
        "ioc.p.15.camera.v1",
        f"{PREFIX}ioc.p.15.x.camera.v1",  # no dot in a province code
        f"{PREFIX}ioc.pX15.camera.v1",  # dots are literal
    ):
        assert not match(other), other


def test_a_topic_name_gives_back_its_province_and_feed() -> None:
    assert t.parse_province_topic(PREFIX, f"{PREFIX}ioc.p.15.camera.v1") == ("15", "camera")
    assert t.parse_province_topic("", "ioc.p.20.soc.v1") == ("20", "soc")
    assert t.parse_province_topic(PREFIX, f"{PREFIX}ioc.camera.v1") is None
    assert t.parse_province_topic(PREFIX, "ioc.p.15.camera.v1") is None
    assert t.parse_province_topic(PREFIX, f"{PREFIX}ioc.p.15.nofeed.v1") is None
    for spec in t.province_topics(load_scenario("demo")):
        province, feed = t.parse_province_topic("", spec.name) or ("", "")
        assert province == "99" and t.FEED_TOPICS[feed].name.endswith(spec.name[len("ioc.p.99.") :])


# --- ACLs and quotas ---------------------------------------------------------------------------
def test_a_province_user_writes_its_own_prefix_and_nothing_else() -> None:
    grants = access.province_acls(PREFIX, ["20", "10", "10"])
    assert grants == [
        access.AclGrant("User:ioc-p-10", "TOPIC", f"{PREFIX}ioc.p.10.", "PREFIXED", "WRITE"),
        access.AclGrant("User:ioc-p-20", "TOPIC", f"{PREFIX}ioc.p.20.", "PREFIXED", "WRITE"),
    ]
    # the prefix ends with the dot: province 1's may not write province 10's or 15's topics
    assert access.province_acls("", ["1"])[0].name == "ioc.p.1."


def test_with_the_setting_the_worker_reads_and_the_simulator_writes_every_province() -> None:
    off = access.kafka_acls(PREFIX)
    assert all(g.pattern == "LITERAL" for g in off)
    on = access.kafka_acls(PREFIX, province_topics=True)
    added = sorted(set(on) - set(off))
    assert added == [
        access.AclGrant("User:ioc-simulator", "TOPIC", f"{PREFIX}ioc.p.", "PREFIXED", "WRITE"),
        access.AclGrant("User:ioc-worker", "TOPIC", f"{PREFIX}ioc.p.", "PREFIXED", "READ"),
    ]
    assert set(off) <= set(on)
    for service in ("ops", "pager", "collector"):
        assert access.kafka_acls(PREFIX, [service], province_topics=True) == access.kafka_acls(
            PREFIX, [service]
        )
    table = access.acl_table(PREFIX, province_topics=True)
    assert f"| worker (`ioc-worker`) | topic `{PREFIX}ioc.p.*` | READ |" in table


def test_the_quota_is_a_producer_byte_rate() -> None:
    assert access.PROVINCE_QUOTAS["producer_byte_rate"] > 0
    assert set(access.PROVINCE_QUOTAS) <= {
        "producer_byte_rate",
        "consumer_byte_rate",
        "request_percentage",
    }


async def test_ensure_acls_grants_the_provinces_and_drop_removes_them(
    fake_admin: type[FakeAdmin],  # noqa: F811
) -> None:
    from ioc.kafka import drop_acls, ensure_acls, wanted_acls

    settings = Settings(kafka_topic_prefix=PREFIX, kafka_province_topics=True)
    wanted = wanted_acls(settings, ["10", "20"])
    assert len(wanted) == len(access.kafka_acls(PREFIX)) + 2 + 2
    first = await ensure_acls(settings, ["10", "20"])
    assert first.created == len(wanted)
    assert (await ensure_acls(settings, ["10", "20"])).created == 0
    assert await drop_acls(settings) == len(wanted)
    assert fake_admin.bindings == []
    # off: the provinces are not granted anything, whatever the scenario
    off = Settings(kafka_topic_prefix=PREFIX)
    assert (await ensure_acls(off, ["10", "20"])).created == len(access.kafka_acls(PREFIX))


# --- validation --------------------------------------------------------------------------------
def _camera(device: str) -> bytes:
    return s.encode(
        s.CameraHeartbeat(v=1, device_id=device, seq=1, ts_ms=NOW, status="ok", uptime_s=1)
    )


def _processor(topology: Topology) -> tuple[FeedProcessor, list[tuple[bytes | None, bytes]]]:
    sent: list[tuple[bytes | None, bytes]] = []

    async def send(key: bytes | None, value: bytes) -> Any:
        sent.append((key, value))

    return FeedProcessor(topology, FakePool(), send), sent


def test_a_device_of_another_province_on_a_province_topic_is_refused(two: Topology) -> None:
    processor, _ = _processor(two)
    records = [
        Record("ioc.p.10.camera.v1", 0, 0, b"cam-10", _camera("cam-10")),
        Record("ioc.p.10.camera.v1", 0, 1, b"cam-20", _camera("cam-20")),
        Record("ioc.camera.v1", 0, 0, b"cam-20", _camera("cam-20")),  # shared: any province
    ]
    valid, invalid = processor.validate("camera", records, NOW, ["10", "10", None])
    assert [m.device_id for m in valid] == ["cam-10", "cam-20"]
    [(record, problem)] = invalid
    assert record.offset == 1 and problem.reason == s.REASON_WRONG_PROVINCE
    assert "cam-20 is under province 20, not under province 10" in problem.detail
    assert s.REASON_WRONG_PROVINCE in s.DLQ_REASONS
    # without provinces (the setting off) nothing is checked
    assert len(processor.validate("camera", records, NOW)[0]) == 3


def test_the_dead_letter_names_the_reason_and_the_source_topic(two: Topology) -> None:
    processor, sent = _processor(two)
    record = Record("ioc.p.10.camera.v1", 1, 7, b"cam-20", _camera("cam-20"))
    asyncio.run(processor.process("camera", [record], ["10"]))
    [(key, value)] = sent
    assert key == b"ioc.p.10.camera.v1/1/7"
    doc = orjson.loads(value)
    assert doc["reason"] == s.REASON_WRONG_PROVINCE and doc["feed"] == "camera"


# --- the feed consumer -------------------------------------------------------------------------
def _consumer(on: bool) -> FeedConsumer:
    async def ready() -> FeedProcessor:
        raise AssertionError

    return FeedConsumer(Settings(kafka_topic_prefix=PREFIX, kafka_province_topics=on), ready)


def test_the_consumer_subscribes_by_pattern_only_with_the_setting() -> None:
    assert _consumer(False).patterns == []
    on = _consumer(True)
    assert on.patterns == [
        t.province_topic_pattern(PREFIX, spec) for spec in t.FEED_TOPICS.values()
    ]
    assert on.route(f"{PREFIX}ioc.p.15.camera.v1") == ("camera", "15")
    assert on.route(f"{PREFIX}ioc.camera.v1") == ("camera", None)
    assert on.route("elsewhere") is None
    assert on.partition_label(f"{PREFIX}ioc.p.15.camera.v1", 1) == ("camera", "15:1")
    assert on.partition_label(f"{PREFIX}ioc.camera.v1", 1) == ("camera", "1")
    assert _consumer(False).route(f"{PREFIX}ioc.p.15.camera.v1") is None


def test_a_round_batches_one_feed_across_its_topics() -> None:
    consumer = _consumer(True)
    shared = f"{PREFIX}ioc.camera.v1"
    p10, p20 = f"{PREFIX}ioc.p.10.camera.v1", f"{PREFIX}ioc.p.20.camera.v1"
    netnode = f"{PREFIX}ioc.p.10.netnode.v1"
    messages = [
        _Message(p10, 0, 5),
        _Message(shared, 3, 70),
        _Message(netnode, 1, 9),
        _Message(p20, 1, 2),
        _Message(p10, 0, 6),
    ]
    processor = _Processor()
    prepared, offsets = consumer._prepare(processor, messages)
    assert [p.feed for p in prepared] == ["camera", "netnode"]  # one per feed, not per topic
    assert processor.calls == [
        ("camera", 4, {(p10, 0): 6, (shared, 3): 70, (p20, 1): 2}),
        ("netnode", 1, {(netnode, 1): 9}),
    ]
    assert processor.provinces == [["10", "10", None, "20"], ["10"]]
    source = processor.sources[0]
    assert [(source(i).topic, source(i).offset) for i in range(4)] == [
        (p10, 5),
        (p10, 6),
        (shared, 70),
        (p20, 2),
    ]
    assert offsets[(p10, 0)] == 7


def test_with_the_setting_off_a_round_is_as_before() -> None:
    consumer = _consumer(False)
    processor = _Processor()
    consumer._prepare(processor, [_Message(f"{PREFIX}ioc.camera.v1", 0, 1)])
    assert processor.provinces == [None]


# --- producers ---------------------------------------------------------------------------------
class _Out:
    def __init__(self, feed: str, key: bytes) -> None:
        self.feed, self.key, self.value = feed, key, b"{}"


def test_the_simulators_sink_routes_each_device_to_its_provinces_topic(
    two: Topology, tmp_path: Path
) -> None:
    settings = Settings(kafka_topic_prefix=PREFIX, kafka_province_topics=True)
    province_of = {d.encode(): two.province_of(d) for d in two.devices}
    assert province_of == {b"nn-10": "10", b"cam-10": "10", b"nn-20": "20", b"cam-20": "20"}
    sink = FileSink(settings, tmp_path / "out.jsonl", province_of)
    for record in (
        _Out("camera", b"cam-20"),
        _Out("netnode", b"nn-10"),
        _Out("camera", b"stranger"),
        _Out("faults", b"cam-10"),
    ):
        sink.send(record)
    sink.close()
    topics = [
        orjson.loads(line)["topic"]
        for line in (tmp_path / "out.jsonl").read_bytes().split(b"\n")
        if line
    ]
    assert topics == [
        f"{PREFIX}ioc.p.20.camera.v1",
        f"{PREFIX}ioc.p.10.netnode.v1",
        f"{PREFIX}ioc.camera.v1",  # no device of the scenario: the shared topic
        f"{PREFIX}ioc.faults.v1",
    ]


# --- a province's collector (ioc collect --province) -------------------------------------------
def _addressed(tmp_path: Path, *devices: str) -> Path:
    """The two provinces' scenario with an inventory address on ``devices``."""
    lines = []
    for line in TWO_PROVINCES.splitlines():
        for device in devices:
            if line.startswith(f"  - {{id: {device}, "):
                address = "rtsp://192.0.2.9/live" if "cam" in device else "192.0.2.1"
                line = line.replace("}", f", attributes: {{address: '{address}'}}}}")
        lines.append(line)
    path = tmp_path / "addressed.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_provinces_collector_writes_only_its_provinces_topics(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from ioc.services.collect.spool import SpoolingSink, default_directory
    from ioc.sinks import topic_names
    from tests.unit.test_collect_snmp import FakeProducer

    settings = Settings(kafka_topic_prefix=PREFIX, kafka_province_topics=True)
    names = topic_names(settings, fault_log=False, province="10")
    assert names == {
        feed: f"{PREFIX}{t.province_topic(spec, '10').name}" for feed, spec in t.FEED_TOPICS.items()
    }
    assert "faults" not in topic_names(settings, province="10"), "its user may not see it"
    producer = FakeProducer(up=False)
    sink = SpoolingSink(
        settings,
        tmp_path / "spool",
        max_bytes=1 << 20,
        client_id="t",
        registry=CollectorRegistry(),
        producer=producer,
        province="10",
    )
    for record in (_Out("camera", b"cam-10"), _Out("netnode", b"nn-10")):
        sink.send(record)
    assert [topic for topic, *_ in producer.queue] == [
        f"{PREFIX}ioc.p.10.camera.v1",
        f"{PREFIX}ioc.p.10.netnode.v1",
    ]
    sink.close()
    # one spool per province and shard: never replayed by a collector writing other topics
    stack = Path("/stack")
    assert default_directory(stack, 0, 2) == stack / "collector" / "spool-0-of-2"
    assert default_directory(stack, 0, 2, "10") == stack / "collector" / "spool-p10-0-of-2"


def test_a_provinces_collector_is_refused_what_it_cannot_write(
    two: Topology, tmp_path: Path
) -> None:
    from ioc.errors import ConfigError
    from ioc.services.collect.province import check, polled_devices
    from ioc.services.collect.targets import TargetError

    on = Settings(kafka_province_topics=True)
    with pytest.raises(ConfigError, match="IOC_KAFKA_PROVINCE_TOPICS=true"):
        check(Settings(), two, "10", [])
    with pytest.raises(TargetError, match=r"--province 30: not a province of two-provinces"):
        check(on, two, "30", [])
    with pytest.raises(TargetError, match=r"--province 10-001: not a province"):
        check(on, two, "10-001", [])  # a commune is no province
    check(on, two, "10", ["nn-10", "cam-10"])
    with pytest.raises(TargetError, match=r"1 devices to poll are under another .*: nn-20 \(20\)"):
        check(on, two, "10", ["nn-10", "nn-20"])

    scenario = load_scenario(str(_addressed(tmp_path, "nn-10", "cam-10", "cam-20")))
    assert polled_devices(scenario, ["icmp"], traps=False) == ["nn-10"]
    assert polled_devices(scenario, ["http"], traps=True) == ["nn-10"]  # the trap receiver's
    assert polled_devices(scenario, ["rtsp"], traps=False) == ["cam-10", "cam-20"]
    assert polled_devices(scenario, ["http"], traps=False) == []


def test_collect_province_refuses_in_one_line_before_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ioc.cli import main

    scenario = str(_addressed(tmp_path, "nn-10", "nn-20"))
    out = tmp_path / "out.jsonl"
    argv = ["collect", "--scenario", scenario, "--protocols", "icmp", "--out", str(out)]
    monkeypatch.delenv("IOC_KAFKA_PROVINCE_TOPICS", raising=False)
    assert main([*argv, "--province", "10"]) == 2
    assert "--province 10 needs per-province topics" in capsys.readouterr().err
    monkeypatch.setenv("IOC_KAFKA_PROVINCE_TOPICS", "true")
    assert main([*argv, "--province", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "ioc: error: --province 10: 1 devices to poll are under another province: nn-20 (20); "
        "give this collector its province's inventory (docs/collectors.md)"
    )
    assert main([*argv, "--province", "99"]) == 2
    assert "not a province of two-provinces (its provinces: 10, 20)" in capsys.readouterr().err
    assert not out.exists(), "refused before anything was opened"


def test_a_provinces_collector_logs_in_as_the_provinces_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import SecretStr

    from ioc.errors import ConfigError
    from ioc.services.collect.province import kafka_settings

    stack = {"ioc": "admin-pw", "ioc-p-10": "p10-pw"}
    monkeypatch.setattr(Settings, "stack_kafka_users", lambda self: stack)
    sasl = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="ioc",
        kafka_sasl_password=SecretStr("admin-pw"),
    )
    own = kafka_settings(sasl, "10")  # the local stack: its password for the province's user
    assert own.kafka_sasl_username == "ioc-p-10"
    assert own.kafka_sasl_password is not None
    assert own.kafka_sasl_password.get_secret_value() == "p10-pw"
    with pytest.raises(ConfigError, match="no Kafka user ioc-p-20"):
        kafka_settings(sasl, "20")
    # a deployment names the user itself (IOC_KAFKA_SASL_USERNAME, IOC_KAFKA_SASL_PASSWORD)
    given = sasl.model_copy(
        update={"kafka_sasl_username": "ioc-p-10", "kafka_sasl_password": SecretStr("x")}
    )
    assert kafka_settings(given, "10") is given
    for user, password in (("ioc-collector", "x"), ("ioc-p-20", "x"), ("ioc", "another-admin")):
        other = sasl.model_copy(
            update={"kafka_sasl_username": user, "kafka_sasl_password": SecretStr(password)}
        )
        with pytest.raises(ConfigError, match="writes as Kafka user ioc-p-10, not "):
            kafka_settings(other, "10")
    plaintext = Settings()  # no SASL: no user, no ACL (the local development listener)
    assert kafka_settings(plaintext, "10") is plaintext


# --- Kubernetes --------------------------------------------------------------------------------
def test_k8s_without_the_option_has_no_province_topic_or_user() -> None:
    docs = m.documents(m.Options(scenario="national"))
    names = [d["spec"]["topicName"] for d in docs["11-kafka-topics.yaml"]]
    assert not [n for n in names if n.startswith("ioc.p.")]
    users = [d["metadata"]["name"] for d in docs["12-kafka-users.yaml"]]
    assert not [u for u in users if u.startswith(access.PROVINCE_USER_PREFIX)]


@pytest.fixture(scope="module")
def national() -> dict[str, list[dict[str, Any]]]:
    return m.documents(m.Options(scenario="national", province_topics=True))


def test_k8s_a_topic_per_feed_per_province_and_a_user_per_province(
    national: dict[str, list[dict[str, Any]]],
) -> None:
    provinces = load_scenario("national").top_units()
    assert len(provinces) == 34
    topics = {d["spec"]["topicName"]: d["spec"] for d in national["11-kafka-topics.yaml"]}
    for province in provinces:
        for spec in t.FEED_TOPICS.values():
            name = t.province_topic(spec, province).name
            assert topics[name]["partitions"] == t.PROVINCE_PARTITIONS
            assert topics[name]["replicas"] == m.KAFKA_REPLICAS
    users = {d["metadata"]["name"]: d["spec"] for d in national["12-kafka-users.yaml"]}
    assert users["ioc-p-15"] == {
        "authentication": {"type": "scram-sha-512"},
        "authorization": {
            "type": "simple",
            "acls": [
                {
                    "resource": {"type": "topic", "name": "ioc.p.15.", "patternType": "prefix"},
                    "operations": ["Write"],
                    "host": "*",
                }
            ],
        },
        "quotas": {"producerByteRate": 2 << 20, "requestPercentage": 10},
    }
    assert len([u for u in users if u.startswith("ioc-p-")]) == 34
    worker_rules = users["ioc-worker"]["authorization"]["acls"]
    assert {
        "resource": {"type": "topic", "name": "ioc.p.", "patternType": "prefix"},
        "operations": ["Read"],
        "host": "*",
    } in worker_rules
    for doc in national["30-processes.yaml"]:
        if doc["kind"] in ("Deployment", "Job"):
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            assert {"name": "IOC_KAFKA_PROVINCE_TOPICS", "value": "true"} in container["env"]


def _scaled(docs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (scaled,) = [d for d in docs["30-processes.yaml"] if d["kind"] == "ScaledObject"]
    return scaled


def test_k8s_keda_counts_the_province_topics_lag_too(
    national: dict[str, list[dict[str, Any]]],
) -> None:
    shared = sorted(spec.name for spec in t.FEED_TOPICS.values())
    without = _scaled(m.documents(m.Options(scenario="national")))["spec"]
    assert [tr["metadata"]["topic"] for tr in without["triggers"]] == shared
    spec = _scaled(national)["spec"]
    *named, group = spec["triggers"]
    assert named == without["triggers"], "the shared topics' triggers are kept as they were"
    # no topic: KEDA sums the lag of every topic the group committed offsets for, which is
    # every province's feed topics (one trigger, not 34 x 6 Kafka clients polling)
    assert "topic" not in group["metadata"]
    assert group["name"] == access.feeds_group("")
    assert group["metadata"] == {k: v for k, v in named[0]["metadata"].items() if k != "topic"}
    assert group["metadata"]["consumerGroup"] == access.feeds_group("")
    assert group["authenticationRef"] == named[0]["authenticationRef"]
    # round-robin gives every worker up to the group's partitions at least one of them
    assert (
        spec["maxReplicaCount"]
        == sum(s.partitions for s in t.FEED_TOPICS.values())
        + 34 * len(t.FEED_TOPICS) * t.PROVINCE_PARTITIONS
    )
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]


def test_k8s_max_replicas_follow_the_province_topics_partitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = tmp_path / "two-provinces.yaml"
    scenario.write_text(TWO_PROVINCES)
    off = m.Options(scenario=str(scenario))
    on = m.Options(scenario=str(scenario), province_topics=True)
    shared = sum(s.partitions for s in t.FEED_TOPICS.values())
    assert m.worker_max_replicas(off) == shared
    monkeypatch.setattr(t, "PROVINCE_PARTITIONS", 1)
    assert m.worker_max_replicas(on) == shared + 2 * len(t.FEED_TOPICS)
    assert m.worker_max_replicas(off) == shared
    assert len(m.group_topics(on)) == 3 * len(t.FEED_TOPICS)  # shared, and 2 provinces'


def test_k8s_max_replicas_assume_the_round_robin_assignor() -> None:
    """The ceiling is the group's partitions because round-robin deals every partition of
    every topic over the members; another assignor (range deals each topic out on its own
    from the first member on) needs another ceiling: this fails until it gets one."""
    from ioc.streams.consumer import CONSUMER_TUNING

    assert CONSUMER_TUNING["partition.assignment.strategy"] == "roundrobin", (
        "the feed consumer's assignor changed: revisit worker_max_replicas "
        "(deploy/ioc/deploy/k8s/manifests.py) and deploy/k8s/README.md"
    )


@pytest.mark.timeout(1800)
def test_k8s_province_documents_match_the_crd_schemas(
    national: dict[str, list[dict[str, Any]]],
) -> None:
    from ioc.deploy.k8s import validate as v

    check = v.crd_validator(v.crd_files())
    docs = [
        d
        for name in ("11-kafka-topics.yaml", "12-kafka-users.yaml")
        for d in national[name]
        if d["metadata"]["name"].startswith(("ioc-p-", "ioc.p.", "ioc-worker", "ioc-simulator"))
    ]
    assert len(docs) == 34 * (1 + len(t.FEED_TOPICS)) + 2
    docs.append(_scaled(national))
    errors = [f"{d['kind']}/{d['metadata']['name']}: {e}" for d in docs for e in check(d)]
    assert not errors, "\n".join(errors)


@pytest.mark.timeout(1800)
def test_k8s_province_documents_decode_strictly_into_their_types(
    national: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    from ioc.deploy.k8s import validate as v

    files = []
    for name in ("11-kafka-topics.yaml", "12-kafka-users.yaml"):
        path = tmp_path / name
        path.write_text(m.render(name, national[name]))
        files.append(path)
    decoded = v.java_decode(files, lambda line: None)
    assert len(decoded) == len(national["11-kafka-topics.yaml"]) + len(
        national["12-kafka-users.yaml"]
    )
    # the ScaledObject with its group-wide trigger, into KEDA's Go types
    scaled = tmp_path / "scaled.yaml"
    scaled.write_text(m.render("30-processes.yaml", [_scaled(national)]))
    (keda,) = v.go_decode([scaled], lambda line: None)
    assert keda.kind == "ScaledObject"
    invalid = [d for d in [*decoded, keda] if d.status != "ok"]
    assert not invalid, "\n".join(f"{d.kind}/{d.name}: {d.errors}" for d in invalid)
