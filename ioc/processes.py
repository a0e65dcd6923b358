"""Spawning and stopping the project's own processes (``ioc worker``, ``ioc pager``...).

The one owner of Popen, sessions and signals for them; the local stack's daemons (Kafka,
PostgreSQL, Prometheus, Alertmanager) are deploy/ioc/deploy/local's.

A :class:`Process` runs in its own session (so a signal reaches everything it started and
a Ctrl-C in the parent's terminal does not), writes stdout and stderr to one log file, and
stops with SIGTERM to its process group, then SIGKILL. :class:`WorkerProcess` is
``ioc worker`` for a :class:`~ioc.config.Settings`; the main job (``ioc run``), the tests
and the benchmarks start workers through it.

Child ``ioc`` processes get their settings through :func:`ioc_env`, which is
:meth:`Settings.child_env` on top of this process's environment.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Self

from ioc.config import ENV_PREFIX, Settings
from ioc.errors import IocError


class ProcessError(IocError):
    """A child process exited, or did not become ready in time; the message names its log."""


def ioc_command(*args: str) -> list[str]:
    """argv for the ``ioc`` entry point installed next to this interpreter."""
    return [str(Path(sys.executable).parent / "ioc"), *args]


def ioc_env(settings: Settings) -> dict[str, str]:
    """The environment for a child ``ioc`` process that must work with exactly ``settings``.

    This process's environment without any ``IOC_<FIELD>`` variable of its own (a field
    unset in ``settings`` must stay unset in the child), plus :meth:`Settings.child_env`.
    """
    fields = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in fields}
    env.update(settings.child_env())
    return env


def service_env(settings: Settings, service: str) -> dict[str, str]:
    """:func:`ioc_env` for a long-running ``service`` (``worker``, ``pager``, ``ops``): its own
    Kafka user instead of the admin (:meth:`Settings.for_kafka_service`) and no admin DSN,
    so neither admin credential reaches its environment (least privilege)."""
    own = settings.for_kafka_service(service).model_copy(update={"db_admin_dsn": None})
    return ioc_env(own)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers at all (any HTTP status below 400)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except OSError:
        return False


class Process:
    """One child process in its own session, stdout and stderr appended to ``log``."""

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log
        self.env = dict(env) if env is not None else None
        """The child's whole environment; None: this process's own."""
        self.name = name or Path(self.argv[0]).name
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        state = "not started" if self._proc is None else f"pid {self._proc.pid}"
        return f"<{type(self).__name__} {self.name} {state}, log {self.log_path}>"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Self:
        """Spawn it (again, once the previous run has exited); returns ``self``."""
        if self.alive():
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            self._proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def pid(self) -> int:
        """Its process id, which is also its process group and session id."""
        if self._proc is None:
            raise ProcessError(f"{self.name} was never started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has exited (negative: killed by that signal), else None."""
        return None if self._proc is None else self._proc.poll()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to exit; its exit status (``subprocess.TimeoutExpired`` on timeout)."""
        if self._proc is None:
            raise ProcessError(f"{self.name} was never started")
        return self._proc.wait(timeout=timeout)

    def signal(self, signum: int) -> bool:
        """Send ``signum`` to its whole process group while it runs; whether it was sent."""
        if not self.alive():
            return False
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:  # exited meanwhile
            return False
        return True

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM to the group, SIGKILL after ``timeout`` s; the exit status (None: never
        started)."""
        stop_all([self], timeout)
        return self.returncode

    def kill(self) -> int:
        """SIGKILL to the group (no clean shutdown); the exit status."""
        self.signal(signal.SIGKILL)
        return self.wait(timeout=30)

    # --- readiness -----------------------------------------------------------------------------
    def wait_ready(
        self,
        ready: Callable[[], bool],
        timeout: float,
        what: str = "ready",
        interval: float = 0.5,
    ) -> None:
        """Poll ``ready()`` until true; :class:`ProcessError` if it exits or times out first."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                lines = [line for line in self.log_text().splitlines() if line.strip()]
                said = f" ({lines[-1].strip()[:300]})" if lines else ""
                raise ProcessError(  # its last line usually names the cause (CI shows no log)
                    f"{self.name} exited (status {self.returncode}) before it was {what}"
                    f"{said}; see {self.log_path}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{self.name} was not {what} within {timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(interval)

    def wait_http(self, url: str, timeout: float) -> None:
        """Wait until ``url`` answers (see :meth:`wait_ready`)."""
        self.wait_ready(lambda: http_ok(url), timeout, what=f"serving {url}")

    # --- log -------------------------------------------------------------------------------------
    def log_text(self) -> str:
        """What this run (since the last :meth:`start`) wrote to the log."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the log file (earlier runs included), for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


def stop_all(processes: Iterable[Process], timeout: float = 60.0) -> None:
    """Stop several at once: SIGTERM to every group, then wait up to ``timeout`` s in all,
    then SIGKILL to whatever still runs."""
    running = [p for p in processes if p.signal(signal.SIGTERM)]
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


_METRICS_URL = re.compile(r"metrics (http://127\.0\.0\.1:\d+/metrics)")
"""The line ``ioc worker`` prints once it serves /metrics (streams/ioc/streams/cli.py)."""


class WorkerProcess(Process):
    """``ioc worker`` for ``settings``, serving /metrics on ``metrics_port`` (0: any free
    port, read back from the line the worker logs)."""

    def __init__(
        self,
        settings: Settings,
        scenario: str,
        log: Path,
        name: str = "w1",
        metrics_port: int = 0,
    ) -> None:
        argv = ioc_command(
            "worker", "--scenario", scenario, "--metrics-port", str(metrics_port), "--name", name
        )
        super().__init__(argv, log, env=service_env(settings, "worker"), name=name)
        self.settings, self.scenario, self.metrics_port = settings, scenario, metrics_port

    def metrics_url(self) -> str | None:
        """Where this run serves /metrics (None: not known yet)."""
        if self.metrics_port:
            return f"http://127.0.0.1:{self.metrics_port}/metrics"
        match = _METRICS_URL.search(self.log_text())
        return match[1] if match else None

    def served_port(self) -> int | None:
        """The port it serves /metrics on (None: not known yet)."""
        url = self.metrics_url()
        return None if url is None else int(url.rsplit(":", 1)[1].split("/", 1)[0])

    def wait_serving(self, timeout: float = 90.0) -> str:
        """Wait until it serves /metrics (it has verified the bootstrap by then); the URL."""

        def serving() -> bool:
            url = self.metrics_url()
            return url is not None and http_ok(url)

        self.wait_ready(serving, timeout, what="serving /metrics")
        url = self.metrics_url()
        assert url is not None
        return url

    def scrape(self) -> list[tuple[str, dict[str, str], float]]:
        """Every sample it exposes now: (sample name, labels, value); [] before it logged its
        URL. Raises OSError when it does not answer."""
        from prometheus_client.parser import text_string_to_metric_families

        url = self.metrics_url()
        if url is None:
            return []
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        return [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def metric_totals(self) -> dict[str, float]:
        """Every sample it exposes, summed over its labels, by sample name."""
        totals: dict[str, float] = {}
        for name, _labels, value in self.scrape():
            totals[name] = totals.get(name, 0.0) + value
        return totals
