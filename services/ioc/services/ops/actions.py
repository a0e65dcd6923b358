"""Operators' actions on an incident: acknowledge, assign, comment, resolve.

The incident agent (:mod:`ioc.streams.incidents`) is the only writer of incident rows, so an
action is a command on the device-events stream
(:func:`ioc.services.incidents.send_command`): every change is an incident event on Kafka,
ordered with the device transitions of the same root cause. The service checks what it can
before sending (unknown incident: 404; resolved: 409; acknowledged twice: 409 naming who),
then waits a few seconds for the agent's step to appear in ``incident_events`` and answers
the updated incident; if the agent is slower, the command (202; the agent still applies it).

Reopening rule: **resolved incidents are never reopened: a recurrence opens a new
incident.** An action on a resolved incident is refused with 409; the agent refuses it too.

Concurrent actions on one incident are serialised by a transaction-scoped advisory lock held
from the check to the agent's answer, so of two simultaneous acknowledgements one succeeds
and the other is told who acknowledged first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ioc.contract.events import CommandAction
from ioc.services.ops import audit
from ioc.services.ops.auth import Principal, require
from ioc.services.ops.common import Conflict, Invalid, OpsContext, OpsError, Unavailable
from ioc.services.ops.models import CommandAccepted, IncidentDetail, IncidentSummary
from ioc.services.ops.queries import get_incident, incident_summary

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

APPLY_WAIT_S = 5.0
"""How long an action waits for the incident agent's step before answering 202."""
POLL_S = 0.1
SEND_TIMEOUT_S = 15.0
LOCK_TIMEOUT = "15s"

REOPENING_RULE = "resolved incidents are never reopened: a recurrence opens a new incident"

_EVENT_OF: dict[str, str] = {
    "acknowledge": "acknowledged",
    "assign": "assigned",
    "comment": "commented",
    "resolve": "resolved",
}


def _check_request(action: CommandAction, note: str, assignee: str | None) -> None:
    if action not in _EVENT_OF:
        raise Invalid(f"unknown action {action!r}; one of {', '.join(_EVENT_OF)}")
    if action == "resolve" and not note.strip():
        raise Invalid("resolving by hand needs a reason (note)")
    if action == "comment" and not note.strip():
        raise Invalid("a comment needs text (note)")
    if action == "assign" and not (assignee and assignee.strip()):
        raise Invalid("assign needs an assignee")


def _refuse_stale(summary: IncidentSummary, action: CommandAction) -> None:
    if summary.status == "resolved":
        at = f" at {summary.resolved_at:%Y-%m-%d %H:%M:%S} UTC" if summary.resolved_at else ""
        raise Conflict(f"incident {summary.id} was resolved{at}; {REOPENING_RULE}")
    if action == "acknowledge" and summary.status == "acknowledged":
        at = (
            f" at {summary.acknowledged_at:%Y-%m-%d %H:%M:%S} UTC"
            if summary.acknowledged_at
            else ""
        )
        raise Conflict(
            f"incident {summary.id} was already acknowledged by {summary.acknowledged_by}{at}"
        )


async def _send(
    ctx: OpsContext,
    incident_id: int,
    action: CommandAction,
    actor: str,
    note: str,
    assignee: str | None,
) -> int:
    """Put the command on the stream; its ``at_ms``. Broker or database away: Unavailable."""
    from ioc.errors import IocError
    from ioc.services.incidents import IncidentCommandError, send_command

    try:
        command = await asyncio.wait_for(
            send_command(ctx.settings, ctx.topology, incident_id, action, actor, note, assignee),
            SEND_TIMEOUT_S,
        )
    except IncidentCommandError as exc:
        raise Conflict(str(exc)) from None
    except (TimeoutError, OSError, IocError) as exc:
        raise Unavailable(f"cannot send the command to Kafka: {exc or 'timed out'}") from None
    except Exception as exc:  # aiokafka's errors (KafkaError and kin): the broker is away
        if type(exc).__module__.startswith("aiokafka"):
            raise Unavailable(f"cannot send the command to Kafka: {exc}") from None
        raise
    return command.at_ms


async def _wait_applied(
    conn: asyncpg.Connection,
    incident_id: int,
    after_seq: int,
    event: str,
    actor: str,
    wait_s: float,
) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        found = await conn.fetchval(
            "SELECT seq FROM incident_events WHERE incident_id = $1 AND seq > $2 "
            "AND event = $3 AND actor = $4 LIMIT 1",
            incident_id,
            after_seq,
            event,
            actor,
        )
        if found is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_S)


async def _silence_now(ctx: OpsContext, incident_id: int) -> None:
    """Silence the acknowledged incident's alerts at once; if Alertmanager is away (or the
    silencer module is missing) the background Silencer retries, the request still succeeds."""
    try:
        from ioc.services.ops.silencer import silence_incident_now

        await silence_incident_now(ctx, incident_id)
    except (ImportError, OpsError) as exc:
        log.warning(
            "incident %d: silence deferred to the background silencer (%s)", incident_id, exc
        )
    except Exception as exc:
        log.warning("incident %d: silencing failed, the silencer retries (%s)", incident_id, exc)


async def act(
    ctx: OpsContext,
    principal: Principal,
    incident_id: int,
    action: CommandAction,
    note: str = "",
    assignee: str | None = None,
    *,
    where: audit.Where | None = None,
    wait_s: float = APPLY_WAIT_S,
) -> IncidentDetail | CommandAccepted:
    """Apply an operator's action through the incident agent and return the updated
    incident, or the :class:`CommandAccepted` (202) if the agent did not apply it within
    ``wait_s``.
    Refusals (403, 404, 409, 422) and outcomes are audited."""
    where = where or audit.Where(None, "POST", f"/api/v1/incidents/{incident_id}/{action}")
    target = f"incident:{incident_id}"
    before: IncidentSummary | None = None
    try:
        require(principal, "operator")
        _check_request(action, note, assignee)
        async with ctx.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            try:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('ioc-ops:' || current_schema()), "
                    "($1 % 2147483647)::int)",
                    incident_id,
                )
            except Exception as exc:
                if type(exc).__name__ == "LockNotAvailableError":
                    raise Conflict(
                        f"another action on incident {incident_id} is in progress; retry"
                    ) from None
                raise
            before = await incident_summary(conn, ctx.topology, incident_id, principal)
            _refuse_stale(before, action)
            last_seq = await conn.fetchval(
                "SELECT coalesce(max(seq), 0) FROM incident_events WHERE incident_id = $1",
                incident_id,
            )
            at_ms = await _send(ctx, incident_id, action, principal.name, note, assignee)
            applied = await _wait_applied(
                conn, incident_id, last_seq, _EVENT_OF[action], principal.name, wait_s
            )
    except OpsError as exc:
        await _audit(ctx, principal, where, action, target, "refused", exc.status, before, str(exc))
        raise
    if action == "acknowledge" and applied:
        await _silence_now(ctx, incident_id)
    if not applied:
        command = CommandAccepted(
            incident_id=incident_id,
            action=action,
            actor=principal.name,
            at_ms=at_ms,
            detail=(
                f"{action} of incident {incident_id} sent; the incident agent has not "
                f"applied it yet (its timeline will show it)"
            ),
        )
        await _audit(ctx, principal, where, action, target, "accepted", 202, before, command)
        return command
    detail = await get_incident(ctx, incident_id, principal)
    after = IncidentSummary(**detail.model_dump(include=set(IncidentSummary.model_fields)))
    await _audit(ctx, principal, where, action, target, "ok", 200, before, after)
    return detail


async def _audit(
    ctx: OpsContext,
    principal: Principal,
    where: audit.Where,
    action: str,
    target: str,
    outcome: str,
    status: int,
    before: IncidentSummary | None,
    after: IncidentSummary | CommandAccepted | str,
) -> None:
    after_json = after if isinstance(after, str) else after.model_dump(mode="json")
    if isinstance(after, str):
        after_json = {"error": after}
    try:
        async with ctx.pool.acquire() as conn:
            await audit.record(
                conn,
                principal,
                where.address,
                where.method,
                where.path,
                f"incident.{action}",
                target,
                outcome,
                status,
                before=before.model_dump(mode="json") if before else None,
                after=after_json,
            )
    except Exception as exc:  # the action happened (or was refused); say so in the log
        log.error("audit row for %s %s not written: %s", action, target, exc)
