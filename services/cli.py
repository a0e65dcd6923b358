"""``ioc pager``: the Alertmanager webhook receiver."""

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
