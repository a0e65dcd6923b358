"""Install, start, stop and health-check the no-Docker local stack.

Every service runs on loopback from one state directory (``IOC_STACK_DIR``, default
``~/.local/share/ioc/stack``), never inside the repository:

- Kafka 4.x in KRaft mode: jars resolved by ``mvn`` from Maven Central into ``kafka/libs``,
  broker main class run on the machine's Java 17.
- TimescaleDB: PostgreSQL 17 + timescaledb from Debian trixie, in a ``debootstrap`` chroot,
  started with ``shared_preload_libraries=timescaledb``; credentials generated on first start.
- Prometheus and Alertmanager from Debian's packages, config rendered from ``deploy/local``.

Every operation is idempotent: ``up`` installs only what is missing and starts only what is
stopped, then waits until each service really answers (Kafka metadata, ``SELECT 1`` with the
timescaledb extension, ``/-/ready``), printing progress, and fails with the log tail if not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ioc.config import Settings
from ioc.errors import IocError
from ioc.kafka_clients import aiokafka_common, librdkafka_admin

TEMPLATES = resources.files("ioc.deploy.local")
DEBIAN_SUITE = "trixie"
DEBIAN_MIRROR = os.environ.get("IOC_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PG_BIN = "/usr/lib/postgresql/17/bin"
PG_DATA = "/var/lib/ioc/pgdata"  # inside the chroot
DATABASE = "ioc"
ROLES = ("ioc_admin", "ioc_app", "ioc_grafana")
KAFKA_USER = "ioc"
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"

Progress = Callable[[str], None]


def _print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StackError(IocError):
    """A service could not be installed or started; the message says which and why."""


@dataclass
class Health:
    name: str
    state: str  # healthy | unhealthy | stopped | not-installed
    endpoint: str
    detail: str = ""
    pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == "healthy"


# --------------------------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------------------------


def _read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # A zombie or a recycled pid is not our service.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
    except OSError:
        return None
    return pid


def _spawn(argv: list[str], log: Path, pidfile: Path, env: dict[str, str] | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {argv[0]}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    pidfile.write_text(str(proc.pid))
    return proc.pid


def _terminate(pidfile: Path, sig: signal.Signals, timeout: float = 30.0) -> bool:
    pid = _read_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _read_pid(pidfile) is None:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.5)
    pidfile.unlink(missing_ok=True)
    return True


def _tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_bytes()[-64_000:].decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def _run(argv: list[str], what: str, log: Path, timeout: float = 900) -> None:
    """Run an install step, appending its output to the service log; raise with the tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {what}: {' '.join(argv)}\n".encode())
        out.flush()
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise StackError(f"{what}: {argv[0]} not found ({exc})") from None
        except subprocess.TimeoutExpired:
            raise StackError(f"{what}: timed out after {timeout:.0f} s; log: {log}") from None
    if result.returncode != 0:
        raise StackError(
            f"{what} failed (exit {result.returncode}); last lines of {log}:\n{_tail(log, 25)}"
        )


def _as_root(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return argv
    if shutil.which("sudo"):
        return ["sudo", "-n", *argv]
    raise StackError(f"`{argv[0]}` needs root; run `sudo ioc stack up` once")


_apt_updated = False


def _apt_install(packages: list[str], log: Path, progress: Progress) -> None:
    global _apt_updated
    env_prefix = ["env", "DEBIAN_FRONTEND=noninteractive"]
    progress(f"  apt-get install {' '.join(packages)} (first time only)")
    if not _apt_updated:
        _run(_as_root(["apt-get", "update", "-q"]), "apt-get update", log)
        _apt_updated = True
    _run(
        _as_root(
            [*env_prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
        ),
        f"apt-get install {' '.join(packages)}",
        log,
    )


def _http_ready(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, str(reason)


def _digest(*paths: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for path in paths:
        h.update(str(path).encode())
        h.update(path.read_bytes() if path.exists() else b"-")
    return h.hexdigest()


def _prune_dead_targets(targets_dir: Path) -> None:
    """Drop file_sd targets of processes that died without cleaning up (SIGKILL)."""
    for path in targets_dir.glob("*.json"):
        try:
            pid = int(json.loads(path.read_text())[0]["labels"]["pid"])
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue


def _write_private(path: Path, text: str) -> None:
    """Write a generated secret readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def _render(template: str, dest: Path, **values: Any) -> None:
    text = (TEMPLATES / template).read_text()
    rendered = string.Template(text).substitute(**{k: str(v) for k, v in values.items()})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(rendered)


# --------------------------------------------------------------------------------------------
# services
# --------------------------------------------------------------------------------------------


class Service:
    """One local service: install once, start if stopped, prove it answers, stop."""

    name = ""
    start_timeout = 60.0
    stop_signal = signal.SIGTERM

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.stack_dir / self.name
        self.pidfile = self.dir / f"{self.name}.pid"
        self.log = self.dir / f"{self.name}.log"

    @property
    def credentials_path(self) -> Path:
        """The secrets this service generated, if it has any (Kafka users, database roles)."""
        return self.settings.stack_credentials_path(self.name)

    # subclasses implement these
    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    def installed(self) -> bool:
        raise NotImplementedError

    def install(self, progress: Progress) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def probe(self) -> tuple[bool, str, dict[str, Any]]:
        raise NotImplementedError

    def prepare(self, progress: Progress) -> None:
        """Write config and initialise data before the first start; called on every up."""

    def after_ready(self, progress: Progress) -> None:
        """One-time setup that needs the running service (roles, databases...)."""

    def sync_config(self) -> bool:
        """Bring a running service's config up to date; True if it had to reload."""
        return False

    # shared behaviour
    def pid(self) -> int | None:
        return _read_pid(self.pidfile)

    def health(self) -> Health:
        if not self.installed():
            return Health(self.name, "not-installed", self.endpoint)
        pid = self.pid()
        if pid is None:
            return Health(self.name, "stopped", self.endpoint)
        ok, detail, extra = self.probe()
        return Health(
            self.name, "healthy" if ok else "unhealthy", self.endpoint, detail, pid, extra
        )

    def up(self, progress: Progress) -> Health:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.installed():
            started = time.monotonic()
            progress(f"[{self.name}] installing (first time only)")
            self.install(progress)
            progress(f"[{self.name}] installed in {time.monotonic() - started:.0f} s")
        if self.pid() is None:
            self.prepare(progress)
            progress(f"[{self.name}] starting on {self.endpoint}")
            _spawn(self.command(), self.log, self.pidfile, self.env())
        elif self.sync_config():
            progress(f"[{self.name}] configuration changed: reloaded")
        started = time.monotonic()
        detail = ""
        last_note = started
        while time.monotonic() - started < self.start_timeout:
            if self.pid() is None:
                raise StackError(
                    f"{self.name} exited during start; last lines of {self.log}:\n{_tail(self.log)}"
                )
            ok, detail, _ = self.probe()
            if ok:
                self.after_ready(progress)
                health = self.health()
                progress(
                    f"[{self.name}] ready ({health.detail}) after "
                    f"{time.monotonic() - started:.1f} s"
                )
                return health
            if time.monotonic() - last_note > 5:
                progress(f"[{self.name}] waiting for readiness: {detail}")
                last_note = time.monotonic()
            time.sleep(0.5)
        raise StackError(
            f"{self.name} did not become ready in {self.start_timeout:.0f} s ({detail}); "
            f"last lines of {self.log}:\n{_tail(self.log)}"
        )

    def down(self, progress: Progress) -> None:
        if _terminate(self.pidfile, self.stop_signal):
            progress(f"[{self.name}] stopped")
        else:
            progress(f"[{self.name}] not running")

    def env(self) -> dict[str, str] | None:
        return None


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
        return (self.libs / ".complete").exists()

    def install(self, progress: Progress) -> None:
        if not shutil.which("java"):
            raise StackError("kafka needs Java 17+ on PATH (`apt-get install openjdk-17-jre`)")
        if not shutil.which("mvn"):
            _apt_install(["maven"], self.log, progress)
        pom = self.dir / "pom.xml"
        pom.write_text((TEMPLATES / "kafka" / "pom.xml").read_text())
        staging = self.dir / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        progress("  resolving org.apache.kafka:kafka_2.13 and its dependencies with mvn")
        _run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            "mvn dependency:copy-dependencies",
            self.log,
        )
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        (self.libs / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))

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
        users = self.settings.stack_kafka_users()
        if not users:
            users = {KAFKA_USER: secrets.token_urlsafe(24)}
            _write_private(
                self.credentials_path,
                json.dumps({"mechanism": KAFKA_SASL_MECHANISM, "users": users}, indent=2),
            )
        return users

    def _render_config(self, dest: Path) -> None:
        _render(
            "kafka/server.properties",
            dest,
            port=self.settings.kafka_port,
            sasl_port=self.settings.kafka_sasl_port,
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
        _terminate(self.pidfile, self.stop_signal)
        self.prepare(lambda _msg: None)
        _spawn(self.command(), self.log, self.pidfile, self.env())
        return True

    def after_ready(self, progress: Progress) -> None:
        """Create the SCRAM users the SASL listener accepts (idempotent)."""
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.admin._scram import (
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
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        futures = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(u, info, users[u].encode()) for u in missing]
        )
        for future in futures.values():
            future.result(timeout=30)
        progress(f"  SCRAM users created for the SASL listener: {', '.join(missing)}")

    def prepare(self, progress: Progress) -> None:
        props = self.dir / "server.properties"
        self._render_config(props)
        self.sasl_users()
        (self.dir / "log4j2.yaml").write_text((TEMPLATES / "kafka" / "log4j2.yaml").read_text())
        if not (self.data_dir / "meta.properties").exists():
            cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            progress(f"  formatting KRaft storage (cluster id {cluster_id})")
            _run(
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


class TimescaleDB(Service):
    name = "timescaledb"
    start_timeout = 60.0
    stop_signal = signal.SIGINT  # postgres "fast" shutdown: don't wait for clients to leave

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.settings.postgres_port}"

    def installed(self) -> bool:
        return (self.rootfs / "usr/lib/postgresql/17/lib/timescaledb.so").exists()

    def install(self, progress: Progress) -> None:
        if not shutil.which("debootstrap"):
            _apt_install(["debootstrap"], self.log, progress)
        staging = self.dir / "rootfs.partial"
        if staging.exists():
            _run(_as_root(["rm", "-rf", str(staging)]), "clean partial chroot", self.log)
        progress(
            f"  debootstrap {DEBIAN_SUITE} with postgresql-17-timescaledb (about 40 s and 700 MB)"
        )
        _run(
            _as_root(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=postgresql-17-timescaledb",
                    DEBIAN_SUITE,
                    str(staging),
                    DEBIAN_MIRROR,
                ]
            ),
            "debootstrap",
            self.log,
            timeout=1800,
        )
        staging.rename(self.rootfs)

    def _ids(self) -> tuple[int, int]:
        for line in (self.rootfs / "etc/passwd").read_text().splitlines():
            parts = line.split(":")
            if parts[0] == "postgres":
                return int(parts[2]), int(parts[3])
        raise StackError(f"no postgres user in {self.rootfs}/etc/passwd")

    def _chroot(self, *argv: str) -> list[str]:
        uid, gid = self._ids()
        return _as_root(["chroot", f"--userspec={uid}:{gid}", str(self.rootfs), *argv])

    def _credentials(self) -> dict[str, Any]:
        if self.credentials_path.exists():
            data: dict[str, Any] = json.loads(self.credentials_path.read_text())
            return data
        creds = {
            "database": DATABASE,
            "superuser": "postgres",
            "superuser_password": secrets.token_urlsafe(24),
            "roles": {role: secrets.token_urlsafe(24) for role in ROLES},
            "initialised": False,
        }
        self._save_credentials(creds)
        return creds

    def _save_credentials(self, creds: dict[str, Any]) -> None:
        _write_private(self.credentials_path, json.dumps(creds, indent=2))

    def prepare(self, progress: Progress) -> None:
        creds = self._credentials()
        uid, gid = self._ids()
        data = self.rootfs / PG_DATA.lstrip("/")
        run_dir = self.rootfs / "run/postgresql"
        for path in (data.parent, run_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, uid, gid)
        if not (data / "PG_VERSION").exists():
            progress("  initdb (first time only)")
            pwfile = self.rootfs / "run/postgresql/.pw"
            pwfile.write_text(creds["superuser_password"] + "\n")
            os.chown(pwfile, uid, gid)
            try:
                _run(
                    self._chroot(
                        f"{PG_BIN}/initdb",
                        "-D",
                        PG_DATA,
                        "-U",
                        "postgres",
                        "--auth-local=peer",
                        "--auth-host=scram-sha-256",
                        "--pwfile=/run/postgresql/.pw",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ),
                    "initdb",
                    self.log,
                    timeout=300,
                )
            finally:
                pwfile.unlink(missing_ok=True)

    def command(self) -> list[str]:
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.settings.postgres_port),
            "unix_socket_directories": "/run/postgresql",
            "shared_preload_libraries": "timescaledb",
            "timescaledb.telemetry_level": "off",
            "max_connections": "200",
            "shared_buffers": "512MB",
            "work_mem": "16MB",
            "maintenance_work_mem": "128MB",
            "max_wal_size": "2GB",
            "checkpoint_timeout": "15min",
            "wal_compression": "on",
            "log_min_messages": "warning",
            "log_line_prefix": "%m [%p] %q%u@%d ",
            "dynamic_shared_memory_type": "mmap",  # no /dev/shm needed inside the chroot
        }
        args: list[str] = []
        for key, value in options.items():
            args += ["-c", f"{key}={value}"]
        return self._chroot(f"{PG_BIN}/postgres", "-D", PG_DATA, *args)

    def _dsn(self, role: str, database: str) -> str:
        creds = self._credentials()
        password = creds["superuser_password"] if role == "postgres" else creds["roles"][role]
        return f"postgresql://{role}:{password}@127.0.0.1:{self.settings.postgres_port}/{database}"

    def probe(self) -> tuple[bool, str, dict[str, Any]]:
        try:
            return asyncio.run(self._select_one())
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}", {}

    async def _select_one(self) -> tuple[bool, str, dict[str, Any]]:
        import asyncpg

        creds = self._credentials()
        role, db = ("ioc_admin", DATABASE) if creds.get("initialised") else ("postgres", "postgres")
        conn = await asyncpg.connect(self._dsn(role, db), timeout=3)
        try:
            await conn.fetchval("SELECT 1")
            version = await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            )
            license_ = await conn.fetchval("SELECT current_setting('timescaledb.license', true)")
        finally:
            await conn.close()
        if creds.get("initialised") and not version:
            return False, "timescaledb extension missing in database ioc", {}
        detail = f"SELECT 1 ok, timescaledb {version or '(not yet created)'}, {license_} licence"
        return True, detail, {"timescaledb": version, "license": license_}

    def after_ready(self, progress: Progress) -> None:
        creds = self._credentials()
        if not creds.get("initialised"):
            progress("  creating database ioc, roles ioc_admin/ioc_app/ioc_grafana, extension")
            asyncio.run(self._bootstrap(creds))
            creds["initialised"] = True
            self._save_credentials(creds)
        asyncio.run(self._grant())

    async def _grant(self) -> None:
        """Database-level privileges, re-applied on every start (idempotent)."""
        import asyncpg

        conn = await asyncpg.connect(self._dsn("postgres", DATABASE), timeout=5)
        try:
            await conn.execute(f"REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC")
            # The writer stages batches in temporary tables; Grafana only connects.
            await conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {DATABASE} TO ioc_app")
            await conn.execute(f"GRANT CONNECT ON DATABASE {DATABASE} TO ioc_grafana")
            # Grafana's PostgreSQL datasource has no schema setting: give its role one.
            await conn.execute(
                f"ALTER ROLE ioc_grafana IN DATABASE {DATABASE} "
                f"SET search_path = {self.settings.db_schema}, public"
            )
        finally:
            await conn.close()

    async def _bootstrap(self, creds: dict[str, Any]) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn("postgres", "postgres"), timeout=5)
        try:
            for role, password in creds["roles"].items():
                exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
                verb = "ALTER" if exists else "CREATE"
                # Passwords are generated url-safe tokens: no quoting issues.
                await conn.execute(
                    f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                    f"PASSWORD '{password}'"
                )
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await conn.execute(f"CREATE DATABASE {DATABASE} OWNER ioc_admin")
        finally:
            await conn.close()
        conn = await asyncpg.connect(self._dsn("postgres", DATABASE), timeout=5)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            await conn.execute(f"REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC")
            await conn.execute(f"GRANT CONNECT ON DATABASE {DATABASE} TO ioc_app, ioc_grafana")
            await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        finally:
            await conn.close()

    def connection_info(self) -> dict[str, Any]:
        creds = self._credentials() if self.credentials_path.exists() else {}
        if not creds:
            return {}
        return {
            "database": DATABASE,
            "dsn": self._dsn("ioc_app", DATABASE),
            "admin_dsn": self._dsn("ioc_admin", DATABASE),
            "grafana_dsn": self._dsn("ioc_grafana", DATABASE),
        }


class Prometheus(Service):
    name = "prometheus"
    binary = "prometheus"
    package = "prometheus"

    @property
    def endpoint(self) -> str:
        return self.settings.prometheus_url

    @property
    def rules_dir(self) -> Path:
        return self.dir / "rules"

    @property
    def targets_dir(self) -> Path:
        return self.dir / "targets"

    def installed(self) -> bool:
        return shutil.which(self.binary) is not None

    def install(self, progress: Progress) -> None:
        _apt_install([self.package], self.log, progress)

    def prepare(self, progress: Progress) -> None:
        for path in (self.rules_dir, self.targets_dir, self.dir / "data"):
            path.mkdir(parents=True, exist_ok=True)
        self._write_config()
        _prune_dead_targets(self.targets_dir)

    def _write_config(self) -> bool:
        """Render prometheus.yml and copy the generated rules; True if anything changed."""
        before = _digest(self.dir / "prometheus.yml", *sorted(self.rules_dir.glob("*.yml")))
        _render(
            "prometheus/prometheus.yml",
            self.dir / "prometheus.yml",
            alertmanager_port=self.settings.alertmanager_port,
            prometheus_port=self.settings.prometheus_port,
            rules_dir=self.rules_dir,
            targets_dir=self.targets_dir,
        )
        rules = resources.files("ioc.deploy").joinpath("prometheus", "ioc-alerts.yml")
        (self.rules_dir / "ioc-alerts.yml").write_text(rules.read_text())
        return before != _digest(self.dir / "prometheus.yml", *sorted(self.rules_dir.glob("*.yml")))

    def sync_config(self) -> bool:
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        _prune_dead_targets(self.targets_dir)
        if self._write_config():
            self.reload()
            return True
        return False

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            "--storage.tsdb.retention.time=15d",
            f"--web.listen-address=127.0.0.1:{self.settings.prometheus_port}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
        ]

    def probe(self) -> tuple[bool, str, dict[str, Any]]:
        ok, detail = _http_ready(f"{self.endpoint}/-/ready")
        return ok, f"/-/ready {detail}", {}

    def reload(self) -> None:
        """Ask a running Prometheus to re-read its config and rule files."""
        req = urllib.request.Request(f"{self.endpoint}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass


class Alertmanager(Prometheus):
    name = "alertmanager"
    binary = "prometheus-alertmanager"
    package = "prometheus-alertmanager"

    @property
    def endpoint(self) -> str:
        return self.settings.alertmanager_url

    def prepare(self, progress: Progress) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        self._write_config()

    def _write_config(self) -> bool:
        """Render the generated routing for this stack's pager; True if it changed."""
        config = self.dir / "alertmanager.yml"
        before = _digest(config)
        token = self.settings.stack_pager_token_path
        if not token.exists():
            _write_private(token, secrets.token_urlsafe(32))
        template = resources.files("ioc.deploy").joinpath("alertmanager", "alertmanager.yml")
        text = string.Template(template.read_text()).substitute(
            pager_url=f"http://127.0.0.1:{self.settings.pager_port}/alertmanager/webhook",
            token_file=str(token),
        )
        config.write_text(text)
        return before != _digest(config)

    def sync_config(self) -> bool:
        if self._write_config():
            self.reload()
            return True
        return False

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.dir / 'alertmanager.yml'}",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.settings.alertmanager_port}",
            "--cluster.listen-address=",
        ]


SERVICE_TYPES: tuple[type[Service], ...] = (Kafka, TimescaleDB, Prometheus, Alertmanager)
SERVICE_NAMES = tuple(t.name for t in SERVICE_TYPES)


class Stack:
    """The four services together, in dependency order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: dict[str, Service] = {t.name: t(settings) for t in SERVICE_TYPES}

    def select(self, names: list[str] | None) -> list[Service]:
        if not names:
            return list(self.services.values())
        unknown = [n for n in names if n not in self.services]
        if unknown:
            raise StackError(
                f"unknown service {', '.join(unknown)}; choose from {', '.join(SERVICE_NAMES)}"
            )
        return [self.services[n] for n in SERVICE_NAMES if n in names]

    def up(
        self, names: list[str] | None = None, progress: Progress = _print_progress
    ) -> list[Health]:
        self.settings.stack_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        result = [svc.up(progress) for svc in self.select(names)]
        progress(
            f"stack ready in {time.monotonic() - started:.1f} s "
            f"(state in {self.settings.stack_dir})"
        )
        return result

    def down(self, names: list[str] | None = None, progress: Progress = _print_progress) -> None:
        for svc in reversed(self.select(names)):
            svc.down(progress)

    def status(self) -> list[Health]:
        return [svc.health() for svc in self.services.values()]

    @property
    def kafka(self) -> Kafka:
        return self.services["kafka"]  # type: ignore[return-value]

    @property
    def timescaledb(self) -> TimescaleDB:
        svc = self.services["timescaledb"]
        assert isinstance(svc, TimescaleDB)
        return svc

    @property
    def prometheus(self) -> Prometheus:
        return self.services["prometheus"]  # type: ignore[return-value]

    def status_document(self) -> dict[str, Any]:
        """What `ioc stack status --json` prints: enough for scripts to connect."""
        health = self.status()
        db = self.timescaledb.connection_info()
        return {
            "stack_dir": str(self.settings.stack_dir),
            "healthy": all(h.ok for h in health),
            "kafka_bootstrap_servers": self.settings.bootstrap_servers,
            "kafka_sasl": {
                "bootstrap_servers": f"127.0.0.1:{self.settings.kafka_sasl_port}",
                "security_protocol": "SASL_PLAINTEXT",
                "mechanism": KAFKA_SASL_MECHANISM,
                "username": KAFKA_USER,
                "password_file": str(self.kafka.credentials_path),
            },
            "database_dsn": db.get("dsn"),
            "database_admin_dsn": db.get("admin_dsn"),
            "database_grafana_dsn": db.get("grafana_dsn"),
            "prometheus_url": self.settings.prometheus_url,
            "alertmanager_url": self.settings.alertmanager_url,
            "services": [asdict(h) | {"ok": h.ok} for h in health],
        }

    def log_tail(self, name: str, lines: int) -> str:
        svc = self.select([name])[0]
        return _tail(svc.log, lines)
