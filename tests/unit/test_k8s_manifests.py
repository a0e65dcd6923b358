"""The Kubernetes manifests (deploy/k8s/manifests, ``ioc deploy k8s``), checked offline.

- staleness: the committed files are what the generator writes from today's contract;
- derivation: topics, users and ACLs, roles, rules, routing and dashboards are the contract's,
  the worker never scales past the feed partitions, the pods run as the image's user;
- strict decoding into the published API types: k8s.io/api, KEDA and the Prometheus Operator
  (Go checker), Strimzi's io.strimzi:api (Java checker), built from deploy/k8s/checker into
  ~/.cache/ioc on first use (progress on the terminal; later runs reuse them);
- every custom resource against its CRD's ``openAPIV3Schema`` (required, enums, patterns,
  unknown fields), the CRDs from the Go module zips or the committed, hash-checked copies.

CloudNativePG's Go types cannot be had (the module proxy refuses the module: 403), so its
``Cluster`` is checked against its CRD only; :data:`SCHEMA_ONLY` names it and a test fails
if any other kind is left without a typed decode.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ioc.alerting.alertmanager import alertmanager_document
from ioc.alerting.rules import rules_document
from ioc.contract import access
from ioc.contract import topics as t
from ioc.db import roles
from ioc.deploy.k8s import manifests as m
from ioc.deploy.k8s import validate as v

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "k8s" / "manifests"
DOCKERFILE = ROOT / "deploy" / "image" / "Dockerfile"
FILES = sorted(COMMITTED.glob("*.yaml"))

STRIMZI_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
SCHEMA_ONLY = {("postgresql.cnpg.io/v1", "Cluster")}
"""Kinds with no typed decode, and why: CloudNativePG's Go module is refused by the proxy."""
CORE_GROUPS = ("v1", "apps/v1", "batch/v1", "networking.k8s.io/v1", "policy/v1")

Doc = dict[str, Any]


def committed() -> list[tuple[Path, Doc]]:
    return list(v.documents_in(FILES))


def by_kind(kind: str) -> list[Doc]:
    return [doc for _, doc in committed() if doc["kind"] == kind]


def one(kind: str, name: str) -> Doc:
    (doc,) = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    return doc


def containers() -> Iterator[tuple[Doc, Doc]]:
    for doc in by_kind("Deployment") + by_kind("Job"):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            yield doc, container


# --- staleness ------------------------------------------------------------------------------


def test_committed_manifests_are_what_the_contract_generates(tmp_path: Path) -> None:
    written = {p.name: p.read_text() for p in m.build(tmp_path)}
    on_disk = {p.name: p.read_text() for p in FILES}
    stale = sorted(n for n in written.keys() | on_disk.keys() if written.get(n) != on_disk.get(n))
    assert not stale, f"deploy/k8s/manifests is stale ({stale}): run `ioc deploy k8s`"


def test_the_command_writes_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ioc.cli import main

    assert main(["deploy", "k8s", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in FILES]
    assert (tmp_path / "11-kafka-topics.yaml").read_text() == (
        COMMITTED / "11-kafka-topics.yaml"
    ).read_text()
    assert "wrote" in capsys.readouterr().out


def test_a_contract_change_makes_them_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staleness check is not vacuous: one more partition shows in the output."""
    monkeypatch.setattr(t, "CAMERA", t.TopicSpec(**{**t.CAMERA.__dict__, "partitions": 12}))
    monkeypatch.setattr(
        t, "ALL_TOPICS", tuple(t.CAMERA if s.name == t.CAMERA.name else s for s in t.ALL_TOPICS)
    )
    monkeypatch.setitem(
        t.FEED_TOPICS,
        next(k for k, s in t.FEED_TOPICS.items() if s.name == t.CAMERA.name),
        t.CAMERA,
    )
    m.build(tmp_path)
    assert (tmp_path / "11-kafka-topics.yaml").read_text() != (
        COMMITTED / "11-kafka-topics.yaml"
    ).read_text()


# --- derived from the contract --------------------------------------------------------------


def test_every_contract_topic_is_a_kafka_topic_with_its_partitions_and_configs() -> None:
    topics = {d["spec"]["topicName"]: d["spec"] for d in by_kind("KafkaTopic")}
    assert set(topics) == {s.name for s in t.all_topics()}
    for spec in t.all_topics():
        assert topics[spec.name]["partitions"] == spec.partitions
        assert topics[spec.name]["config"] == spec.configs()
        assert topics[spec.name]["replicas"] == m.KAFKA_REPLICAS


def test_kafka_is_kraft_with_node_pools_of_three() -> None:
    kafka = one("Kafka", m.KAFKA_CLUSTER)
    annotations = kafka["metadata"]["annotations"]
    assert annotations == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    pools = {d["metadata"]["name"]: d["spec"] for d in by_kind("KafkaNodePool")}
    assert {tuple(p["roles"]) for p in pools.values()} == {("broker",), ("controller",)}
    assert all(p["replicas"] == 3 for p in pools.values())
    config = kafka["spec"]["kafka"]["config"]
    assert config["auto.create.topics.enable"] is False
    # the brokers take what the producers send and what any topic allows
    from ioc.sinks import PRODUCER_TUNING

    largest = max(int(s.configs().get("max.message.bytes", 0)) for s in t.all_topics())
    assert config["message.max.bytes"] >= max(PRODUCER_TUNING["message.max.bytes"], largest)


def test_a_scram_user_per_service_with_the_acls_bootstrap_grants() -> None:
    users = {d["metadata"]["name"]: d["spec"] for d in by_kind("KafkaUser")}
    assert set(users) == {access.ADMIN_USER, *access.SERVICE_USERS.values()}
    for service, user in access.SERVICE_USERS.items():
        spec = users[user]
        assert spec["authentication"] == {"type": "scram-sha-512"}
        granted = {
            (rule["resource"]["type"].upper(), rule["resource"]["name"], op.upper())
            for rule in spec["authorization"]["acls"]
            for op in rule["operations"]
        }
        wanted = {(g.resource_type, g.name, g.operation) for g in access.kafka_acls("", [service])}
        assert granted == wanted, service
        assert spec["quotas"], f"{user} has no quotas"
    admin = one("Kafka", m.KAFKA_CLUSTER)["spec"]["kafka"]["authorization"]
    assert admin["superUsers"] == [access.ADMIN_USER]


def test_the_database_runs_the_one_bootstrap_sql() -> None:
    cluster = one("Cluster", m.DB_CLUSTER)["spec"]
    assert cluster["instances"] == 3
    assert cluster["postgresql"]["shared_preload_libraries"] == ["timescaledb"]
    sql = roles.bootstrap_sql(None, "ioc")
    maps = {d["metadata"]["name"]: d["data"] for d in by_kind("ConfigMap")}
    initdb = cluster["bootstrap"]["initdb"]
    (ref,) = initdb["postInitSQLRefs"]["configMapRefs"]
    assert maps[ref["name"]][ref["key"]].endswith("\n".join(sql.roles) + "\n")
    (ref,) = initdb["postInitApplicationSQLRefs"]["configMapRefs"]
    assert maps[ref["name"]][ref["key"]].endswith("\n".join(sql.database) + "\n")
    assert (initdb["database"], initdb["owner"]) == (roles.DATABASE, roles.ADMIN_ROLE)
    managed = {r["name"]: r for r in cluster["managed"]["roles"]}
    assert set(managed) == set(roles.ROLES)
    assert all("PASSWORD" not in line for line in sql.roles), "passwords are the Secrets'"


def test_the_worker_scales_on_lag_never_past_the_feed_partitions() -> None:
    scaled = one("ScaledObject", "ioc-worker")["spec"]
    feeds = [s for s in t.FEED_TOPICS.values()]
    # round-robin over every feed partition: no worker beyond them has any
    assert scaled["maxReplicaCount"] <= sum(s.partitions for s in feeds)
    assert scaled["minReplicaCount"] >= 1
    triggers = scaled["triggers"]
    assert {tr["metadata"]["topic"] for tr in triggers} == {s.name for s in feeds}
    assert {tr["type"] for tr in triggers} == {"kafka"}
    assert {tr["metadata"]["consumerGroup"] for tr in triggers} == {access.feeds_group("")}
    assert scaled["scaleTargetRef"]["name"] == one("Deployment", "ioc-worker")["metadata"]["name"]


def test_two_pagers_and_services_for_pager_and_ops() -> None:
    assert one("Deployment", "ioc-pager")["spec"]["replicas"] == 2
    for name in ("ioc-pager", "ioc-ops"):
        deployment, svc = one("Deployment", name), one("Service", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()


def _image_uid() -> int:
    users = re.findall(r"^USER\s+(\d+)", DOCKERFILE.read_text(), flags=re.M)
    return int(users[-1])


def test_pods_run_as_the_images_non_root_user_with_limits_and_real_probes() -> None:
    uid = _image_uid()
    for doc, container in containers():
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"] and container["resources"]["limits"]
        if doc["kind"] != "Deployment":
            continue
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = container[probe]["httpGet"]
            assert get["port"] in ports, (doc["metadata"]["name"], probe)
            assert get["path"] in ("/healthz", "/metrics")
    # the endpoints the processes serve (compose's healthchecks probe the same)
    pager = dict(m.PAGER.ports)
    assert pager["webhook"] == m.PAGER_PORT and m.PAGER.readiness == ("/healthz", "webhook")
    assert m.OPS.readiness == ("/healthz", "http")


def test_bootstrap_runs_as_schema_owner_and_kafka_admin_the_services_never() -> None:
    env = {
        c["metadata"]["name"]: {e["name"]: e for e in container["env"]}
        for c, container in containers()
    }
    assert {"IOC_DB_DSN", "IOC_DB_ADMIN_DSN"} <= env["ioc-bootstrap"].keys()
    assert env["ioc-bootstrap"]["IOC_KAFKA_SASL_USERNAME"]["value"] == access.ADMIN_USER
    for proc in m.PROCESSES:
        variables = env[f"ioc-{proc.component}"]
        assert "IOC_DB_ADMIN_DSN" not in variables
        user = access.SERVICE_USERS[proc.kafka_service]
        assert variables["IOC_KAFKA_SASL_USERNAME"]["value"] == user
        assert variables["IOC_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == user


def test_secrets_are_referenced_never_inlined() -> None:
    for _, container in containers():
        for env in container["env"]:
            if "value" in env:
                assert not re.search(r"(?i)password|token|secret", env["name"]), env
                assert not re.search(r"://[^:/]+:[^$@]+@", env["value"]), env  # no DSN password
    secrets = by_kind("Secret")
    assert [s["metadata"]["name"] for s in secrets] == [m.ALERTMANAGER_CONFIG_SECRET]


def test_monitoring_is_the_generated_rules_and_routing() -> None:
    assert one("PrometheusRule", "ioc-alerts")["spec"] == rules_document()
    secret = one("Secret", m.ALERTMANAGER_CONFIG_SECRET)
    config = yaml.safe_load(secret["stringData"]["alertmanager.yaml"])
    assert config == alertmanager_document(m.pager_url(), m.pager_token_file())
    am = one("Alertmanager", m.ALERTMANAGER)["spec"]
    assert am["configSecret"] == m.ALERTMANAGER_CONFIG_SECRET
    assert m.PAGER_TOKEN_SECRET in am["secrets"]


@pytest.mark.skipif(
    shutil.which("amtool") is None or shutil.which("promtool") is None,
    reason="no amtool/promtool (Debian's prometheus-alertmanager and prometheus, as the stack)",
)
def test_alertmanager_and_prometheus_accept_the_generated_config(tmp_path: Path) -> None:
    config = tmp_path / "alertmanager.yaml"
    secret = one("Secret", m.ALERTMANAGER_CONFIG_SECRET)
    config.write_text(secret["stringData"]["alertmanager.yaml"])
    checked = subprocess.run(
        ["amtool", "check-config", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(one("PrometheusRule", "ioc-alerts")["spec"]))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboards_are_the_committed_json_for_the_sidecar() -> None:
    from ioc.dashboards.build import BUILDERS, GENERATED

    maps = [d for d in by_kind("ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard")]
    assert {d["metadata"]["labels"]["grafana_dashboard"] for d in maps} == {"1"}
    data = {k: val for d in maps for k, val in d["data"].items()}
    assert data == {f"ioc-{n}.json": (GENERATED / f"ioc-{n}.json").read_text() for n in BUILDERS}


def test_network_policies_deny_by_default_and_open_what_each_process_serves() -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in by_kind("NetworkPolicy")}
    deny = policies["default-deny-ingress"]
    assert deny["podSelector"] == {} and deny["ingress"] == []
    egress = policies["ioc-default-deny-egress"]
    assert egress["egress"] == []
    # only the product's pods: Strimzi copies a resource's labels to its pods, and the
    # brokers, database instances and Alertmanagers must keep their own traffic
    assert egress["podSelector"] == m.product_pods()
    (components,) = egress["podSelector"]["matchExpressions"]
    assert set(components["values"]) == {p.component for p in m.PROCESSES} | {"bootstrap"}
    for proc in m.PROCESSES:
        spec = policies[f"ioc-{proc.component}"]
        opened = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
        assert opened == {port for _, port in proc.ports}, proc.component


# --- strict decoding into the published types -------------------------------------------------


@pytest.fixture(scope="module")
def progress(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Prints the checkers' build progress past pytest's capture (a first build takes minutes)."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def say(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\n{line}", flush=True)

    return say


def _kinds(docs: list[v.Decoded]) -> set[tuple[str, str]]:
    return {(d.api_version, d.kind) for d in docs}


@pytest.mark.timeout(1800)
def test_every_manifest_decodes_strictly_into_its_published_type(
    progress: Callable[[str], None],
) -> None:
    go = v.go_decode(FILES, progress)
    java = v.java_decode(FILES, progress)
    assert len(go) == len(java) == len(committed())
    invalid = [d for d in go + java if d.status == "invalid"]
    assert not invalid, "\n".join(f"{d.file} {d.kind}/{d.name}: {d.errors}" for d in invalid)
    decoded = _kinds([d for d in go + java if d.status == "ok"])
    everything = _kinds(go)
    assert everything - decoded == SCHEMA_ONLY, "a kind without a typed decode"
    assert {k for _, k in _kinds([d for d in java if d.status == "ok"])} == STRIMZI_KINDS
    assert {a for a, _ in decoded} >= set(CORE_GROUPS)


@pytest.mark.timeout(1800)
def test_the_strict_decoders_refuse_an_unknown_field(
    tmp_path: Path, progress: Callable[[str], None]
) -> None:
    """Neither checker is vacuous: a misspelt field fails each (Strimzi's model classes keep
    unknown fields in an any-setter unless the checker removes it)."""
    worker = copy.deepcopy(one("Deployment", "ioc-worker"))
    worker["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    user = copy.deepcopy(one("KafkaUser", "ioc-pager"))
    user["spec"]["authorization"]["acl"] = []
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([worker, user]))
    go = {d.kind: d for d in v.go_decode([bad], progress)}
    java = {d.kind: d for d in v.java_decode([bad], progress)}
    assert go["Deployment"].status == "invalid" and "readinesProbe" in go["Deployment"].errors[0]
    assert java["KafkaUser"].status == "invalid" and '"acl"' in java["KafkaUser"].errors[0]


# --- CRD schemas ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd_check(progress: Callable[[str], None]) -> Callable[[Doc], list[str]]:
    v.go_checker(progress)  # the module cache holds the CRDs the Go modules ship
    return v.crd_validator(v.crd_files())


@pytest.mark.timeout(1800)
def test_every_custom_resource_matches_its_crd_schema(
    crd_check: Callable[[Doc], list[str]],
) -> None:
    checked = 0
    errors = []
    for path, doc in committed():
        if doc["apiVersion"] in CORE_GROUPS:
            continue
        checked += 1
        errors += [
            f"{path.name} {doc['kind']}/{doc['metadata']['name']}: {e}" for e in crd_check(doc)
        ]
    assert not errors, "\n".join(errors)
    assert checked == len(committed()) - sum(
        1 for _, d in committed() if d["apiVersion"] in CORE_GROUPS
    )


@pytest.mark.timeout(1800)
def test_the_crd_schemas_catch_what_decoding_does_not(
    crd_check: Callable[[Doc], list[str]],
) -> None:
    """Enums, minimums, required fields and (CloudNativePG) unknown fields."""
    user = copy.deepcopy(one("KafkaUser", "ioc-worker"))
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    assert any("'Reed' is not one of" in e for e in crd_check(user))
    topic = copy.deepcopy(by_kind("KafkaTopic")[0])
    topic["spec"]["partitions"] = 0
    assert any("minimum" in e for e in crd_check(topic))
    scaled = copy.deepcopy(one("ScaledObject", "ioc-worker"))
    del scaled["spec"]["scaleTargetRef"]
    assert any("'scaleTargetRef' is a required property" in e for e in crd_check(scaled))
    cluster = copy.deepcopy(one("Cluster", m.DB_CLUSTER))
    cluster["spec"]["instancez"] = 3
    assert any("'instancez' was unexpected" in e for e in crd_check(cluster))


def test_a_committed_crd_with_another_hash_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    name = next(iter(v.CRD_SHA256))
    monkeypatch.setitem(v.CRD_SHA256, name, "0" * 64)
    with pytest.raises(RuntimeError, match="sha256"):
        v.crd_files()
