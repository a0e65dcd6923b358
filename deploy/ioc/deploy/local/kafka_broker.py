"""Kafka 4.x in KRaft mode, one node: jars from Maven Central, run on the machine's Java 17.

Client listeners on loopback: SASL_PLAINTEXT with SCRAM-SHA-512 (``IOC_KAFKA_SASL_PORT``),
whose users and generated passwords belong to :mod:`ioc.deploy.local.credentials`, and, while
``IOC_KAFKA_PLAINTEXT`` is true (the default, development mode), PLAINTEXT
(``IOC_KAFKA_PORT``) and PROXIED (``IOC_KAFKA_PROXIED_PORT``), which advertises
``IOC_KAFKA_PROXY_PORT``, where network-fault tests run a TCP proxy in front of it.

Authorization: KRaft's StandardAuthorizer, nothing allowed without an ACL. The super users
are the admin ``ioc`` and the broker's own principals, plus ``User:ANONYMOUS`` while the
PLAINTEXT listener is on (the development shortcut: a PLAINTEXT client may do anything). The
service users (ioc.contract.access.SERVICE_USERS) get only the ACLs bootstrap grants.

With ``IOC_KAFKA_PLAINTEXT=false`` no listener is anonymous: inter-broker traffic goes over
SASL_PLAINTEXT as the SCRAM user ``ioc-broker``, and the controller listener over
SASL_PLAINTEXT with PLAIN as ``ioc-controller`` (a static JAAS user: KRaft's controller cannot
use SCRAM). A fresh store is formatted with the SCRAM users already in it; a store made with
PLAINTEXT on has them once this module's :meth:`Kafka.after_ready` ran there.
Config template: deploy/ioc/deploy/local/kafka/ (rendered mode 0600: it holds passwords).

(The module is not called ``kafka.py``: ``deploy/ioc/deploy/local/kafka/`` is the templates'
package.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import string
import uuid
from base64 import urlsafe_b64encode
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ioc.config import Settings
from ioc.deploy.local.credentials import (
    KAFKA_BROKER_USER,
    KAFKA_CONTROLLER_USER,
    KAFKA_SASL_MECHANISM,
    KAFKA_USER,
    SCRAM_ITERATIONS,
    KafkaCredentials,
    write_private,
)
from ioc.deploy.local.install import maven_complete, maven_dependencies, require_java
from ioc.deploy.local.process import Progress, StackError, run_step
from ioc.deploy.local.service import TEMPLATES, Service
from ioc.kafka_clients import aiokafka_common, librdkafka_admin

__all__ = ["KAFKA_SASL_MECHANISM", "KAFKA_USER", "Kafka", "listener_properties"]

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


def listener_properties(
    settings: Settings,
    creds: KafkaCredentials,
    *,
    port: int,
    sasl_port: int,
    controller_port: int,
    proxied: tuple[int, int] | None = None,
) -> dict[str, str]:
    """The listener and security placeholders of a node's config template, for
    ``settings.kafka_plaintext`` on or off; ``proxied``: (PROXIED port, advertised port)."""
    sasl = f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
    controller = f"CONTROLLER://127.0.0.1:{controller_port}"
    supers = [KAFKA_USER, KAFKA_BROKER_USER, KAFKA_CONTROLLER_USER]
    if settings.kafka_plaintext:
        plaintext = f"PLAINTEXT://127.0.0.1:{port}"
        listeners, advertised = [plaintext, sasl], [plaintext, sasl]
        protocols = ["PLAINTEXT:PLAINTEXT", "SASL_PLAINTEXT:SASL_PLAINTEXT"]
        if proxied is not None:
            listeners.append(f"PROXIED://127.0.0.1:{proxied[0]}")
            advertised.append(f"PROXIED://127.0.0.1:{proxied[1]}")
            protocols.append("PROXIED:PLAINTEXT")
        protocols.append("CONTROLLER:PLAINTEXT")
        scram_jaas = f"{_SCRAM_LOGIN} required;"
        broker_security = "inter.broker.listener.name=PLAINTEXT"
        supers.append("ANONYMOUS")  # the development shortcut: PLAINTEXT clients are admins
    else:
        listeners, advertised = [sasl], [sasl]
        protocols = ["SASL_PLAINTEXT:SASL_PLAINTEXT", "CONTROLLER:SASL_PLAINTEXT"]
        broker_pw = creds.users[KAFKA_BROKER_USER]
        ctl_pw = creds.controller_users[KAFKA_CONTROLLER_USER]
        scram_jaas = (
            f'{_SCRAM_LOGIN} required username="{KAFKA_BROKER_USER}" password="{broker_pw}";'
        )
        broker_security = "\n".join(
            [
                "inter.broker.listener.name=SASL_PLAINTEXT",
                f"sasl.mechanism.inter.broker.protocol={KAFKA_SASL_MECHANISM}",
                "sasl.mechanism.controller.protocol=PLAIN",
                "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                f"listener.name.controller.plain.sasl.jaas.config={_PLAIN_LOGIN} required "
                f'username="{KAFKA_CONTROLLER_USER}" password="{ctl_pw}" '
                f'user_{KAFKA_CONTROLLER_USER}="{ctl_pw}";',
            ]
        )
    return {
        "listeners": ",".join([*listeners, controller]),
        "advertised_listeners": ",".join(advertised),
        "protocol_map": ",".join(protocols),
        "scram_jaas": scram_jaas,
        "broker_security": broker_security,
        "authorizer": AUTHORIZER,
        "super_users": ";".join(f"User:{user}" for user in supers),
    }


def render_private(template: str, dest: Path, **values: Any) -> None:
    """Fill a ``$placeholder`` template from deploy/ioc/deploy/local into ``dest``, mode 0600
    (a broker's config holds its passwords when PLAINTEXT is off)."""
    text = (TEMPLATES / template).read_text()
    write_private(dest, string.Template(text).substitute(**{k: str(v) for k, v in values.items()}))


class Kafka(Service):
    name = "kafka"
    start_timeout = 90.0

    @property
    def endpoint(self) -> str:
        return self.settings.bootstrap_servers

    @property
    def libs(self) -> Path:
        return self.dir / "libs"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def installed(self) -> bool:
        return maven_complete(self.libs)

    def install(self, progress: Progress) -> None:
        require_java()
        pom = self.dir / "pom.xml"
        pom.write_text((TEMPLATES / "kafka" / "pom.xml").read_text())
        progress("  resolving org.apache.kafka:kafka_2.13 and its dependencies with mvn")
        maven_dependencies(pom, self.libs, self.log, progress)

    def _java(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        cmd = ["java"]
        if heap:
            cmd += [f"-Xmx{heap}", f"-Xms{heap}"]
        return [
            *cmd,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.yaml'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def sasl_users(self) -> dict[str, str]:
        """The SCRAM users (name -> generated password), created on first use, mode 0600."""
        return self.stack_credentials.ensure_kafka().users

    def admin_settings(self) -> Settings:
        """This node as the stack administers it: PLAINTEXT while that listener is on, else
        the SASL listener as the admin user (``ioc``, a super user)."""
        s = self.settings
        if s.kafka_plaintext:
            update: dict[str, Any] = {
                "kafka_bootstrap_servers": f"127.0.0.1:{s.kafka_port}",
                "kafka_security_protocol": "PLAINTEXT",
            }
        else:
            update = {
                "kafka_bootstrap_servers": f"127.0.0.1:{s.kafka_sasl_port}",
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": KAFKA_SASL_MECHANISM,
                "kafka_sasl_username": KAFKA_USER,
                "kafka_sasl_password": SecretStr(self.sasl_users()[KAFKA_USER]),
            }
        return s.model_copy(update=update)

    def _render_config(self, dest: Path) -> None:
        s = self.settings
        render_private(
            "kafka/server.properties",
            dest,
            controller_port=s.kafka_controller_port,
            data_dir=self.data_dir,
            **listener_properties(
                s,
                self.stack_credentials.ensure_kafka(),
                port=s.kafka_port,
                sasl_port=s.kafka_sasl_port,
                controller_port=s.kafka_controller_port,
                proxied=(s.kafka_proxied_port, s.kafka_proxy_port),
            ),
        )

    def config_changes(self) -> set[str]:
        """The property names whose rendered value differs from the config the node runs."""
        props = self.dir / "server.properties"
        fresh = self.dir / "server.properties.new"
        self._render_config(fresh)
        try:
            return changed_properties(props, fresh)
        finally:
            fresh.unlink()

    def sync_config(self) -> bool:
        """A broker's listeners cannot be reloaded: restart it if its config changed (also
        when IOC_KAFKA_PLAINTEXT switched: the store and its users stay)."""
        if not self.config_changes():
            return False
        self.stop()
        self.prepare(lambda _msg: None)
        self.start()
        return True

    def after_ready(self, progress: Progress) -> None:
        """Set every SCRAM user of the credentials file to its password (idempotent),
        through PLAINTEXT when on, else as ``ioc`` over SASL."""
        from confluent_kafka.admin import AdminClient

        from ioc.kafka import upsert_scram_users

        admin = AdminClient(librdkafka_admin(self.admin_settings(), "ioc-stack"))
        users = self.sasl_users()
        try:
            described = admin.describe_user_scram_credentials(list(users))
            assert isinstance(described, dict)
            missing = []
            for user, future in described.items():
                try:
                    future.result(timeout=10)
                except Exception:  # not found: create it
                    missing.append(user)
        except Exception:
            missing = list(users)
        # Every user is upserted, not only the missing ones: a credential the broker holds
        # with an older password (credentials file regenerated) is set back to the file's.
        upsert_scram_users(self.admin_settings(), users, "ioc-stack")
        if missing:
            progress(f"  SCRAM users created for the SASL listener: {', '.join(missing)}")

    def cluster_id(self) -> str:
        """The KRaft cluster id to format the storage with: a new one for a single node (a
        cluster's nodes share theirs: ioc.deploy.local.kafka_cluster)."""
        return urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")

    def prepare(self, progress: Progress) -> None:
        props = self.dir / "server.properties"
        self._render_config(props)
        (self.dir / "log4j2.yaml").write_text((TEMPLATES / "kafka" / "log4j2.yaml").read_text())
        if not (self.data_dir / "meta.properties").exists():
            cluster_id = self.cluster_id()
            progress(f"  [{self.name}] formatting KRaft storage (cluster id {cluster_id})")
            self._format(cluster_id, props)

    def _format(self, cluster_id: str, props: Path) -> None:
        """``kafka-storage format`` with every SCRAM user seeded, so the SASL listener accepts
        them from the first start (needed with PLAINTEXT off: no other way in). The arguments
        holding passwords go through a 0600 argument file, not the command line or the log."""
        scram = [
            f"{KAFKA_SASL_MECHANISM}=[name={user},iterations={SCRAM_ITERATIONS},"
            f"password={password}]"
            for user, password in self.sasl_users().items()
        ]
        argfile = self.dir / "format.args"
        args = ["format", "--ignore-formatted", "-t", cluster_id, "-c", str(props)]
        for item in scram:
            args += ["--add-scram", item]
        java = self._java("kafka.tools.StorageTool")
        main = java.index("kafka.tools.StorageTool")
        write_private(argfile, "\n".join(_argfile_quote(a) for a in java[main:] + args) + "\n")
        try:
            run_step([*java[:main], f"@{argfile}"], "kafka storage format", self.log, timeout=120)
        finally:
            argfile.unlink(missing_ok=True)

    def command(self) -> list[str]:
        return self._java(
            "kafka.Kafka", str(self.dir / "server.properties"), heap=self.settings.kafka_heap
        )

    def probe(self) -> tuple[bool, str, dict[str, Any]]:
        try:
            return asyncio.run(self._metadata())
        except Exception as exc:  # any failure here means "not ready yet"
            self._refuse_locked_out()
            return False, f"metadata: {type(exc).__name__}: {exc}", {}

    def _refuse_locked_out(self) -> None:
        """With PLAINTEXT off, the admin's SCRAM login being refused by a listening broker
        means its store lacks the user (made before users were seeded at format and never
        started with PLAINTEXT on since): there is no other way in, so say so at once."""
        if self.settings.kafka_plaintext:
            return
        try:
            socket.create_connection(("127.0.0.1", self.settings.kafka_sasl_port), 1).close()
        except OSError:
            return  # not listening yet
        from confluent_kafka import KafkaError
        from confluent_kafka.admin import AdminClient

        errors: list[Any] = []
        conf = librdkafka_admin(self.admin_settings(), "ioc-stack")
        conf["error_cb"] = errors.append
        admin = AdminClient(conf)
        with contextlib.suppress(Exception):  # the errors the callback saw tell why
            admin.list_topics(timeout=3)
        admin.poll(0)  # serves the error callbacks
        if any(err.code() == KafkaError._AUTHENTICATION for err in errors):
            raise StackError(
                f"{self.name}: user {KAFKA_USER} cannot log in over SCRAM with "
                f"IOC_KAFKA_PLAINTEXT=false: the store {self.data_dir} lacks its credential; "
                "start once with IOC_KAFKA_PLAINTEXT=true (creates the users) or remove the store"
            )

    async def _metadata(self) -> tuple[bool, str, dict[str, Any]]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            **aiokafka_common(self.admin_settings()), request_timeout_ms=3000
        )
        try:
            await asyncio.wait_for(admin.start(), 5)
            topics = await asyncio.wait_for(admin.list_topics(), 5)
        finally:
            await admin.close()
        user = [t for t in topics if not t.startswith("__")]
        return True, f"metadata ok, {len(user)} topics", {"topics": len(user)}


def changed_properties(current: Path, fresh: Path) -> set[str]:
    """Names of the properties that differ between two config files (all of ``fresh``'s when
    ``current`` is missing); a comment-only change counts as ``#``."""

    def parse(path: Path) -> dict[str, str]:
        if not path.exists():
            return {}
        props: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if line.startswith("#"):
                props["#"] = props.get("#", "") + line
            elif "=" in line:
                key, value = line.split("=", 1)
                props[key] = value
        return props

    old, new = parse(current), parse(fresh)
    return {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


def _argfile_quote(arg: str) -> str:
    """One argument of a java ``@argfile``: quoted (with backslashes doubled) if it has to be."""
    if arg and not any(c in arg for c in " \t\n\"'\\#"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
