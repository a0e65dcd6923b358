"""The SNMP peers the collector's tests run against: Debian's ``snmpd`` and ``snmptrap``.

No real network device is reachable from the project's machines, so the SNMP tests start
net-snmp's agent on loopback with a generated configuration and send traps with its
``snmptrap`` (tests/integration/test_collect_snmp.py). ``make install`` runs this module once
(``python -m ioc.deploy.local.snmp_peers``), as it does for the console's browser: it installs
the Debian packages ``snmpd`` and ``snmp`` when they are missing (as root, with the stack's
``install_peers``), or says in one line what to run. The tests call :func:`ensure_snmp_tools`
too, so a fresh machine gets them either way.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ioc.deploy.local.install import install_peers
from ioc.deploy.local.process import StackError

PACKAGES = {"snmpd": "snmpd", "snmptrap": "snmp"}
"""Command -> the Debian package that ships it (net-snmp's agent and its command-line tools)."""


def ensure_snmp_tools() -> dict[str, str]:
    """Command -> path of ``snmpd`` and ``snmptrap``, installed with apt-get first when we are
    root. Not root and missing: :class:`StackError` with the one command to run."""
    missing = sorted({pkg for cmd, pkg in PACKAGES.items() if _which(cmd) is None})
    install_peers(missing, "the SNMP collector's tests need net-snmp", "snmp-install.log")
    found = {cmd: _which(cmd) for cmd in PACKAGES}
    absent = [cmd for cmd, path in found.items() if path is None]
    if absent:
        raise StackError(f"{', '.join(absent)} still missing after apt-get install")
    return {cmd: path for cmd, path in found.items() if path is not None}


def agent_conf(community: str, sources: str, user: str, auth_key: str, priv_key: str) -> str:
    """An ``snmpd.conf`` answering both versions the collector speaks: v2c reads with
    ``community`` from ``sources`` (a CIDR), and v3 authPriv (SHA, AES) as ``user``."""
    return (
        f"rocommunity {community} {sources}\n"
        f'createUser {user} SHA "{auth_key}" AES "{priv_key}"\n'
        f"rouser {user} priv\n"
    )


def _which(command: str) -> str | None:
    # snmpd lives in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")


def main() -> int:
    """``python -m ioc.deploy.local.snmp_peers``: install if needed, print the paths."""
    try:
        tools = ensure_snmp_tools()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("snmp peers: " + ", ".join(str(Path(p)) for p in tools.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
