"""One service of the local stack: install once, start if stopped, prove it answers, stop.

:class:`Service` holds the life cycle every service shares (``up``: install if missing,
start if stopped or bring a running one's config up to date, wait until :meth:`Service.probe`
answers, then :meth:`Service.after_ready`); a subclass per service says how to install, run,
configure and probe it (deploy/ioc/deploy/local/kafka_broker.py, timescaledb.py, monitoring.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import string
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ioc.config import Settings
from ioc.deploy.local.credentials import StackCredentials
from ioc.deploy.local.process import Progress, StackError, read_pid, spawn, tail, terminate

TEMPLATES = resources.files("ioc.deploy.local")
"""deploy/ioc/deploy/local: the services' config templates (``kafka/``, ``prometheus/``)."""


def print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def render(template: str, dest: Path, **values: Any) -> None:
    """Fill a ``$placeholder`` template from deploy/ioc/deploy/local into ``dest``."""
    text = (TEMPLATES / template).read_text()
    rendered = string.Template(text).substitute(**{k: str(v) for k, v in values.items()})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(rendered)


def digest(*paths: Path) -> str:
    """One hash over the names and contents of files (a missing file counts too)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path).encode())
        h.update(path.read_bytes() if path.exists() else b"-")
    return h.hexdigest()


def http_ready(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    """Whether ``url`` answers 200, and what it answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, str(reason)


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
        self.stack_credentials = StackCredentials(settings.stack_dir)

    @property
    def credentials_path(self) -> Path:
        """The secrets this service generated, if it has any (Kafka users, database roles)."""
        return self.stack_credentials.path(self.name)

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

    def env(self) -> dict[str, str] | None:
        return None

    # shared behaviour
    def pid(self) -> int | None:
        return read_pid(self.pidfile)

    def start(self) -> int:
        return spawn(self.command(), self.log, self.pidfile, self.env())

    def stop(self) -> bool:
        return terminate(self.pidfile, self.stop_signal)

    def kill(self) -> int | None:
        """SIGKILL the service's process group at once, the fault tests' crash: no clean
        shutdown, no flush, no leader hand-over. Its pid, or None if it was not running."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        return pid

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)

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
            self.start()
        elif self.sync_config():
            progress(f"[{self.name}] configuration changed: reloaded")
        started = time.monotonic()
        detail = ""
        last_note = started
        while time.monotonic() - started < self.start_timeout:
            if self.pid() is None:
                raise StackError(
                    f"{self.name} exited during start; last lines of {self.log}:\n{self.log_tail()}"
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
            f"last lines of {self.log}:\n{self.log_tail()}"
        )

    def down(self, progress: Progress) -> None:
        if self.stop():
            progress(f"[{self.name}] stopped")
        else:
            progress(f"[{self.name}] not running")
