"""Is a database error about the record or about the database? One answer for every process.

The stream workers' writer dead-letters a record only for a permanent error and retries a
transient one; the pager and the operations service retry what is transient too. Both ask
:func:`classify`, so an outage is never mistaken for bad data anywhere.
"""

from __future__ import annotations

import asyncpg

TRANSIENT = "transient"
PERMANENT = "permanent"

# SQLSTATE classes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
# Transient: the database or the deployment is in trouble, not the record: retry, alert,
# lose nothing. Permanent: this record's data cannot be stored: isolate it, dead-letter it.
_TRANSIENT_CLASSES = frozenset(
    {
        "08",  # connection exception
        "25",  # invalid transaction state (25006 read-only transaction: a standby)
        "28",  # invalid authorisation (a rotated password)
        "3D",  # invalid catalog name (database missing)
        "3F",  # invalid schema name (not migrated)
        "40",  # transaction rollback (serialisation failure, deadlock)
        "42",  # syntax or access rule (privilege revoked, table missing): a deployment fault
        "53",  # insufficient resources (disk full, out of memory, too many connections)
        "55",  # object not in prerequisite state (lock not available)
        "57",  # operator intervention (shutdown, query cancelled, cannot connect now)
        "58",  # system error (I/O error)
    }
)
_PERMANENT_CLASSES = frozenset(
    {
        "22",  # data exception (out of range, untranslatable character, bad encoding)
        "23",  # integrity constraint violation (other than the key replays absorb)
        "54",  # program limit exceeded (a value too large for an index row)
    }
)


def classify(exc: BaseException) -> str | None:
    """``TRANSIENT``, ``PERMANENT``, or None when only a health probe can tell."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        if sqlstate[:2] in _TRANSIENT_CLASSES:
            return TRANSIENT
        if sqlstate[:2] in _PERMANENT_CLASSES:
            return PERMANENT
        return None
    # asyncpg's client-side DataError is an InterfaceError and a ValueError: the driver
    # could not encode a value, so it is about the record, not the connection.
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        return PERMANENT
    if isinstance(exc, TimeoutError | OSError | asyncpg.InterfaceError):
        return TRANSIENT
    # A multi-host DSN found no node that accepts writes: a failover is under way.
    if isinstance(exc, asyncpg.TargetServerAttributeNotMatched):
        return TRANSIENT
    if isinstance(exc, OverflowError | ValueError | TypeError):  # UnicodeError is a ValueError
        return PERMANENT
    return None
