"""What the local Alertmanager remembers between test runs, and what the pager recorded."""

from __future__ import annotations

import asyncio
from typing import Any

from ioc.config import Settings
from ioc.db import connect


async def _pages(settings: Settings) -> list[Any]:
    conn = await connect(settings.admin_dsn())
    try:
        return list(
            await conn.fetch(
                f"SELECT alertname, status, device_id, labels, received_at, starts_at "
                f"FROM {settings.db_schema}.pages ORDER BY id"
            )
        )
    finally:
        await conn.close()


def pages(settings: Settings) -> list[Any]:
    """Every page the pager recorded in the namespace, oldest first."""
    return asyncio.run(_pages(settings))


def forget_pages_sent(settings: Settings) -> None:
    """Restart Alertmanager without its notification log.

    Alertmanager keeps what it delivered on disk (``data/nflog``) for days, across restarts.
    A run that paged an alert and stopped the pager before the resolved notification went
    out leaves "firing" as the last delivered state, and the same alert firing again within
    ``repeat_interval`` is then (correctly) not paged again. Tests that count pages for a
    fixed device must not depend on what an earlier run left there.
    """
    from ioc.deploy.local.stack import Stack

    alertmanager = Stack(settings).services["alertmanager"]
    alertmanager.down(lambda _line: None)
    (alertmanager.dir / "data" / "nflog").unlink(missing_ok=True)
    alertmanager.up(lambda _line: None)
