"""Kafka 4.x in KRaft mode, one node: jars from Maven Central, run on the machine's Java 17.

Two client listeners on loopback: PLAINTEXT (``IOC_KAFKA_PORT``) and SASL_PLAINTEXT with
SCRAM-SHA-512 (``IOC_KAFKA_SASL_PORT``), whose users and generated passwords belong to
:mod:`ioc.deploy.local.credentials`. A third, PROXIED (``IOC_KAFKA_PROXIED_PORT``),
advertises ``IOC_KAFKA_PROXY_PORT``, where network-fault tests run a TCP proxy in front of it.
Config template: deploy/ioc/deploy/local/kafka/.

(The module is not called ``kafka.py``: ``deploy/ioc/deploy/local/kafka/`` is the templates'
package.)
"""

from __future__ import annotations

import asyncio
import uuid
from base64 import urlsafe_b64encode
from pathlib import Path
from typing import Any

from ioc.deploy.local.credentials import KAFKA_SASL_MECHANISM, KAFKA_USER
from ioc.deploy.local.install import maven_complete, maven_dependencies, require_java
from ioc.deploy.local.process import Progress, run_step
from ioc.deploy.local.service import TEMPLATES, Service, render
from ioc.kafka_clients import aiokafka_common, librdkafka_admin

__all__ = ["KAFKA_SASL_MECHANISM", "KAFKA_USER", "Kafka"]

SCRAM_ITERATIONS = 8192


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

    def _render_config(self, dest: Path) -> None:
        render(
            "kafka/server.properties",
            dest,
            port=self.settings.kafka_port,
            sasl_port=self.settings.kafka_sasl_port,
            proxied_port=self.settings.kafka_proxied_port,
            proxy_port=self.settings.kafka_proxy_port,
            controller_port=self.settings.kafka_controller_port,
            data_dir=self.data_dir,
        )

    def sync_config(self) -> bool:
        """A broker's listeners cannot be reloaded: restart it if its config changed."""
        props = self.dir / "server.properties"
        fresh = self.dir / "server.properties.new"
        self._render_config(fresh)
        if props.exists() and fresh.read_text() == props.read_text():
            fresh.unlink()
            return False
        fresh.unlink()
        self.stop()
        self.prepare(lambda _msg: None)
        self.start()
        return True

    def after_ready(self, progress: Progress) -> None:
        """Create the SCRAM users the SASL listener accepts (idempotent)."""
        # Public API of confluent_kafka.admin (since 2.2); its __init__ re-exports the SCRAM
        # classes from a private module without `__all__`, which mypy's no-implicit-reexport
        # does not accept: hence the ignore.
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        # The PLAINTEXT listener: the SCRAM users do not exist before this runs.
        plaintext = self.settings.model_copy(
            update={
                "kafka_bootstrap_servers": f"127.0.0.1:{self.settings.kafka_port}",
                "kafka_security_protocol": "PLAINTEXT",
            }
        )
        admin = AdminClient(librdkafka_admin(plaintext, "ioc-stack"))
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
        if not missing:
            return
        mechanism = ScramMechanism[KAFKA_SASL_MECHANISM.replace("-", "_")]  # SCRAM_SHA_512
        info = ScramCredentialInfo(mechanism, SCRAM_ITERATIONS)
        futures = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(u, info, users[u].encode()) for u in missing]
        )
        for future in futures.values():
            future.result(timeout=30)
        progress(f"  SCRAM users created for the SASL listener: {', '.join(missing)}")

    def cluster_id(self) -> str:
        """The KRaft cluster id to format the storage with: a new one for a single node (a
        cluster's nodes share theirs: ioc.deploy.local.kafka_cluster)."""
        return urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")

    def prepare(self, progress: Progress) -> None:
        props = self.dir / "server.properties"
        self._render_config(props)
        self.sasl_users()
        (self.dir / "log4j2.yaml").write_text((TEMPLATES / "kafka" / "log4j2.yaml").read_text())
        if not (self.data_dir / "meta.properties").exists():
            cluster_id = self.cluster_id()
            progress(f"  [{self.name}] formatting KRaft storage (cluster id {cluster_id})")
            run_step(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--ignore-formatted",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                ),
                "kafka storage format",
                self.log,
                timeout=120,
            )

    def command(self) -> list[str]:
        return self._java(
            "kafka.Kafka", str(self.dir / "server.properties"), heap=self.settings.kafka_heap
        )

    def probe(self) -> tuple[bool, str, dict[str, Any]]:
        try:
            return asyncio.run(self._metadata())
        except Exception as exc:  # any failure here means "not ready yet"
            return False, f"metadata: {type(exc).__name__}: {exc}", {}

    async def _metadata(self) -> tuple[bool, str, dict[str, Any]]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**aiokafka_common(self.settings), request_timeout_ms=3000)
        try:
            await asyncio.wait_for(admin.start(), 5)
            topics = await asyncio.wait_for(admin.list_topics(), 5)
        finally:
            await admin.close()
        user = [t for t in topics if not t.startswith("__")]
        return True, f"metadata ok, {len(user)} topics", {"topics": len(user)}
