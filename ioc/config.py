"""Settings for every `ioc` process, read from the environment (prefix ``IOC_``) and ``.env``.

Validation fails fast: :func:`load_settings` turns pydantic's report into one line that
names the environment variable, so a typo never surfaces later as a connection traceback.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from ioc.errors import ConfigError
from ioc.memory import Allocator

if TYPE_CHECKING:
    from ioc.contract.history import Retention
    from ioc.deploy.local.credentials import StackCredentials

ENV_PREFIX = "IOC_"

_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._\-]*$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def default_stack_dir() -> Path:
    """Where the local stack keeps binaries, data and logs: never inside the repository."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ioc" / "stack"


def min_insync_replicas(replication_factor: int) -> int:
    """``min.insync.replicas`` for ``replication_factor`` replicas: 2 of 3, so an ``acks=all``
    write survives the loss of any one broker and still goes on with one down; 1 for fewer.
    The one rule for the local stack's brokers and topics and the Kubernetes manifests."""
    return max(1, min(2, replication_factor - 1))


class Settings(BaseSettings):
    """Every knob of the product in one place; each field is ``IOC_<FIELD>`` in the env."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- local stack -------------------------------------------------------------------
    stack_dir: Path = Field(default_factory=default_stack_dir)
    kafka_port: int = Field(19092, ge=1024, le=65535)
    kafka_controller_port: int = Field(19093, ge=1024, le=65535)
    kafka_sasl_port: int = Field(19096, ge=1024, le=65535)
    kafka_proxied_port: int = Field(19130, ge=1024, le=65535)
    """The single broker's third listener (PROXIED), for network-fault tests: it advertises
    ``kafka_proxy_port``, where a fault-injecting TCP proxy forwards to it, so a client that
    bootstraps through the proxy stays behind it (tests/chaos/netfaults.py)."""
    kafka_proxy_port: int = Field(19131, ge=1024, le=65535)
    """Where PROXIED clients are sent; nothing listens there unless a test runs the proxy."""
    postgres_port: int = Field(15432, ge=1024, le=65535)
    database_ha: bool = False
    """Use the local stack's replicated PostgreSQL (``ioc stack up --database ha``): a
    pg_auto_failover monitor and two TimescaleDB nodes, the standby synchronous, beside the
    single database; stack DSNs then name both nodes (``target_session_attrs=read-write``)."""
    postgres_ha_port: int = Field(15440, ge=1024, le=65500)
    """The replicated database's monitor; its data nodes listen on this + 1 and + 2."""
    prometheus_port: int = Field(19090, ge=1024, le=65535)
    alertmanager_port: int = Field(19094, ge=1024, le=65535)
    alertmanager_peer_port: int = Field(19150, ge=1024, le=65535)
    """The local stack's second Alertmanager: a cluster of two, so no single one pages alone."""
    alertmanager_cluster_port: int = Field(19151, ge=1024, le=65535)
    """Gossip (memberlist) of the first Alertmanager; the second's is this + 1."""
    kafka_heap: str = Field("768m", pattern=r"^\d+[mg]$")
    kafka_brokers: int = Field(1, ge=1, le=9)
    """Kafka nodes of the local stack: 1 (the single broker above) or 3-9, a replicated KRaft
    cluster (``ioc stack up --brokers 3``) beside it, which clients then use (not 2: two
    controllers cannot elect a leader once one is down)."""
    kafka_cluster_port: int = Field(19100, ge=1024, le=65500)
    """Ports of the replicated local cluster: node n (1-based) listens on this + n
    (PLAINTEXT), + 10 + n (SASL_PLAINTEXT) and + 20 + n (controller)."""
    kafka_cluster_heap: str = Field("512m", pattern=r"^\d+[mg]$")
    kafka_plaintext: bool = True
    """The local stack's Kafka keeps its client PLAINTEXT listener (and PROXIED), where
    anonymous clients are super users: the development shortcut. False: clients have only the
    SASL_PLAINTEXT (SCRAM) listeners, the brokers authenticate to each other too, and the
    Kafka client settings default to SASL_PLAINTEXT, SCRAM-SHA-512, user ``ioc`` and those
    listeners (each overridable by its own variable)."""

    # --- Kafka (ioc.kafka_clients turns these into each client's configuration) ----------
    kafka_bootstrap_servers: str | None = None
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_topic_prefix: str = ""
    kafka_replication_factor: int = Field(1, ge=1, le=7)
    """Replicas of every topic bootstrap creates, Faust's changelog and leader topics too
    (1 for the single local broker; 3 in production)."""
    kafka_province_topics: bool = False
    """Per-province feed topics (docs/scaling.md, "Kafka topic layout for many provinces"):
    bootstrap also creates ``ioc.p.<province>.<feed>.v1`` for every province of the scenario,
    with a Kafka user per province (``ioc-p-<province>``, Write on its own topics only, a
    producer quota); the workers also read them (subscribed by pattern) and dead-letter a
    record whose device is not under the topic's province; the simulator writes each device's
    messages to its province's topic. False (the default): every province shares the feed
    topics."""

    # --- database --------------------------------------------------------------------------
    db_dsn: SecretStr | None = None
    """Runtime DSN (writer role). Unset: taken from the local stack's generated credentials."""
    db_admin_dsn: SecretStr | None = None
    """DSN of the role that owns the schema and runs migrations. Unset: local stack's."""
    db_schema: str = "ioc"

    # --- processes ---------------------------------------------------------------------------
    bind_host: str = Field("127.0.0.1", min_length=1)
    """The address the product's own HTTP servers listen on (every /metrics, the pager's
    webhook, the operations service): loopback on a shared host; ``0.0.0.0`` in a container,
    where Prometheus and Alertmanager reach them by service name (the image sets it)."""
    metrics_port: int = Field(9464, ge=0, le=65535)
    simulator_metrics_port: int = Field(0, ge=0, le=65535)
    """Where ``ioc simulate`` serves /metrics: 0, any free port (the local stack's Prometheus
    finds it through file_sd); a fixed one where Prometheus lists it (compose)."""
    worker_allocator: Allocator = "pymalloc"
    """The memory allocator of ``ioc worker``: ``jemalloc`` (re-executes itself with
    ``LD_PRELOAD=libjemalloc.so.2 PYTHONMALLOC=malloc``; pymalloc, with a warning, where the
    library is missing: ``apt-get install libjemalloc2``) or ``pymalloc``, CPython's own.
    Why: every catch-up of a backlog left a pymalloc worker's RSS higher for good (CPython's
    1 MiB arenas stay mapped while any object in them lives), +44 % over the soak's hour;
    jemalloc returns freed pages one by one (ioc.memory, docs/performance.md). Not the default
    yet: the first soak hour on jemalloc fell behind where the last on pymalloc kept up, and
    which of the two caused it is not yet measured (docs/performance.md, "Soak")."""
    workers_desired: int = Field(1, ge=0)
    """How many stream workers this deployment runs (``ioc run --workers N`` sets it): each
    worker exports it, and StreamWorkerDown fires while fewer are up, so a worker killed or
    scaled in does not page forever through its stale scrape target."""
    pager_port: int = Field(9480, ge=1024, le=65535)
    pager_peer_port: int = Field(9482, ge=1024, le=65535)
    """The second pager Alertmanager also notifies (its /metrics on this + 1), so a page
    survives the loss of either; the two share the database and send each page once."""
    pager_token: SecretStr | None = None
    """Bearer token Alertmanager must send to the pager. Unset: the local stack's generated one."""
    pager_channels: str = "[]"
    """JSON list of outgoing paging channels (the pager's and the escalator's), each with a
    ``type``: ``webhook``, ``email``, ``sms`` (an eSMS.vn-style SMS gateway), ``zalo`` (Zalo
    Official Account message API v3) or ``telegram`` (Bot API), e.g.
    [{"type": "webhook", "url": "https://..."},
    {"type": "email", "host": "smtp.example", "port": 25, "from": "ioc@x", "to": ["oncall@x"]},
    {"type": "sms", "api_key": "...", "secret_key": "...", "brandname": "IOC"},
    {"type": "zalo", "access_token": "..."},
    {"type": "telegram", "token": "...", "chat_ids": ["..."]}]
    (fields, retries and rate limits: ioc.services.channels)."""
    pager_max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    ops_port: int = Field(9490, ge=1024, le=65535)
    """The operations service (``ioc ops serve``): API, OpenAPI document and console."""
    alertmanager_peer_urls: str | None = None
    """Comma-separated base URLs of every Alertmanager peer the pager (resolutions) and the
    operations service (silences) talk to, e.g. ``http://alertmanager:9093,http://alertmanager-2:9093``.
    Unset: the local stack's two (``alertmanager_port``, ``alertmanager_peer_port``)."""
    ops_url: str | None = None
    """Where the CLI finds the operations service. Unset: http://127.0.0.1:{ops_port}."""
    ops_token: SecretStr | None = None
    """The CLI's API token. Unset: the local stack's generated admin token."""
    ops_admin_token: SecretStr | None = None
    """Admin token the service accepts before any token exists in the database (first
    start). Unset: the local stack's generated one."""
    ops_max_body_bytes: int = Field(65_536, ge=1024, le=16 * 1_048_576)
    oncall_file: Path | None = None
    """On-call roster and escalation policy (YAML). Unset: the shipped example roster."""
    console_url: str | None = None
    """Public address of the operator console, for the links in pages and what ``ioc run``
    prints (Grafana's links use the dashboards' ``console`` variable, set in provisioning).
    Unset: the operations service's own address."""
    # --- history: retention of each tier and the hourly/daily rollups (docs/history.md) -------
    raw_retention_days: int = Field(7, ge=1, le=3650)
    """Days a feed's raw rows are kept, unless the feed declares its own
    (``FeedSpec.raw_retention_days``; the portal's 400). Must cover every feed's accepted
    lateness (7 days): a late hour is recomputed from them."""
    rollup_1m_retention_days: int = Field(2, ge=1, le=3650)
    """Days the 1-minute rollups are kept: panels over longer ranges read the hourly and
    daily tiers (docs/history.md section 4)."""
    rollup_1h_retention_days: int = Field(90, ge=1, le=3650)
    """Days the hourly rollups are kept (at least the 1-minute tier's)."""
    rollup_1d_retention_days: int = Field(400, ge=1, le=36500)
    """Days the daily rollups are kept (at least the hourly tier's): a year's report."""
    history_every_s: float = Field(60.0, ge=1.0, le=3600.0)
    """How often the stream workers' shard leader rolls the marked hours and days."""
    history_settle_s: float = Field(300.0, ge=0.0, le=86_400.0)
    """An hour is rolled once it has been marked this long: the open hour about this often."""
    history_day_settle_s: float = Field(1800.0, ge=0.0, le=86_400.0)
    """The same for days."""

    scenario: str = "yen-bai-2022"
    thresholds: str = ""
    """JSON object of :class:`ioc.contract.thresholds.Thresholds` fields the stream workers'
    state machine uses instead of the defaults, e.g. ``{"portal_silent_ms": 20000,
    "portal_working_hours": "always"}`` (tests and drills; the alert rules and dashboards
    are built from the defaults). Empty: the defaults."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, value: str) -> str:
        """Refused at load, not when a worker first evaluates: the JSON must be an object
        whose keys are fields of :class:`ioc.contract.thresholds.Thresholds`."""
        from ioc.contract.thresholds import overridden

        try:
            overridden(value)
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            raise ValueError(str(exc).removeprefix("IOC_THRESHOLDS: ")) from None
        return value

    @model_validator(mode="after")
    def _check_retention(self) -> Settings:
        """Refused at load: a coarser tier kept shorter than a finer one leaves a hole."""
        self.retention()
        return self

    @field_validator("kafka_brokers")
    @classmethod
    def _check_brokers(cls, value: int) -> int:
        if value == 2:
            raise ValueError("1 or 3-9: two KRaft controllers lose their quorum with one down")
        return value

    @model_validator(mode="before")
    @classmethod
    def _replicas_follow_brokers(cls, data: Any) -> Any:
        """Against the local cluster topics get 3 replicas unless the factor is set."""
        if isinstance(data, dict) and "kafka_replication_factor" not in data:
            try:
                brokers = int(data.get("kafka_brokers", 1))
            except (TypeError, ValueError):
                return data  # the field's own validation names the variable
            if brokers >= 3:
                data = {**data, "kafka_replication_factor": 3}
        return data

    @model_validator(mode="before")
    @classmethod
    def _sasl_when_plaintext_off(cls, data: Any) -> Any:
        """With the PLAINTEXT listener off, the Kafka client settings not given explicitly
        default to the admin user over SCRAM (bootstrap: :attr:`bootstrap_servers`)."""
        if not isinstance(data, dict) or "kafka_plaintext" not in data:
            return data
        try:
            plaintext = TypeAdapter(bool).validate_python(data["kafka_plaintext"])
        except ValidationError:
            return data  # the field's own validation names the variable
        if plaintext:
            return data
        from ioc.contract.access import ADMIN_USER

        defaults = {
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": ADMIN_USER,
        }
        return {**defaults, **data}

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = [p.strip() for p in value.split(",") if p.strip()]
        bad = [p for p in parts if not _HOSTPORT.match(p)]
        if not parts or bad:
            raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return ",".join(parts)

    @field_validator("kafka_topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.match(value):
            raise ValueError(f"only letters, digits, '.', '_' and '-' are allowed, got {value!r}")
        return value

    @field_validator("alertmanager_peer_urls")
    @classmethod
    def _check_alertmanager_urls(cls, value: str | None) -> str | None:
        if value is None:
            return None
        urls = [u.strip() for u in value.split(",") if u.strip()]
        bad = [
            u
            for u in urls
            if urlsplit(u).scheme not in ("http", "https") or not urlsplit(u).hostname
        ]
        if not urls or bad:
            raise ValueError(f"expected http://host:port[,http://host:port...], got {value!r}")
        return ",".join(urls)

    @field_validator("db_schema")
    @classmethod
    def _check_schema(cls, value: str) -> str:
        if not _SCHEMA_NAME.match(value):
            raise ValueError(f"must be a lower-case SQL identifier, got {value!r}")
        return value

    @field_validator("db_dsn", "db_admin_dsn")
    @classmethod
    def _check_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise ValueError(
                "expected postgresql://user:password@host:port/database "
                f"(got scheme {parts.scheme!r}, host {parts.hostname!r})"
            )
        return value

    @model_validator(mode="after")
    def _check_sasl(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_"):
            if self.kafka_sasl_mechanism is None:
                raise ValueError(
                    f"{ENV_PREFIX}KAFKA_SASL_MECHANISM is required when "
                    f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
                )
            if self.kafka_sasl_username and self.kafka_sasl_password is None:
                # the local stack's generated SCRAM users, like database_dsn() does
                stack_user = self.stack_kafka_users().get(self.kafka_sasl_username)
                if stack_user is not None:
                    self.kafka_sasl_password = SecretStr(stack_user)
            if self._password_from_a_stack_not_up_yet():
                return self  # ioc.kafka_clients reads it once `ioc stack up` generated it
            if not self.kafka_sasl_username or self.kafka_sasl_password is None:
                raise ValueError(
                    f"{ENV_PREFIX}KAFKA_SASL_USERNAME and {ENV_PREFIX}KAFKA_SASL_PASSWORD are "
                    f"required when {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL="
                    f"{self.kafka_security_protocol}"
                )
        return self

    def _password_from_a_stack_not_up_yet(self) -> bool:
        """With the PLAINTEXT listener off the local stack's SCRAM users are the only way in,
        and before the first ``ioc stack up`` their passwords do not exist yet. Validation
        only reads (no side effects): the stack generates them, and the Kafka clients read
        them when they connect (:func:`ioc.kafka_clients.sasl_password`)."""
        from ioc.deploy.local.credentials import KAFKA_SCRAM_USERS

        return (
            not self.kafka_plaintext
            and self.kafka_sasl_password is None
            and self.kafka_sasl_username in KAFKA_SCRAM_USERS
        )

    # --- derived values ------------------------------------------------------------------------
    def retention(self) -> Retention:
        """The retention of every tier (:class:`ioc.contract.history.Retention`)."""
        from ioc.contract.history import Retention

        return Retention(
            self.raw_retention_days,
            self.rollup_1m_retention_days,
            self.rollup_1h_retention_days,
            self.rollup_1d_retention_days,
        )

    def stack_credentials(self) -> StackCredentials:
        """The local stack's generated credentials (``ioc stack up``): their one owner."""
        from ioc.deploy.local.credentials import StackCredentials

        return StackCredentials(self.stack_dir)

    def stack_credentials_path(self, service: str) -> Path:
        """Where the local stack keeps a service's generated credentials (``ioc stack up``)."""
        return self.stack_credentials().path(service)

    @property
    def stack_pager_token_path(self) -> Path:
        """The pager token the local stack generates for Alertmanager and the pager."""
        return self.stack_credentials().pager_token_path

    def stack_kafka_users(self) -> dict[str, str]:
        """SCRAM users the local stack created (``ioc stack up``), name -> password."""
        try:
            kafka = self.stack_credentials().kafka()
        except ConfigError:
            return {}
        return dict(kafka.users) if kafka else {}

    def for_kafka_service(self, service: str) -> Settings:
        """These settings with Kafka as ``service``'s own user
        (:data:`ioc.contract.access.SERVICE_USERS`: ``worker``, ``simulator``, ``ops``,
        ``pager``, ``collector``), whose ACLs allow only its topics and groups; each
        long-running process calls this at its entry point (tools, bootstrap and tests stay
        the admin).

        Switched only over SASL, when the user is the local stack's admin (the default, or
        ``ioc`` written by a parent process) with the stack's password, and the stack has a
        password for the service's user; otherwise these settings unchanged (a deployment
        that sets ``IOC_KAFKA_SASL_USERNAME`` per service, or plaintext)."""
        from ioc.contract.access import ADMIN_USER, SERVICE_USERS

        if service not in SERVICE_USERS:
            raise ConfigError(
                f"no Kafka user for service {service!r}; one of {', '.join(SERVICE_USERS)}"
            )
        if not self.kafka_security_protocol.startswith("SASL_"):
            return self
        if self.kafka_sasl_username not in (None, ADMIN_USER):
            return self  # chosen explicitly
        stack = self.stack_kafka_users()
        given = self.kafka_sasl_password
        if given is not None and given.get_secret_value() != stack.get(ADMIN_USER):
            return self  # the admin of another cluster, not the local stack's
        password = stack.get(SERVICE_USERS[service])
        if password is None:
            logging.getLogger(__name__).warning(
                "the local stack has no Kafka user %s (stack started by an older release?): "
                "%s runs as %s; `ioc stack up` creates it",
                SERVICE_USERS[service],
                service,
                self.kafka_sasl_username,
            )
            return self
        return self.model_copy(
            update={
                "kafka_sasl_username": SERVICE_USERS[service],
                "kafka_sasl_password": SecretStr(password),
            }
        )

    def for_kafka_province(self, province: str) -> Settings:
        """These settings with Kafka as the province's own user, ``ioc-p-<code>``, and the
        password the local stack's bootstrap generated for it (per-province topics,
        :func:`ioc.kafka.ensure_province_users`): Write on the province's topics only.
        A deployment gives a province's producer its user explicitly
        (``IOC_KAFKA_SASL_USERNAME`` and ``IOC_KAFKA_SASL_PASSWORD``)."""
        from ioc.contract.access import province_user

        user = province_user(province)
        password = self.stack_kafka_users().get(user)
        if password is None:
            raise ConfigError(
                f"the local stack has no Kafka user {user}: run `ioc bootstrap` with "
                f"{ENV_PREFIX}KAFKA_PROVINCE_TOPICS=true for a scenario with province {province}"
            )
        return self.model_copy(
            update={"kafka_sasl_username": user, "kafka_sasl_password": SecretStr(password)}
        )

    def with_kafka_brokers(self, brokers: int) -> Settings:
        """These settings against the local stack's ``brokers``-node Kafka (1: the single
        broker), topics replicated as in :meth:`_replicas_follow_brokers`."""
        return type(self).model_validate(
            {**self.model_dump(exclude={"kafka_replication_factor"}), "kafka_brokers": brokers}
        )

    def kafka_node_ports(self, node: int) -> tuple[int, int, int]:
        """(PLAINTEXT, SASL_PLAINTEXT, controller) ports of node ``node`` (1-based) of the
        local cluster."""
        base = self.kafka_cluster_port
        return base + node, base + 10 + node, base + 20 + node

    @property
    def bootstrap_servers(self) -> str:
        if self.kafka_bootstrap_servers:
            return self.kafka_bootstrap_servers
        if not self.kafka_plaintext:  # the local stack has no PLAINTEXT listener then
            return self.sasl_bootstrap_servers
        if self.kafka_brokers > 1:
            nodes = range(1, self.kafka_brokers + 1)
            return ",".join(f"127.0.0.1:{self.kafka_node_ports(n)[0]}" for n in nodes)
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The local stack's SASL_PLAINTEXT (SCRAM) listeners, every node's."""
        if self.kafka_brokers > 1:
            nodes = range(1, self.kafka_brokers + 1)
            return ",".join(f"127.0.0.1:{self.kafka_node_ports(n)[1]}" for n in nodes)
        return f"127.0.0.1:{self.kafka_sasl_port}"

    @property
    def kafka_min_insync_replicas(self) -> int:
        """``min.insync.replicas`` of the project's topics (:func:`min_insync_replicas`)."""
        return min_insync_replicas(self.kafka_replication_factor)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def alertmanager_urls(self) -> list[str]:
        """Every Alertmanager peer (Prometheus notifies each): ``alertmanager_peer_urls``,
        else both peers of the local stack's cluster."""
        if self.alertmanager_peer_urls:
            return [
                u.strip().rstrip("/") for u in self.alertmanager_peer_urls.split(",") if u.strip()
            ]
        return [self.alertmanager_url, f"http://127.0.0.1:{self.alertmanager_peer_port}"]

    @property
    def postgres_ha_node_ports(self) -> tuple[int, int]:
        """The replicated database's two data nodes (either may be the primary)."""
        return self.postgres_ha_port + 1, self.postgres_ha_port + 2

    def _stack_dsn(self, role: str, env: str) -> str:
        from ioc.deploy.local.credentials import HA_DATABASE_SERVICE

        service = HA_DATABASE_SERVICE if self.database_ha else "timescaledb"
        creds = self.stack_credentials().database(service)  # ConfigError if unreadable
        if creds is None or role not in creds.roles:
            up = "ioc stack up --database ha" if self.database_ha else "ioc stack up"
            raise ConfigError(
                f"{env} is not set and the local stack has no credentials for role {role} "
                f"in {self.stack_dir}; run `{up}` or set {env}"
            )
        if self.database_ha:  # whichever node is the primary now, found at every connect
            return creds.multi_host_dsn(role, self.postgres_ha_node_ports)
        return creds.dsn(role, self.postgres_port)

    def database_dsn(self) -> str:
        """DSN for runtime reads and writes (least privilege)."""
        if self.db_dsn is not None:
            return self.db_dsn.get_secret_value()
        from ioc.db.roles import RUNTIME_ROLE

        return self._stack_dsn(RUNTIME_ROLE, f"{ENV_PREFIX}DB_DSN")

    def admin_dsn(self) -> str:
        """DSN for migrations (schema owner)."""
        if self.db_admin_dsn is not None:
            return self.db_admin_dsn.get_secret_value()
        from ioc.db.roles import ADMIN_ROLE

        return self._stack_dsn(ADMIN_ROLE, f"{ENV_PREFIX}DB_ADMIN_DSN")

    def resolved_pager_token(self) -> str:
        """The token the pager accepts (and the local Alertmanager sends)."""
        if self.pager_token is not None:
            return self.pager_token.get_secret_value()
        stack = self.stack_credentials()
        token = stack.pager_token()
        if token is None:
            raise ConfigError(
                f"{ENV_PREFIX}PAGER_TOKEN is not set and the local stack has no "
                f"{stack.pager_token_path}; run `ioc stack up` or set {ENV_PREFIX}PAGER_TOKEN"
            )
        return token

    @property
    def ops_base_url(self) -> str:
        return (self.ops_url or f"http://127.0.0.1:{self.ops_port}").rstrip("/")

    @property
    def console_base_url(self) -> str:
        return (self.console_url or self.ops_base_url).rstrip("/")

    def resolved_ops_admin_token(self) -> str:
        """The bootstrap admin token of the operations service (and the CLI's default)."""
        if self.ops_admin_token is not None:
            return self.ops_admin_token.get_secret_value()
        stack = self.stack_credentials()
        token = stack.ops_admin_token()
        if token is None:
            raise ConfigError(
                f"{ENV_PREFIX}OPS_ADMIN_TOKEN is not set and the local stack has no "
                f"{stack.ops_admin_token_path}; run `ioc stack up` or set "
                f"{ENV_PREFIX}OPS_ADMIN_TOKEN"
            )
        return token

    def resolved_ops_token(self) -> str:
        """The token the CLI sends to the operations service."""
        if self.ops_token is not None:
            return self.ops_token.get_secret_value()
        return self.resolved_ops_admin_token()

    def topic(self, name: str) -> str:
        """The physical Kafka topic name for a contract topic (test namespaces use a prefix)."""
        return f"{self.kafka_topic_prefix}{name}"

    def child_env(self) -> dict[str, str]:
        """These settings as ``IOC_<FIELD>`` variables, for a child ``ioc`` process.

        Every field that is set (not None) is written, so the child reads back exactly these
        settings whatever its own environment or ``.env`` says; a None field is left out (see
        :func:`ioc.processes.ioc_env`, which also drops the parent's variable for it). Secrets
        are in clear here: hand the dict to the child's environment, never log it.
        """
        from pydantic_core import to_jsonable_python

        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            plain = to_jsonable_python(value)  # Path -> str, bool -> bool, models -> dicts
            # pydantic-settings reads strings and numbers as they are, anything else as JSON
            text = plain if isinstance(plain, str) else json.dumps(plain)
            env[f"{ENV_PREFIX}{name.upper()}"] = text
        return env


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p]
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        problems.append(f"{ENV_PREFIX}{loc[0].upper()}: {msg}" if loc else msg)
    return "invalid configuration: " + "; ".join(problems)


def load_settings(**overrides: Any) -> Settings:
    """Read settings, raising :class:`ConfigError` with a one-line message on any problem."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
