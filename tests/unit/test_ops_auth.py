"""Pieces of the operations service checked without a database or broker: the failed-login
guard, token names, and the command producer's clean-up when its start is cancelled."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pydantic
import pytest

from ioc.config import Settings
from ioc.services.ops import auth
from ioc.services.ops.models import TokenIn


def test_login_guard_limits_and_counts_suppressed() -> None:
    now = [0.0]
    guard = auth.LoginGuard(clock=lambda: now[0])
    for _ in range(auth.FAILED_LOGIN_BURST):
        guard.check("10.0.0.1")
        assert guard.failed("10.0.0.1") == 0
    for _ in range(3):
        with pytest.raises(auth.RateLimited) as err:
            guard.check("10.0.0.1")
        assert err.value.retry_after >= 1 and err.value.status == 429
    guard.check("10.0.0.2")  # another address is not affected
    now[0] += 60.0 / auth.FAILED_LOGINS_PER_MIN
    guard.check("10.0.0.1")
    assert guard.failed("10.0.0.1") == 3  # noted in the next audited failure, then reset
    assert guard.failed("10.0.0.1") == 0


@pytest.mark.parametrize("name", ["123", "0"])
def test_all_digit_token_names_are_refused(name: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="digits"):
        TokenIn(name=name, role="viewer")


@pytest.mark.parametrize("name", ["²", "op-1", "12a"])
def test_other_token_names_are_fine(name: str) -> None:
    assert TokenIn(name=name, role="viewer").name == name


async def test_send_command_stops_a_producer_whose_start_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ioc.db
    from ioc.contract.topology import Device
    from ioc.services import incidents

    class _Conn:
        async def fetchval(self, *args: Any) -> str:
            return "cam-1"

        async def close(self) -> None:
            pass

    async def connect(*args: Any, **kw: Any) -> _Conn:
        return _Conn()

    stopped: list[bool] = []

    class _Producer:
        def __init__(self, **kw: Any) -> None:
            pass

        async def start(self) -> None:
            await asyncio.sleep(60)

        async def stop(self) -> None:
            stopped.append(True)

    class _Topology:
        name = "fake"
        devices = {"cam-1": Device("cam-1", "camera", "site-1", 21.0, 105.0)}

    monkeypatch.setattr(ioc.db, "connect", connect)
    monkeypatch.setattr(incidents, "AIOKafkaProducer", _Producer)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            incidents.send_command(Settings(), cast(Any, _Topology()), 7, "comment", "an", "x"),
            0.1,
        )
    assert stopped == [True]
