"""The ``ioc`` command: one entry point, sub-commands for every job.

Errors the user can fix (:class:`ioc.errors.IocError`) print one line and exit 2; nothing
else is caught, so real bugs still show their traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ioc.config import Settings, load_settings
from ioc.errors import IocError

Handler = Callable[[argparse.Namespace, Settings], int]


def _stack(settings: Settings, args: argparse.Namespace | None = None) -> Any:
    """The local stack; ``--brokers N`` picks the single broker (1) or the cluster (3)."""
    from ioc.deploy.local.stack import Stack

    brokers = getattr(args, "brokers", None)
    if brokers is not None and brokers != settings.kafka_brokers:
        from pydantic import ValidationError

        try:
            settings = settings.with_kafka_brokers(brokers)
        except ValidationError as exc:
            msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise IocError(f"--brokers {brokers}: {msg}") from None
    database = getattr(args, "database", None)
    if database is not None:  # --database ha: the replicated PostgreSQL beside the single one
        settings = settings.model_copy(update={"database_ha": database == "ha"})
    return Stack(settings)


# --- stack ---


def cmd_stack_up(args: argparse.Namespace, settings: Settings) -> int:
    _stack(settings, args).up(args.services or None)
    return 0


def cmd_stack_down(args: argparse.Namespace, settings: Settings) -> int:
    _stack(settings, args).down(args.services or None)
    return 0


def cmd_stack_status(args: argparse.Namespace, settings: Settings) -> int:
    stack = _stack(settings, args)
    settings = stack.settings
    if args.json:
        doc = stack.status_document()
        print(json.dumps(doc, indent=2))
        return 0 if doc["healthy"] else 1
    health = stack.status()
    width = max(len(h.name) for h in health)
    for h in health:
        pid = f"pid {h.pid}" if h.pid else ""
        print(f"{h.name:<{width}}  {h.state:<13}  {h.endpoint:<24}  {pid:<10}  {h.detail}")
    print(f"state: {settings.stack_dir}")
    return 0 if all(h.ok for h in health) else 1


def cmd_stack_logs(args: argparse.Namespace, settings: Settings) -> int:
    print(_stack(settings, args).log_tail(args.service, args.lines))
    return 0


# --- database and topics ---


def cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.db.migrate import migrate

    applied = asyncio.run(migrate(settings.admin_dsn(), settings.db_schema))
    if applied:
        for mig in applied:
            print(f"applied {mig.version:04d}_{mig.name}")
    else:
        print(f"schema {settings.db_schema} is up to date")
    return 0


def cmd_db_compose_init(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from ioc.db.roles import COMPOSE_INITDB, compose_initdb_script

    out = Path(args.out) if args.out else Path("deploy", "ioc", "deploy") / COMPOSE_INITDB
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(compose_initdb_script())
    out.chmod(0o755)
    print(f"wrote {out}")
    return 0


def cmd_db_viewer_password(args: argparse.Namespace, settings: Settings) -> int:
    """A new password for a province's viewer role, printed once (Grafana's datasource for
    that province logs in with it); the database keeps only its hash."""
    import secrets

    from ioc.db import connect
    from ioc.db.provinces import set_viewer_password

    async def run() -> str:
        conn = await connect(settings.admin_dsn())
        try:
            return await set_viewer_password(conn, args.province, password)
        finally:
            await conn.close()

    password = secrets.token_urlsafe(24)
    role = asyncio.run(run())
    print(f"{role}\t{password}")
    return 0


def cmd_topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.bootstrap import kafka_topics
    from ioc.contract.topology import load_scenario
    from ioc.kafka import ensure_topics

    specs = None  # the contract's; with per-province topics, the scenario's provinces' too
    if settings.kafka_province_topics:
        specs = kafka_topics(settings, load_scenario(settings.scenario))
    for result in asyncio.run(ensure_topics(settings, specs)):
        print(f"{result.name:<36} {result.action:<22} partitions={result.partitions}")
    return 0


def cmd_config_show(args: argparse.Namespace, settings: Settings) -> int:
    data = settings.model_dump(mode="json")
    for key in sorted(data):
        value = data[key]
        if key.endswith(("password", "dsn")) and value is not None:
            value = "**********"
        print(f"IOC_{key.upper()}={value}")
    return 0


def cmd_scenario_list(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.contract.topology import builtin_scenarios, load_scenario

    for name in sorted(builtin_scenarios()):
        topo = load_scenario(name)
        counts = ", ".join(f"{k} {v}" for k, v in topo.counts().items())
        print(f"{name:<16} {topo.description}\n{'':<16} {counts}")
    return 0


def cmd_scenario_export(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from ioc.contract.topology import load_scenario

    topo = load_scenario(args.scenario)
    text = yaml.safe_dump(topo.to_document(), allow_unicode=True, sort_keys=False, width=120)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {args.out}: {topo.counts()}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def cmd_scenario_generate(args: argparse.Namespace, settings: Settings) -> int:
    # The top-level CLI may reach the simulators; the contract and the workers never do.
    from ioc.contract.topology import load_document, parse_topology
    from ioc.simulators.province import materialise, write_scenario

    fmt = "json" if args.out and args.out.endswith((".json", ".json.gz")) else "yaml"
    text = materialise(args.spec, fmt)
    if args.out:
        write_scenario(text, Path(args.out))
        topo = parse_topology(load_document(text, args.out), args.out)
        print(f"wrote {args.out}: {topo.counts()}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


# --- main job ---


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.runner import RunOptions, run_main_job

    return run_main_job(
        settings,
        scenario=args.scenario or settings.scenario,
        duration=args.duration,
        workers=args.workers,
        options=RunOptions(
            faults_path=args.faults,
            fault_flags=args.fault or [],
            seed=args.seed,
            background_faults=args.background_faults,
            operations=args.operations,
        ),
    )


# --- parser ---


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ioc", description="Smart-city IOC monitoring backend (see README.md)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from ioc.deploy.local.stack import SERVICE_NAMES

    stack = sub.add_parser("stack", help="the local Kafka/TimescaleDB/Prometheus/Alertmanager")
    stack_sub = stack.add_subparsers(dest="stack_command", required=True, metavar="ACTION")
    p = stack_sub.add_parser("up", help="install (first time) and start, wait until ready")
    p.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help=f"only these ({', '.join(SERVICE_NAMES)}; kafka-N with --brokers); default all",
    )
    database_help = (
        "single: one TimescaleDB; ha: also a pg_auto_failover monitor and two nodes, the "
        "standby synchronous (default: IOC_DATABASE_HA)"
    )
    brokers_help = (
        "Kafka nodes: 1, the single broker, or 3, a replicated cluster beside it "
        "(default: IOC_KAFKA_BROKERS)"
    )
    p.add_argument("--brokers", type=int, metavar="N", help=brokers_help)
    p.add_argument("--database", choices=("single", "ha"), help=database_help)
    p.set_defaults(handler=cmd_stack_up)
    p = stack_sub.add_parser("down", help="stop (data and installs are kept)")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    p.add_argument("--brokers", type=int, metavar="N", help=brokers_help)
    p.add_argument("--database", choices=("single", "ha"), help=database_help)
    p.set_defaults(handler=cmd_stack_down)
    p = stack_sub.add_parser("status", help="each service with endpoint and health")
    p.add_argument("--json", action="store_true", help="machine-readable, with DSNs and URLs")
    p.add_argument("--brokers", type=int, metavar="N", help=brokers_help)
    p.add_argument("--database", choices=("single", "ha"), help=database_help)
    p.set_defaults(handler=cmd_stack_status)
    p = stack_sub.add_parser("logs", help="tail of one service's log")
    p.add_argument("service", metavar="SERVICE", help=f"{', '.join(SERVICE_NAMES)} or kafka-N")
    p.add_argument("--brokers", type=int, metavar="N", help=brokers_help)
    p.add_argument("--database", choices=("single", "ha"), help=database_help)
    p.add_argument("-n", "--lines", type=int, default=60)
    p.set_defaults(handler=cmd_stack_logs)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("migrate", help="apply pending migrations").set_defaults(
        handler=cmd_db_migrate
    )
    p = db_sub.add_parser(
        "compose-init", help="write compose's database init script from ioc/db/roles.py"
    )
    p.add_argument("--out", help="file (default deploy/ioc/deploy/compose/initdb/01-ioc-roles.sh)")
    p.set_defaults(handler=cmd_db_compose_init)
    p = db_sub.add_parser(
        "viewer-password",
        help="set a new password for a province's read-only role and print it (docs/security.md)",
    )
    p.add_argument("province", help="the province's unit code (a top unit of the scenario)")
    p.set_defaults(handler=cmd_db_viewer_password)
    from ioc.deploy.local.backup import add_db_commands

    add_db_commands(db_sub)  # backup, backups, restore (docs/backup.md)

    topics = sub.add_parser("topics", help="Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    topics_sub.add_parser("create", help="create/align every topic of the contract").set_defaults(
        handler=cmd_topics_create
    )

    config = sub.add_parser("config", help="settings")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_sub.add_parser("show", help="effective settings, secrets masked").set_defaults(
        handler=cmd_config_show
    )

    scenario = sub.add_parser("scenario", help="province scenarios (topology)")
    scenario_sub = scenario.add_subparsers(dest="scenario_command", required=True, metavar="ACTION")
    scenario_sub.add_parser("list", help="built-in scenarios with their sizes").set_defaults(
        handler=cmd_scenario_list
    )
    p = scenario_sub.add_parser("export", help="write a scenario as explicit YAML (to edit)")
    p.add_argument("scenario", help="built-in name or YAML file")
    p.add_argument("--out", help="file (default stdout)")
    p.set_defaults(handler=cmd_scenario_export)
    p = scenario_sub.add_parser(
        "generate",
        help="materialise a generator spec (simulators/ioc/simulators/scenarios) as an "
        "explicit scenario",
    )
    p.add_argument("spec", help="built-in generator spec name or a spec YAML file (generate:)")
    p.add_argument(
        "--out", help="file (default stdout); FILE.json or FILE.json.gz writes JSON (gzipped)"
    )
    p.set_defaults(handler=cmd_scenario_generate)
    from ioc.inventory.cli import add_inventory_commands

    add_inventory_commands(sub)  # import, history, template (docs/inventory.md)

    run = sub.add_parser("run", help="the main job: stack, schema, topics and the pipeline")
    run.add_argument("--scenario", help="built-in scenario name or a YAML file")
    run.add_argument(
        "--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)"
    )
    run.add_argument("--workers", type=int, default=1, help="stream workers to start")
    run.add_argument("--faults", metavar="FILE", help="fault plan YAML (as `ioc simulate`)")
    run.add_argument(
        "--fault",
        action="append",
        metavar="SPEC",
        help="TYPE:TARGET@START+DURATION or TYPE:RATE (repeatable), e.g. node_down:nn-132@60+300",
    )
    run.add_argument(
        "--seed", type=int, help="random seed of the simulation and background failures"
    )
    run.add_argument(
        "--no-background-faults",
        dest="background_faults",
        action="store_false",
        help="no seeded everyday failures and no weekly maintenance window",
    )
    run.add_argument(
        "--no-operations",
        dest="operations",
        action="store_false",
        help="do not start the pager and the operations service",
    )
    run.set_defaults(handler=cmd_run)

    for register in _plugins():
        register(sub)
    return parser


def _plugins() -> list[Callable[[Any], None]]:
    """Sub-commands owned by other packages (simulators, streams, services, dashboards)."""
    from ioc import commands

    return commands.registrars()


def main(argv: Sequence[str] | None = None) -> int:
    from ioc.contract.feeds import load_extra_feeds

    try:
        load_extra_feeds()  # IOC_EXTRA_FEEDS: feeds declared outside the package, before the
    except IocError as exc:  # parser (``--feed`` choices) and every command
        print(f"ioc: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # a command may re-execute it
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("aiokafka", "kafka"):
        # Their connection errors are re-raised as one-line IocErrors; don't print them twice.
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    for chatty in ("faust", "mode"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        settings = load_settings()
        handler: Handler = args.handler
        return handler(args, settings)
    except IocError as exc:
        print(f"ioc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ioc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
