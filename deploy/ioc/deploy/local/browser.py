"""The browser the console's tests drive: Debian's ``chromium``, never a downloaded one.

``playwright install`` downloads browsers from a CDN our machines cannot reach, so the suite
drives the distribution's chromium through Playwright's ``executable_path``. ``make install``
runs this module once (``python -m ioc.deploy.local.browser``): it installs chromium and a font
with Vietnamese glyphs (DejaVu) when they are missing, or says in one line what to run.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ioc.config import default_stack_dir
from ioc.deploy.local.process import StackError, run_step

CHROMIUM = Path(os.environ.get("IOC_CHROMIUM", "/usr/bin/chromium"))
"""Where Debian's package puts it (``IOC_CHROMIUM`` overrides, e.g. for another distribution)."""

PACKAGES = ["chromium", "fonts-dejavu-core"]
"""chromium does not depend on any font; DejaVu Sans covers Vietnamese (Latin Extended
Additional), so the console's text renders with its diacritics rather than as boxes."""

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

CHROMIUM_ARGS = [
    "--no-sandbox",  # containers and root: the setuid/namespace sandbox is unavailable
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home from a test machine
    "--disable-component-update",
    "--disable-sync",
]
"""Arguments for a headless run under test: offline, quiet, no GPU."""


def ensure_chromium() -> Path:
    """The chromium executable, installed with ``apt-get`` first when we are root.

    Not root and missing: :class:`StackError` with the one command to run.
    """
    missing = not _executable(CHROMIUM) or not FONT.exists()
    if not missing:
        return CHROMIUM
    command = f"apt-get install -y --no-install-recommends {' '.join(PACKAGES)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            f"the console's browser tests need {CHROMIUM} and DejaVu fonts: run `sudo {command}`"
        )
    log = default_stack_dir() / "logs" / "browser-install.log"
    run_step(["apt-get", "update", "-q"], "apt-get update", log)
    run_step(["env", "DEBIAN_FRONTEND=noninteractive", *command.split()], "apt-get install", log)
    if not _executable(CHROMIUM):
        raise StackError(f"{command} finished but {CHROMIUM} is still missing; log: {log}")
    return CHROMIUM


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def main() -> int:
    """``python -m ioc.deploy.local.browser``: install if needed, print the path."""
    try:
        print(f"browser: {ensure_chromium()}")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
