"""What the local Alertmanager remembers between test runs, and what the pager recorded."""

from __future__ import annotations

import asyncio
import json
import urllib.request
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
    """Restart both Alertmanager peers without their notification log.

    Alertmanager keeps what it delivered on disk (``data/nflog``) for days, across restarts.
    A run that paged an alert and stopped the pager before the resolved notification went
    out leaves "firing" as the last delivered state, and the same alert firing again within
    ``repeat_interval`` is then (correctly) not paged again. Tests that count pages for a
    fixed device must not depend on what an earlier run left there. The peers gossip their
    logs: both stop before either starts, or the first one up would get the log back.
    """
    from ioc.deploy.local.stack import Stack

    stack = Stack(settings)
    peers = [stack.alertmanager, stack.alertmanager_peer]
    for peer in peers:
        peer.down(lambda _line: None)
    for peer in peers:
        (peer.dir / "data" / "nflog").unlink(missing_ok=True)
    for peer in peers:
        peer.up(lambda _line: None)


def expire_silences_of(settings: Settings) -> int:
    """Expire every silence the operations service created for this namespace (their comment
    carries ``[ioc:<schema>:...]``): the local Alertmanager is shared, and an acknowledged
    incident's silence lasts a day, so a test that leaves one would silence the same device's
    alerts in every later test."""
    base = settings.alertmanager_url
    marker = f"[ioc:{settings.db_schema}:"
    try:
        with urllib.request.urlopen(f"{base}/api/v2/silences", timeout=10) as resp:
            every: list[dict[str, Any]] = json.load(resp)
    except OSError:
        return 0  # Alertmanager is not up (a chaos test stopped it): nothing to clean here
    expired = 0
    for silence in every:
        if silence["status"]["state"] != "expired" and marker in silence.get("comment", ""):
            request = urllib.request.Request(
                f"{base}/api/v2/silence/{silence['id']}", method="DELETE"
            )
            try:
                with urllib.request.urlopen(request, timeout=10):
                    expired += 1
            except OSError:
                pass
    return expired
