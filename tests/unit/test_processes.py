"""ioc.processes: own session, log file, readiness, SIGTERM to the group then SIGKILL."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from ioc.config import load_settings
from ioc.processes import Process, ProcessError, WorkerProcess, ioc_command, stop_all


def python(code: str, log: Path, name: str = "child") -> Process:
    return Process([sys.executable, "-c", code], log, name=name)


def gone(pid: int) -> bool:
    """Exited (a zombie nobody reaps counts: containers may lack a reaping init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


SLEEPER = """
import sys, time
print("up", flush=True)
print("oops", file=sys.stderr, flush=True)
time.sleep(60)
"""

STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("grandchild", child.pid, flush=True)
time.sleep(60)
"""


def test_start_logs_both_streams_and_stop_terminates(tmp_path: Path) -> None:
    proc = python(SLEEPER, tmp_path / "logs" / "child.log").start()
    try:
        proc.wait_ready(lambda: "oops" in proc.log_text(), 10, what="logging")
        assert proc.alive()
        assert proc.log_text().split() == ["up", "oops"]
    finally:
        status = proc.stop(timeout=10)
    assert status == -signal.SIGTERM
    assert not proc.alive()
    assert proc.stop() == -signal.SIGTERM  # stopping again is harmless


def test_stop_kills_the_whole_group_when_sigterm_is_ignored(tmp_path: Path) -> None:
    proc = python(STUBBORN, tmp_path / "child.log").start()
    proc.wait_ready(lambda: "grandchild" in proc.log_text(), 10, what="forking")
    grandchild = int(proc.log_text().split()[1])
    started = time.monotonic()
    assert proc.stop(timeout=1) == -signal.SIGKILL
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while not gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(grandchild), "the grandchild outlived its process group"


def test_kill_and_restart_keep_one_log(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    proc = python(SLEEPER, log).start()
    proc.wait_ready(lambda: "up" in proc.log_text(), 10)
    assert proc.kill() == -signal.SIGKILL
    proc.start()
    try:
        proc.wait_ready(lambda: "up" in proc.log_text(), 10)
        assert proc.log_text().count("up") == 1  # this run only
        assert proc.log_tail().count("up") == 2  # the file keeps both
        with pytest.raises(ProcessError, match="already running"):
            proc.start()
    finally:
        proc.stop(timeout=10)


def test_readiness_fails_fast_when_it_exits_or_never_serves(tmp_path: Path) -> None:
    code = "import sys; print('ioc: error: cannot serve metrics', file=sys.stderr); sys.exit(3)"
    crashing = python(code, tmp_path / "crash.log", name="crasher").start()
    # its last words are in the message: CI prints the error, not the log file
    with pytest.raises(
        ProcessError,
        match=r"crasher exited \(status 3\) .*\(ioc: error: cannot serve metrics\).*crash\.log",
    ):
        crashing.wait_http("http://127.0.0.1:1/metrics", timeout=30)
    silent = python(SLEEPER, tmp_path / "silent.log", name="silent").start()
    try:
        with pytest.raises(ProcessError, match=r"silent was not serving .* within 1 s"):
            silent.wait_http("http://127.0.0.1:1/metrics", timeout=1)
    finally:
        stop_all([silent, crashing], timeout=10)
    assert silent.returncode == -signal.SIGTERM and crashing.returncode == 3


def test_a_process_never_started_is_not_alive(tmp_path: Path) -> None:
    proc = python(SLEEPER, tmp_path / "never.log")
    assert not proc.alive() and proc.returncode is None
    assert proc.stop() is None
    assert proc.log_text() == proc.log_tail() == ""
    with pytest.raises(ProcessError, match="never started"):
        _ = proc.pid


def test_ioc_command_is_the_entry_point_of_this_interpreter() -> None:
    argv = ioc_command("worker", "--name", "w1")
    assert Path(argv[0]) == Path(sys.executable).parent / "ioc"
    assert Path(argv[0]).exists()
    assert argv[1:] == ["worker", "--name", "w1"]


def test_worker_reads_its_metrics_url_from_this_runs_log(tmp_path: Path) -> None:
    log = tmp_path / "w1.log"
    log.write_text("ioc worker w1: scenario demo, metrics http://127.0.0.1:4321/metrics\n")
    settings = load_settings(db_schema="t1", kafka_topic_prefix="t1.")
    worker = WorkerProcess(settings, "demo", log, name="w1")
    assert worker.argv == ioc_command(
        "worker", "--scenario", "demo", "--metrics-port", "0", "--name", "w1"
    )
    assert worker.env is not None and worker.env["IOC_DB_SCHEMA"] == "t1"
    assert worker.metrics_url() == "http://127.0.0.1:4321/metrics"
    assert worker.served_port() == 4321
    fixed = WorkerProcess(settings, "demo", log, name="w2", metrics_port=9500)
    assert fixed.served_port() == 9500
