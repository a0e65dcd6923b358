"""The raw tables' columns, derived from the message schemas (one declaration).

Each feed lands in one raw hypertable (``tables.RAW[feed]``): the envelope becomes
``(ts, device_id, seq, kind)`` and every other field of every kind of the feed becomes a
column of the same name, in declaration order, shared by kinds that carry the same field
(``session_id``, ``interface``...). Two fields are renamed because kinds of one feed use the
same name for different things (:data:`RENAMED`). The migrations create these columns; the
storability test checks them against the live catalog, and the writer COPYs in this order.
"""

from __future__ import annotations

from typing import Final

from ioc.contract import schemas as s

ENVELOPE: Final = ("v", "device_id", "seq", "ts_ms")
"""Envelope fields: ``v`` is not stored, ``ts_ms`` becomes ``ts``."""
KEY_COLUMNS: Final = ("ts", "device_id", "seq", "kind")
RENAMED: Final[dict[tuple[type[s.Message], str], str]] = {
    (s.CameraIncident, "state"): "incident_state",
    (s.NetnodeLink, "state"): "link_state",
}


def column_of(kind: type[s.Message], field: str) -> str:
    """The raw column a message field lands in."""
    if field == "ts_ms":
        return "ts"
    return RENAMED.get((kind, field), field)


def _columns(feed: str) -> tuple[str, ...]:
    columns: list[str] = list(KEY_COLUMNS)
    for kind in s.MESSAGE_TYPES[feed]:
        for field in kind.__struct_fields__:
            if field in ENVELOPE:
                continue
            column = column_of(kind, field)
            if column not in columns:
                columns.append(column)
    return tuple(columns)


RAW_COLUMNS: Final[dict[str, tuple[str, ...]]] = {feed: _columns(feed) for feed in s.FEEDS}
