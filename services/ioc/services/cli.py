"""``ioc pager`` (the Alertmanager webhook receiver) and ``ioc incident`` (operator actions)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from ioc.config import Settings


def cmd_pager(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.services.pager import serve

    if args.port:
        settings = settings.model_copy(update={"pager_port": args.port})
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("pager", help="run the pager receiver (Alertmanager webhook)")
    p.add_argument("--port", type=int, help="listen port (default IOC_PAGER_PORT)")
    p.set_defaults(handler=cmd_pager)
    register_incident(sub)


def cmd_incident(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.contract.topology import load_scenario
    from ioc.services.incidents import read_incident_events, send_command

    if args.action == "events":
        log = asyncio.run(read_incident_events(settings))
        for e in log.events:
            if args.id is None or e.incident_id == args.id:
                who = f" by {e.actor}" if e.actor != "ioc" else ""
                print(
                    f"#{e.incident_id}.{e.seq} {e.event:<12} {e.status:<12} {e.kind:<14} "
                    f"{e.root_device}{who} {e.note}".rstrip()
                )
        return 0
    if args.id is None:
        raise SystemExit(f"ioc incident {args.action}: give the incident id")
    topology = load_scenario(args.scenario or settings.scenario)
    command = asyncio.run(
        send_command(settings, topology, args.id, args.action, args.by, args.note, args.to)
    )
    print(f"incident {command.incident_id}: {command.action} sent for {command.root_device}")
    return 0


def register_incident(sub: Any) -> None:
    p = sub.add_parser(
        "incident",
        help="operator actions on an incident (sent to the incident agent), or its events",
    )
    p.add_argument("action", choices=["acknowledge", "assign", "comment", "resolve", "events"])
    p.add_argument("id", type=int, nargs="?", help="incident id (events: only this one)")
    p.add_argument("--by", default="operator", help="who acts (default: operator)")
    p.add_argument("--note", default="", help="comment or reason")
    p.add_argument("--to", help="assign: who takes the incident")
    p.add_argument("--scenario", help="topology (default IOC_SCENARIO)")
    p.set_defaults(handler=cmd_incident)
