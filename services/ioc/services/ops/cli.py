"""``ioc ops serve|token|openapi``: run the operations service, manage its API tokens, and
write its OpenAPI document.

Token commands talk to the database directly (as the runtime role), so the first tokens can be
made before the service runs; each is audited (method ``CLI``) like the API's. A new token is
printed once: only its hash is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

from ioc.config import Settings

DEFAULT_OPENAPI = Path(__file__).resolve().parents[4] / "docs" / "openapi.json"
OPENAPI_COMMAND = "ioc ops openapi"


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.services.ops.app import serve

    if args.port:
        settings = settings.model_copy(update={"ops_port": args.port})
    settings = settings.for_kafka_service("ops")  # its own Kafka user: commands, incidents
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


async def _token(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.contract.topology import load_scenario
    from ioc.db import create_pool
    from ioc.services.ops import auth
    from ioc.services.ops.audit import Where
    from ioc.services.ops.models import TokenIn

    pool = await create_pool(
        settings.database_dsn(),
        server_settings={"search_path": f"{settings.db_schema},public"},
    )
    try:
        if args.token_action == "add":
            spec = TokenIn(
                name=args.name, role=args.role, unit_code=args.unit, rate_per_min=args.rate
            )
            where = Where(None, "CLI", "ioc ops token add")
            topology = load_scenario(args.scenario or settings.scenario)
            created = await auth.create_token(pool, topology, spec, None, where)
            scope = f" limited to unit {created.unit_code}" if created.unit_code else ""
            print(
                f"token {created.name} ({created.role}{scope}, {created.rate_per_min}/min); "
                "shown once, keep it:",
                file=sys.stderr,
            )
            print(created.token)
        elif args.token_action == "list":
            for t in await auth.list_tokens(pool, include_revoked=args.all):
                revoked = f" revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else ""
                print(
                    f"{t.id:>4} {t.name:<24} {t.role:<9} {t.unit_code or '-':<10} "
                    f"{t.rate_per_min:>6}/min  by {t.created_by} "
                    f"{t.created_at:%Y-%m-%d %H:%M}{revoked}"
                )
        else:
            where = Where(None, "CLI", "ioc ops token revoke")
            _before, after = await auth.revoke_token(pool, args.token, None, where)
            print(f"token {after.name} revoked")
    finally:
        await pool.close()
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from ioc.services.ops.common import OpsError

    try:
        return asyncio.run(_token(args, settings))
    except OpsError as exc:
        raise SystemExit(f"ioc ops token {args.token_action}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SystemExit(f"ioc ops token {args.token_action}: {problems}") from None


def cmd_openapi(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.services.ops.app import openapi_document, render_openapi

    text = render_openapi(openapi_document(settings))
    out: Path = args.output
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            raise SystemExit(f"{out} is stale: run `{OPENAPI_COMMAND}`")
        print(f"{out} is current")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


def register(sub: Any) -> None:
    """``ioc ops`` and its subcommands (wired by :mod:`ioc.services.cli`)."""
    ops = sub.add_parser("ops", help="the operations service: API, console, tokens")
    ops_sub = ops.add_subparsers(dest="ops_action", required=True)

    p = ops_sub.add_parser("serve", help="run the operations service (API, console, loops)")
    p.add_argument("--port", type=int, help="listen port (default IOC_OPS_PORT)")
    p.set_defaults(handler=cmd_serve)

    p = ops_sub.add_parser("token", help="API tokens: add (printed once), list, revoke")
    token_sub = p.add_subparsers(dest="token_action", required=True)
    add = token_sub.add_parser("add", help="create a token and print it once")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    add.add_argument("--unit", help="limit a viewer or operator to this unit's subtree")
    add.add_argument("--rate", type=int, default=120, help="requests per minute (default 120)")
    add.add_argument("--scenario", help="scenario whose units are checked (default IOC_SCENARIO)")
    add.set_defaults(handler=cmd_token)
    lst = token_sub.add_parser("list", help="tokens (not their text)")
    lst.add_argument("--all", action="store_true", help="include revoked tokens")
    lst.set_defaults(handler=cmd_token)
    rev = token_sub.add_parser("revoke", help="revoke a token by id or name")
    rev.add_argument("token")
    rev.set_defaults(handler=cmd_token)

    p = ops_sub.add_parser("openapi", help="write the OpenAPI document (docs/openapi.json)")
    p.add_argument("--output", type=Path, default=DEFAULT_OPENAPI)
    p.add_argument("--check", action="store_true", help="fail if the file is stale")
    p.set_defaults(handler=cmd_openapi)
