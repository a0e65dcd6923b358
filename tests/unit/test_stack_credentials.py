"""The local stack's credentials have one owner: generated 0600, read back, DSNs quoted."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from ioc.config import load_settings
from ioc.db.roles import ADMIN_ROLE, READONLY_ROLE, ROLES, RUNTIME_ROLE
from ioc.deploy.local.credentials import (
    KAFKA_USER,
    CredentialsError,
    DatabaseCredentials,
    StackCredentials,
    dsn,
)
from ioc.errors import ConfigError

AWKWARD = "p@ss:w/rd?x#y%z"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_dsn_quotes_a_password_with_url_delimiters() -> None:
    url = dsn("ioc_app", AWKWARD, 25432, "ioc")
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "postgresql",
        "127.0.0.1",
        25432,
        "/ioc",
    )
    assert parts.username == "ioc_app"
    assert parts.password is not None
    assert unquote(parts.password) == AWKWARD
    assert AWKWARD not in url


def test_settings_and_the_stack_build_the_same_quoted_dsns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for env in ("IOC_DB_DSN", "IOC_DB_ADMIN_DSN"):
        monkeypatch.delenv(env, raising=False)
    owner = StackCredentials(tmp_path)
    creds = DatabaseCredentials(
        superuser_password=AWKWARD, roles={role: AWKWARD + role for role in ROLES}
    )
    owner.save_database(creds)
    settings = load_settings(stack_dir=tmp_path, postgres_port=25432)

    from ioc.deploy.local.timescaledb import TimescaleDB

    info = TimescaleDB(settings).connection_info()
    assert settings.database_dsn() == info["dsn"] == creds.dsn(RUNTIME_ROLE, 25432)
    assert settings.admin_dsn() == info["admin_dsn"] == creds.dsn(ADMIN_ROLE, 25432)
    assert info["grafana_dsn"] == creds.dsn(READONLY_ROLE, 25432)
    assert unquote(urlsplit(settings.admin_dsn()).password or "") == AWKWARD + ADMIN_ROLE


def test_generated_files_are_private_and_read_back(tmp_path: Path) -> None:
    owner = StackCredentials(tmp_path)
    assert owner.kafka() is None and owner.database() is None and owner.pager_token() is None

    kafka = owner.ensure_kafka()
    database = owner.ensure_database()
    token = owner.ensure_pager_token()
    for path in (owner.kafka_path, owner.database_path, owner.pager_token_path):
        assert mode(path) == 0o600, path
    assert len(kafka.users[KAFKA_USER]) >= 24
    assert set(database.roles) == set(ROLES)
    assert len({database.superuser_password, *database.roles.values()}) == 4

    # generated once: a second call reads the same secrets back
    assert owner.ensure_kafka() == kafka
    assert owner.ensure_database() == database
    assert owner.ensure_pager_token() == token

    # the on-disk format other readers rely on (bench/quix_peer.py, older stacks)
    doc = json.loads(owner.database_path.read_text())
    assert doc["database"] == "ioc" and doc["roles"][ADMIN_ROLE] == database.roles[ADMIN_ROLE]
    assert json.loads(owner.kafka_path.read_text())["users"] == kafka.users

    database.initialised = True
    owner.save_database(database)
    assert mode(owner.database_path) == 0o600
    reread = owner.database()
    assert reread is not None and reread.initialised


def test_settings_read_the_stack_kafka_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for env in ("IOC_KAFKA_SASL_PASSWORD", "IOC_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(env, raising=False)
    users = StackCredentials(tmp_path).ensure_kafka().users
    settings = load_settings(
        stack_dir=tmp_path,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=KAFKA_USER,
    )
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == users[KAFKA_USER]
    assert settings.stack_kafka_users() == users
    assert settings.stack_credentials_path("kafka") == tmp_path / "kafka" / "credentials.json"


def test_a_damaged_credentials_file_is_reported_not_regenerated(tmp_path: Path) -> None:
    owner = StackCredentials(tmp_path)
    owner.database_path.parent.mkdir(parents=True)
    owner.database_path.write_text("{not json")
    with pytest.raises(CredentialsError, match="credentials"):
        owner.ensure_database()
    assert owner.database_path.read_text() == "{not json"
    with pytest.raises(ConfigError):
        load_settings(stack_dir=tmp_path, db_dsn=None).admin_dsn()
