"""Deployment files: no default passwords, authenticated Kafka listeners declared."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "ioc" / "deploy"


def test_compose_requires_every_secret_from_the_environment() -> None:
    text = (DEPLOY / "compose" / "docker-compose.yml").read_text()
    for var in re.findall(r"\$\{([^}]+)\}", text):
        if "PASSWORD" in var or "TOKEN" in var:
            assert ":?" in var, f"${{{var}}} must be required (:?), not defaulted"


def test_compose_kafka_offers_sasl_ssl_with_scram() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    env = compose["services"]["kafka"]["environment"]
    assert "SASL_SSL://" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_SSL_KEYSTORE_LOCATION"].startswith("/certs/")
    assert "kafka-users" in compose["services"] and "kafka-certs" in compose["services"]


def test_local_brokers_have_a_scram_listener_and_deny_without_acls() -> None:
    # the listeners themselves: tests/unit/test_kafka_security.py (rendered, both modes)
    for name in ("server.properties", "cluster.properties"):
        props = (DEPLOY / "local" / "kafka" / name).read_text()
        assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in props
        assert "allow.everyone.if.no.acl.found=false" in props
        assert "authorizer.class.name=$authorizer" in props
