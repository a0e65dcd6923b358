"""The stack's process control: pidfiles, spawning, stopping, log tails and one-shot steps.

Every service of the local stack is one process started in its own session (so a stop
reaches its whole process group), with its pid in ``<service>/<service>.pid`` and its output
appended to ``<service>/<service>.log``. Nothing here knows which service it runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ioc.errors import IocError

Progress = Callable[[str], None]
"""Where a long operation reports what it is doing (one line per call)."""


class StackError(IocError):
    """A service could not be installed or started; the message says which and why."""


def read_pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` if that process is alive (not a zombie), else None."""
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


def spawn(argv: list[str], log: Path, pidfile: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in a new session, output appended to ``log``; writes and returns its pid."""
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


def terminate(pidfile: Path, sig: signal.Signals, timeout: float = 30.0) -> bool:
    """Signal the process group in ``pidfile``, SIGKILL it after ``timeout``; False if none ran."""
    pid = read_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_pid(pidfile) is None:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.5)
    pidfile.unlink(missing_ok=True)
    return True


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log (its last 64 kB at most)."""
    try:
        data = path.read_bytes()[-64_000:].decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def run_step(argv: list[str], what: str, log: Path, timeout: float = 900) -> None:
    """Run an install or setup step to completion, output appended to ``log``.

    Raises :class:`StackError` naming the step, with the tail of the log, if it fails.
    """
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
            f"{what} failed (exit {result.returncode}); last lines of {log}:\n{tail(log, 25)}"
        )


def as_root(argv: list[str]) -> list[str]:
    """``argv`` as root: unchanged when we are root, else through password-less ``sudo``."""
    if os.geteuid() == 0:
        return argv
    if shutil.which("sudo"):
        return ["sudo", "-n", *argv]
    raise StackError(f"`{argv[0]}` needs root; run `sudo ioc stack up` once")
