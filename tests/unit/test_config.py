from __future__ import annotations

from pathlib import Path

import pytest

from ioc.config import load_settings
from ioc.errors import ConfigError
from ioc.kafka_clients import aiokafka_common


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("IOC_KAFKA_BOOTSTRAP_SERVERS", "IOC_KAFKA_PORT", "IOC_KAFKA_PLAINTEXT"):
        monkeypatch.delenv(key, raising=False)
    settings = load_settings()
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.topic("ioc.camera.v1") == "ioc.camera.v1"


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("IOC_KAFKA_BOOTSTRAP_SERVERS", "nonsense", "IOC_KAFKA_BOOTSTRAP_SERVERS"),
        ("IOC_DB_DSN", "mysql://x", "IOC_DB_DSN"),
        ("IOC_POSTGRES_PORT", "abc", "IOC_POSTGRES_PORT"),
        ("IOC_KAFKA_TOPIC_PREFIX", "bad prefix!", "IOC_KAFKA_TOPIC_PREFIX"),
        ("IOC_DB_SCHEMA", "Drop Table", "IOC_DB_SCHEMA"),
        ("IOC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL", "IOC_KAFKA_SASL_MECHANISM"),
    ],
)
def test_bad_settings_fail_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_sasl_settings_reach_the_kafka_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("IOC_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("IOC_KAFKA_SASL_USERNAME", "ioc")
    monkeypatch.setenv("IOC_KAFKA_SASL_PASSWORD", "s3cret")
    settings = load_settings()
    kwargs = aiokafka_common(settings)
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(settings)


def test_missing_local_credentials_name_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IOC_DB_DSN", raising=False)
    settings = load_settings(stack_dir=tmp_path)
    with pytest.raises(ConfigError, match="IOC_DB_DSN"):
        settings.database_dsn()


def test_cli_prints_one_line_for_unreachable_broker(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ioc.cli import main

    monkeypatch.setenv("IOC_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["topics", "create"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ioc: error: Kafka broker at 127.0.0.1:1 is unreachable")
    assert len(err.splitlines()) == 1


def test_cli_prints_one_line_for_unreachable_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ioc.cli import main

    monkeypatch.setenv("IOC_DB_ADMIN_DSN", "postgresql://u:p@127.0.0.1:1/ioc")
    assert main(["db", "migrate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "database postgresql://u@127.0.0.1:1/ioc is unreachable" in err
    assert len(err.splitlines()) == 1
    assert ":p@" not in err


def test_servers_listen_on_loopback_unless_told(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings().bind_host == "127.0.0.1"
    clean_env.setenv("IOC_BIND_HOST", "0.0.0.0")  # the image's (deploy/image/Dockerfile)
    assert load_settings().bind_host == "0.0.0.0"


def test_alertmanager_peers_are_the_local_stacks_unless_listed(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert load_settings().alertmanager_urls == [
        "http://127.0.0.1:19094",
        "http://127.0.0.1:19150",
    ]
    clean_env.setenv(
        "IOC_ALERTMANAGER_PEER_URLS", " http://alertmanager:9093/, http://alertmanager-2:9093"
    )
    assert load_settings().alertmanager_urls == [
        "http://alertmanager:9093",
        "http://alertmanager-2:9093",
    ]
    clean_env.setenv("IOC_ALERTMANAGER_PEER_URLS", "alertmanager:9093")
    with pytest.raises(ConfigError, match="IOC_ALERTMANAGER_PEER_URLS"):
        load_settings()
