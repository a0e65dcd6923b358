"""Batched, idempotent writes to TimescaleDB.

One transaction per batch and feed: the rows go into the raw hypertable (COPY straight in;
if any is stored already, the staging path ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``
instead: see :func:`write_batch`; duplicates within a batch are dropped before, by
:class:`~ioc.streams.rows.Batch`), the newest facts per device are merged into
``device_last_seen`` and the touched minutes marked dirty for the rollups. Kafka offsets are
acknowledged only after this commits, so a replay or restart neither loses nor double-counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from ioc.contract import schemas as s
from ioc.contract.raw import RAW_COLUMNS
from ioc.contract.tables import DEVICE_LAST_SEEN, RAW, ROLLUP_DIRTY
from ioc.db import create_pool
from ioc.db.errors import PERMANENT, TRANSIENT, classify
from ioc.streams.rows import Batch, ts_of

log = logging.getLogger(__name__)


def stage_of(feed: str) -> str:
    """The per-connection staging table of a feed's replay path."""
    return f"stage_{feed}"


_LAST_SEEN_SQL = f"""
INSERT INTO {DEVICE_LAST_SEEN} AS d (device_id, device_class, last_ts, last_seq, probe_ts,
    probe_reachable, quality_ts, fps, frozen, rtt_ms, jitter_ms, loss_pct, sessions_active,
    probe_ok_ts, probe_fail_ts)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[],
    $5::timestamptz[], $6::boolean[], $7::timestamptz[], $8::real[], $9::boolean[],
    $10::real[], $11::real[], $12::real[], $13::integer[], $14::timestamptz[],
    $15::timestamptz[])
ON CONFLICT (device_id) DO UPDATE SET
    last_ts = GREATEST(d.last_ts, EXCLUDED.last_ts),
    last_seq = GREATEST(d.last_seq, EXCLUDED.last_seq),
    probe_reachable = CASE WHEN EXCLUDED.probe_ts >= d.probe_ts OR d.probe_ts IS NULL
        THEN coalesce(EXCLUDED.probe_reachable, d.probe_reachable) ELSE d.probe_reachable END,
    probe_ts = GREATEST(d.probe_ts, EXCLUDED.probe_ts),
    probe_ok_ts = GREATEST(d.probe_ok_ts, EXCLUDED.probe_ok_ts),
    probe_fail_ts = GREATEST(d.probe_fail_ts, EXCLUDED.probe_fail_ts),
    fps = CASE WHEN EXCLUDED.quality_ts >= d.quality_ts OR d.quality_ts IS NULL
        THEN coalesce(EXCLUDED.fps, d.fps) ELSE d.fps END,
    frozen = CASE WHEN EXCLUDED.quality_ts >= d.quality_ts OR d.quality_ts IS NULL
        THEN coalesce(EXCLUDED.frozen, d.frozen) ELSE d.frozen END,
    rtt_ms = CASE WHEN EXCLUDED.quality_ts >= d.quality_ts OR d.quality_ts IS NULL
        THEN coalesce(EXCLUDED.rtt_ms, d.rtt_ms) ELSE d.rtt_ms END,
    jitter_ms = CASE WHEN EXCLUDED.quality_ts >= d.quality_ts OR d.quality_ts IS NULL
        THEN coalesce(EXCLUDED.jitter_ms, d.jitter_ms) ELSE d.jitter_ms END,
    loss_pct = CASE WHEN EXCLUDED.quality_ts >= d.quality_ts OR d.quality_ts IS NULL
        THEN coalesce(EXCLUDED.loss_pct, d.loss_pct) ELSE d.loss_pct END,
    quality_ts = GREATEST(d.quality_ts, EXCLUDED.quality_ts),
    sessions_active = CASE WHEN EXCLUDED.last_ts >= d.last_ts OR d.last_ts IS NULL
        THEN coalesce(EXCLUDED.sessions_active, d.sessions_active) ELSE d.sessions_active END,
    updated_at = now()
"""


async def _prepare_connection(conn: asyncpg.Connection) -> None:
    """Per-connection staging tables (temporary: no WAL, emptied at every commit)."""
    for feed, table in RAW.items():
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage_of(feed)} "
            f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )


async def open_pool(dsn: str, schema: str, size: int = 10) -> asyncpg.Pool:
    """Enough connections for the rounds in flight (one per feed each) and the timers."""
    return await create_pool(
        dsn,
        min_size=1,
        max_size=size,
        init=_prepare_connection,
        server_settings={"search_path": f"{schema},public", "application_name": "ioc-worker"},
    )


WRITE_ATTEMPT_TIMEOUT_S = 60.0
"""One write attempt's bound (a batch takes well under a second, seconds on a slow database)."""


async def write_batch(pool: asyncpg.Pool, batch: Batch) -> int:
    """Write one batch atomically; returns how many raw rows were new.

    Optimistic: COPY straight into the hypertable inside a savepoint. Rows already stored
    (a replay after a crash or a rebalance, a duplicate sent in a later batch) make the COPY
    fail on the key; then the savepoint is rolled back and the batch takes the staging path,
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``. The common case costs the database one
    pass over the rows instead of three (COPY to stage, read it back, speculative insert).
    """
    feed = batch.feed
    columns = RAW_COLUMNS[feed]
    # Same lock order in every transaction (by device): concurrent rounds cannot deadlock.
    last = [batch.last_seen[d].row() for d in sorted(batch.last_seen)]
    async with pool.acquire() as conn, conn.transaction():
        try:
            async with conn.transaction():  # savepoint
                await conn.copy_records_to_table(RAW[feed], records=batch.rows, columns=columns)
            inserted = len(batch.rows)
        except asyncpg.UniqueViolationError:
            inserted = await _insert_new_rows(conn, batch)
        if last:
            await conn.execute(_LAST_SEEN_SQL, *[list(col) for col in zip(*last, strict=True)])
        await conn.execute(
            f"INSERT INTO {ROLLUP_DIRTY} (feed, bucket) SELECT $1, unnest($2::timestamptz[]) "
            f"ON CONFLICT DO NOTHING",
            feed,
            [ts_of(m) for m in sorted(batch.minutes)],
        )
    return inserted


async def _insert_new_rows(conn: asyncpg.Connection, batch: Batch) -> int:
    """The replay path: stage the batch, insert only the rows not stored yet."""
    columns = RAW_COLUMNS[batch.feed]
    col_list = ", ".join(columns)
    stage = stage_of(batch.feed)
    await conn.execute(f"TRUNCATE {stage}")
    await conn.copy_records_to_table(stage, records=batch.rows, columns=columns)
    status = await conn.execute(
        f"INSERT INTO {RAW[batch.feed]} ({col_list}) SELECT {col_list} FROM {stage} "
        f"ON CONFLICT DO NOTHING"
    )
    return int(status.rsplit(" ", 1)[-1])


def rejection_detail(exc: BaseException) -> str:
    """What the database (or the driver) said about a record, for its dead letter."""
    if isinstance(exc, asyncpg.PostgresError):
        message = str(getattr(exc, "message", "") or exc)
        return f"the database refused the record: SQLSTATE {exc.sqlstate}: {message}"[:500]
    return f"the driver could not encode the record ({type(exc).__name__}: {exc})"[:500]


class PermanentWriteError(Exception):
    """A batch the database will never accept as it is; :func:`store` bisects it."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(rejection_detail(cause))
        self.cause = cause


async def healthy(pool: asyncpg.Pool, timeout: float = 5.0) -> bool:
    """``SELECT 1``: tells an unclassified error about a record from an outage."""
    try:
        async with asyncio.timeout(timeout):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        return True
    except Exception:
        return False


async def write_with_retry(
    pool: asyncpg.Pool,
    batch: Batch,
    on_error: Callable[[BaseException, int], None] | None = None,
    max_delay: float = 10.0,
) -> int:
    """Retry transient failures until the database accepts the batch: never drop it, never
    crash-loop. A permanent failure (the data itself) raises :class:`PermanentWriteError`.
    An unclassified error is permanent only while the database answers ``SELECT 1``, so an
    outage that shows itself in an unexpected way never turns into mass dead-lettering."""
    attempt = 0
    delay = 0.2
    while True:
        try:
            # A write that neither succeeds nor fails (a dead peer's socket, a connection
            # left mid-COPY by a failover) must not hold the feed forever: bounded, it
            # becomes a transient error and is retried on fresh connections.
            async with asyncio.timeout(WRITE_ATTEMPT_TIMEOUT_S):
                return await write_batch(pool, batch)
        except Exception as exc:
            verdict = classify(exc)
            if verdict is None:
                verdict = PERMANENT if await healthy(pool) else TRANSIENT
            if verdict == PERMANENT:
                raise PermanentWriteError(exc) from exc
            if isinstance(
                exc, asyncpg.ReadOnlySQLTransactionError | asyncpg.InterfaceError | TimeoutError
            ):
                # A demoted primary (a switchover) keeps its connections open but refuses
                # writes; a connection broken mid-operation ("another operation is in
                # progress") or timed out is unusable: new connections go where the
                # multi-host DSN finds the primary.
                await pool.expire_connections()
            attempt += 1
            if on_error is not None:
                on_error(exc, attempt)
            log.warning(
                "write of %d %s rows failed (attempt %d, retry in %.1f s): %s",
                len(batch.rows),
                batch.feed,
                attempt,
                delay,
                exc,
            )
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)


@dataclass
class Stored:
    """What :func:`store` did with a feed's valid messages."""

    inserted: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index, database's reason)


async def store(
    pool: asyncpg.Pool,
    feed: str,
    messages: Sequence[s.Message],
    device_class: str,
    batch: Batch | None = None,
    on_error: Callable[[BaseException, int], None] | None = None,
) -> Stored:
    """Write ``messages`` (one transaction when all is well); on a permanent error, bisect
    the batch until the offending records are alone, store the rest, and return those
    records with the database's reason. ``batch`` is the prebuilt batch of all of them."""
    result = Stored()

    async def write(lo: int, hi: int, prebuilt: Batch | None) -> None:
        try:
            part = (
                prebuilt
                if prebuilt is not None
                else Batch.build(feed, list(messages[lo:hi]), device_class)
            )
            result.inserted += await write_with_retry(pool, part, on_error)
            return
        except PermanentWriteError as exc:
            problem: BaseException = exc.cause
        except Exception as exc:  # a row that cannot even be built is as permanent
            problem = exc
        if hi - lo == 1:
            log.warning("dead-lettering a %s record the database refused: %s", feed, problem)
            result.rejected.append((lo, rejection_detail(problem)))
            return
        mid = (lo + hi) // 2
        await write(lo, mid, None)
        await write(mid, hi, None)

    if messages:
        await write(0, len(messages), batch)
    return result


def elapsed_since(start: float) -> float:
    return time.perf_counter() - start
