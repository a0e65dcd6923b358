"""The local Kafka's authorization and IOC_KAFKA_PLAINTEXT: rendered broker configs in both
modes, the client settings' defaults when PLAINTEXT is off, the stack's Kafka users, and the
restart a mode switch needs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ioc.config import ENV_PREFIX, load_settings
from ioc.contract.access import ADMIN_USER, KAFKA_USERS, SERVICE_USERS
from ioc.deploy.local import kafka_broker
from ioc.deploy.local.credentials import (
    KAFKA_BROKER_USER,
    KAFKA_CONTROLLER_USER,
    KAFKA_SCRAM_USERS,
    StackCredentials,
)
from ioc.deploy.local.kafka_broker import AUTHORIZER, Kafka, changed_properties
from ioc.deploy.local.kafka_cluster import CONTROLLER_SECURITY, render_node_config
from ioc.errors import ConfigError
from ioc.kafka_clients import librdkafka_common
from ioc.processes import ioc_env


def properties(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    return dict(line.split("=", 1) for line in lines)


def rendered(tmp_path: Path, plaintext: bool) -> dict[str, str]:
    kafka = Kafka(load_settings(kafka_plaintext=plaintext))
    dest = tmp_path / f"server-{plaintext}.properties"
    kafka._render_config(dest)
    assert not [line for line in dest.read_text().splitlines() if "$" in line and line[0] != "#"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600, "the config may hold passwords"
    return properties(dest)


def test_plaintext_on_keeps_the_dev_listeners_with_anonymous_a_super_user(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    props = rendered(tmp_path, plaintext=True)
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,SASL_PLAINTEXT://127.0.0.1:19096,"
        "PROXIED://127.0.0.1:19130,CONTROLLER://127.0.0.1:19093"
    )
    assert props["advertised.listeners"].endswith("PROXIED://127.0.0.1:19131")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.security.protocol.map"].endswith("CONTROLLER:PLAINTEXT")
    assert props["authorizer.class.name"] == AUTHORIZER
    assert props["allow.everyone.if.no.acl.found"] == "false"
    supers = props["super.users"].split(";")
    assert supers == [
        f"User:{ADMIN_USER}",
        f"User:{KAFKA_BROKER_USER}",
        f"User:{KAFKA_CONTROLLER_USER}",
        "User:ANONYMOUS",
    ]
    assert not any(f"User:{user}" in supers for user in SERVICE_USERS.values())
    assert "password" not in "".join(props.values())


def test_plaintext_off_authenticates_every_listener(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    props = rendered(tmp_path, plaintext=False)
    creds = StackCredentials(tmp_path / "stack").kafka()
    assert creds is not None
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:19096,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:19096"
    assert props["listener.security.protocol.map"] == (
        "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    )
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert props["listener.name.controller.sasl.enabled.mechanisms"] == "PLAIN"
    broker_pw = creds.users[KAFKA_BROKER_USER]
    assert (
        f'username="{KAFKA_BROKER_USER}" password="{broker_pw}"'
        in (props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"])
    )
    ctl_pw = creds.controller_users[KAFKA_CONTROLLER_USER]
    plain = props["listener.name.controller.plain.sasl.jaas.config"]
    assert plain.startswith("org.apache.kafka.common.security.plain.PlainLoginModule required")
    assert f'user_{KAFKA_CONTROLLER_USER}="{ctl_pw}"' in plain
    assert "ANONYMOUS" not in props["super.users"]
    assert props["authorizer.class.name"] == AUTHORIZER


def test_cluster_nodes_follow_the_mode(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for plaintext in (True, False):
        settings = load_settings(kafka_plaintext=plaintext).with_kafka_brokers(3)
        dest = tmp_path / f"node-{plaintext}.properties"
        render_node_config(settings, 2, dest, tmp_path / "data")
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600
        props = properties(dest)
        assert props["authorizer.class.name"] == AUTHORIZER
        assert "PROXIED" not in props["listeners"]
        if plaintext:
            assert props["listeners"].startswith("PLAINTEXT://127.0.0.1:19102,")
            assert props["super.users"].endswith(";User:ANONYMOUS")
        else:
            assert props["listeners"] == (
                "SASL_PLAINTEXT://127.0.0.1:19112,CONTROLLER://127.0.0.1:19122"
            )
            assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
            assert "ANONYMOUS" not in props["super.users"]


def test_plaintext_off_defaults_the_clients_to_scram_as_the_admin(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert load_settings().kafka_security_protocol == "PLAINTEXT"  # on by default
    clean_env.setenv("IOC_KAFKA_PLAINTEXT", "false")
    settings = load_settings()  # no stack yet: loading writes nothing (no side effects)
    assert settings.stack_credentials().kafka() is None
    assert settings.kafka_sasl_password is None  # not generated yet: read when connecting
    with pytest.raises(ConfigError, match=r"no password for Kafka user 'ioc'.*ioc stack up"):
        librdkafka_common(settings)
    creds = settings.stack_credentials().ensure_kafka()  # what `ioc stack up` does first
    assert stat.S_IMODE(settings.stack_credentials_path("kafka").stat().st_mode) == 0o600
    assert librdkafka_common(settings)["sasl.password"] == creds.users[ADMIN_USER]
    settings = load_settings()  # loaded after the stack generated them: read at load
    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_username == ADMIN_USER
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == creds.users[ADMIN_USER]
    assert settings.bootstrap_servers == settings.sasl_bootstrap_servers == "127.0.0.1:19096"
    cluster = settings.with_kafka_brokers(3)
    assert cluster.bootstrap_servers == "127.0.0.1:19111,127.0.0.1:19112,127.0.0.1:19113"
    assert cluster.kafka_security_protocol == "SASL_PLAINTEXT"

    # a child process reads back the same settings
    for name, value in ioc_env(settings).items():
        if name.startswith(ENV_PREFIX):
            clean_env.setenv(name, value)
    child = load_settings()
    assert (child.kafka_plaintext, child.bootstrap_servers) == (False, "127.0.0.1:19096")
    assert child.kafka_sasl_password == settings.kafka_sasl_password


def test_explicit_kafka_variables_win_over_the_plaintext_off_defaults(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("IOC_KAFKA_PLAINTEXT", "0")
    clean_env.setenv("IOC_KAFKA_SASL_USERNAME", "ioc-worker")
    clean_env.setenv("IOC_KAFKA_BOOTSTRAP_SERVERS", "k1.example:9093")
    assert load_settings().kafka_sasl_password is None  # the stack has not generated it yet
    load_settings().stack_credentials().ensure_kafka()  # `ioc stack up`
    settings = load_settings()
    users = settings.stack_kafka_users()
    assert settings.kafka_sasl_username == "ioc-worker"
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == users["ioc-worker"]
    assert settings.bootstrap_servers == "k1.example:9093"
    clean_env.setenv("IOC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("IOC_KAFKA_SASL_MECHANISM", "PLAIN")
    assert load_settings().kafka_security_protocol == "SASL_SSL"
    assert load_settings().kafka_sasl_mechanism == "PLAIN"


def test_an_older_credentials_file_gets_the_missing_users_and_keeps_its_passwords(
    tmp_path: Path,
) -> None:
    owner = StackCredentials(tmp_path)
    owner.kafka_path.parent.mkdir(parents=True)
    owner.kafka_path.write_text(
        json.dumps({"mechanism": "SCRAM-SHA-512", "users": {ADMIN_USER: "kept"}})
    )
    creds = owner.ensure_kafka()
    assert creds.users[ADMIN_USER] == "kept"
    assert set(creds.users) == set(KAFKA_SCRAM_USERS) == {*KAFKA_USERS, KAFKA_BROKER_USER}
    assert set(creds.controller_users) == {KAFKA_CONTROLLER_USER}
    assert KAFKA_CONTROLLER_USER not in creds.users, "the PLAIN user must get no SCRAM login"
    passwords = set(creds.users.values()) | set(creds.controller_users.values())
    assert len(passwords) == len(KAFKA_SCRAM_USERS) + 1
    assert stat.S_IMODE(owner.kafka_path.stat().st_mode) == 0o600
    assert owner.ensure_kafka() == creds == owner.kafka()


class _Recording(Kafka):
    """A broker that records its life cycle instead of running."""

    calls: list[str]

    def stop(self) -> bool:
        self.calls.append("stop")
        return True

    def prepare(self, progress: object) -> None:
        self.calls.append("prepare")
        self._render_config(self.dir / "server.properties")

    def start(self) -> int:
        self.calls.append("start")
        return 0


def test_switching_the_mode_restarts_the_broker_either_way(
    clean_env: pytest.MonkeyPatch,
) -> None:
    def broker(plaintext: bool) -> _Recording:
        kafka = _Recording(load_settings(kafka_plaintext=plaintext))
        kafka.calls = []
        kafka.dir.mkdir(parents=True, exist_ok=True)
        return kafka

    on = broker(True)
    on.prepare(print)
    assert broker(True).sync_config() is False
    for plaintext in (False, True):
        switched = broker(plaintext)
        assert CONTROLLER_SECURITY & switched.config_changes()
        assert switched.sync_config() is True
        assert switched.calls == ["stop", "prepare", "start"]
        assert broker(plaintext).sync_config() is False


def test_changed_properties_names_what_differs(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text("# a\na=1\nb=2\n")
    new.write_text("# a\na=1\nb=3\nc=4\n")
    assert changed_properties(old, new) == {"b", "c"}
    assert changed_properties(tmp_path / "missing", new) == {"#", "a", "b", "c"}


def test_storage_is_formatted_with_the_scram_users_off_the_command_line(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kafka = Kafka(load_settings(kafka_plaintext=False))
    kafka.dir.mkdir(parents=True, exist_ok=True)
    seen: dict[str, object] = {}

    def run_step(argv: list[str], what: str, log: Path, timeout: float = 0) -> None:
        argfile = Path(argv[-1].removeprefix("@"))
        seen["argv"], seen["args"] = argv, argfile.read_text().split("\n")
        seen["mode"] = stat.S_IMODE(argfile.stat().st_mode)

    clean_env.setattr(kafka_broker, "run_step", run_step)
    kafka._format("cluster-id", kafka.dir / "server.properties")
    users = kafka.sasl_users()
    argv, args = seen["argv"], seen["args"]
    assert isinstance(argv, list) and isinstance(args, list)
    assert not any(password in " ".join(argv) for password in users.values())
    assert seen["mode"] == 0o600
    assert not list(kafka.dir.glob("format.args")), "the argument file is removed"
    assert args[:3] == ["kafka.tools.StorageTool", "format", "--ignore-formatted"]
    scram = [args[i + 1] for i, arg in enumerate(args) if arg == "--add-scram"]
    assert sorted(scram) == sorted(
        f"SCRAM-SHA-512=[name={user},iterations=8192,password={password}]"
        for user, password in users.items()
    )
