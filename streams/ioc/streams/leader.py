"""Singleton work per shard (state evaluation, retention): one worker at a time, moved when it
dies, never run twice at once.

Faust's leader is elected in Faust's own consumer group, which has nothing to do with who
owns the feed partitions, and two workers can briefly both believe they lead during a
rebalance. The database decides instead, with two advisory locks keyed by (schema, shard,
job):

- **leadership** is a session-level lock held on a dedicated connection. It is sticky (the
  leader keeps its in-memory state and is the one worker exporting the domain gauges) and is
  released by PostgreSQL the moment the leader's connection closes: a SIGKILLed, crashed or
  partitioned leader loses it, and another worker takes it at its next tick;
- **each round** runs in one transaction that first takes a transaction-level lock. A stale
  leader that has not noticed it lost its session (a half-open connection) cannot overlap a
  round of the new one: its round waits for the lock or skips, and its writes are in the
  transaction that would hold it.

The shard is the scenario's set of top units (ioc.streams.app): a province's scenario is
one shard, and so is the national scenario today, whose leader evaluates all 34 provinces
in one round (docs/scaling.md: that round is what grows with devices). The lock keys
already carry the shard, so one evaluator per province spread over the workers needs no
change here.
"""

from __future__ import annotations

import hashlib
import logging
import time

import asyncpg

from ioc.db import connect

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 5.0
"""How long the leadership check waits for the lock session's answer."""
UNANSWERED_GRACE_S = 60.0
"""How long a lock session may go unanswered (an open connection, no error) before the
leader gives the shard up."""


def lock_key(schema: str, shard: str, job: str) -> int:
    """A stable signed 64-bit advisory-lock key (the same in every worker and release)."""
    digest = hashlib.blake2b(f"ioc:{schema}:{shard}:{job}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class ShardLeader:
    def __init__(
        self, dsn: str, schema: str, shard: str, job: str = "singleton", worker: str = ""
    ) -> None:
        self.dsn = dsn
        self.shard = shard
        self.worker = worker
        self.key = lock_key(schema, shard, job)
        self.round_key = lock_key(schema, shard, f"{job}:round")
        self._conn: asyncpg.Connection | None = None
        self.terms = 0  # how many times this worker became leader (a new term: restore state)
        self._unanswered_since: float | None = None
        """When the lock session's check first went unanswered (None: it answers)."""

    @property
    def is_leader(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> bool:
        """Leader now? Checks the session that holds the lock, or tries to take it."""
        if self._conn is not None:
            try:
                await self._conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S)
                self._unanswered_since = None
                return True
            except (TimeoutError, asyncpg.InterfaceError):
                # No answer is not a lost session: the lock lasts as long as the session,
                # and a worker whose event loop is busy (a national round on saturated
                # cores) misses the answer's deadline too. Dropping the lock then handed
                # the shard over every few minutes, and each new term held new outages
                # for its backlog (bench/national.py, 2026-11-28). After a timeout asyncpg
                # cancels the query, and until then the next check is refused with "another
                # operation is in progress" (InterfaceError): the same. Only a session
                # silent for UNANSWERED_GRACE_S, or closed, is given up.
                now = time.monotonic()
                since = self._unanswered_since = self._unanswered_since or now
                if not self._conn.is_closed() and now - since < UNANSWERED_GRACE_S:
                    log.warning(
                        "%s: the %s lock session did not answer within %.0f s (for %.0f s); "
                        "still leading",
                        self.worker,
                        self.shard,
                        CHECK_TIMEOUT_S,
                        now - since,
                    )
                    return True
                log.warning(
                    "%s lost the %s leadership (its session silent for %.0f s)",
                    self.worker,
                    self.shard,
                    now - since,
                )
                await self._drop()
            except Exception as exc:  # the session, and with it the lock, is gone
                log.warning("%s lost the %s leadership (%r)", self.worker, self.shard, exc)
                await self._drop()
        try:
            conn = await connect(self.dsn)
        except Exception as exc:
            log.debug("no database for the leadership check: %s", exc)
            return False
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key, timeout=5)
        except Exception:
            await conn.close()
            return False
        if not got:
            await conn.close()
            return False
        self._conn = conn
        self.terms += 1
        log.info("%s leads shard %s (term %d)", self.worker, self.shard, self.terms)
        return True

    async def holds_round(self, conn: asyncpg.Connection) -> bool:
        """Inside the round's transaction on ``conn``: take the round lock, or False when
        another worker's round holds the shard (then do nothing)."""
        return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", self.round_key))

    async def _drop(self) -> None:
        self._unanswered_since = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def resign(self) -> None:
        """Give the shard up (a clean stop): the next worker takes it at once."""
        await self._drop()
