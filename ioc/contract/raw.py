"""The raw tables' columns, derived from the message schemas (one declaration).

Each feed lands in one raw hypertable (``tables.RAW[feed]``): the envelope becomes
``(ts, device_id, seq, kind)`` and every other field of every kind of the feed becomes a
column of the same name, in declaration order, shared by kinds that carry the same field
(``session_id``, ``interface``...). Two fields are renamed because kinds of one feed use the
same name for different things (:data:`RENAMED`). The migrations create these columns for the
built-in feeds, ioc.db.feeds for the others; the storability test checks them against the live
catalog, and the writer COPYs in this order.
"""

from __future__ import annotations

from typing import Final

import msgspec.inspect as mi

from ioc.contract import schemas as s

ENVELOPE: Final = ("v", "device_id", "seq", "ts_ms")
"""Envelope fields: ``v`` is not stored, ``ts_ms`` becomes ``ts``."""
KEY_COLUMNS: Final = ("ts", "device_id", "seq", "kind")
RENAMED: Final[dict[tuple[type[s.Message], str], str]] = {}
"""(kind, field) -> column where two kinds of a feed use one name for different things
(``FeedSpec.renamed``; kept in step with the feed registry by ioc.contract.feeds)."""


def column_of(kind: type[s.Message], field: str) -> str:
    """The raw column a message field lands in."""
    if field == "ts_ms":
        return "ts"
    return RENAMED.get((kind, field), field)


def columns_of(kinds: tuple[type[s.Message], ...]) -> tuple[str, ...]:
    """A feed's raw columns: the key columns, then every non-envelope field of its kinds."""
    columns: list[str] = list(KEY_COLUMNS)
    for kind in kinds:
        for field in kind.__struct_fields__:
            if field in ENVELOPE:
                continue
            column = column_of(kind, field)
            if column not in columns:
                columns.append(column)
    return tuple(columns)


def _sql_type(t: mi.Type) -> str | None:
    if isinstance(t, mi.Metadata):
        column = (t.extra or {}).get("column")
        return str(column) if column else _sql_type(t.type)
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        return _sql_type(members[0]) if len(members) == 1 else None
    if isinstance(t, mi.BoolType):
        return "boolean"
    if isinstance(t, mi.LiteralType) and all(isinstance(v, str) for v in t.values):
        return "text"
    return None


def column_types(kinds: tuple[type[s.Message], ...]) -> dict[str, str]:
    """A feed's raw columns after the key columns, with the SQL type each field declares
    (``Meta(extra={"column": ...})``; booleans and string literals need none)."""
    types: dict[str, str] = {}
    for kind in kinds:
        info = mi.type_info(kind)
        assert isinstance(info, mi.StructType)
        for f in info.fields:
            if f.name in ENVELOPE:
                continue
            sql = _sql_type(f.type)
            if sql is None:
                raise TypeError(f"{kind.__name__}.{f.name}: declare its column type")
            column = column_of(kind, f.name)
            if types.setdefault(column, sql) != sql:
                raise TypeError(f"{kind.__name__}.{f.name}: column {column} is a {types[column]}")
    return types


RAW_COLUMNS: Final[dict[str, tuple[str, ...]]] = {}
"""Feed -> its raw table's columns (kept in step with the feed registry)."""
