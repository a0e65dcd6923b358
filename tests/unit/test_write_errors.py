"""The writer's error classification: retry (transient) or isolate and dead-letter (permanent).

A transient error is about the database or the deployment (connection lost, disk full, a
standby, a serialisation failure, a revoked privilege): the batch is retried, nothing is
dead-lettered. A permanent one is about the record's own data (out of range, bad encoding, a
constraint): the batch is bisected and the record dead-lettered. Anything else is left to a
health probe (None). Real errors from the live database: tests/integration/test_storability.py.
"""

from __future__ import annotations

import errno
import socket

import asyncpg
import pytest
from asyncpg import exceptions as pgx
from hypothesis import given
from hypothesis import strategies as st

from ioc.db.errors import PERMANENT, TRANSIENT, classify
from ioc.streams.writer import PermanentWriteError, rejection_detail


def pg_error(sqlstate: str, message: str = "boom") -> asyncpg.PostgresError:
    """The exception asyncpg raises for a server error with this SQLSTATE."""
    exc = asyncpg.PostgresError.new({"C": sqlstate, "M": message, "S": "ERROR"})
    assert isinstance(exc, asyncpg.PostgresError)
    return exc


TRANSIENT_SQLSTATES = {
    "08006": pgx.ConnectionFailureError,
    "08001": pgx.ClientCannotConnectError,
    "53100": pgx.DiskFullError,
    "53200": pgx.OutOfMemoryError,
    "53300": pgx.TooManyConnectionsError,
    "57P01": pgx.AdminShutdownError,
    "57P03": pgx.CannotConnectNowError,
    "57014": pgx.QueryCanceledError,
    "25006": pgx.ReadOnlySQLTransactionError,
    "40001": pgx.SerializationError,
    "40P01": pgx.DeadlockDetectedError,
    "42501": pgx.InsufficientPrivilegeError,
    "42P01": pgx.UndefinedTableError,
    "3F000": pgx.InvalidSchemaNameError,
    "28P01": pgx.InvalidPasswordError,
    "55P03": pgx.LockNotAvailableError,
    "58030": pgx.PostgresIOError,
}
PERMANENT_SQLSTATES = {
    "22003": pgx.NumericValueOutOfRangeError,
    "22021": pgx.CharacterNotInRepertoireError,
    "22P05": pgx.UntranslatableCharacterError,
    "22007": pgx.InvalidDatetimeFormatError,
    "22008": pgx.DatetimeFieldOverflowError,
    "23514": pgx.CheckViolationError,
    "23502": pgx.NotNullViolationError,
    "54000": pgx.ProgramLimitExceededError,
}


@pytest.mark.parametrize("sqlstate", sorted(TRANSIENT_SQLSTATES))
def test_sqlstates_of_an_ailing_database_are_transient(sqlstate: str) -> None:
    exc = pg_error(sqlstate)
    assert type(exc) is TRANSIENT_SQLSTATES[sqlstate]  # the class asyncpg really raises
    assert classify(exc) == TRANSIENT


@pytest.mark.parametrize("sqlstate", sorted(PERMANENT_SQLSTATES))
def test_sqlstates_about_the_data_are_permanent(sqlstate: str) -> None:
    exc = pg_error(sqlstate)
    assert type(exc) is PERMANENT_SQLSTATES[sqlstate]
    assert classify(exc) == PERMANENT


@given(
    st.sampled_from(["22", "23", "54"]),
    st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3),
)
def test_every_sqlstate_of_a_data_class_is_permanent(cls: str, rest: str) -> None:
    assert classify(pg_error(cls + rest)) == PERMANENT


@given(
    st.sampled_from(["08", "25", "28", "3D", "3F", "40", "42", "53", "55", "57", "58"]),
    st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3),
)
def test_every_sqlstate_of_a_deployment_class_is_transient(cls: str, rest: str) -> None:
    assert classify(pg_error(cls + rest)) == TRANSIENT


@pytest.mark.parametrize("sqlstate", ["XX000", "P0001", "0A000", "HV000", "F0000", ""])
def test_other_server_errors_are_left_to_the_health_probe(sqlstate: str) -> None:
    assert classify(pg_error(sqlstate)) is None


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ECONNRESET, "connection reset"),
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        BrokenPipeError(),
        socket.gaierror(-2, "Name or service not known"),
        TimeoutError(),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
        pgx.InterfaceError("cannot perform operation: another operation is in progress"),
    ],
    ids=repr,
)
def test_connection_trouble_is_transient(exc: BaseException) -> None:
    assert classify(exc) == TRANSIENT


@pytest.mark.parametrize(
    "exc",
    [
        OverflowError("value out of int32 range"),
        OverflowError("date value out of range"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        ValueError("value out of float32 range"),
        TypeError("an integer is required"),
        # asyncpg's client-side DataError: the driver could not encode an argument
        pgx.DataError("invalid input for query argument $1: 1099511627776"),
    ],
    ids=repr,
)
def test_values_the_driver_cannot_encode_are_permanent(exc: BaseException) -> None:
    assert classify(exc) == PERMANENT


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("something else"), KeyError("x"), AssertionError(), Exception("?")],
    ids=repr,
)
def test_anything_else_is_left_to_the_health_probe(exc: BaseException) -> None:
    assert classify(exc) is None


def test_rejection_detail_names_the_cause() -> None:
    nul = pg_error("22021", 'invalid byte sequence for encoding "UTF8": 0x00')
    assert rejection_detail(nul) == (
        "the database refused the record: SQLSTATE 22021: invalid byte sequence for encoding "
        '"UTF8": 0x00'
    )
    overflow = OverflowError("value out of int32 range")
    assert rejection_detail(overflow) == (
        "the driver could not encode the record (OverflowError: value out of int32 range)"
    )
    assert len(rejection_detail(pg_error("22003", "x" * 2000))) == 500
    assert str(PermanentWriteError(nul)) == rejection_detail(nul)
    assert PermanentWriteError(nul).cause is nul
