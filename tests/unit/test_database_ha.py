"""The replicated database's client side: one multi-host DSN for every process, and a
failover classified as an outage (retried), never as bad data.

The failover itself is tests/chaos/test_database_failover.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ioc.config import Settings, load_settings
from ioc.db import describe_dsn
from ioc.db.errors import TRANSIENT, classify
from ioc.db.roles import ADMIN_ROLE, RUNTIME_ROLE
from ioc.deploy.local.credentials import HA_DATABASE_SERVICE, StackCredentials
from ioc.errors import ConfigError

AWKWARD = "p@ss:w/rd?x#y%z"


def ha_settings(tmp_path: Path, **extra: Any) -> Settings:
    creds = StackCredentials(tmp_path).ensure_database(HA_DATABASE_SERVICE)
    creds.roles[RUNTIME_ROLE] = AWKWARD
    StackCredentials(tmp_path).save_database(creds, HA_DATABASE_SERVICE)
    return load_settings(stack_dir=tmp_path, database_ha=True, db_dsn=None, **extra)


def parsed(dsn: str) -> Any:
    """What asyncpg itself makes of a DSN: the hosts it will try and the session attrs."""
    from asyncpg import connect_utils

    return connect_utils._parse_connect_dsn_and_args(
        dsn=dsn,
        host=None,
        port=None,
        user=None,
        password=None,
        passfile=None,
        database=None,
        ssl=None,
        direct_tls=None,
        server_settings=None,
        target_session_attrs=None,
        krbsrvname=None,
        gsslib=None,
    )


def test_ha_mode_gives_every_process_a_multi_host_read_write_dsn(tmp_path: Path) -> None:
    settings = ha_settings(tmp_path)
    runtime = settings.database_dsn()
    assert "@127.0.0.1:15441,127.0.0.1:15442/ioc?target_session_attrs=read-write" in runtime
    assert settings.admin_dsn().startswith(f"postgresql://{ADMIN_ROLE}:")
    addrs, params = parsed(runtime)[:2]
    assert addrs == [("127.0.0.1", 15441), ("127.0.0.1", 15442)]
    assert params.password == AWKWARD
    assert str(params.target_session_attrs.value) == "read-write"
    assert describe_dsn(runtime) == (
        f"postgresql://{RUNTIME_ROLE}@127.0.0.1:15441,127.0.0.1:15442/ioc"
    )


def test_single_mode_is_unchanged_and_ha_without_credentials_says_what_to_run(
    tmp_path: Path,
) -> None:
    StackCredentials(tmp_path).ensure_database()
    single = load_settings(stack_dir=tmp_path, db_dsn=None)
    assert "@127.0.0.1:15432/ioc" in single.database_dsn()
    assert "target_session_attrs" not in single.database_dsn()
    with pytest.raises(ConfigError, match="ioc stack up --database ha"):
        load_settings(stack_dir=tmp_path, database_ha=True, db_dsn=None).database_dsn()


def test_ha_mode_reaches_child_processes(tmp_path: Path) -> None:
    env = ha_settings(tmp_path).child_env()
    assert env["IOC_DATABASE_HA"] == "true"
    assert load_settings(stack_dir=tmp_path, database_ha=env["IOC_DATABASE_HA"]).database_ha


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.TargetServerAttributeNotMatched("no node accepts writes yet"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError(111, "Connect call failed"),
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    ],
)
def test_a_failover_is_transient_never_a_reason_to_dead_letter(exc: BaseException) -> None:
    assert classify(exc) == TRANSIENT


class _Reached(Exception):
    """Raised by the fake pool factory: the DSN a service would connect with."""


async def test_pager_and_ops_pool_on_the_settings_dsn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pager and the operations service build their pools from ``database_dsn()`` like
    the workers: in HA mode they reconnect to the promoted node (asyncpg's pool replaces a
    connection that died with a new one, through the same multi-host DSN)."""
    import ioc.bootstrap
    import ioc.db
    from ioc.contract.topology import load_scenario
    from ioc.services import pager
    from ioc.services.ops import app

    settings = ha_settings(tmp_path)

    async def fake_pool(dsn: str, *args: Any, **kwargs: Any) -> None:
        raise _Reached(dsn)

    async def schema_ok(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(ioc.db, "create_pool", fake_pool)
    monkeypatch.setattr(ioc.bootstrap, "verify_schema", schema_ok)
    for start in (pager.serve(settings), app.build(settings, load_scenario("demo"))):
        with pytest.raises(_Reached) as reached:
            await start
        assert str(reached.value) == settings.database_dsn()
