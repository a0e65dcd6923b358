"""Every Kubernetes document of a cluster deployment, derived from the contract.

Operators it targets (installed by the cluster's owner, see deploy/k8s/README.md): Strimzi
(``kafka.strimzi.io/v1``), CloudNativePG (``postgresql.cnpg.io/v1``), KEDA
(``keda.sh/v1alpha1``), the Prometheus Operator (``monitoring.coreos.com``) and a Grafana with
the dashboard/datasource sidecar. Where each value comes from:

- topics, partitions and configs: :func:`ioc.contract.topics.all_topics`;
- Kafka users and ACLs: :mod:`ioc.contract.access` (what bootstrap grants on the local stack);
- database roles: :func:`ioc.db.roles.bootstrap_sql` (the one bootstrap SQL, without
  passwords: CloudNativePG's managed roles set them from Secrets);
- alert rules and Alertmanager routing: :mod:`ioc.alerting` (the local stack's generator);
- dashboards: the committed JSON of :mod:`ioc.dashboards` (``dashboards/.../generated``);
- ports, probes and the uid: the settings' defaults and the image (deploy/image/Dockerfile).

No Secret value is written here: passwords and tokens are Secrets the operators generate
(Strimzi's per-user ``password``) or the deployer creates (README), referenced by name. The
one generated Secret is Alertmanager's configuration, which the Prometheus Operator only reads
from a Secret; it holds a path to the pager token, not the token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from ioc.alerting import scrape
from ioc.alerting.alertmanager import alertmanager_document
from ioc.alerting.rules import rules_document
from ioc.config import Settings, min_insync_replicas
from ioc.contract import access
from ioc.contract import topics as t
from ioc.contract.thresholds import THRESHOLDS
from ioc.db import roles

Doc = dict[str, Any]

STRIMZI_API: Final = "kafka.strimzi.io/v1"
CNPG_API: Final = "postgresql.cnpg.io/v1"
KEDA_API: Final = "keda.sh/v1alpha1"
MONITORING_API: Final = "monitoring.coreos.com/v1"

NAMESPACE: Final = "ioc"
KAFKA_CLUSTER: Final = "ioc-kafka"
KAFKA_VERSION: Final = "4.2.1"
"""The oldest Kafka the targeted Strimzi (1.2) supports: the local stack's 4.1 is no longer one
of them; clients are wire-compatible across both."""
KAFKA_REPLICAS: Final = 3
KAFKA_MIN_ISR: Final = min_insync_replicas(KAFKA_REPLICAS)
KAFKA_TLS_PORT: Final = 9093
KAFKA_BOOTSTRAP: Final = f"{KAFKA_CLUSTER}-kafka-bootstrap.{NAMESPACE}.svc:{KAFKA_TLS_PORT}"
KAFKA_CA_SECRET: Final = f"{KAFKA_CLUSTER}-cluster-ca-cert"
"""Strimzi's cluster CA certificate (key ``ca.crt``): what clients trust on the TLS listener."""
KAFKA_CA_DIR: Final = "/etc/ioc/kafka-ca"

DB_CLUSTER: Final = "ioc-db"
DB_INSTANCES: Final = 3
DB_HOST: Final = f"{DB_CLUSTER}-rw.{NAMESPACE}.svc"
"""CloudNativePG's read-write Service: always the primary."""
DB_READ_HOST: Final = f"{DB_CLUSTER}-ro.{NAMESPACE}.svc"
PG_IMAGE: Final = "ghcr.io/clevyr/cloudnativepg-timescale:17-ts2"
"""A CloudNativePG-compatible PostgreSQL 17 image with TimescaleDB 2 (the project publishes
none; ``--pg-image`` picks another). The compose file's ``timescale/timescaledb`` is not one:
CloudNativePG needs its own instance manager layout."""

IMAGE: Final = "ioc-monitoring:0.1.0"
"""deploy/image/Dockerfile's image (compose's ``IOC_IMAGE`` default); ``--image`` sets it."""
IMAGE_UID: Final = 10001
"""The image's ``USER`` (deploy/image/Dockerfile): runAsNonRoot checks a number."""
STATE_DIR: Final = "/var/lib/ioc"
"""The image's HOME and IOC_STACK_DIR (Faust's table directory): writable, on an emptyDir,
since the root filesystem is read-only."""

ALERTMANAGER: Final = "ioc"
ALERTMANAGER_REPLICAS: Final = 2
ALERTMANAGER_CONFIG_SECRET: Final = "alertmanager-ioc-config"
PAGER_TOKEN_SECRET: Final = "ioc-pager-token"
OPS_ADMIN_TOKEN_SECRET: Final = "ioc-ops-admin-token"
PAGER_CHANNELS_SECRET: Final = "ioc-pager-channels"
MONITORING_NAMESPACE: Final = "monitoring"
"""Where Prometheus and Grafana run (kube-prometheus-stack's default): NetworkPolicies let
them in, the Grafana datasource points at its Prometheus."""
PROMETHEUS_URL: Final = f"http://prometheus-operated.{MONITORING_NAMESPACE}.svc:9090"
KEDA_NAMESPACE: Final = "keda"
CNPG_NAMESPACE: Final = "cnpg-system"
STRIMZI_NAMESPACE: Final = "strimzi"

WORKER_MIN_REPLICAS: Final = 2
"""Two, so a worker's loss never stops the feeds while KEDA and the rebalance catch up."""
PAGER_REPLICAS: Final = 2
"""Two pagers, as the local stack and compose: a page survives either one's loss."""

PART_OF: Final = "ioc"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_NAME: Final = "app.kubernetes.io/name"

PRODUCT_COMPONENTS: Final = ("bootstrap", "worker", "pager", "ops")
"""The product's own pods. Selected by component, not by ``part-of``: Strimzi copies a custom
resource's labels to the pods it makes, and the egress policies must not catch the brokers."""


def product_pods() -> Doc:
    """A label selector of the product's pods (:data:`PRODUCT_COMPONENTS`)."""
    return {
        "matchLabels": {LABEL_PART_OF: PART_OF},
        "matchExpressions": [
            {"key": LABEL_COMPONENT, "operator": "In", "values": list(PRODUCT_COMPONENTS)}
        ],
    }


_SETTINGS_DEFAULTS = Settings.model_fields


def _default_int(name: str) -> int:
    value = _SETTINGS_DEFAULTS[name].default
    assert isinstance(value, int), name
    return value


WORKER_METRICS_PORT: Final = scrape.compose_metrics_port(scrape.WORKER)
PAGER_PORT: Final = _default_int("pager_port")
PAGER_METRICS_PORT: Final = scrape.compose_metrics_port(scrape.PAGER)
OPS_PORT: Final = _default_int("ops_port")
OPS_METRICS_PORT: Final = scrape.compose_metrics_port(scrape.OPS)


@dataclass(frozen=True)
class Options:
    """What a deployer may change without editing the generator (``ioc deploy k8s``)."""

    image: str = IMAGE
    pg_image: str = PG_IMAGE
    scenario: str = str(_SETTINGS_DEFAULTS["scenario"].default)
    topic_prefix: str = ""
    province_topics: bool = False
    """``IOC_KAFKA_PROVINCE_TOPICS``: a KafkaTopic per feed per province of ``scenario`` and
    a KafkaUser per province (Write on its own topics, quotas), docs/scaling.md."""

    def provinces(self) -> list[str]:
        """The scenario's provinces when per-province topics are on; none otherwise."""
        if not self.province_topics:
            return []
        from ioc.contract.topology import load_scenario

        return load_scenario(self.scenario).top_units()


def _meta(name: str, component: str | None = None, **extra: Any) -> Doc:
    labels = {LABEL_PART_OF: PART_OF}
    if component:
        labels[LABEL_NAME] = f"ioc-{component}"
        labels[LABEL_COMPONENT] = component
    labels.update(extra.pop("labels", {}))
    meta: Doc = {"name": name, "namespace": NAMESPACE, "labels": labels}
    meta.update(extra)
    return meta


def k8s_name(name: str) -> str:
    """A DNS-1123 name for a Kafka name (topics may hold ``_``, Kubernetes names may not)."""
    out = "".join(c if c.isalnum() or c in ".-" else "-" for c in name.lower())
    return out.strip(".-")


# --- Kafka (Strimzi) ----------------------------------------------------------------------


def feed_topics(opts: Options) -> list[t.TopicSpec]:
    """The feed topics (the worker's feed consumer group reads them all)."""
    import ioc.contract.feeds  # noqa: F401  (registers every feed's topic)

    return list(t.FEED_TOPICS.values())


def kafka_documents(opts: Options) -> list[Doc]:
    """The cluster (KRaft, node pools) and its two pools: 3 controllers, 3 brokers."""
    cluster_label = {"strimzi.io/cluster": KAFKA_CLUSTER}
    kafka = {
        "apiVersion": STRIMZI_API,
        "kind": "Kafka",
        "metadata": _meta(
            KAFKA_CLUSTER,
            annotations={"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"},
        ),
        "spec": {
            "kafka": {
                "version": KAFKA_VERSION,
                "listeners": [
                    {
                        "name": "tls",
                        "port": KAFKA_TLS_PORT,
                        "type": "internal",
                        "tls": True,
                        # As compose's SASL_SSL listener: every service its own SCRAM user.
                        "authentication": {"type": "scram-sha-512"},
                        "networkPolicyPeers": [
                            {"podSelector": product_pods()},
                            {"namespaceSelector": _ns_selector(KEDA_NAMESPACE)},
                        ],
                    }
                ],
                "authorization": {
                    "type": "simple",
                    # The admin (bootstrap, tools) is a super user, as on the local stack.
                    "superUsers": [access.ADMIN_USER],
                },
                "config": {
                    # Topics come from the contract (KafkaTopic below), never from a typo.
                    "auto.create.topics.enable": False,
                    "default.replication.factor": KAFKA_REPLICAS,
                    "min.insync.replicas": KAFKA_MIN_ISR,
                    "offsets.topic.replication.factor": KAFKA_REPLICAS,
                    "transaction.state.log.replication.factor": KAFKA_REPLICAS,
                    "transaction.state.log.min.isr": KAFKA_MIN_ISR,
                    "message.max.bytes": _max_message_bytes(),
                    "replica.fetch.max.bytes": _max_message_bytes(),
                },
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
        },
    }
    pools = []
    for pool, role, size in (("controllers", "controller", "10Gi"), ("brokers", "broker", "100Gi")):
        pools.append(
            {
                "apiVersion": STRIMZI_API,
                "kind": "KafkaNodePool",
                "metadata": _meta(pool, labels=cluster_label),
                "spec": {
                    "replicas": KAFKA_REPLICAS,
                    "roles": [role],
                    "storage": {
                        "type": "jbod",
                        "volumes": [
                            {
                                "id": 0,
                                "type": "persistent-claim",
                                "size": size,
                                "deleteClaim": False,
                                "kraftMetadata": "shared",
                            }
                        ],
                    },
                    "resources": {
                        "requests": {"cpu": "500m", "memory": "2Gi"},
                        "limits": {"memory": "2Gi"},
                    },
                },
            }
        )
    return [kafka, *pools]


LOCAL_BROKER_PROPERTIES: Final = Path(__file__).resolve().parents[1] / "local" / "kafka"


def _max_message_bytes() -> int:
    """The local stack's broker ``message.max.bytes`` (its server.properties, as compose's):
    the simulators' producer batches up to 2 MB (ioc.sinks), above Kafka's 1 MiB default."""
    for line in (LOCAL_BROKER_PROPERTIES / "server.properties").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "message.max.bytes":
            return int(value)
    raise AssertionError("message.max.bytes is not in the local stack's server.properties")


def all_topic_specs(opts: Options) -> list[t.TopicSpec]:
    """What bootstrap makes (:func:`ioc.bootstrap.kafka_topics`): the contract's topics and,
    with per-province topics, each province's feed topics."""
    specs = list(t.all_topics())
    if opts.province_topics:
        from ioc.contract.topology import load_scenario

        specs += t.province_topics(load_scenario(opts.scenario))
    return specs


def topic_documents(opts: Options) -> list[Doc]:
    """One KafkaTopic per contract topic (and per province topic), with its partitions and
    configs."""
    docs = []
    for spec in sorted(all_topic_specs(opts), key=lambda s: s.name):
        name = f"{opts.topic_prefix}{spec.name}"
        docs.append(
            {
                "apiVersion": STRIMZI_API,
                "kind": "KafkaTopic",
                "metadata": _meta(
                    k8s_name(name),
                    labels={"strimzi.io/cluster": KAFKA_CLUSTER},
                    annotations={"ioc/description": spec.description} if spec.description else {},
                ),
                "spec": {
                    "topicName": name,
                    "partitions": spec.partitions,
                    "replicas": KAFKA_REPLICAS,
                    "config": dict(spec.configs()),
                },
            }
        )
    return docs


_OPERATIONS = {"READ": "Read", "WRITE": "Write", "DESCRIBE": "Describe", "CREATE": "Create"}
_PATTERNS = {"LITERAL": "literal", "PREFIXED": "prefix"}  # Strimzi's names (its CRD's enum)

USER_QUOTAS: Final[dict[str, dict[str, int]]] = {
    # Bytes/s per broker and the share of a broker's request threads: enough for the national
    # scenario's rates, small enough that one runaway client cannot starve the others.
    "worker": {"consumerByteRate": 32 << 20, "producerByteRate": 8 << 20, "requestPercentage": 50},
    "simulator": {"producerByteRate": 16 << 20, "requestPercentage": 25},
    "ops": {"consumerByteRate": 2 << 20, "producerByteRate": 1 << 20, "requestPercentage": 10},
    "pager": {"consumerByteRate": 2 << 20, "requestPercentage": 10},
    # A province's collectors: a few thousand targets' samples every few seconds, far below
    # the simulator's rate; a collector replaying its disk spool after an outage is held here.
    "collector": {"producerByteRate": 4 << 20, "requestPercentage": 15},
}


PROVINCE_USER_QUOTAS: Final[dict[str, int]] = {
    # ioc.contract.access.PROVINCE_QUOTAS (what bootstrap sets on the local stack), in
    # Strimzi's names
    "producerByteRate": int(access.PROVINCE_QUOTAS["producer_byte_rate"]),
    "requestPercentage": int(access.PROVINCE_QUOTAS["request_percentage"]),
}


def _rules(grants: list[access.AclGrant]) -> list[Doc]:
    """Grants as Strimzi ACL rules, one per resource (and pattern) with its operations."""
    by_resource: dict[tuple[str, str, str], list[str]] = {}
    for grant in grants:
        key = (grant.resource_type.lower(), grant.name, _PATTERNS[grant.pattern])
        by_resource.setdefault(key, []).append(_OPERATIONS[grant.operation])
    return [
        {
            "resource": {"type": kind, "name": name, "patternType": pattern},
            "operations": sorted(ops),
            "host": "*",
        }
        for (kind, name, pattern), ops in sorted(by_resource.items())
    ]


def acl_rules(service: str, prefix: str, province_topics: bool = False) -> list[Doc]:
    """A service's grants (:func:`ioc.contract.access.kafka_acls`) as Strimzi ACL rules, one
    per resource with its operations."""
    return _rules(access.kafka_acls(prefix, [service], province_topics=province_topics))


def user_documents(opts: Options) -> list[Doc]:
    """One SCRAM-SHA-512 KafkaUser per service with its ACLs and quotas, and the admin.

    The User Operator writes each user's password into a Secret named like the user (key
    ``password``): the Deployments reference it, nothing here holds one."""
    docs = [
        {
            "apiVersion": STRIMZI_API,
            "kind": "KafkaUser",
            "metadata": _meta(access.ADMIN_USER, labels={"strimzi.io/cluster": KAFKA_CLUSTER}),
            # A super user (Kafka.spec.kafka.authorization.superUsers): no ACLs needed.
            "spec": {"authentication": {"type": "scram-sha-512"}},
        }
    ]
    for service, user in access.SERVICE_USERS.items():
        docs.append(
            {
                "apiVersion": STRIMZI_API,
                "kind": "KafkaUser",
                "metadata": _meta(user, labels={"strimzi.io/cluster": KAFKA_CLUSTER}),
                "spec": {
                    "authentication": {"type": "scram-sha-512"},
                    "authorization": {
                        "type": "simple",
                        "acls": acl_rules(service, opts.topic_prefix, opts.province_topics),
                    },
                    "quotas": dict(USER_QUOTAS[service]),
                },
            }
        )
    # Per-province topics: each province's producers (its collectors at the province's
    # edge) log in as its own user, which may Write its own topics and nothing else.
    for province in opts.provinces():
        user = access.province_user(province)
        docs.append(
            {
                "apiVersion": STRIMZI_API,
                "kind": "KafkaUser",
                "metadata": _meta(
                    user,
                    labels={"strimzi.io/cluster": KAFKA_CLUSTER},
                    annotations={"ioc/province": province},
                ),
                "spec": {
                    "authentication": {"type": "scram-sha-512"},
                    "authorization": {
                        "type": "simple",
                        "acls": _rules(access.province_acls(opts.topic_prefix, [province])),
                    },
                    "quotas": dict(PROVINCE_USER_QUOTAS),
                },
            }
        )
    return docs


# --- database (CloudNativePG) ---------------------------------------------------------------


def role_secret(role: str) -> str:
    """The ``kubernetes.io/basic-auth`` Secret of a database role (created by the deployer)."""
    return f"{DB_CLUSTER}-{role.replace('_', '-')}"


def database_documents(opts: Options) -> list[Doc]:
    """The roles' SQL (ConfigMaps, from :func:`ioc.db.roles.bootstrap_sql`) and the cluster."""
    schema = str(_SETTINGS_DEFAULTS["db_schema"].default)
    sql = roles.bootstrap_sql(None, schema)
    header = "-- GENERATED by `ioc deploy k8s` from ioc/db/roles.py: do not edit.\n"
    roles_name, database_name = f"{DB_CLUSTER}-roles-sql", f"{DB_CLUSTER}-database-sql"
    roles_map: Doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(roles_name, "database"),
        # Run in database postgres after initdb; the passwords are the managed roles' below.
        "data": {"roles.sql": header + "\n".join(sql.roles) + "\n"},
    }
    database_map: Doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(database_name, "database"),
        # Run in the application database (initdb creates it: the bootstrap's CREATE DATABASE).
        "data": {"database.sql": header + "\n".join(sql.database) + "\n"},
    }
    cluster = {
        "apiVersion": CNPG_API,
        "kind": "Cluster",
        "metadata": _meta(DB_CLUSTER, "database"),
        "spec": {
            "instances": DB_INSTANCES,
            "imageName": opts.pg_image,
            "primaryUpdateStrategy": "unsupervised",
            "postgresql": {
                "shared_preload_libraries": ["timescaledb"],
                "parameters": {"timescaledb.telemetry_level": "off", "max_connections": "200"},
            },
            "bootstrap": {
                "initdb": {
                    "database": roles.DATABASE,
                    "owner": roles.ADMIN_ROLE,
                    "secret": {"name": role_secret(roles.ADMIN_ROLE)},
                    "postInitSQLRefs": {
                        "configMapRefs": [{"name": roles_name, "key": "roles.sql"}]
                    },
                    "postInitApplicationSQLRefs": {
                        "configMapRefs": [{"name": database_name, "key": "database.sql"}]
                    },
                }
            },
            "managed": {
                "roles": [
                    {
                        "name": role,
                        "ensure": "present",
                        "login": True,
                        "superuser": False,
                        "createdb": False,
                        # as the roles' SQL says (the operator reconciles what is declared)
                        "createrole": role in roles.CREATEROLE,
                        "passwordSecret": {"name": role_secret(role)},
                    }
                    for role in roles.ROLES
                ]
            },
            "storage": {"size": "200Gi"},
            "resources": {
                "requests": {"cpu": "1", "memory": "4Gi"},
                "limits": {"memory": "4Gi"},
            },
            "monitoring": {"enablePodMonitor": True},
        },
    }
    return [roles_map, database_map, cluster]


# --- the product's processes ----------------------------------------------------------------


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> Doc:
    ref: Doc = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _dsn_env(variable: str, role: str) -> list[Doc]:
    password = f"DB_{role.upper()}_PASSWORD"  # not IOC_: no setting of that name
    return [
        _secret_env(password, role_secret(role), "password"),
        {
            "name": variable,
            "value": f"postgresql://{role}:$({password})@{DB_HOST}:5432/{roles.DATABASE}",
        },
    ]


def _process_env(
    opts: Options, service: str, kafka_user: str, admin: bool, extra: list[Doc]
) -> list[Doc]:
    """The environment every process shares (compose's ``x-ioc-env``), with its own Kafka user
    and the runtime database role (``admin``: the schema owner's DSN too, for bootstrap);
    passwords only as Secret references. Kubernetes expands ``$(VAR)``
    from variables listed before it, so the DSN never holds the password in the manifest."""
    env: list[Doc] = [
        {"name": "IOC_SCENARIO", "value": opts.scenario},
        {"name": "IOC_BIND_HOST", "value": "0.0.0.0"},
        {"name": "IOC_KAFKA_BOOTSTRAP_SERVERS", "value": KAFKA_BOOTSTRAP},
        {"name": "IOC_KAFKA_SECURITY_PROTOCOL", "value": "SASL_SSL"},
        {"name": "IOC_KAFKA_SASL_MECHANISM", "value": "SCRAM-SHA-512"},
        {"name": "IOC_KAFKA_SSL_CAFILE", "value": f"{KAFKA_CA_DIR}/ca.crt"},
        {"name": "IOC_KAFKA_REPLICATION_FACTOR", "value": str(KAFKA_REPLICAS)},
        {"name": "IOC_KAFKA_SASL_USERNAME", "value": kafka_user},
        _secret_env("IOC_KAFKA_SASL_PASSWORD", kafka_user, "password"),
    ]
    if opts.topic_prefix:
        env.append({"name": "IOC_KAFKA_TOPIC_PREFIX", "value": opts.topic_prefix})
    if opts.province_topics:
        env.append({"name": "IOC_KAFKA_PROVINCE_TOPICS", "value": "true"})
    env += _dsn_env("IOC_DB_DSN", roles.RUNTIME_ROLE)
    if admin:
        env += _dsn_env("IOC_DB_ADMIN_DSN", roles.ADMIN_ROLE)
    env += [
        {"name": "IOC_ALERTMANAGER_PEER_URLS", "value": ",".join(alertmanager_urls())},
        *extra,
    ]
    return env


def alertmanager_urls() -> list[str]:
    """Every Alertmanager peer (the operator's StatefulSet pods behind its headless Service):
    the pager resolves and the operations service silences on each."""
    return [
        f"http://alertmanager-{ALERTMANAGER}-{i}.alertmanager-operated.{NAMESPACE}.svc:9093"
        for i in range(ALERTMANAGER_REPLICAS)
    ]


def _pod_security() -> Doc:
    return {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": IMAGE_UID,
        "fsGroup": IMAGE_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> Doc:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _http_probe(path: str, port: str, period: int, failures: int) -> Doc:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


@dataclass(frozen=True)
class Process:
    """One Deployment of the image: its command, ports and the probes its own HTTP servers
    back (the endpoints compose's healthchecks use)."""

    component: str
    args: tuple[str, ...]
    kafka_service: str
    db_role: str
    ports: tuple[tuple[str, int], ...]
    readiness: tuple[str, str]
    liveness: tuple[str, str]
    replicas: int
    requests: tuple[str, str]
    limits: tuple[str, str]
    extra_env: tuple[tuple[str, str, str, bool], ...] = ()  # (variable, secret, key, optional)


WORKER = Process(
    "worker",
    ("worker",),
    "worker",
    roles.RUNTIME_ROLE,
    (("metrics", WORKER_METRICS_PORT),),
    # /metrics is served once the worker has verified the bootstrap (ioc.bootstrap.verify)
    readiness=("/metrics", "metrics"),
    liveness=("/metrics", "metrics"),
    replicas=WORKER_MIN_REPLICAS,
    requests=("500m", "768Mi"),
    limits=("2", "1536Mi"),
)
PAGER = Process(
    "pager",
    ("pager",),
    "pager",
    roles.RUNTIME_ROLE,
    (("webhook", PAGER_PORT), ("metrics", PAGER_METRICS_PORT)),
    readiness=("/healthz", "webhook"),
    liveness=("/healthz", "webhook"),
    replicas=PAGER_REPLICAS,
    requests=("100m", "192Mi"),
    limits=("1", "512Mi"),
    extra_env=(
        ("IOC_PAGER_TOKEN", PAGER_TOKEN_SECRET, "token", False),
        ("IOC_PAGER_CHANNELS", PAGER_CHANNELS_SECRET, "channels.json", True),
    ),
)
OPS = Process(
    "ops",
    ("ops", "serve"),
    "ops",
    roles.RUNTIME_ROLE,
    (("http", OPS_PORT), ("metrics", OPS_METRICS_PORT)),
    # /healthz answers 503 while the database is unreachable: not ready, but not restarted
    # for it (liveness is the process answering on its metrics port)
    readiness=("/healthz", "http"),
    liveness=("/metrics", "metrics"),
    replicas=1,
    requests=("200m", "256Mi"),
    limits=("1", "768Mi"),
    extra_env=(
        ("IOC_OPS_ADMIN_TOKEN", OPS_ADMIN_TOKEN_SECRET, "token", False),
        ("IOC_PAGER_CHANNELS", PAGER_CHANNELS_SECRET, "channels.json", True),
    ),
)
PROCESSES: Final = (WORKER, PAGER, OPS)


def _pod_spec(opts: Options, proc: Process, restart: str = "Always") -> Doc:
    user = access.SERVICE_USERS[proc.kafka_service] if proc.kafka_service else access.ADMIN_USER
    extra = [_secret_env(v, s, k, optional) for v, s, k, optional in proc.extra_env]
    if proc.component == "worker":
        extra.append({"name": "IOC_WORKERS_DESIRED", "value": str(WORKER_MIN_REPLICAS)})
    container: Doc = {
        "name": proc.component,
        "image": opts.image,
        "args": list(proc.args),
        "env": _process_env(opts, proc.component, user, proc.db_role == roles.ADMIN_ROLE, extra),
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in proc.ports],
        "resources": {
            "requests": {"cpu": proc.requests[0], "memory": proc.requests[1]},
            "limits": {"cpu": proc.limits[0], "memory": proc.limits[1]},
        },
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if proc.readiness[0]:
        container["readinessProbe"] = _http_probe(*proc.readiness, period=10, failures=3)
        container["livenessProbe"] = _http_probe(*proc.liveness, period=20, failures=3)
        # The first start waits for `ioc bootstrap` (the Job) before it serves anything.
        container["startupProbe"] = _http_probe(*proc.liveness, period=10, failures=30)
    return {
        "serviceAccountName": "ioc",
        "automountServiceAccountToken": False,
        "securityContext": _pod_security(),
        "restartPolicy": restart,
        "containers": [container],
        "volumes": [
            {"name": "kafka-ca", "secret": {"secretName": KAFKA_CA_SECRET, "items": [_ca_item()]}},
            {"name": "state", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }


def _ca_item() -> Doc:
    return {"key": "ca.crt", "path": "ca.crt"}


def _selector(component: str) -> Doc:
    return {LABEL_PART_OF: PART_OF, LABEL_COMPONENT: component}


def deployment(opts: Options, proc: Process) -> Doc:
    labels = {**_selector(proc.component), LABEL_NAME: f"ioc-{proc.component}"}
    spec: Doc = {
        "replicas": proc.replicas,
        "selector": {"matchLabels": _selector(proc.component)},
        "template": {"metadata": {"labels": labels}, "spec": _pod_spec(opts, proc)},
    }
    if proc.replicas > 1:
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1},
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(f"ioc-{proc.component}", proc.component),
        "spec": spec,
    }


def service(proc: Process) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(f"ioc-{proc.component}", proc.component),
        "spec": {
            "selector": _selector(proc.component),
            "ports": [
                {"name": n, "port": p, "targetPort": n, "protocol": "TCP"} for n, p in proc.ports
            ],
        },
    }


def group_topics(opts: Options) -> list[t.TopicSpec]:
    """Every topic the feed consumer group reads: the shared feed topics and, with
    per-province topics, each province's (the workers subscribe to them by pattern)."""
    shared = feed_topics(opts)
    return shared + [t.province_topic(spec, p) for p in opts.provinces() for spec in shared]


def worker_max_replicas(opts: Options | None = None) -> int:
    """KEDA's ceiling: every partition the feed group reads. The feed consumer assigns
    round-robin over all of them (ioc.streams.consumer), so each worker up to that count
    gets at least one and a worker beyond it gets none. (Under the range assignor it was
    the smallest topic's count: each topic dealt out from the first member on left the
    province topics' 2 partitions to two workers.)"""
    return sum(spec.partitions for spec in group_topics(opts or Options()))


def consumer_lag_threshold() -> int:
    """Per-worker lag KEDA scales on: well below the ConsumerLagGrowing threshold, so more
    workers start before operators are paged about lag."""
    return THRESHOLDS.consumer_lag_max_messages // 10


def worker_documents(opts: Options) -> list[Doc]:
    """The worker Deployment and its autoscaling on the feed group's lag (KEDA, kafka
    scaler with the worker's own SCRAM user): one trigger per shared feed topic and, with
    per-province topics, one more for the whole group (:func:`lag_triggers`)."""
    auth = {
        "apiVersion": KEDA_API,
        "kind": "TriggerAuthentication",
        "metadata": _meta("ioc-worker-kafka", "worker"),
        "spec": {
            "secretTargetRef": [
                {
                    "parameter": "password",
                    "name": access.SERVICE_USERS["worker"],
                    "key": "password",
                },
                {"parameter": "ca", "name": KAFKA_CA_SECRET, "key": "ca.crt"},
            ],
            # The user name is not secret: the worker container's own variable.
            "env": [
                {
                    "parameter": "username",
                    "name": "IOC_KAFKA_SASL_USERNAME",
                    "containerName": "worker",
                }
            ],
        },
    }
    group = access.feeds_group(opts.topic_prefix)
    scaled = {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": _meta("ioc-worker", "worker"),
        "spec": {
            "scaleTargetRef": {"name": "ioc-worker"},
            "minReplicaCount": WORKER_MIN_REPLICAS,
            "maxReplicaCount": worker_max_replicas(opts),
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "triggers": lag_triggers(opts, group),
        },
    }
    return [deployment(opts, WORKER), auth, scaled]


def lag_triggers(opts: Options, group: str) -> list[Doc]:
    """KEDA kafka triggers on the feed group's lag, each proposing ceil(lag / threshold)
    workers (the HPA takes the largest proposal, never the sum).

    One per shared feed topic, named: a named topic counts even before the group has
    committed an offset on it (its retained messages, ``offsetResetPolicy: earliest``, as
    the workers start). With per-province topics, one more without ``topic``: KEDA then
    sums the lag of every topic the group has committed offsets for, which is each
    province's topics (and the shared ones again, harmless under the largest proposal)
    without 34 x 6 triggers, each a Kafka client of its own polling every 15 s, and with a
    province added later counted once the workers commit on its topics. The
    ``maxReplicaCount`` ceiling is the group's partitions (:func:`worker_max_replicas`),
    the same as KEDA's own cap on the group-wide trigger."""

    def trigger(name: str, topic: str | None) -> Doc:
        # fresh documents each: a shared one would be written as a YAML anchor and alias
        return {
            "type": "kafka",
            "name": name,
            "metadata": {
                "bootstrapServers": KAFKA_BOOTSTRAP,
                "consumerGroup": group,
                **({} if topic is None else {"topic": topic}),
                "lagThreshold": str(consumer_lag_threshold()),
                "offsetResetPolicy": "earliest",
                "allowIdleConsumers": "false",
                "sasl": "scram_sha512",
                "tls": "enable",
            },
            "authenticationRef": {"name": "ioc-worker-kafka"},
        }

    triggers = [
        trigger(k8s_name(spec.name), f"{opts.topic_prefix}{spec.name}")
        for spec in sorted(feed_topics(opts), key=lambda s: s.name)
    ]
    if opts.province_topics:
        triggers.append(trigger(k8s_name(group), None))
    return triggers


def bootstrap_job(opts: Options) -> Doc:
    """``ioc bootstrap`` once per release, as the schema owner and the Kafka admin: the
    migrations and the topology (the topics and ACLs are already Strimzi's; bootstrap finds
    them as the contract wants them)."""
    proc = Process(
        "bootstrap",
        ("bootstrap",),
        "",
        roles.ADMIN_ROLE,
        (),
        readiness=("", ""),
        liveness=("", ""),
        replicas=1,
        requests=("200m", "512Mi"),
        limits=("1", "1Gi"),
    )
    pod = _pod_spec(opts, proc, restart="OnFailure")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta("ioc-bootstrap", "bootstrap"),
        "spec": {
            "backoffLimit": 10,
            "template": {"metadata": {"labels": _selector("bootstrap")}, "spec": pod},
        },
    }


def service_account() -> Doc:
    """The product's pods call no Kubernetes API: an account without a token."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta("ioc"),
        "automountServiceAccountToken": False,
    }


def process_documents(opts: Options) -> list[Doc]:
    pager_pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta("ioc-pager", "pager"),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": _selector("pager")}},
    }
    return [
        service_account(),
        bootstrap_job(opts),
        *worker_documents(opts),
        deployment(opts, PAGER),
        service(PAGER),
        pager_pdb,
        deployment(opts, OPS),
        service(OPS),
    ]


# --- monitoring ----------------------------------------------------------------------------


def pager_url() -> str:
    return f"http://ioc-pager.{NAMESPACE}.svc:{PAGER_PORT}/alertmanager/webhook"


def pager_token_file() -> str:
    """Where the Prometheus Operator mounts ``Alertmanager.spec.secrets``."""
    return f"/etc/alertmanager/secrets/{PAGER_TOKEN_SECRET}/token"


def monitoring_documents(opts: Options) -> list[Doc]:
    """Scraping (job ``ioc``, label ``service``: what the rules select on), the generated
    rules, and two Alertmanager peers with the generated routing."""
    pod_monitor = {
        "apiVersion": MONITORING_API,
        "kind": "PodMonitor",
        "metadata": _meta("ioc"),
        "spec": {
            "selector": product_pods(),
            "podMetricsEndpoints": [
                {
                    "port": "metrics",
                    "path": "/metrics",
                    "interval": f"{THRESHOLDS.scrape_interval_s}s",
                    "relabelings": [
                        {"action": "replace", "targetLabel": "job", "replacement": scrape.IOC_JOB},
                        {
                            "action": "replace",
                            "sourceLabels": [
                                "__meta_kubernetes_pod_label_app_kubernetes_io_component"
                            ],
                            "targetLabel": "service",
                        },
                    ],
                }
            ],
        },
    }
    rules = {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": _meta("ioc-alerts"),
        "spec": rules_document(THRESHOLDS),
    }
    am_config = alertmanager_document(pager_url(), pager_token_file())
    am_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(ALERTMANAGER_CONFIG_SECRET),
        "type": "Opaque",
        # Routing only (ioc.alerting.alertmanager); the token is a file from PAGER_TOKEN_SECRET.
        "stringData": {"alertmanager.yaml": yaml.safe_dump(am_config, sort_keys=False, width=100)},
    }
    alertmanager = {
        "apiVersion": MONITORING_API,
        "kind": "Alertmanager",
        "metadata": _meta(ALERTMANAGER),
        "spec": {
            "replicas": ALERTMANAGER_REPLICAS,
            "configSecret": ALERTMANAGER_CONFIG_SECRET,
            "secrets": [PAGER_TOKEN_SECRET],
            "podMetadata": {"labels": {LABEL_PART_OF: PART_OF, LABEL_COMPONENT: "alertmanager"}},
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "fsGroup": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"memory": "256Mi"},
            },
        },
    }
    return [pod_monitor, rules, am_secret, alertmanager]


def dashboard_documents(opts: Options, folder: Path | None = None) -> list[Doc]:
    """Each committed dashboard as a ConfigMap the Grafana sidecar loads, and the datasources
    with the uids the dashboards reference (the TimescaleDB password from Grafana's own
    environment, ``IOC_GRAFANA_DB_PASSWORD``, set from the role's Secret)."""
    from ioc.dashboards.build import BUILDERS, GENERATED
    from ioc.dashboards.panels import PROMETHEUS_UID, TIMESCALE_UID

    folder = folder or GENERATED
    docs: list[Doc] = []
    for name in sorted(BUILDERS):
        text = (folder / f"ioc-{name}.json").read_text()
        json.loads(text)  # a broken file fails here, not in Grafana
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"ioc-dashboard-{name}",
                    "namespace": MONITORING_NAMESPACE,
                    "labels": {LABEL_PART_OF: PART_OF, "grafana_dashboard": "1"},
                    "annotations": {"grafana_folder": "IOC"},
                },
                "data": {f"ioc-{name}.json": text},
            }
        )
    datasources = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "IOC Prometheus",
                "uid": PROMETHEUS_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": PROMETHEUS_URL,
                "jsonData": {"timeInterval": f"{THRESHOLDS.scrape_interval_s}s"},
            },
            {
                "name": "IOC TimescaleDB",
                "uid": TIMESCALE_UID,
                "type": "grafana-postgresql-datasource",
                "access": "proxy",
                "url": f"{DB_READ_HOST}:5432",
                "user": roles.READONLY_ROLE,
                "jsonData": {
                    "database": roles.DATABASE,
                    "sslmode": "require",
                    "postgresVersion": 1700,
                    "timescaledb": True,
                },
                "secureJsonData": {"password": "$IOC_GRAFANA_DB_PASSWORD"},
            },
        ],
    }
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "ioc-datasources",
                "namespace": MONITORING_NAMESPACE,
                "labels": {LABEL_PART_OF: PART_OF, "grafana_datasource": "1"},
            },
            "data": {"ioc.yaml": yaml.safe_dump(datasources, sort_keys=False)},
        }
    )
    return docs


# --- network policies ----------------------------------------------------------------------


def _ns_selector(namespace: str) -> Doc:
    return {"matchLabels": {"kubernetes.io/metadata.name": namespace}}


def _from_ns(namespace: str) -> Doc:
    return {"namespaceSelector": _ns_selector(namespace)}


def _from_pods(labels: dict[str, str]) -> Doc:
    return {"podSelector": {"matchLabels": labels}}


def _tcp(*ports: int) -> list[Doc]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _policy(name: str, selector: Doc, ingress: list[Doc] | None, egress: list[Doc] | None) -> Doc:
    """``selector``: labels to match, or a whole label selector (with ``matchLabels``)."""
    if "matchLabels" not in selector:
        selector = {"matchLabels": selector} if selector else {}
    spec: Doc = {"podSelector": selector}
    types = []
    if ingress is not None:
        types.append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        types.append("Egress")
        spec["egress"] = egress
    spec["policyTypes"] = types
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name),
        "spec": spec,
    }


def network_policies(opts: Options) -> list[Doc]:
    """Default deny, then what each process needs and no more.

    Ingress is denied to every pod of the namespace (the operators' pods included; Strimzi
    adds its own policies for the brokers, restricted here by the listener's
    ``networkPolicyPeers``); egress is denied to the product's pods, which reach DNS, Kafka,
    the database and Alertmanager, and (pager, operations service) HTTPS for the channels."""
    prometheus = _from_ns(MONITORING_NAMESPACE)
    dns = {
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    kafka = {
        "to": [_from_pods({"strimzi.io/cluster": KAFKA_CLUSTER, "strimzi.io/broker-role": "true"})],
        "ports": _tcp(KAFKA_TLS_PORT),
    }
    database = {"to": [_from_pods({"cnpg.io/cluster": DB_CLUSTER})], "ports": _tcp(5432)}
    alertmanager = {
        "to": [_from_pods({LABEL_COMPONENT: "alertmanager"})],
        "ports": _tcp(9093),
    }
    https = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": _tcp(443, 465, 587)}
    docs = [
        _policy("default-deny-ingress", {}, [], None),
        _policy("ioc-default-deny-egress", product_pods(), None, []),
        _policy(
            "ioc-worker",
            _selector("worker"),
            [{"from": [prometheus], "ports": _tcp(WORKER_METRICS_PORT)}],
            [dns, kafka, database],
        ),
        _policy(
            "ioc-pager",
            _selector("pager"),
            [
                {
                    "from": [_from_pods({LABEL_COMPONENT: "alertmanager"})],
                    "ports": _tcp(PAGER_PORT),
                },
                {"from": [prometheus], "ports": _tcp(PAGER_METRICS_PORT)},
            ],
            [dns, kafka, database, alertmanager, https],
        ),
        _policy(
            "ioc-ops",
            _selector("ops"),
            [
                # The console and the API are the operators': any namespace (ingress controller).
                {"from": [{"namespaceSelector": {}}], "ports": _tcp(OPS_PORT)},
                {"from": [prometheus], "ports": _tcp(OPS_METRICS_PORT)},
            ],
            [dns, kafka, database, alertmanager, https],
        ),
        _policy("ioc-bootstrap", _selector("bootstrap"), [], [dns, kafka, database]),
        _policy(
            "ioc-alertmanager",
            {LABEL_COMPONENT: "alertmanager"},
            [
                {
                    "from": [
                        prometheus,
                        _from_pods(_selector("pager")),
                        _from_pods(_selector("ops")),
                    ],
                    "ports": _tcp(9093),
                },
                {
                    "from": [_from_pods({LABEL_COMPONENT: "alertmanager"})],
                    "ports": [
                        {"protocol": "TCP", "port": 9094},
                        {"protocol": "UDP", "port": 9094},
                    ],
                },
            ],
            None,
        ),
        _policy(
            "ioc-db",
            {"cnpg.io/cluster": DB_CLUSTER},
            [
                {
                    "from": [
                        {"podSelector": product_pods()},
                        _from_pods({"cnpg.io/cluster": DB_CLUSTER}),  # replication
                        _from_ns(MONITORING_NAMESPACE),  # Grafana (ioc_grafana), metrics 9187
                    ],
                    "ports": _tcp(5432, 9187),
                },
                {"from": [_from_ns(CNPG_NAMESPACE)], "ports": _tcp(8000, 5432)},
            ],
            None,
        ),
        _policy(
            "ioc-kafka-operators",
            {"strimzi.io/cluster": KAFKA_CLUSTER},
            # Strimzi's own policies cover its listeners; this one lets its operator in.
            [{"from": [_from_ns(STRIMZI_NAMESPACE)]}],
            None,
        ),
    ]
    return docs


# --- the whole deployment ------------------------------------------------------------------

FILES: Final = (
    ("00-namespace.yaml", "the namespace"),
    ("10-kafka.yaml", "Strimzi: the KRaft cluster and its node pools"),
    ("11-kafka-topics.yaml", "Strimzi: every topic of ioc/contract/topics.py"),
    ("12-kafka-users.yaml", "Strimzi: a SCRAM user per service, ACLs from ioc/contract/access.py"),
    ("20-database.yaml", "CloudNativePG: TimescaleDB, the roles of ioc/db/roles.py"),
    ("30-processes.yaml", "bootstrap Job, worker (KEDA), pager, operations service"),
    ("40-monitoring.yaml", "PodMonitor, PrometheusRule and Alertmanager from ioc/alerting"),
    ("41-dashboards.yaml", "Grafana sidecar ConfigMaps from dashboards/.../generated"),
    ("50-network-policies.yaml", "default deny and what each process needs"),
)


def namespace() -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {LABEL_PART_OF: PART_OF}},
    }


def documents(opts: Options | None = None) -> dict[str, list[Doc]]:
    """File name -> its documents, in apply order."""
    opts = opts or Options()
    return {
        "00-namespace.yaml": [namespace()],
        "10-kafka.yaml": kafka_documents(opts),
        "11-kafka-topics.yaml": topic_documents(opts),
        "12-kafka-users.yaml": user_documents(opts),
        "20-database.yaml": database_documents(opts),
        "30-processes.yaml": process_documents(opts),
        "40-monitoring.yaml": monitoring_documents(opts),
        "41-dashboards.yaml": dashboard_documents(opts),
        "50-network-policies.yaml": network_policies(opts),
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (SQL, the dashboards' JSON, Alertmanager's YAML) as literal blocks,
    so the committed files read and diff line by line."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(name: str, docs: list[Doc]) -> str:
    """One file: a header saying where it comes from, then its documents."""
    what = dict(FILES)[name]
    header = (
        "# GENERATED by `ioc deploy k8s` from deploy/ioc/deploy/k8s/manifests.py: do not edit.\n"
        f"# {what}\n"
    )
    body = "---\n".join(
        yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
        for doc in docs
    )
    return header + "---\n" + body


def build(out: Path, opts: Options | None = None) -> list[Path]:
    """Write every file under ``out`` (removing stale ``*.yaml`` there); returns them."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    docs = documents(opts)
    for stale in out.glob("*.yaml"):
        if stale.name not in docs:
            stale.unlink()
    for name, file_docs in docs.items():
        path = out / name
        path.write_text(render(name, file_docs))
        written.append(path)
    return written
