"""The work every benchmark peer does, so that each does what the product does and no less.

Per record: the contract's checks and decoder (:func:`ioc.contract.schemas.decode`, the
topology's device classes, the same dead-letter reasons), invalid ones as
``ioc.deadletter.v1`` records for a DLQ topic, valid ones as the product's raw rows
(:func:`ioc.streams.rows.raw_row`) for the same raw hypertables (``ON CONFLICT DO NOTHING``),
and the 1-minute rollup per device with the product's own columns: the expressions of the
feed's ``FeedSpec.device_rollup``, evaluated per touched device-minute in an in-memory
SQLite over the rows seen so far, upserted into the product's ``rollup_<feed>_1m`` table.

Only the contract and the standard library are imported (and psycopg2, which the peers'
virtualenvs have, by :func:`peer_start` alone), so the peers' own virtualenvs (Quix
Streams, Pathway) can use it with the project installed without dependencies.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ioc.contract import deadletter, feeds
from ioc.contract import schemas as s
from ioc.contract.raw import RAW_COLUMNS
from ioc.contract.tables import RAW, ROLLUP_DEVICE_1M
from ioc.streams.rows import raw_row, ts_of

_PERCENTILE = re.compile(r"percentile_cont\((0\.\d+)\) WITHIN GROUP \(ORDER BY (\w+)\)")


def _sat(lo: float, hi: float) -> Any:
    def clamp(x: float | None) -> float | None:
        return None if x is None else min(max(x, lo), hi)

    return clamp


def _sat_real(x: float | None) -> float | None:
    if x is None:
        return None
    if abs(x) < 1.1754944e-38:
        return 0.0
    return min(max(x, -3.4e38), 3.4e38)


def _greatest(*args: Any) -> Any:
    """PostgreSQL's ``greatest``: NULLs ignored (SQLite's scalar ``max`` returns NULL)."""
    present = [a for a in args if a is not None]
    return max(present) if present else None


class _Percentile:
    """PostgreSQL's ``percentile_cont`` (linear interpolation) as a SQLite aggregate."""

    fraction = 0.5

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> float | None:
        if not self.values:
            return None
        v = sorted(self.values)
        pos = self.fraction * (len(v) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(v) - 1)
        return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def sqlite_expr(expr: str) -> tuple[str, dict[str, float]]:
    """A rollup expression in SQLite's dialect; the percentile aggregates it needs."""
    needed: dict[str, float] = {}

    def swap(m: re.Match[str]) -> str:
        name = f"pct_{m.group(1).replace('.', '_')}"
        needed[name] = float(m.group(1))
        return f"{name}({m.group(2)})"

    return _PERCENTILE.sub(swap, expr), needed


@dataclass
class Invalid:
    """A record that failed validation, ready for the DLQ topic."""

    key: bytes
    value: bytes


@dataclass
class Batch:
    """What one batch of records becomes: raw rows per feed, rollup rows per feed, DLQs."""

    raw: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    rollup: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    dead: list[Invalid] = field(default_factory=list)
    valid: int = 0


class PeerWork:
    """Validation, raw rows and the device rollup of the product, for one peer process."""

    KEEP_MINUTES = 10
    """Minutes of rows kept for recomputing a device-minute (late rows beyond are rare)."""

    def __init__(self, class_of: dict[str, str]) -> None:
        self.class_of = class_of
        # Pathway calls back from its own threads, one at a time
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.create_function("sat_int4", 1, _sat(-(2**31), 2**31 - 1), deterministic=True)
        self.db.create_function("sat_int8", 1, _sat(-(2**63), 2**63 - 1), deterministic=True)
        self.db.create_function("sat_real", 1, _sat_real, deterministic=True)
        self.db.create_function("greatest", -1, _greatest, deterministic=True)
        self.select: dict[str, str] = {}
        self.insert: dict[str, str] = {}
        self.newest_minute = 0
        for feed in RAW:
            spec = feeds.spec(feed)
            cols = RAW_COLUMNS[feed]
            self.db.execute(  # the raw key: a duplicate counts once, as ON CONFLICT DO NOTHING
                f"CREATE TABLE {feed} (minute INTEGER, {', '.join(cols)}, "
                "UNIQUE (device_id, seq, ts))"
            )
            self.db.execute(f"CREATE INDEX {feed}_dm ON {feed} (device_id, minute)")
            exprs = []
            for a in spec.device_rollup:
                expr, needed = sqlite_expr(a.expr)
                for name, fraction in needed.items():
                    agg = type(name, (_Percentile,), {"fraction": fraction})
                    self.db.create_aggregate(name, 1, agg)
                exprs.append(expr)
            self.select[feed] = (
                f"SELECT minute, device_id, {', '.join(exprs)} FROM {feed} "
                "WHERE device_id = ? AND minute = ? GROUP BY device_id, minute"
            )
            marks = ", ".join("?" * (len(cols) + 1))
            self.insert[feed] = f"INSERT OR IGNORE INTO {feed} VALUES ({marks})"

    def validate(self, feed: str, key: bytes | None, value: bytes | None, now_ms: int) -> Any:
        """The decoded message, or the :class:`ioc.contract.schemas.InvalidMessage`."""
        try:
            data = s.check_record(key, value)
            msg = s.decode(data, feed=feed, key=key, now_ms=now_ms)
            if self.class_of.get(msg.device_id) != s.DEVICE_CLASS_OF_FEED[feed]:
                raise s.InvalidMessage(s.REASON_UNKNOWN_DEVICE, msg.device_id)
        except s.InvalidMessage as exc:
            return exc
        return msg

    def process(
        self, records: Iterable[tuple[str, str, int, int, bytes | None, bytes | None]]
    ) -> Batch:
        """Records as (feed, topic, partition, offset, key, value) -> one :class:`Batch`."""
        now_ms = int(time.time() * 1000)
        batch = Batch()
        touched: dict[str, set[tuple[str, int]]] = {}
        lite: dict[str, list[tuple[Any, ...]]] = {}
        for feed, topic, partition, offset, key, value in records:
            got = self.validate(feed, key, value, now_ms)
            if isinstance(got, s.InvalidMessage):
                letter = deadletter.make(
                    reason=got.reason,
                    detail=got.detail,
                    feed=feed,
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=key,
                    value=value,
                    kafka_timestamp_ms=None,
                    now_ms=now_ms,
                )
                source = deadletter.source_key(topic, partition, offset).encode()
                batch.dead.append(Invalid(source, deadletter.encode(letter)))
                continue
            row = raw_row(got)
            batch.raw.setdefault(feed, []).append(row)
            minute = got.ts_ms // 60_000 * 60_000
            lite.setdefault(feed, []).append((minute, got.ts_ms, *row[1:]))
            touched.setdefault(feed, set()).add((got.device_id, minute))
            batch.valid += 1
        for feed, rows in lite.items():
            self.db.executemany(self.insert[feed], rows)
            self.newest_minute = max(self.newest_minute, max(r[0] for r in rows))
            out = batch.rollup[feed] = []
            for device, minute in sorted(touched[feed]):
                got_row = self.db.execute(self.select[feed], (device, minute)).fetchone()
                out.append((ts_of(got_row[0]), *got_row[1:]))
        self._forget_old()
        return batch

    def _forget_old(self) -> None:
        cut = self.newest_minute - self.KEEP_MINUTES * 60_000
        for feed in RAW:
            self.db.execute(f"DELETE FROM {feed} WHERE minute < ?", (cut,))


def raw_sql(feed: str, style: str = "$") -> str:
    """INSERT of one raw row (``style``: ``$`` for asyncpg, ``%s`` for psycopg2)."""
    cols = RAW_COLUMNS[feed]
    marks = _marks(len(cols), style)
    return f"INSERT INTO {RAW[feed]} ({', '.join(cols)}) VALUES ({marks}) ON CONFLICT DO NOTHING"


def rollup_columns(feed: str) -> list[str]:
    return ["bucket", "device_id", *(a.name for a in feeds.spec(feed).device_rollup)]


def rollup_sql(feed: str, style: str = "$") -> str:
    """Upsert of one device-minute into the product's ``rollup_<feed>_1m`` table."""
    cols = rollup_columns(feed)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[2:])
    return (
        f"INSERT INTO {ROLLUP_DEVICE_1M[feed]} ({', '.join(cols)}) "
        f"VALUES ({_marks(len(cols), style)}) "
        f"ON CONFLICT (device_id, bucket) DO UPDATE SET {updates}"
    )


def _marks(n: int, style: str) -> str:
    return ", ".join(f"${i + 1}" for i in range(n)) if style == "$" else ", ".join(["%s"] * n)


def peer_start(description: str) -> tuple[argparse.Namespace, Any, PeerWork]:
    """The command line every psycopg2 peer takes (Quix Streams, Pathway: bench/baselines.py
    starts them with it), its database connection on the peer's schema, and its work
    over the schema's devices."""
    import psycopg2  # the peers' virtualenvs have it; the product's does not need it

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--prefix", required=True, help="topic prefix of the backlog")
    parser.add_argument("--schema", required=True, help="database schema to write into")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--credentials", required=True, help="the stack's credentials.json")
    parser.add_argument("--port", type=int, default=15432)
    args = parser.parse_args()
    creds = json.loads(Path(args.credentials).read_text())
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=args.port,
        dbname=creds["database"],
        user="ioc_admin",
        password=creds["roles"]["ioc_admin"],
        options=f"-c search_path={args.schema},public",
    )
    with conn.cursor() as cur:
        cur.execute("SELECT id, device_class FROM devices")
        work = PeerWork(dict(cur.fetchall()))
    conn.commit()
    return args, conn, work


def values_sql(sql: str) -> str:
    """An INSERT of one row as psycopg2's execute_values wants it (one ``VALUES %s``)."""
    head, _, tail = sql.partition(" VALUES (")
    return f"{head} VALUES %s {tail.partition(') ')[2]}"
