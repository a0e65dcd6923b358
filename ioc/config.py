"""Settings for every `ioc` process, read from the environment (prefix ``IOC_``) and ``.env``.

Validation fails fast: :func:`load_settings` turns pydantic's report into one line that
names the environment variable, so a typo never surfaces later as a connection traceback.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ioc.errors import ConfigError

if TYPE_CHECKING:
    from ioc.deploy.local.credentials import StackCredentials

ENV_PREFIX = "IOC_"

_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._\-]*$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def default_stack_dir() -> Path:
    """Where the local stack keeps binaries, data and logs: never inside the repository."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ioc" / "stack"


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
    postgres_port: int = Field(15432, ge=1024, le=65535)
    prometheus_port: int = Field(19090, ge=1024, le=65535)
    alertmanager_port: int = Field(19094, ge=1024, le=65535)
    kafka_heap: str = Field("768m", pattern=r"^\d+[mg]$")

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

    # --- database --------------------------------------------------------------------------
    db_dsn: SecretStr | None = None
    """Runtime DSN (writer role). Unset: taken from the local stack's generated credentials."""
    db_admin_dsn: SecretStr | None = None
    """DSN of the role that owns the schema and runs migrations. Unset: local stack's."""
    db_schema: str = "ioc"

    # --- processes ---------------------------------------------------------------------------
    metrics_port: int = Field(9464, ge=0, le=65535)
    pager_port: int = Field(9480, ge=1024, le=65535)
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
            if not self.kafka_sasl_username or self.kafka_sasl_password is None:
                raise ValueError(
                    f"{ENV_PREFIX}KAFKA_SASL_USERNAME and {ENV_PREFIX}KAFKA_SASL_PASSWORD are "
                    f"required when {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL="
                    f"{self.kafka_security_protocol}"
                )
        return self

    # --- derived values ------------------------------------------------------------------------
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

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def _stack_dsn(self, role: str, env: str) -> str:
        creds = self.stack_credentials().database()  # ConfigError if unreadable
        if creds is None or role not in creds.roles:
            raise ConfigError(
                f"{env} is not set and the local stack has no credentials for role {role} "
                f"in {self.stack_dir}; run `ioc stack up` or set {env}"
            )
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
