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

Concurrent actions on one incident are serialised in the process (one process serves the
API): of two simultaneous acknowledgements one is sent and the other is told who acknowledged
first. No database connection is held while the command travels: the checks read on one
connection, which goes back to the pool before the command is sent and the agent awaited. An
acknowledgement the agent has not applied yet (202) stays *pending* for
:data:`PENDING_ACK_S`: another acknowledgement meanwhile is refused (409, naming who), since
the incidents table does not show the first one yet.

Once the command is on the stream, the action is audited whatever happens next: ``ok`` if
the agent applied it, else ``accepted`` (202), also when reading the result failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ioc.contract.events import CommandAction
from ioc.services.ops import audit
from ioc.services.ops.auth import Principal, require
from ioc.services.ops.common import Conflict, Invalid, OpsContext, OpsError, Unavailable
from ioc.services.ops.models import CommandAccepted, IncidentDetail, IncidentSummary
from ioc.services.ops.queries import get_incident, incident_summary

log = logging.getLogger(__name__)

APPLY_WAIT_S = 5.0
"""How long an action waits for the incident agent's step before answering 202."""
POLL_S = 0.1
SEND_TIMEOUT_S = 15.0
LOCK_WAIT_S = 15.0
"""How long an action waits for another action on the same incident before a 409."""
PENDING_ACK_S = 60.0
"""How long an acknowledgement answered 202 blocks another one (unless applied earlier)."""

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
    root_device: str,
) -> int:
    """Put the command on the stream; its ``at_ms``. Broker or database away: Unavailable."""
    from ioc.errors import IocError
    from ioc.services.incidents import IncidentCommandError, send_command

    try:
        command = await asyncio.wait_for(
            send_command(
                ctx.settings,
                ctx.topology,
                incident_id,
                action,
                actor,
                note,
                assignee,
                root_device=root_device,
                producer=ctx.commands,
            ),
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
    ctx: OpsContext,
    incident_id: int,
    after_seq: int,
    event: str,
    actor: str,
    at_ms: int,
    wait_s: float,
) -> bool:
    """Whether the agent applied *this* command within ``wait_s``: its step (same event and
    actor, and the command's own time, which the agent copies) after ``after_seq``. Each
    poll borrows a connection for one query only."""
    deadline = time.monotonic() + wait_s
    while True:
        found = await ctx.pool.fetchval(
            "SELECT seq FROM incident_events WHERE incident_id = $1 AND seq > $2 "
            "AND event = $3 AND actor = $4 "
            "AND round(extract(epoch FROM at) * 1000)::bigint = $5::bigint LIMIT 1",
            incident_id,
            after_seq,
            event,
            actor,
            at_ms,
        )
        if found is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_S)


# --- in-process coordination (one process serves the API) ----------------------------------

_Key = tuple[str, int]
"""(schema, incident id): a process serving two namespaces (tests) keeps them apart."""


@dataclass
class _Pending:
    actor: str
    sent: float
    until: float


_LOCKS: dict[_Key, asyncio.Lock] = {}
_USERS: dict[_Key, int] = {}
_PENDING_ACKS: dict[_Key, _Pending] = {}


@asynccontextmanager
async def _serialised(key: _Key) -> AsyncIterator[None]:
    """Hold the incident's in-process lock; :class:`Conflict` after :data:`LOCK_WAIT_S`."""
    lock = _LOCKS.setdefault(key, asyncio.Lock())
    _USERS[key] = _USERS.get(key, 0) + 1
    try:
        try:
            async with asyncio.timeout(LOCK_WAIT_S):
                await lock.acquire()
        except TimeoutError:
            raise Conflict(f"another action on incident {key[1]} is in progress; retry") from None
        try:
            yield
        finally:
            lock.release()
    finally:
        _USERS[key] -= 1
        if _USERS[key] == 0:
            del _USERS[key]
            _LOCKS.pop(key, None)


def _refuse_pending_ack(key: _Key, action: CommandAction) -> None:
    """409 while an acknowledgement answered 202 may still be applied."""
    pending = _PENDING_ACKS.get(key)
    if pending is None:
        return
    now = time.monotonic()
    if now >= pending.until:
        del _PENDING_ACKS[key]
        return
    if action == "acknowledge":
        raise Conflict(
            f"incident {key[1]}: acknowledgement by {pending.actor} pending "
            f"(sent {int(now - pending.sent)} s ago, not applied yet by the incident agent)"
        )


def _mark_pending_ack(key: _Key, actor: str) -> None:
    now = time.monotonic()
    for stale in [k for k, p in _PENDING_ACKS.items() if p.until <= now]:
        del _PENDING_ACKS[stale]
    _PENDING_ACKS[key] = _Pending(actor, now, now + PENDING_ACK_S)


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
    key: _Key = (ctx.settings.db_schema, incident_id)
    before: IncidentSummary | None = None
    try:
        require(principal, "operator")
        _check_request(action, note, assignee)
        async with _serialised(key):
            async with ctx.pool.acquire() as conn:
                before = await incident_summary(conn, ctx.topology, incident_id, principal)
                if before.status != "open":
                    _PENDING_ACKS.pop(key, None)  # the acknowledgement was applied
                _refuse_stale(before, action)
                last_seq = await conn.fetchval(
                    "SELECT coalesce(max(seq), 0) FROM incident_events WHERE incident_id = $1",
                    incident_id,
                )
            _refuse_pending_ack(key, action)
            at_ms = await _send(
                ctx, incident_id, action, principal.name, note, assignee, before.root_device
            )
            # Sent: from here on the action is audited whatever happens.
            applied = False
            try:
                applied = await _wait_applied(
                    ctx, incident_id, last_seq, _EVENT_OF[action], principal.name, at_ms, wait_s
                )
            except Exception as exc:
                log.warning(
                    "incident %d: %s sent, its application not confirmed: %s",
                    incident_id,
                    action,
                    exc,
                )
            except asyncio.CancelledError:
                await _accepted(ctx, principal, where, action, incident_id, before, at_ms)
                raise
            if action == "acknowledge":
                if applied:
                    _PENDING_ACKS.pop(key, None)
                else:
                    _mark_pending_ack(key, principal.name)
    except OpsError as exc:
        await _audit(ctx, principal, where, action, target, "refused", exc.status, before, str(exc))
        raise
    if not applied:
        return await _accepted(ctx, principal, where, action, incident_id, before, at_ms)
    if action == "acknowledge":
        await _silence_now(ctx, incident_id)
    try:
        detail = await get_incident(ctx, incident_id, principal)
    except Exception as exc:
        log.warning("incident %d: %s applied, the incident not read: %s", incident_id, action, exc)
        return await _accepted(ctx, principal, where, action, incident_id, before, at_ms)
    after = IncidentSummary(**detail.model_dump(include=set(IncidentSummary.model_fields)))
    await _audit(ctx, principal, where, action, target, "ok", 200, before, after)
    return detail


async def _accepted(
    ctx: OpsContext,
    principal: Principal,
    where: audit.Where,
    action: CommandAction,
    incident_id: int,
    before: IncidentSummary | None,
    at_ms: int,
) -> CommandAccepted:
    """The 202 answer of a sent command, audited as ``accepted``."""
    target = f"incident:{incident_id}"
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
