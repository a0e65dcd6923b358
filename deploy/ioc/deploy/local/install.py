"""Installers of the local stack: Debian packages, a Debian chroot, Maven-resolved jars.

Each helper does one first-time install step, appends its output to the calling service's
log and raises :class:`~ioc.deploy.local.process.StackError` with the log's tail if it fails.
The services decide *whether* to install (``Service.installed``); these only know *how*.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ioc.config import default_stack_dir
from ioc.deploy.local.process import Progress, StackError, as_root, run_step

DEBIAN_SUITE = "trixie"
DEBIAN_MIRROR = os.environ.get("IOC_DEBIAN_MIRROR", "http://deb.debian.org/debian")

_apt_updated = False


def install_peers(missing: list[str], needed_by: str, log_name: str) -> None:
    """Install the ``missing`` Debian packages of a tool the tests use (as root, logged to
    the stack's ``logs/log_name``); not root or no apt-get: :class:`StackError` saying what
    ``needed_by`` needs and the one command to run."""
    if not missing:
        return
    command = f"apt-get install -y --no-install-recommends {' '.join(missing)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(f"{needed_by}: run `sudo {command}`")
    log = default_stack_dir() / "logs" / log_name
    log.parent.mkdir(parents=True, exist_ok=True)
    apt_install(missing, log, print)


def apt_install(
    packages: list[str], log: Path, progress: Progress, *, chroot: Path | None = None
) -> None:
    """``apt-get install`` on the host, or inside the Debian ``chroot`` (``apt-get update``
    first: once per process on the host, every time in a chroot)."""
    global _apt_updated
    where = f" into {chroot}" if chroot else ""
    progress(f"  apt-get install {' '.join(packages)}{where} (first time only)")
    prefix = ["chroot", str(chroot)] if chroot else []
    if chroot or not _apt_updated:
        run_step(as_root([*prefix, "apt-get", "update", "-q"]), "apt-get update", log)
        _apt_updated = _apt_updated or chroot is None
    run_step(
        as_root(
            [
                *prefix,
                "env",
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                *packages,
            ]
        ),
        f"apt-get install {' '.join(packages)}",
        log,
    )


def ensure_command(command: str, package: str, log: Path, progress: Progress) -> None:
    """Install ``package`` from Debian if ``command`` is not on PATH."""
    if not shutil.which(command):
        apt_install([package], log, progress)


def ensure_worker_allocator(log: Path, progress: Progress) -> None:
    """jemalloc for the workers (``IOC_WORKER_ALLOCATOR``, ioc.memory): from Debian when it is
    missing and this is root with apt-get; otherwise the workers say so and run on pymalloc."""
    from ioc.memory import jemalloc_library

    if jemalloc_library() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        apt_install(["libjemalloc2"], log, progress)


def debootstrap(rootfs: Path, include: list[str], log: Path, progress: Progress) -> None:
    """A minimal Debian chroot at ``rootfs`` with ``include`` installed (built beside, renamed).

    A half-built chroot from an interrupted run is removed first; ``rootfs`` only ever
    appears complete.
    """
    ensure_command("debootstrap", "debootstrap", log, progress)
    staging = rootfs.with_name(rootfs.name + ".partial")
    if staging.exists():
        run_step(as_root(["rm", "-rf", str(staging)]), "clean partial chroot", log)
    run_step(
        as_root(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(include)}",
                DEBIAN_SUITE,
                str(staging),
                DEBIAN_MIRROR,
            ]
        ),
        "debootstrap",
        log,
        timeout=1800,
    )
    staging.rename(rootfs)


def maven_dependencies(pom: Path, libs: Path, log: Path, progress: Progress) -> None:
    """Every runtime jar of ``pom``'s dependencies into ``libs`` (complete, or not at all).

    ``libs/.complete`` marks a finished copy; see :func:`maven_complete`.
    """
    ensure_command("mvn", "maven", log, progress)
    staging = libs.with_name(libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    run_step(
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
        log,
    )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (libs / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))


def maven_complete(libs: Path) -> bool:
    return (libs / ".complete").exists()


def require_java() -> None:
    if not shutil.which("java"):
        raise StackError("kafka needs Java 17+ on PATH (`apt-get install openjdk-17-jre`)")
