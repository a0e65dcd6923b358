"""``ioc dashboards build|check|push`` and ``ioc alerts build`` (:mod:`ioc.alerting.build`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ioc.config import Settings

DEFAULT_OUT = Path("deploy", "ioc", "deploy")


def cmd_alerts_build(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.alerting.build import build_all

    for path in build_all(Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_dashboards_build(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.dashboards.build import GENERATED, build

    for path in build(Path(args.out) if args.out else GENERATED):
        print(f"wrote {path}")
    return 0


def cmd_dashboards_check(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from ioc.dashboards.build import BUILDERS, GENERATED
    from ioc.dashboards.grafana_schema import check, pinned_version

    folder = Path(args.dir) if args.dir else GENERATED
    errors = check(
        {f"ioc-{name}": json.loads((folder / f"ioc-{name}.json").read_text()) for name in BUILDERS}
    )
    for error in errors:
        print(error)
    print(f"{len(errors)} error(s) against @grafana/schema {pinned_version()} (tsc --strict)")
    return 1 if errors else 0


def cmd_dashboards_push(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.dashboards.build import push

    for line in push(args.url, args.token, args.folder):
        print(line)
    return 0


def register(sub: Any) -> None:
    d = sub.add_parser("dashboards", help="Grafana dashboards (generated)")
    dsub = d.add_subparsers(dest="dashboards_command", required=True, metavar="ACTION")
    b = dsub.add_parser("build", help="write the dashboards' JSON")
    b.add_argument("--out", help="folder (default dashboards/ioc/dashboards/generated)")
    b.set_defaults(handler=cmd_dashboards_build)
    c = dsub.add_parser(
        "check", help="type-check the JSON against Grafana's published schema (npm, tsc)"
    )
    c.add_argument(
        "--dir", help="folder of ioc-*.json (default dashboards/ioc/dashboards/generated)"
    )
    c.set_defaults(handler=cmd_dashboards_check)
    u = dsub.add_parser("push", help="upload to a running Grafana (HTTP API)")
    u.add_argument("--url", required=True, help="e.g. http://127.0.0.1:3000")
    u.add_argument("--token", required=True, help="Grafana service-account token")
    u.add_argument("--folder", help="folder UID")
    u.set_defaults(handler=cmd_dashboards_push)

    p = sub.add_parser("alerts", help="alert rules and Alertmanager config (generated)")
    alerts_sub = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    b = alerts_sub.add_parser("build", help="write rules, promtool tests, alertmanager.yml")
    b.add_argument("--out", default=str(DEFAULT_OUT), help="deploy folder (default deploy/)")
    b.set_defaults(handler=cmd_alerts_build)
