"""The audit trail: who did what, when, from which address, before and after.

Every write through the API, the console (and the CLI's token commands) and every failed
login is one row of ``audit_log`` (a hypertable, migration 0007); failed logins from one
address beyond its limit are counted, not written one by one (:class:`auth.LoginGuard`).
Where the write is a database write (tokens, maintenance windows, SLA objects), the row is
written on the same connection inside the same transaction (:func:`in_transaction`), so a
write and its audit row commit together or not at all; an incident action is a Kafka command
(the incident agent writes the incident), and its row records the outcome the service saw.
A refusal writes nothing else, and its row is written on its own. Token text never reaches
this table.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ioc.services.ops.models import AuditFilter, AuditRow

if TYPE_CHECKING:
    import asyncpg

    from ioc.services.ops.auth import Principal


@dataclass(frozen=True)
class Where:
    """Where a request came from: address, method and path (``CLI`` for the command line)."""

    address: str | None
    method: str
    path: str


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, default=str, ensure_ascii=False)


async def record(
    conn: asyncpg.Connection,
    principal: Principal | None,
    address: str | None,
    method: str,
    path: str,
    action: str,
    target: str | None,
    outcome: str,
    status: int,
    before: Any = None,
    after: Any = None,
) -> None:
    """One audit row (on ``conn``: inside the caller's transaction when it has one)."""
    await conn.execute(
        "INSERT INTO audit_log (actor, token_id, role, address, method, path, action, target, "
        "outcome, status, before, after) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb)",
        principal.name if principal else None,
        principal.token_id if principal else None,
        principal.role if principal else None,
        address,
        method,
        path[:2048],
        action,
        target,
        outcome,
        status,
        _json(before),
        _json(after),
    )


Recorder = Callable[["asyncpg.Connection", Any, Any], Awaitable[None]]
"""Writes a change's audit row on the writer's connection: ``(conn, before, after)``."""


def _dump(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump is not None else value


def in_transaction(
    principal: Principal | None, where: Where, action: str, target: str, status: int
) -> Recorder:
    """The :data:`Recorder` a writer calls inside its transaction; ``{id}`` in ``target`` is
    the written object's id (``after``'s, else ``before``'s), known only once written."""

    async def recorder(conn: asyncpg.Connection, before: Any, after: Any) -> None:
        obj = after if after is not None else before
        await record(
            conn,
            principal,
            where.address,
            where.method,
            where.path,
            action,
            target.replace("{id}", str(getattr(obj, "id", ""))),
            "ok",
            status,
            before=_dump(before),
            after=_dump(after),
        )

    return recorder


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def query(pool: asyncpg.Pool, f: AuditFilter) -> list[AuditRow]:
    """Audit rows, newest first, filtered (all parameters bound: no text is interpreted)."""
    where: list[str] = []
    args: list[Any] = []

    def add(sql: str, value: str | datetime) -> None:
        args.append(value)
        where.append(sql.format(n=len(args)))

    if f.actor is not None:
        add("actor = ${n}", f.actor)
    if f.action is not None:
        add("action = ${n}", f.action)
    if f.target is not None:
        add("target = ${n}", f.target)
    if f.since is not None:
        add("at >= ${n}", f.since)
    if f.until is not None:
        add("at < ${n}", f.until)
    args.append(f.limit)
    sql = (
        "SELECT id, at, actor, token_id, role, address, method, path, action, target, "
        "outcome, status, before, after FROM audit_log "
        + (f"WHERE {' AND '.join(where)} " if where else "")
        + f"ORDER BY at DESC, id DESC LIMIT ${len(args)}"
    )
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql, *args)
    return [
        AuditRow(**{**dict(r), "before": _decode(r["before"]), "after": _decode(r["after"])})
        for r in rows
    ]
