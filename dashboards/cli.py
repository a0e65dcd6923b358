"""``ioc alerts build``: write the generated alert rules, their tests and Alertmanager config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ioc.config import Settings

DEFAULT_OUT = Path("deploy")


def cmd_alerts_build(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.dashboards import alerts

    for path in alerts.build_all(Path(args.out)):
        print(f"wrote {path}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("alerts", help="alert rules and Alertmanager config (generated)")
    alerts_sub = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    b = alerts_sub.add_parser("build", help="write rules, promtool tests, alertmanager.yml")
    b.add_argument("--out", default=str(DEFAULT_OUT), help="deploy folder (default deploy/)")
    b.set_defaults(handler=cmd_alerts_build)
