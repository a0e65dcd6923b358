"""Storability by construction, proven against the live database.

Every message field is declared with bounds meant to fit the raw column it lands in
(ioc.contract.schemas). These tests hold that promise against the oracle that matters: the
column types of the raw tables as the *live catalog* reports them (pg_attribute/format_type
of the test's own schema), never the bounds the schemas declare. The schemas' bounds only
help to pick candidate values (at, just inside and just beyond every bound).

* every candidate is either refused by the real validation, or it fits its column (checked
  here, independently of the schemas) and lands through the real writer: ``store()``
  rejects nothing; the rollups of the touched minutes and a state evaluation round run;
* rollups saturate instead of failing when valid rows add up beyond a column's range;
* the writer isolates records the database or the driver refuses (bisecting the batch),
  stores the others, and does the same again on a replay (idempotent);
* a transient error (here: a table gone for a moment) is retried, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import math
import re
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec.inspect as mi
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract import schemas as s
from ioc.contract.raw import ENVELOPE, RAW_COLUMNS, column_of
from ioc.contract.tables import RAW, ROLLUP_DEVICE_1M, ROLLUP_DIRTY, ROLLUP_UNIT_1M
from ioc.contract.topology import Topology
from ioc.db import connect
from ioc.db.errors import PERMANENT, TRANSIENT, classify
from ioc.streams.evaluator import Evaluator
from ioc.streams.processor import FeedProcessor
from ioc.streams.rollups import recompute_dirty, recompute_minute
from ioc.streams.rows import minute_of
from ioc.streams.writer import Stored, open_pool, store

SCENARIO = "demo"
EXAMPLES = 400
"""Generated batches (of up to 40 messages) after the explicit ones (~11 s here)."""
STORE_TIMEOUT_S = 60.0
"""store() retries transient errors forever: a permanent one misclassified would hang."""

# --- the oracle: column types from the live catalog ---------------------------------------

CATALOG_SQL = """
SELECT c.relname AS table_name, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS column_type, a.attnotnull AS not_null
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND a.attnum > 0 AND NOT a.attisdropped
"""

_INT_BITS = {"smallint": 16, "integer": 32, "bigint": 64}
FLOAT4_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
"""The largest finite float4, from its bit pattern (not from the schemas)."""
FLOAT4_TINY = struct.unpack("<f", b"\x01\x00\x00\x00")[0]
FLOAT4_OVERFLOW = 2.0**128 - 2.0**103
"""Halfway between FLOAT4_MAX and 2**128: from here a double rounds to an infinite float4."""
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
DATETIME_MIN_MS = (dt.datetime.min.replace(tzinfo=dt.UTC) - _EPOCH) // _MS
DATETIME_MAX_MS = (dt.datetime.max.replace(tzinfo=dt.UTC) - _EPOCH) // _MS
TIMESTAMPTZ = "timestamp with time zone"


@dataclass(frozen=True)
class Column:
    table: str
    name: str
    type: str  # format_type(), e.g. "integer", "real", "timestamp with time zone"
    not_null: bool

    def int_range(self) -> tuple[int, int] | None:
        bits = _INT_BITS.get(self.type)
        return None if bits is None else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)

    def misfit(self, value: object) -> str | None:
        """Why ``value`` cannot be stored in this column as the writer sends it, or None."""
        if value is None:
            return "NULL in a NOT NULL column" if self.not_null else None
        kind = self.type
        limits = self.int_range()
        if limits is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                return f"{type(value).__name__} in an {kind} column"
            lo, hi = limits
            return None if lo <= value <= hi else f"{value} outside [{lo}, {hi}] of {kind}"
        if kind in ("real", "double precision"):
            if not isinstance(value, float):
                return f"{type(value).__name__} in a {kind} column"
            if not math.isfinite(value):
                # PostgreSQL would take them, but no measurement is infinite, and the rollups
                # would carry them on (JSON cannot even express them).
                return f"{value} in a {kind} column (finite values only)"
            if kind == "double precision":
                return None
            try:
                struct.pack("<f", value)  # rounds to float4 as the driver does; inf = overflow
            except OverflowError:
                return f"{value!r} beyond float4 (max {FLOAT4_MAX!r})"
            return None
        if kind == "text" or kind.startswith("character varying"):
            if not isinstance(value, str):
                return f"{type(value).__name__} in a {kind} column"
            if "\x00" in value:
                return "NUL in text (PostgreSQL refuses it)"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"not encodable as UTF-8 ({exc.reason})"
            width = re.fullmatch(r"character varying\((\d+)\)", kind)
            if width and len(value) > int(width[1]):
                return f"{len(value)} characters > {kind}"
            return None
        if kind == "boolean":
            return None if isinstance(value, bool) else f"{type(value).__name__} in boolean"
        if kind == TIMESTAMPTZ:
            if not isinstance(value, dt.datetime) or value.tzinfo is None:
                return f"{type(value).__name__} in {kind}"
            return None  # every aware Python datetime is inside PostgreSQL's range
        raise AssertionError(f"{self.table}.{self.name}: no oracle for column type {kind!r}")

    def as_stored(self, value: object) -> object:
        """What reading ``value`` back from this column gives (float4 rounds)."""
        if self.type == "real" and isinstance(value, float):
            return struct.unpack("<f", struct.pack("<f", value))[0]
        return value


Catalog = dict[str, dict[str, Column]]  # table -> column -> Column


async def read_catalog(conn: asyncpg.Connection, schema: str) -> Catalog:
    catalog: Catalog = defaultdict(dict)
    for r in await conn.fetch(CATALOG_SQL, schema, list(RAW.values())):
        catalog[r["table_name"]][r["column_name"]] = Column(
            r["table_name"], r["column_name"], r["column_type"], r["not_null"]
        )
    assert set(catalog) == set(RAW.values()), f"raw tables missing from {schema}: {catalog}"
    return dict(catalog)


def as_timestamp(ts_ms: int) -> dt.datetime | None:
    """The ts column's value for an event time, or None beyond Python's datetime."""
    try:
        return _EPOCH + dt.timedelta(milliseconds=ts_ms)
    except OverflowError:
        return None


def column_name(kind: type[s.Message], field_name: str) -> str | None:
    """The raw column a message field lands in (the contract's rename rule)."""
    if field_name == "v":
        return None  # the schema version is checked, not stored
    return column_of(kind, field_name)


def column_value(field_name: str, value: object) -> object:
    if field_name == "ts_ms":
        assert isinstance(value, int)
        return as_timestamp(value)
    return value


# --- the fields of every message kind, from msgspec's type info ---------------------------


@dataclass(frozen=True)
class FieldSpec:
    kind: str
    name: str
    base: mi.Type  # IntType, FloatType, StrType, BoolType or LiteralType (None stripped)
    column: Column | None


def _unwrap(t: mi.Type) -> mi.Type:
    """The field's value type, without its Meta and without ``| None``."""
    if isinstance(t, mi.Metadata):
        return _unwrap(t.type)
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        assert len(members) == 1, f"unexpected union {t}"
        return _unwrap(members[0])
    assert isinstance(t, mi.IntType | mi.FloatType | mi.StrType | mi.BoolType | mi.LiteralType), t
    return t


def field_specs(catalog: Catalog) -> dict[str, list[FieldSpec]]:
    """Every field of every kind with the catalog column it lands in (None: not stored)."""
    for feed, columns in RAW_COLUMNS.items():
        missing = set(columns) - set(catalog[RAW[feed]])
        assert not missing, f"the writer copies into {RAW[feed]} columns it lacks: {missing}"
    specs: dict[str, list[FieldSpec]] = {}
    for kind_name, kind in s.TYPE_OF_KIND.items():
        info = mi.type_info(kind)
        assert isinstance(info, mi.StructType)
        table = RAW[s.FEED_OF_KIND[kind]]
        specs[kind_name] = []
        for f in info.fields:
            name = column_name(kind, f.name)
            column = None
            if name is not None:
                assert name in RAW_COLUMNS[s.FEED_OF_KIND[kind]], (kind_name, f.name, name)
                assert name in catalog[table], f"{kind_name}.{f.name}: no {table}.{name} column"
                column = catalog[table][name]
            specs[kind_name].append(FieldSpec(kind_name, f.name, _unwrap(f.type), column))
    for feed, columns in RAW_COLUMNS.items():
        fed = {"kind"} | {
            p.column.name
            for kind, kind_specs in specs.items()
            if s.FEED_OF_KIND[s.TYPE_OF_KIND[kind]] == feed
            for p in kind_specs
            if p.column is not None
        }
        assert fed == set(columns), f"{feed}: columns no field feeds {set(columns) - fed}"
    return specs


# --- candidate values, as JSON fragments ---------------------------------------------------


@dataclass(frozen=True)
class Rel:
    """An event time relative to the validation's now (the plausibility window moves)."""

    offset_ms: int


Frag = bytes | Rel
"""A field's JSON text; ``b""`` leaves the field out of the document."""
Candidate = tuple[str, dict[str, Frag]]  # (kind, field -> fragment): one message


def jint(x: int) -> bytes:
    return str(x).encode()


def jfloat(x: float) -> bytes:
    assert math.isfinite(x)
    return repr(x).encode()


def jstr(text: str) -> bytes:
    """Escaped JSON: NUL and lone surrogates become \\u escapes."""
    return json.dumps(text).encode()


def jraw(text: str) -> bytes:
    """Unescaped UTF-8 JSON (lone surrogates as their invalid 3-byte sequences)."""
    return json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")


VIETNAMESE = "Bệnh viện Đa khoa tỉnh Yên Bái \u2013 Nguyễn Thị Minh Khai, phường Đồng Tâm"
EMOJI = "📹🚑😀🇻🇳"
PATTERN_EXAMPLES: dict[str, tuple[str, str]] = {
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$": ("0000-01-01", "9999-12-31"),
}
"""A lowest and a highest valid value for each text pattern other than the storable-text
rule (whose values the generic candidates already cover): a field with a pattern must be
probed with values it accepts too. A new pattern in the contract needs its examples here."""


def pattern_of(t: mi.StrType) -> str | None:
    """The field's own pattern, None for plain storable text."""
    return None if t.pattern in (None, s.STORABLE_TEXT) else t.pattern


TYPE_CONFUSION: list[Frag] = [b"null", b'"1"', b"true", b"[]", b"{}", b""]
HUGE_INTS = [2**63, -(2**63) - 1, 2**64, 2**70, -(2**70), 10**30, -(10**30)]
HOSTILE_FLOATS: list[Frag] = [
    b"1e39",
    b"-1e39",
    b"1e400",
    b"-1e400",
    b"1e309",
    b"-0.0",
    b"-0",
    b"0.1e-400",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"99999999999999999999999999",
    b"1E2",
    jfloat(5e-324),
    jfloat(1e-46),
    jfloat(FLOAT4_TINY),
    jfloat(1.7976931348623157e308),
    jfloat(-1.7976931348623157e308),
]
HOSTILE_TEXT: list[Frag] = [
    jstr(""),
    jstr("\x00"),
    jstr("a\x00b"),
    jstr("\ud800"),
    jstr("\udfff"),
    jstr("a\udc80b"),
    jraw("a\ud800b"),  # a surrogate encoded as UTF-8 bytes (CESU-8)
    jstr(EMOJI),  # surrogate pairs as escapes
    jraw(EMOJI),
    jstr(VIETNAMESE),
    jraw(VIETNAMESE),
    jraw("e\u0301" * 20),  # combining marks
    jraw("\u2028\u2029\ufeff\uffff\U0010ffff\u202e"),
    jstr("\x01\x1f\x7f\r\n\t"),
    jstr("' OR 1=1; --"),
    jstr('\\"'),
    b'"\xff"',
    b'"\xc3\x28"',
    b'"\xc0\x80"',  # overlong NUL
    b'"\xf4\x90\x80\x80"',  # beyond U+10FFFF
    b'"a\x00b"',  # raw NUL: not JSON
    jstr("x" * 60_000),  # long, under the message limit
    jraw(EMOJI[0] * 16_000),  # 64,000 bytes of 4-byte characters
    jstr("x" * 70_000),  # over the 64 KiB message limit
]


def _edges(t: mi.IntType | mi.FloatType) -> list[int | float]:
    return [b for b in (t.ge, t.le, t.gt, t.lt) if b is not None]


def column_int_edges(column: Column | None, name: str) -> list[int]:
    if column is None:
        return []
    limits = column.int_range()
    if limits is not None:
        return list(limits)
    if column.type == TIMESTAMPTZ and name == "ts_ms":
        return [DATETIME_MIN_MS, DATETIME_MAX_MS]
    return []


def column_float_edges(column: Column | None) -> list[float]:
    if column is None:
        return []
    if column.type == "real":
        edges = [FLOAT4_MAX, 3.4028235e38, FLOAT4_OVERFLOW, 2.0**128]
        edges.append(math.nextafter(FLOAT4_OVERFLOW, 0.0))
        return edges + [-e for e in edges]
    if column.type == "double precision":
        return [1.7976931348623157e308, -1.7976931348623157e308]
    return []


def boundary_frags(spec: FieldSpec, device_ids: Sequence[str]) -> list[Frag]:
    """At, just inside and just beyond every bound of the schema and of the column type,
    plus hostile values for the field's type."""
    t = spec.base
    out: list[Frag] = list(TYPE_CONFUSION)
    if isinstance(t, mi.IntType):
        for e in [*_edges(t), *column_int_edges(spec.column, spec.name)]:
            assert isinstance(e, int)
            out += [jint(e - 1), jint(e), jint(e + 1)]
        out += [jint(x) for x in HUGE_INTS] + [b"1.0", b"1e3", b"-0", b"0"]
        if spec.name == "ts_ms":  # the plausibility window of decode()
            for edge in (-s.MAX_PAST_MS, s.MAX_FUTURE_MS):
                out += [Rel(edge - 1), Rel(edge), Rel(edge + 1)]
            out.append(Rel(0))
    elif isinstance(t, mi.FloatType):
        for e in [*_edges(t), *column_float_edges(spec.column)]:
            near = (math.nextafter(e, -math.inf), float(e), math.nextafter(e, math.inf))
            out += [jfloat(x) for x in near if math.isfinite(x)]  # 1e309 is among the hostile
        out += [*HOSTILE_FLOATS, b"0", b"1", b"100"]
    elif isinstance(t, mi.StrType):
        bounds = {b for b in (t.min_length, t.max_length) if b is not None}
        for n in sorted({m for b in bounds for m in (b - 1, b, b + 1) if m >= 0}):
            out += [jstr("a" * n), jraw(EMOJI[0] * n), jraw("ệ" * n)]
        out += [*HOSTILE_TEXT, b"1"]
        pattern = pattern_of(t)
        if pattern is not None and spec.name != "device_id":
            low, high = PATTERN_EXAMPLES[pattern]
            out += [jstr(low), jstr(high), jstr(low + " "), jstr(high[:-1])]
        if spec.name == "device_id":
            out += [jstr(d) for d in device_ids] + [jstr("nope"), jstr(device_ids[0].upper())]
    elif isinstance(t, mi.LiteralType):
        for v in t.values:
            out += [jstr(str(v)), jstr(str(v).upper()), jstr(f"{v} ")]
        out += HOSTILE_TEXT[:12]
    else:
        assert isinstance(t, mi.BoolType), t
        out += [b"true", b"false", b"0", b"1", b'"true"']
    return out


def valid_frag(spec: FieldSpec, high: bool) -> Frag:
    """A value the schema accepts: its lowest or its highest (for the all-extremes messages)."""
    t = spec.base
    if isinstance(t, mi.IntType | mi.FloatType):
        lo = t.ge if t.ge is not None else 0
        hi = t.le if t.le is not None else lo + 1
        value = hi if high else lo
        return jfloat(float(value)) if isinstance(t, mi.FloatType) else jint(int(value))
    if isinstance(t, mi.StrType):
        pattern = pattern_of(t)
        if pattern is not None and spec.name != "device_id":
            return jstr(PATTERN_EXAMPLES[pattern][1 if high else 0])
        n = (t.max_length or 8) if high else (t.min_length or 1)
        return jraw(EMOJI[0] * n) if high else jstr("a" * n)
    if isinstance(t, mi.LiteralType):
        return jstr(str(t.values[-1] if high else t.values[0]))
    return b"true" if high else b"false"


def field_strategy(spec: FieldSpec, device_ids: Sequence[str]) -> st.SearchStrategy[Frag]:
    """Boundary values, and random ones clustered around the bounds."""
    bounds: st.SearchStrategy[Frag] = st.sampled_from(boundary_frags(spec, device_ids))
    t = spec.base
    gen: st.SearchStrategy[Frag]
    if spec.name == "ts_ms":
        window = st.integers(-s.MAX_PAST_MS - 5_000, s.MAX_FUTURE_MS + 5_000)
        gen = st.one_of(window.map(Rel), st.integers().map(jint))
    elif isinstance(t, mi.IntType):
        edges = [e for e in _edges(t) if isinstance(e, int)]
        edges += column_int_edges(spec.column, spec.name)
        near = [st.integers(e - 3, e + 3) for e in edges]
        within = st.integers(
            None if t.ge is None else int(t.ge), None if t.le is None else int(t.le)
        )
        gen = st.one_of(*near, within, st.integers(), st.integers(-(2**70), 2**70)).map(jint)
    elif isinstance(t, mi.FloatType):
        lo, hi = t.ge, t.le
        inside = st.floats(
            min_value=None if lo is None else float(lo),
            max_value=None if hi is None else float(hi),
            allow_nan=False,
            allow_infinity=False,
        )
        anywhere = st.floats(allow_nan=False, allow_infinity=False)
        float32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
        gen = st.one_of(inside, anywhere, float32).map(jfloat)
    elif isinstance(t, mi.StrType | mi.LiteralType):
        text = st.text(st.characters(exclude_categories=()), max_size=200)
        gen = st.one_of(text.map(jstr), text.map(jraw))
        if spec.name == "device_id":
            gen = st.one_of(st.sampled_from(device_ids).map(jstr), gen)
        elif isinstance(t, mi.StrType) and (pattern := pattern_of(t)) is not None:
            gen = st.one_of(st.from_regex(pattern, fullmatch=True).map(jstr), gen)
        if isinstance(t, mi.LiteralType):
            gen = st.one_of(st.sampled_from([jstr(str(v)) for v in t.values]), gen)
    else:
        gen = st.booleans().map(lambda b: b"true" if b else b"false")
    return st.one_of(bounds, gen)


# --- one round: validate, store, check, roll up, evaluate ---------------------------------


@dataclass
class Harness:
    settings: Settings
    topology: Topology
    pool: asyncpg.Pool
    catalog: Catalog
    specs: dict[str, list[FieldSpec]]
    processor: FeedProcessor
    evaluator: Evaluator
    devices: dict[str, list[str]]  # device class -> demo device ids
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(10**12))
    stored_keys: set[tuple[str, int, int]] = field(default_factory=set)
    coverage: dict[tuple[str, str], Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    rounds: int = 0
    messages: int = 0
    accepted: int = 0

    @classmethod
    async def open(cls, settings: Settings) -> Harness:
        topology = await bootstrap(settings, SCENARIO)
        pool = await open_pool(settings.database_dsn(), settings.db_schema, size=4)
        async with pool.acquire() as conn:
            catalog = await read_catalog(conn, settings.db_schema)

        async def no_dead_letters(_key: bytes | None, _value: bytes) -> None:
            raise AssertionError("validation alone never sends dead letters")

        devices: dict[str, list[str]] = defaultdict(list)
        for d in topology.devices.values():
            devices[d.device_class].append(d.id)
        return cls(
            settings,
            topology,
            pool,
            catalog,
            field_specs(catalog),
            FeedProcessor(topology, pool, no_dead_letters),
            Evaluator(topology, pool),
            dict(devices),
        )

    def document(self, candidate: Candidate, i: int, now_ms: int) -> tuple[str, bytes, bytes]:
        """(feed, key, value): a valid message of a demo device, with the candidate's fields."""
        kind, overrides = candidate
        feed = s.FEED_OF_KIND[s.TYPE_OF_KIND[kind]]
        ids = self.devices[s.DEVICE_CLASS_OF_FEED[feed]]
        device = ids[i % len(ids)]
        fields: dict[str, Frag] = {
            spec.name: valid_frag(spec, high=False) for spec in self.specs[kind]
        }
        fields.update(
            v=b"1", device_id=jstr(device), seq=jint(next(self.seq)), ts_ms=jint(now_ms - i)
        )
        fields.update(overrides)
        key = device.encode()
        device_frag = fields["device_id"]
        if isinstance(device_frag, bytes) and device_frag:
            try:
                parsed = json.loads(device_frag)
            except ValueError:
                parsed = None
            if isinstance(parsed, str):
                key = parsed.encode("utf-8", "surrogatepass")
        parts = [b'"kind":' + jstr(kind)]
        for name, frag in fields.items():
            if isinstance(frag, Rel):
                frag = jint(now_ms + frag.offset_ms)
            if frag:
                parts.append(jstr(name) + b":" + frag)
        return feed, key, b"{" + b",".join(parts) + b"}"

    def misfits(self, m: s.Message) -> list[str]:
        """Every field of an accepted message that does not fit its catalog column."""
        kind = m.kind
        problems = []
        table = self.catalog[RAW[m.feed]]
        kind_problem = table["kind"].misfit(kind)
        if kind_problem:
            problems.append(f"kind: {kind_problem}")
        for spec in self.specs[kind]:
            if spec.column is None:
                continue
            value = column_value(spec.name, getattr(m, spec.name))
            problem = spec.column.misfit(value)
            if problem:
                problems.append(f"{spec.name} -> {spec.column.name}: {problem}")
        return problems

    async def round(self, candidates: Sequence[Candidate]) -> None:
        self.rounds += 1
        self.messages += len(candidates)
        now_ms = int(time.time() * 1000)
        by_feed: dict[str, list[tuple[int, bytes, bytes]]] = defaultdict(list)
        for i, candidate in enumerate(candidates):
            feed, key, value = self.document(candidate, i, now_ms)
            by_feed[feed].append((i, key, value))

        accepted: dict[str, list[s.Message]] = {}
        for feed, docs in by_feed.items():
            valid, valid_at, invalid = self.processor.validate_values(
                feed, [d[2] for d in docs], [d[1] for d in docs], now_ms
            )
            for _, problem in invalid:
                assert problem.reason in s.DLQ_REASONS and problem.reason != s.REASON_DB_REJECTED
            accepted_at = {docs[j][0] for j in valid_at}
            for i, _key, _value in docs:
                kind, overrides = candidates[i]
                verdict = "accepted" if i in accepted_at else "rejected"
                for name in overrides:
                    self.coverage[(kind, name)][verdict] += 1
            misfits = {
                docs[j][2][:300]: problems
                for j, m in zip(valid_at, valid, strict=True)
                if (problems := self.misfits(m))
            }
            assert not misfits, f"validated, but does not fit the {feed} columns: {misfits}"
            accepted[feed] = valid
            self.accepted += len(valid)

        for feed, valid in accepted.items():
            if valid:
                await self.store_and_check(feed, valid)
        await self.roll_up_and_evaluate(accepted)

    async def store_and_check(self, feed: str, valid: list[s.Message]) -> None:
        keys = [(m.device_id, m.seq, m.ts_ms) for m in valid]
        new = set(keys) - self.stored_keys
        async with asyncio.timeout(STORE_TIMEOUT_S):
            result = await store(self.pool, feed, valid, s.DEVICE_CLASS_OF_FEED[feed])
        refused = {i: (reason, s.encode(valid[i])[:300]) for i, reason in result.rejected}
        assert result.rejected == [], f"valid {feed} messages the writer refused: {refused}"
        assert result.inserted == len(new), (result, len(new))
        self.stored_keys |= new

        columns = RAW_COLUMNS[feed]
        stored = await self.fetch(
            f"SELECT {', '.join(columns)} FROM {RAW[feed]} WHERE (device_id, seq, ts) IN "
            f"(SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]))",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [as_timestamp(k[2]) for k in keys],
        )
        by_key = {(r["device_id"], r["seq"], r["ts"]): r for r in stored}
        for m in valid:
            row = by_key.get((m.device_id, m.seq, as_timestamp(m.ts_ms)))
            assert row is not None, f"not stored: {s.encode(m)[:300]!r}"
            if (m.device_id, m.seq, m.ts_ms) not in new:
                continue  # a replayed key keeps the first row
            # What each column must hold, by the field -> column mapping (not rows.raw_row).
            expected: dict[str, object] = dict.fromkeys(columns)
            expected["kind"] = m.kind
            for spec in self.specs[m.kind]:
                if spec.column is not None:
                    value = column_value(spec.name, getattr(m, spec.name))
                    expected[spec.column.name] = spec.column.as_stored(value)
            for name in columns:
                assert row[name] == expected[name], (name, row[name], expected[name], m)

    async def roll_up_and_evaluate(self, accepted: dict[str, list[s.Message]]) -> None:
        for _ in range(100):
            if not await recompute_dirty(self.pool, limit=200, settle_s=0.0):
                break
        assert await self.fetchval(f"SELECT count(*) FROM {ROLLUP_DIRTY}") == 0
        for feed, valid in accepted.items():
            touched = {(m.device_id, minute_of(m.ts_ms)) for m in valid}
            if not touched:
                continue
            found = await self.fetch(
                f"SELECT * FROM {ROLLUP_DEVICE_1M[feed]} WHERE (device_id, bucket) IN "
                f"(SELECT * FROM unnest($1::text[], $2::timestamptz[]))",
                [d for d, _ in touched],
                [as_timestamp(b) for _, b in touched],
            )
            assert len(found) == len(touched), f"{feed}: device rollups missing"
            buckets = [as_timestamp(b) for b in sorted({b for _, b in touched})]
            units = await self.fetch(
                f"SELECT * FROM {ROLLUP_UNIT_1M[feed]} WHERE bucket = ANY($1::timestamptz[])",
                buckets,
            )
            assert {r["bucket"] for r in units} == set(buckets), f"{feed}: unit rollups missing"
            # Every raw figure is >= 0 (or absent), and so is every count, sum, extreme,
            # average and percentile of them: a negative one is a rollup bug.
            negative = [
                (r.get("device_id", r.get("unit_code")), r["bucket"], name, value)
                for r in [*found, *units]
                for name, value in r.items()
                if isinstance(value, int | float) and value < 0
            ]
            assert not negative, f"{feed} rollups below zero: {negative[:10]}"
        verdict = await self.evaluator.run_once()
        assert verdict is not None

    async def fetch(self, sql: str, *args: object) -> list[Any]:
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: object) -> Any:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)


_ENVELOPE = ENVELOPE


def explicit_batches(h: Harness) -> list[list[Candidate]]:
    """Every boundary value of every field of every kind (one batch per kind), and messages
    with every field at once at the schema's lowest and at its highest."""
    batches: list[list[Candidate]] = []
    ids = [d for devices in h.devices.values() for d in devices]
    for kind, specs in h.specs.items():
        batch: list[Candidate] = []
        for spec in specs:
            batch += [(kind, {spec.name: frag}) for frag in boundary_frags(spec, ids)]
        batches.append(batch)
    extremes: list[Candidate] = []
    for kind, specs in h.specs.items():
        for high in (False, True):
            chosen = {p.name: valid_frag(p, high) for p in specs if p.name not in _ENVELOPE}
            extremes.append((kind, chosen))
    batches.append(extremes)
    return batches


def test_every_valid_value_fits_its_column_and_lands(namespace: Settings) -> None:
    loop = asyncio.new_event_loop()
    try:
        h = loop.run_until_complete(Harness.open(namespace))
        try:
            _explore(h, loop)
        finally:
            loop.run_until_complete(h.pool.close())
    finally:
        loop.close()


def _explore(h: Harness, loop: asyncio.AbstractEventLoop) -> None:
    started = time.monotonic()
    ids = [d for devices in h.devices.values() for d in devices]
    by_kind = [
        st.tuples(
            st.just(kind),
            st.fixed_dictionaries(
                {}, optional={spec.name: field_strategy(spec, ids) for spec in specs}
            ),
        )
        for kind, specs in h.specs.items()
    ]
    candidates: st.SearchStrategy[list[Candidate]] = st.lists(
        st.one_of(*by_kind), min_size=1, max_size=40
    )

    def check(batch: list[Candidate]) -> None:
        loop.run_until_complete(h.round(batch))

    explore = given(candidates)(check)
    for batch in explicit_batches(h):
        explore = example(batch)(explore)
    settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )(explore)()

    # Every field was probed on both sides: some candidates accepted, some refused.
    one_sided = {
        (kind, spec.name): dict(h.coverage[(kind, spec.name)])
        for kind, specs in h.specs.items()
        for spec in specs
        if min(h.coverage[(kind, spec.name)][v] for v in ("accepted", "rejected")) == 0
    }
    assert not one_sided, f"fields not probed on both sides of their bounds: {one_sided}"
    print(
        f"storability: {h.rounds} rounds, {h.messages} candidates, {h.accepted} accepted and "
        f"stored ({len(h.stored_keys)} rows), {time.monotonic() - started:.1f} s"
    )


# --- rollups saturate ----------------------------------------------------------------------


def schema_max(kind: type[s.Message], name: str) -> Any:
    """The highest value the schema accepts for a numeric field (from msgspec's type info)."""
    info = mi.type_info(kind)
    assert isinstance(info, mi.StructType)
    t = _unwrap(next(f.type for f in info.fields if f.name == name))
    assert isinstance(t, mi.IntType | mi.FloatType) and t.le is not None
    return t.le


def schema_min(kind: type[s.Message], name: str) -> Any:
    info = mi.type_info(kind)
    assert isinstance(info, mi.StructType)
    t = _unwrap(next(f.type for f in info.fields if f.name == name))
    assert isinstance(t, mi.IntType | mi.FloatType) and t.ge is not None
    return t.ge


INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


async def test_rollups_saturate_instead_of_failing(namespace: Settings) -> None:
    h = await Harness.open(namespace)
    try:
        now_ms = int(time.time() * 1000)
        bucket_ms = minute_of(now_ms) - 2 * 60_000
        bucket = as_timestamp(bucket_ms)
        assert bucket is not None
        n = 600
        errors = schema_max(s.NetnodeCounters, "in_errors")
        nodes = h.devices["netnode"][:2]
        cameras = h.devices["camera"][:2]
        values: dict[str, list[tuple[bytes, bytes]]] = defaultdict(list)
        for node in nodes:
            for i in range(n):
                doc = {
                    "kind": "netnode.counters",
                    "v": 1,
                    "device_id": node,
                    "seq": i + 1,
                    "ts_ms": bucket_ms + i * 99,
                    "interface": "xe-0/0/0",
                    "interval_s": 1,
                    "in_bps": schema_max(s.NetnodeCounters, "in_bps"),
                    "out_bps": schema_max(s.NetnodeCounters, "out_bps"),
                    "in_errors": errors,
                    "out_errors": schema_max(s.NetnodeCounters, "out_errors"),
                    "capacity_bps": schema_min(s.NetnodeCounters, "capacity_bps"),
                }
                values["netnode"].append((node.encode(), json.dumps(doc).encode()))
        dropped = schema_max(s.CameraStream, "dropped_frames")
        vehicles = schema_max(s.CameraTraffic, "vehicles")
        for camera in cameras:
            for i in range(n):
                envelope = {"v": 1, "device_id": camera, "seq": 2 * i + 1, "ts_ms": bucket_ms + i}
                stream = {"kind": "camera.stream", **envelope, "fps": 240.0, "bitrate_kbps": 1}
                stream |= {"dropped_frames": dropped, "frozen": True, "black": True}
                traffic = {"kind": "camera.traffic", **envelope, "interval_s": 1}
                traffic |= {"seq": 2 * i + 2, "ts_ms": bucket_ms + 30_000 + i}
                traffic |= {"vehicles": vehicles, "mean_speed_kmh": 300, "occupancy_pct": 100}
                for doc in (stream, traffic):
                    values["camera"].append((camera.encode(), json.dumps(doc).encode()))

        # Devices with none of the summed values in that minute: their sums stay empty.
        quiet_camera, quiet_node = h.devices["camera"][2], h.devices["netnode"][2]
        for i in range(3):
            envelope = {"v": 1, "seq": i + 1, "ts_ms": bucket_ms + 1_000 * i}
            beat = {"kind": "camera.heartbeat", **envelope, "status": "ok", "uptime_s": 5}
            beat["device_id"] = quiet_camera
            probe = {"kind": "netnode.probe", **envelope, "reachable": True, "rtt_ms": None}
            probe |= {"device_id": quiet_node, "loss_pct": 0}
            values["camera"].append((quiet_camera.encode(), json.dumps(beat).encode()))
            values["netnode"].append((quiet_node.encode(), json.dumps(probe).encode()))

        for feed, docs in values.items():
            valid, _at, invalid = h.processor.validate_values(
                feed, [d[1] for d in docs], [d[0] for d in docs], now_ms
            )
            assert invalid == [] and len(valid) == len(docs)
            async with asyncio.timeout(STORE_TIMEOUT_S):
                result = await store(h.pool, feed, valid, feed)
            assert result == Stored(inserted=len(docs), rejected=[])

        # Beyond bigint before saturation: the sum the rollup must clamp.
        raw_errors = await h.fetchval(
            "SELECT sum(in_errors + out_errors) FROM raw_netnode WHERE device_id = $1", nodes[0]
        )
        assert raw_errors == n * 2 * errors > INT8_MAX

        async with h.pool.acquire() as conn, conn.transaction():
            for feed in RAW:
                await recompute_minute(conn, feed, bucket)
        while await recompute_dirty(h.pool, settle_s=0.0):
            pass
        assert await h.evaluator.run_once() is not None

        for r in await h.fetch(
            "SELECT * FROM rollup_netnode_1m WHERE bucket = $1 AND device_id = ANY($2::text[])",
            bucket,
            nodes,
        ):
            assert r["reports"] == n
            assert r["errors"] == INT8_MAX  # clamped, not an error
            assert r["util_pct_max"] == struct.unpack("<f", struct.pack("<f", 100.0 * 1e12))[0]
        units = await h.fetch(
            "SELECT unit_code, level, errors FROM unit_rollup_netnode_1m WHERE bucket = $1", bucket
        )
        top = [r for r in units if r["level"] == 0]
        assert top and all(r["errors"] == INT8_MAX for r in top), units  # 2 x INT8_MAX, clamped
        assert all(r["errors"] in (0, INT8_MAX) for r in units), units

        camera_rows = await h.fetch(
            "SELECT * FROM rollup_camera_1m WHERE bucket = $1 AND device_id = ANY($2::text[])",
            bucket,
            cameras,
        )
        assert len(camera_rows) == len(cameras)
        for r in camera_rows:  # sums of int4 values: exact in bigint
            assert (r["reports"], r["frozen_samples"], r["black_samples"]) == (2 * n, n, n)
            assert r["dropped_frames"] == n * dropped
            assert r["vehicles"] == n * vehicles
        quiet = await h.fetch(
            "SELECT device_id, dropped_frames, vehicles, NULL AS errors, NULL AS util_pct_max "
            "FROM rollup_camera_1m WHERE bucket = $1 AND device_id = $2 UNION ALL "
            "SELECT device_id, NULL, NULL, errors, util_pct_max "
            "FROM rollup_netnode_1m WHERE bucket = $1 AND device_id = $3",
            bucket,
            quiet_camera,
            quiet_node,
        )
        assert len(quiet) == 2
        for r in quiet:  # nothing to add up: no figure (or zero), never the range's minimum
            for name in ("dropped_frames", "vehicles", "errors", "util_pct_max"):
                assert r[name] in (None, 0), (r["device_id"], name, r[name])
        region = await h.fetchval(
            "SELECT max(vehicles) FROM unit_rollup_camera_1m WHERE bucket = $1", bucket
        )
        assert region == len(cameras) * n * vehicles
    finally:
        await h.pool.close()


# --- the writer isolates what the database refuses -----------------------------------------

NUL = r"^the database refused the record: SQLSTATE 22021: .*0x00"
DRIVER = r"^the driver could not encode the record \("
INT64 = DRIVER + r"OverflowError: .*int64"


def _camera(i: int, device: str, ts_ms: int) -> s.Message:
    env: dict[str, Any] = {"v": 1, "device_id": device, "seq": i + 1, "ts_ms": ts_ms}
    match i % 4:
        case 0:
            return s.CameraStream(
                **env, fps=25.0, bitrate_kbps=4000.0, dropped_frames=i, frozen=False, black=False
            )
        case 1:
            return s.CameraTraffic(
                **env, interval_s=60, vehicles=i, mean_speed_kmh=40.0, occupancy_pct=12.5
            )
        case 2:
            return s.CameraHeartbeat(**env, status="ok", uptime_s=i)
        case _:
            return s.CameraIncident(
                **env, incident_id=f"inc-{i}", incident="wrong_way", state="open"
            )


def _telehealth(i: int, device: str, ts_ms: int) -> s.Message:
    env: dict[str, Any] = {"v": 1, "device_id": device, "seq": i + 1, "ts_ms": ts_ms}
    match i % 3:
        case 0:
            return s.TelehealthHeartbeat(**env, status="ok", waiting_patients=i, active_sessions=1)
        case 1:
            return s.TelehealthSession(**env, session_id=f"s-{i}", event="start", peer_site="hn")
        case _:
            return s.TelehealthQuality(
                **env,
                session_id=f"s-{i}",
                rtt_ms=80.0,
                jitter_ms=5.0,
                loss_pct=0.5,
                video_height=720,
            )


def _netnode(i: int, device: str, ts_ms: int) -> s.Message:
    env: dict[str, Any] = {"v": 1, "device_id": device, "seq": i + 1, "ts_ms": ts_ms}
    match i % 3:
        case 0:
            return s.NetnodeProbe(**env, reachable=True, rtt_ms=3.0, loss_pct=0.0)
        case 1:
            return s.NetnodeCounters(
                **env,
                interface="ge-0/0/1",
                interval_s=60,
                in_bps=1e6,
                out_bps=2e6,
                in_errors=i,
                out_errors=0,
                capacity_bps=1e9,
            )
        case _:
            return s.NetnodeLink(**env, interface="ge-0/0/1", state="up")


async def test_writer_isolates_records_the_database_refuses(namespace: Settings) -> None:
    h = await Harness.open(namespace)
    try:
        now_ms = int(time.time() * 1000)
        makers = {"camera": _camera, "telehealth": _telehealth, "netnode": _netnode}
        cam, th, nn = (h.devices[c][0] for c in ("camera", "telehealth", "netnode"))

        def env(device: str, seq: int) -> dict[str, Any]:
            return {"v": 1, "device_id": device, "seq": seq, "ts_ms": now_ms - seq}

        # Built without validation (msgspec Structs do not validate in __init__).
        # (position, message, what the reason must say)
        bad: dict[str, list[tuple[int, s.Message, str]]] = {
            "camera": [
                (
                    0,
                    s.CameraStream(
                        **env(cam, 1001),
                        fps=25.0,
                        bitrate_kbps=1.0,
                        dropped_frames=2**40,
                        frozen=False,
                        black=False,
                    ),
                    DRIVER + r"OverflowError: .*int32",
                ),
                (
                    17,
                    s.CameraIncident(
                        **env(cam, 1002), incident_id="\ud800", incident="congestion", state="open"
                    ),
                    DRIVER + r"UnicodeEncodeError: .*surrogates",
                ),
                (
                    30,
                    s.CameraIncident(
                        **env(cam, 1003), incident_id="a\x00b", incident="congestion", state="open"
                    ),
                    NUL,
                ),
                (
                    31,
                    s.CameraStream(
                        **env(cam, 1004),
                        fps=1e39,
                        bitrate_kbps=1.0,
                        dropped_frames=0,
                        frozen=False,
                        black=False,
                    ),
                    DRIVER + r"ValueError: .*float32",
                ),
                (40, s.CameraHeartbeat(**env(cam, 1005), status="ok", uptime_s=2**63), INT64),
                (
                    54,
                    s.CameraHeartbeat(
                        v=1, device_id=cam, seq=1006, ts_ms=10**16, status="ok", uptime_s=1
                    ),
                    DRIVER + r"OverflowError: date value",
                ),
            ],
            "telehealth": [
                (
                    5,
                    s.TelehealthSession(**env(th, 1001), session_id="a\x00b", event="start"),
                    NUL,
                ),
                (
                    6,
                    s.TelehealthQuality(
                        **env(th, 1002),
                        session_id="q",
                        rtt_ms=1.0,
                        jitter_ms=1.0,
                        loss_pct=0.0,
                        video_height=2**31,
                    ),
                    DRIVER + r"OverflowError: .*int32",
                ),
                (
                    50,
                    s.TelehealthSession(
                        **env(th, 1003), session_id="ok", event="end", reason="\x00"
                    ),
                    NUL,
                ),
            ],
            "netnode": [
                (
                    0,
                    s.NetnodeCounters(
                        **env(nn, 1001),
                        interface="xe-1",
                        interval_s=1,
                        in_bps=1.0,
                        out_bps=1.0,
                        in_errors=2**63,
                        out_errors=0,
                        capacity_bps=1.0,
                    ),
                    INT64,
                ),
                (25, s.NetnodeLink(**env(nn, 1002), interface="\x00", state="up"), NUL),
                (
                    51,
                    s.NetnodeProbe(**env(nn, 1003), reachable=True, rtt_ms=1e39, loss_pct=0.0),
                    DRIVER + r"ValueError: .*float32",
                ),
            ],
        }
        for feed, rejects in bad.items():
            devices = h.devices[feed]
            messages = [makers[feed](i, devices[i % len(devices)], now_ms - i) for i in range(50)]
            for position, message, _ in sorted(rejects, key=lambda r: r[0]):
                messages.insert(position, message)
            assert [messages[p] for p, _, _ in rejects] == [m for _, m, _ in rejects]
            bad_at = sorted(p for p, _, _ in rejects)

            async with asyncio.timeout(STORE_TIMEOUT_S):
                first = await store(h.pool, feed, messages, feed)
            print(f"{feed}: {first}")
            assert sorted(i for i, _ in first.rejected) == bad_at, first.rejected
            reasons = dict(first.rejected)
            for position, _, pattern in rejects:
                assert re.search(pattern, reasons[position]), (feed, position, reasons[position])
                assert len(reasons[position]) <= 500
            assert first.inserted == 50
            table = RAW[feed]
            assert await h.fetchval(f"SELECT count(*) FROM {table}") == 50
            stray = await h.fetchval(f"SELECT count(*) FROM {table} WHERE seq > 1000")
            assert stray == 0

            async with asyncio.timeout(STORE_TIMEOUT_S):
                second = await store(h.pool, feed, messages, feed)
            assert second.inserted == 0
            assert sorted(second.rejected) == sorted(first.rejected)
            assert await h.fetchval(f"SELECT count(*) FROM {table}") == 50
    finally:
        await h.pool.close()


# --- transient errors are retried, permanent ones isolated ----------------------------------


async def _raised(operation: Awaitable[object]) -> BaseException:
    try:
        await operation
    except Exception as exc:
        return exc
    raise AssertionError("the operation was expected to fail")


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None)


async def test_real_database_errors_are_classified(namespace: Settings) -> None:
    await bootstrap(namespace, SCENARIO)
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=4)
    try:
        seen: list[tuple[str, BaseException, str]] = []  # (what, error, expected verdict)
        async with pool.acquire() as conn, pool.acquire() as other:
            cases: list[tuple[str, Awaitable[object], str]] = [
                ("missing table", conn.execute("SELECT * FROM no_such_table"), TRANSIENT),
                ("NUL in text", conn.fetchval("SELECT $1::text", "a\x00b"), PERMANENT),
                ("int4 overflow", conn.fetchval("SELECT $1::integer + 1", INT4_MAX), PERMANENT),
                ("driver int4", conn.fetchval("SELECT $1::integer", 2**40), PERMANENT),
                ("driver float4", conn.fetchval("SELECT $1::real", 1e39), PERMANENT),
                ("lone surrogate", conn.fetchval("SELECT $1::text", "\ud800"), PERMANENT),
                ("no privilege", conn.execute("ALTER TABLE raw_camera ADD x int"), TRANSIENT),
                (
                    "check violation",
                    conn.execute(
                        "INSERT INTO incidents (kind, severity, status, title, root_device, "
                        "device_class, opened_at) VALUES ('k', 'info', 'bogus', 't', 'd', "
                        "'camera', now())"
                    ),
                    PERMANENT,
                ),
            ]
            for what, operation, verdict in cases:
                seen.append((what, await _raised(operation), verdict))
            async with conn.transaction(readonly=True):
                error = await _raised(
                    conn.execute(f"INSERT INTO {ROLLUP_DIRTY} (feed, bucket) VALUES ('x', now())")
                )
            seen.append(("read-only transaction", error, TRANSIENT))
            async with conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = 50")
                error = await _raised(conn.execute("SELECT pg_sleep(5)"))
            seen.append(("statement timeout", error, TRANSIENT))
            await conn.execute(
                f"INSERT INTO {ROLLUP_DIRTY} (feed, bucket) VALUES ('a', now()), ('b', now())"
            )
            lock = f"SELECT 1 FROM {ROLLUP_DIRTY} WHERE feed = $1 FOR UPDATE"
            async with conn.transaction():
                await conn.execute(lock, "a")
                async with other.transaction():
                    error = await _raised(other.execute(lock + " NOWAIT", "a"))
            seen.append(("lock not available", error, TRANSIENT))
            deadlocked: list[BaseException] = []

            async def crossing(c: asyncpg.Connection, first: str, second: str) -> None:
                try:
                    async with c.transaction():
                        await c.execute(lock, first)
                        await asyncio.sleep(0.2)
                        await c.execute(lock, second)
                except asyncpg.PostgresError as exc:
                    deadlocked.append(exc)

            await asyncio.gather(crossing(conn, "a", "b"), crossing(other, "b", "a"))
            assert len(deadlocked) == 1, deadlocked
            seen.append(("deadlock", deadlocked[0], TRANSIENT))

        closed = await connect(namespace.database_dsn())
        await closed.close()
        seen.append(("closed connection", await _raised(closed.fetchval("SELECT 1")), TRANSIENT))
        refused = await _raised(asyncpg.connect("postgresql://nobody@127.0.0.1:1/x", timeout=5))
        seen.append(("connection refused", refused, TRANSIENT))

        sqlstates = {what: _sqlstate(e) for what, e, _ in seen}
        assert sqlstates["missing table"] == "42P01"
        assert sqlstates["NUL in text"] == "22021"
        assert sqlstates["int4 overflow"] == "22003"
        assert sqlstates["no privilege"] == "42501"
        assert sqlstates["check violation"] == "23514"
        assert sqlstates["read-only transaction"] == "25006"
        assert sqlstates["statement timeout"] == "57014"
        assert sqlstates["lock not available"] == "55P03"
        assert sqlstates["deadlock"] == "40P01"
        wrong = {
            what: (type(e).__name__, _sqlstate(e), str(e)[:120], classify(e))
            for what, e, verdict in seen
            if classify(e) != verdict
        }
        assert not wrong, wrong
    finally:
        await pool.close()


async def test_transient_error_is_retried_not_dead_lettered(namespace: Settings) -> None:
    """The raw table disappears (a botched migration) while a batch is written: the writer
    retries until it is back, stores everything and rejects nothing."""
    topology = await bootstrap(namespace, SCENARIO)
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=2)
    admin = await connect(namespace.admin_dsn())
    try:
        await admin.execute(f"SET search_path TO {namespace.db_schema}, public")
        cameras = [d.id for d in topology.devices.values() if d.device_class == "camera"]
        now_ms = int(time.time() * 1000)
        messages = [_camera(i, cameras[i % len(cameras)], now_ms - i) for i in range(50)]
        await admin.execute("ALTER TABLE raw_camera RENAME TO raw_camera_away")
        errors: list[BaseException] = []
        retried = asyncio.Event()

        def on_error(exc: BaseException, attempt: int) -> None:
            errors.append(exc)
            if attempt >= 2:
                retried.set()

        writing = asyncio.create_task(store(pool, "camera", messages, "camera", on_error=on_error))
        waiting = asyncio.create_task(retried.wait())
        done, _ = await asyncio.wait({writing, waiting}, timeout=30, return_when="FIRST_COMPLETED")
        assert waiting in done, f"no retries (store finished: {writing in done})"
        assert not writing.done()
        await admin.execute("ALTER TABLE raw_camera_away RENAME TO raw_camera")
        async with asyncio.timeout(STORE_TIMEOUT_S):
            result = await writing
        assert result == Stored(inserted=len(messages), rejected=[])
        assert {_sqlstate(e) for e in errors} == {"42P01"}, errors
        assert {classify(e) for e in errors} == {TRANSIENT}
        assert await admin.fetchval("SELECT count(*) FROM raw_camera") == len(messages)
    finally:
        await admin.close()
        await pool.close()
