"""The local stack's generated credentials: the one owner that reads, generates and writes them.

Everything under ``IOC_STACK_DIR``, never in the repository, each file mode 0600:

=============================  ===============================================================
``kafka/credentials.json``     the broker's SCRAM users (ioc.contract.access.KAFKA_USERS, the
                               inter-broker user and, once a bootstrap with per-province
                               topics made them, the provinces' ``ioc-p-<code>``) and the
                               controller listener's PLAIN user
``timescaledb/credentials.json``  the superuser's and every role's password (ioc.db.roles)
``pager.token``                the bearer token Alertmanager sends to ``ioc pager``
=============================  ===============================================================

The stack's services generate them on first start (:meth:`StackCredentials.ensure_kafka`,
...); :mod:`ioc.config` reads them when ``IOC_DB_DSN``, ``IOC_DB_ADMIN_DSN``,
``IOC_KAFKA_SASL_PASSWORD`` or ``IOC_PAGER_TOKEN`` is unset. Every DSN to the stack's
database is built by :func:`dsn`, which URL-quotes the user and the password.

This module must not import :mod:`ioc.config` (which imports it).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ioc.contract.access import ADMIN_USER, KAFKA_USERS
from ioc.db.roles import DATABASE, ROLES, SUPERUSER
from ioc.errors import ConfigError

LOOPBACK = "127.0.0.1"
KAFKA_USER = ADMIN_USER
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
KAFKA_BROKER_USER = "ioc-broker"
"""The brokers' own SCRAM user (inter-broker traffic when the PLAINTEXT listener is off)."""
KAFKA_CONTROLLER_USER = "ioc-controller"
"""The KRaft controller listener's user: SASL/PLAIN from a static JAAS entry (the controller
listener cannot use SCRAM, whose credentials live in the metadata it serves)."""
KAFKA_SCRAM_USERS: tuple[str, ...] = (*KAFKA_USERS, KAFKA_BROKER_USER)
"""Every SCRAM user the local broker has: the project's principals and the broker's own."""
HA_DATABASE_SERVICE = "postgres-ha"
"""Where the replicated database (``ioc stack up --database ha``) keeps its credentials."""


class CredentialsError(ConfigError):
    """A credentials file exists but cannot be read or is not what this module wrote."""


def new_password() -> str:
    """A generated password: 32 URL-safe characters from the OS's CSPRNG."""
    return secrets.token_urlsafe(24)


def dsn(user: str, password: str, port: int, database: str, host: str = LOOPBACK) -> str:
    """``postgresql://user:password@host:port/database`` with user and password URL-quoted."""
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{host}:{port}/{quote(database, safe='')}"
    )


def multi_host_dsn(user: str, password: str, ports: Sequence[int], database: str) -> str:
    """A DSN naming every node on loopback; the client connects to whichever accepts writes
    (``target_session_attrs=read-write``), so a promoted standby is found without a restart."""
    hosts = ",".join(f"{LOOPBACK}:{port}" for port in ports)
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{hosts}/{quote(database, safe='')}?target_session_attrs=read-write"
    )


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only (0600), atomically (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a file left by a crash
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"cannot read local stack credentials {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CredentialsError(f"cannot read local stack credentials {path}: not an object")
    return data


def _passwords(doc: dict[str, Any], key: str) -> dict[str, str]:
    users = doc.get(key, {})
    if not isinstance(users, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in users.items()
    ):
        raise ValueError(f"{key} must map names to passwords")
    return dict(users)


@dataclass(frozen=True)
class KafkaCredentials:
    """The broker's SCRAM users (name -> password) and the controller listener's PLAIN
    users (the same, kept apart: they must never get a SCRAM credential)."""

    users: dict[str, str] = field(repr=False)  # passwords: never in a repr or a log
    mechanism: str = KAFKA_SASL_MECHANISM
    controller_users: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def generate(cls) -> KafkaCredentials:
        return cls(users={}).completed()

    def completed(self) -> KafkaCredentials:
        """These credentials with a new password for every user they lack (a file written
        before a user was added to :data:`KAFKA_SCRAM_USERS`); existing passwords are kept."""
        users = {u: self.users.get(u) or new_password() for u in KAFKA_SCRAM_USERS}
        controller = {
            u: self.controller_users.get(u) or new_password() for u in (KAFKA_CONTROLLER_USER,)
        }
        return KafkaCredentials(
            users={**self.users, **users},
            mechanism=self.mechanism,
            controller_users={**self.controller_users, **controller},
        )

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> KafkaCredentials:
        if "users" not in doc:
            raise KeyError("users")
        return cls(
            users=_passwords(doc, "users"),
            mechanism=str(doc.get("mechanism", KAFKA_SASL_MECHANISM)),
            controller_users=_passwords(doc, "controller_users"),
        )

    def document(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "users": self.users,
            "controller_users": self.controller_users,
        }


@dataclass
class DatabaseCredentials:
    """The stack's database: the superuser's and each role's password, and whether the roles
    and the database have been created (``initialised``)."""

    superuser_password: str = field(repr=False)  # passwords: never in a repr or a log
    roles: dict[str, str] = field(repr=False)
    database: str = DATABASE
    superuser: str = SUPERUSER
    initialised: bool = False
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def generate(cls) -> DatabaseCredentials:
        return cls(
            superuser_password=new_password(), roles={role: new_password() for role in ROLES}
        )

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> DatabaseCredentials:
        known = {"database", "superuser", "superuser_password", "roles", "initialised"}
        roles = doc["roles"]
        if not isinstance(roles, dict) or not all(isinstance(v, str) for v in roles.values()):
            raise ValueError("roles must map role names to passwords")
        return cls(
            superuser_password=str(doc["superuser_password"]),
            roles=dict(roles),
            database=str(doc.get("database", DATABASE)),
            superuser=str(doc.get("superuser", SUPERUSER)),
            initialised=bool(doc.get("initialised", False)),
            extra={k: v for k, v in doc.items() if k not in known},
        )

    def document(self) -> dict[str, Any]:
        return {
            **self.extra,
            "database": self.database,
            "superuser": self.superuser,
            "superuser_password": self.superuser_password,
            "roles": dict(self.roles),
            "initialised": self.initialised,
        }

    def password(self, role: str) -> str:
        """The password of ``role`` (or of the superuser); KeyError if the stack has none."""
        if role == self.superuser:
            return self.superuser_password
        return self.roles[role]

    def dsn(self, role: str, port: int, database: str | None = None) -> str:
        """DSN of ``role`` on the stack's loopback port, to ``database`` (default the stack's)."""
        return dsn(role, self.password(role), port, database or self.database)

    def multi_host_dsn(self, role: str, ports: Sequence[int], database: str | None = None) -> str:
        """DSN of ``role`` on every node of the replicated database (the primary is chosen
        at connect time)."""
        return multi_host_dsn(role, self.password(role), ports, database or self.database)


class StackCredentials:
    """The credentials files of one stack directory."""

    def __init__(self, stack_dir: Path) -> None:
        self.stack_dir = stack_dir

    def path(self, service: str) -> Path:
        """Where ``service`` (``kafka``, ``timescaledb``) keeps its generated credentials."""
        return self.stack_dir / service / "credentials.json"

    @property
    def kafka_path(self) -> Path:
        return self.path("kafka")

    @property
    def database_path(self) -> Path:
        return self.path("timescaledb")

    @property
    def pager_token_path(self) -> Path:
        return self.stack_dir / "pager.token"

    @property
    def ops_admin_token_path(self) -> Path:
        return self.stack_dir / "ops-admin.token"

    # --- Kafka ------------------------------------------------------------------------------
    def kafka(self) -> KafkaCredentials | None:
        """The SCRAM users, or None before the stack generated them."""
        doc = _read_json(self.kafka_path)
        if doc is None:
            return None
        try:
            return KafkaCredentials.from_document(doc)
        except (KeyError, ValueError, TypeError) as exc:
            raise CredentialsError(f"unexpected content in {self.kafka_path}: {exc}") from exc

    def ensure_kafka(self) -> KafkaCredentials:
        """The Kafka users, generated and written on first use; users missing from an older
        file are added to it (the others keep their passwords)."""
        creds = self.kafka()
        complete = KafkaCredentials.generate() if creds is None else creds.completed()
        if complete != creds:
            write_private(self.kafka_path, json.dumps(complete.document(), indent=2))
        return complete

    def ensure_kafka_users(self, names: Sequence[str]) -> KafkaCredentials:
        """:meth:`ensure_kafka` with a password for each of ``names`` too (users made after
        the stack, such as the provinces' ``ioc-p-<code>``: bootstrap knows the scenario,
        the stack does not); a user that has one keeps it. The stack sets every user of the
        file on its broker when it starts (``Kafka.after_ready``, kafka_broker.py)."""
        creds = self.ensure_kafka()
        missing = [n for n in names if n not in creds.users]
        if not missing:
            return creds
        more = KafkaCredentials(
            users={**creds.users, **{n: new_password() for n in missing}},
            mechanism=creds.mechanism,
            controller_users=creds.controller_users,
        )
        write_private(self.kafka_path, json.dumps(more.document(), indent=2))
        return more

    # --- database ---------------------------------------------------------------------------
    def database(self, service: str = "timescaledb") -> DatabaseCredentials | None:
        """The database passwords (of ``service``: ``timescaledb`` or the replicated
        :data:`HA_DATABASE_SERVICE`), or None before the stack generated them."""
        path = self.path(service)
        doc = _read_json(path)
        if doc is None:
            return None
        try:
            return DatabaseCredentials.from_document(doc)
        except (KeyError, ValueError, TypeError) as exc:
            raise CredentialsError(f"unexpected content in {path}: {exc}") from exc

    def ensure_database(self, service: str = "timescaledb") -> DatabaseCredentials:
        """The database passwords, generated and written on first use."""
        creds = self.database(service)
        if creds is None:
            creds = DatabaseCredentials.generate()
            self.save_database(creds, service)
        return creds

    def save_database(self, creds: DatabaseCredentials, service: str = "timescaledb") -> None:
        write_private(self.path(service), json.dumps(creds.document(), indent=2))

    # --- pager ------------------------------------------------------------------------------
    def pager_token(self) -> str | None:
        """The token Alertmanager sends to the pager, or None before the stack generated it."""
        try:
            return self.pager_token_path.read_text().strip()
        except FileNotFoundError:
            return None

    def ensure_pager_token(self) -> str:
        token = self.pager_token()
        if token is None:
            token = secrets.token_urlsafe(32)
            write_private(self.pager_token_path, token)
        return token

    # --- operations service -----------------------------------------------------------------
    def ops_admin_token(self) -> str | None:
        """The operations service's bootstrap admin token, or None before it was generated."""
        try:
            return self.ops_admin_token_path.read_text().strip()
        except FileNotFoundError:
            return None

    def ensure_ops_admin_token(self) -> str:
        token = self.ops_admin_token()
        if token is None:
            token = secrets.token_urlsafe(32)
            write_private(self.ops_admin_token_path, token)
        return token
