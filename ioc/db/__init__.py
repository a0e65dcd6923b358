"""Database plumbing: connections with clear errors, and versioned migrations."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from ioc.errors import ServiceUnavailable


def describe_dsn(dsn: str) -> str:
    """The DSN without its password, safe to print."""
    parts = urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    hosts = parts.netloc.rpartition("@")[2]  # host:port, or several (a multi-host DSN)
    return f"{parts.scheme}://{user}{hosts}{parts.path}"


_CONNECT_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _unreachable(dsn: str, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"database {describe_dsn(dsn)} is unreachable ({type(exc).__name__}: "
        f"{exc or 'timed out'}); check IOC_DB_DSN or `ioc stack up`"
    )


async def connect(dsn: str, timeout: float = 10.0, **kwargs: Any) -> asyncpg.Connection:
    """Open a connection, or raise :class:`ServiceUnavailable` naming the database."""
    try:
        return await asyncpg.connect(dsn, timeout=timeout, **kwargs)
    except _CONNECT_ERRORS as exc:
        raise _unreachable(dsn, exc) from None


async def create_pool(
    dsn: str, min_size: int = 1, max_size: int = 4, **kwargs: Any
) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, timeout=10, **kwargs
        )
    except _CONNECT_ERRORS as exc:
        raise _unreachable(dsn, exc) from None
    assert pool is not None
    return pool
