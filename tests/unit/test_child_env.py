"""``Settings.child_env()``: a child ``ioc`` process reads back exactly the parent's settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ioc.config import ENV_PREFIX, Settings, load_settings
from ioc.processes import ioc_env

# A value other than the default for every field (secrets with characters a shell or a URL
# would mangle). A new Settings field needs one here: test_the_sample_covers_every_field.
SAMPLE: dict[str, Any] = {
    "thresholds": '{"portal_silent_ms": 20000}',
    "stack_dir": Path("/srv/ioc stack/ünïcode"),
    "kafka_port": 29092,
    "kafka_controller_port": 29093,
    "kafka_sasl_port": 29096,
    "kafka_proxied_port": 29130,
    "kafka_proxy_port": 29131,
    "postgres_port": 25432,
    "database_ha": True,
    "postgres_ha_port": 25440,
    "prometheus_port": 29090,
    "alertmanager_port": 29094,
    "alertmanager_peer_port": 29150,
    "alertmanager_cluster_port": 29151,
    "kafka_heap": "1g",
    "kafka_brokers": 3,
    "kafka_cluster_port": 29100,
    "kafka_cluster_heap": "256m",
    "kafka_plaintext": False,
    "kafka_bootstrap_servers": "k1.example:9093,k2.example:9093",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "ioc app",
    "kafka_sasl_password": SecretStr("p@ss word=\"'$HOME;\n"),
    "kafka_ssl_cafile": Path("/etc/ioc/ca.pem"),
    "kafka_topic_prefix": "t1a2.",
    "kafka_replication_factor": 3,
    "kafka_province_topics": True,
    "db_dsn": SecretStr("postgresql://ioc_app:s%40cr%2Ft@db.example:5432/ioc?sslmode=require"),
    "db_admin_dsn": SecretStr("postgresql://ioc_admin:x%20y@db.example:5432/ioc"),
    "db_schema": "t1a2",
    "bind_host": "0.0.0.0",
    "metrics_port": 0,
    "simulator_metrics_port": 9470,
    "worker_allocator": "jemalloc",
    "workers_desired": 3,
    "pager_port": 9999,
    "pager_peer_port": 9997,
    "pager_token": SecretStr("tok en"),
    "pager_channels": '[{"type": "webhook", "url": "https://hooks.example/x?a=1&b=2"}]',
    "pager_max_body_bytes": 4096,
    "ops_port": 9999 - 1,
    "alertmanager_peer_urls": "http://am-1.example:9093,https://am-2.example/am",
    "ops_url": "https://ops.example/ioc?x=1",
    "ops_token": SecretStr("ops tok=en"),
    "ops_admin_token": SecretStr("admin\ttoken"),
    "ops_max_body_bytes": 2048,
    "oncall_file": Path("/etc/ioc/on call.yaml"),
    "console_url": "https://ioc.example/",
    "raw_retention_days": 8,
    "rollup_1m_retention_days": 3,
    "rollup_1h_retention_days": 60,
    "rollup_1d_retention_days": 500,
    "history_every_s": 30.0,
    "history_settle_s": 120.0,
    "history_day_settle_s": 900.0,
    "scenario": "demo",
    "log_level": "DEBUG",
}


def fields(settings: Settings) -> dict[str, Any]:
    """Every field, secrets revealed (SecretStr compares by value, but shows no difference)."""
    return {
        name: value.get_secret_value() if isinstance(value, SecretStr) else value
        for name, value in ((n, getattr(settings, n)) for n in Settings.model_fields)
    }


def test_the_sample_covers_every_field() -> None:
    defaults = fields(Settings.model_construct())
    missing = sorted(set(Settings.model_fields) - set(SAMPLE))
    assert not missing, f"add a non-default value for {missing} to SAMPLE"
    sample = fields(Settings.model_construct(**SAMPLE))
    same = sorted(name for name in SAMPLE if sample[name] == defaults[name])
    assert not same, f"SAMPLE values equal to the defaults prove nothing: {same}"


@pytest.mark.parametrize("overrides", [{}, SAMPLE], ids=["defaults", "every-field-set"])
def test_settings_round_trip_through_the_child_env(
    clean_env: pytest.MonkeyPatch, overrides: dict[str, Any]
) -> None:
    original = load_settings(**overrides)
    env = original.child_env()
    assert all(name.startswith(ENV_PREFIX) for name in env)
    for name, value in env.items():
        clean_env.setenv(name, value)
    restored = load_settings()  # as the child builds its settings: env only
    assert fields(restored) == fields(original)


def test_only_set_fields_are_written_and_secrets_only_there(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(**SAMPLE).model_copy(update={"db_admin_dsn": None})
    env = settings.child_env()
    assert f"{ENV_PREFIX}DB_ADMIN_DSN" not in env
    assert env[f"{ENV_PREFIX}KAFKA_SASL_PASSWORD"] == "p@ss word=\"'$HOME;\n"
    assert env[f"{ENV_PREFIX}STACK_DIR"] == "/srv/ioc stack/ünïcode"
    assert env[f"{ENV_PREFIX}METRICS_PORT"] == "0"
    assert "p@ss word" not in repr(settings)


def test_ioc_env_drops_the_parents_own_settings(clean_env: pytest.MonkeyPatch) -> None:
    """A field unset in the settings must not come back from the parent's environment."""
    clean_env.setenv("IOC_DB_DSN", "postgresql://stale:x@elsewhere:5432/ioc")
    clean_env.setenv("ioc_db_schema", "stale")
    clean_env.setenv("IOC_TEST_SKIP_STACK_UP", "1")  # not a setting: passed on
    settings = load_settings().model_copy(update={"db_dsn": None, "db_schema": "t9"})
    env = ioc_env(settings)
    assert "IOC_DB_DSN" not in env
    assert "ioc_db_schema" not in env
    assert env["IOC_DB_SCHEMA"] == "t9"
    assert env["IOC_TEST_SKIP_STACK_UP"] == "1"
    assert env["PATH"] == os.environ["PATH"]
