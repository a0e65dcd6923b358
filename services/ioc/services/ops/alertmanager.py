"""Alertmanager's silences (API v2), and which alerts belong to an incident.

The operations service silences two things: the alerts of an acknowledged incident (until it
resolves) and the alerts of whatever is under maintenance (during each occurrence). Both go
through :class:`AlertmanagerClient`; :func:`incident_matchers` is the documented mapping from
an incident to its alerts, since alerts carry device labels, not incident ids.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from ioc.contract import tables as t
from ioc.contract.topology import Topology
from ioc.services.ops.common import Invalid, Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Matcher:
    """One label matcher of a silence, as Alertmanager's API v2 spells it."""

    name: str
    value: str
    isRegex: bool = False  # Alertmanager's field names
    isEqual: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.isRegex,
            "isEqual": self.isEqual,
        }

    def __str__(self) -> str:
        op = ("=~" if self.isRegex else "=") if self.isEqual else ("!~" if self.isRegex else "!=")
        return f'{self.name}{op}"{self.value}"'


def incident_matchers(
    incident_kind: str,
    root_device: str,
    topology: Topology,
    affected: Sequence[str] = (),
) -> list[list[Matcher]]:
    """The silences that cover an incident's alerts: one silence per matcher set.

    Alerts carry device labels (``ioc.alerting.rules``), not incident ids, so an incident is
    mapped to its alerts by its root device and its other affected devices:

    - ``site-isolated`` on network node N: ``{node_id="N"}`` (the SiteIsolated alert),
      ``{upstream_node="N"}`` (every device alert behind N, already inhibited while N's alert
      fires, silenced for the rest of the incident) and ``{device_id="N"}`` (N's own alerts);
      its ``affected`` (the devices behind N) adds nothing, ``{upstream_node="N"}`` covers them;
    - ``device-down``, ``degraded``, ``flapping``, ``security-alert`` (every other kind) on
      device D: ``{device_id="D"}`` (its DeviceDown/Degraded/... alerts), plus
      ``{node_id="D"}`` when D is a network node; then, for every other device M in
      ``affected`` (members correlated into the incident, e.g. the SOC sensor of a degraded
      link, or the node under a security alert; in ``affected`` order, each once):
      ``{device_id="M"}``, plus ``{node_id="M"}`` when M is a network node. So
      ``SecurityAttackOnDegradedLink`` (``device_id`` = the sensor) is silenced with the
      link's ``degraded`` incident the sensor joined, and ``NetworkLinkDegraded`` on a node
      with the ``security-alert`` incident the node joined.

    What they cover is the alerts of the root device, of its members and, for
    ``site-isolated``, of every device behind it: ``{upstream_node="N"}`` matches every alert
    labelled with N as its upstream, including one (a degraded device behind N, say) that
    belongs to an incident of its own, which stays silenced while N's incident is acknowledged
    and unresolved; likewise a member's alerts stay silenced while the incident it joined is
    acknowledged, even those that also belong to an incident of the member's own. Device ids
    are unique, so the alerts of other devices never match. The silencer replaces an
    acknowledged incident's silences whenever this list changes (a member joins or leaves).
    """

    def is_node(device_id: str) -> bool:
        device = topology.devices.get(device_id)
        return device is not None and device.device_class == "netnode"

    if incident_kind == t.INCIDENT_SITE_ISOLATED:
        return [
            [Matcher("node_id", root_device)],
            [Matcher("upstream_node", root_device)],
            [Matcher("device_id", root_device)],
        ]
    sets: list[list[Matcher]] = []
    for device_id in dict.fromkeys([root_device, *affected]):
        sets.append([Matcher("device_id", device_id)])
        if is_node(device_id):
            sets.append([Matcher("node_id", device_id)])
    return sets


def silence_matchers(silence: dict[str, Any]) -> frozenset[Matcher]:
    """The matchers of a silence as Alertmanager lists it (API v2), in any order."""
    found = silence.get("matchers")
    return frozenset(
        Matcher(
            str(m.get("name", "")),
            str(m.get("value", "")),
            bool(m.get("isRegex", False)),
            bool(m.get("isEqual", True)),
        )
        for m in (found if isinstance(found, list) else [])
        if isinstance(m, dict)
    )


def _iso(when: dt.datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("silence times must be timezone-aware")
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class AlertmanagerClient:
    """Alertmanager's silence API over aiohttp, against the peers of one cluster; a request
    goes to the peer that answered last and falls over to the next while one is away
    (silences reach every peer by gossip). :class:`Unavailable` when none answers."""

    def __init__(self, base_urls: str | Sequence[str], timeout_s: float = 5.0) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("AlertmanagerClient needs at least one URL")
        self.base_urls = [u.rstrip("/") for u in urls]
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        """The peer tried first (the one that answered last)."""
        return self.base_urls[0]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        failures: list[str] = []
        for base in list(self.base_urls):  # a copy: concurrent requests reorder the list
            try:
                async with self._http().request(method, f"{base}{path}", json=body) as resp:
                    text = await resp.text()
                    try:
                        data: Any = await resp.json(content_type=None) if text else None
                    except ValueError:
                        data = text
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failures.append(f"{base} ({type(exc).__name__})")
                continue
            if self.base_urls[0] != base:  # this peer answers: ask it first next time
                self.base_urls.remove(base)
                self.base_urls.insert(0, base)
            return resp.status, data
        raise Unavailable(
            f"Alertmanager is unreachable at {', '.join(failures)}; silences will be retried"
        )

    async def create_silence(
        self,
        matchers: list[Matcher],
        starts: dt.datetime,
        ends: dt.datetime,
        created_by: str,
        comment: str,
    ) -> str:
        """Create a silence and return its id. Alertmanager starts and ends it on time."""
        if not matchers:
            raise Invalid("a silence needs at least one matcher")
        body = {
            "matchers": [m.to_json() for m in matchers],
            "startsAt": _iso(starts),
            "endsAt": _iso(ends),
            "createdBy": created_by or "ioc-ops",
            "comment": comment or "ioc-ops",
        }
        status, data = await self._request("POST", "/api/v2/silences", body)
        if status == 200 and isinstance(data, dict) and isinstance(data.get("silenceID"), str):
            return str(data["silenceID"])
        if 400 <= status < 500:
            raise Invalid(f"Alertmanager refused the silence ({status}): {data}")
        raise Unavailable(f"Alertmanager answered {status} creating a silence: {data}")

    async def expire_silence(self, silence_id: str) -> None:
        """Expire a silence; one Alertmanager does not know (any more) is gone: fine."""
        status, data = await self._request("DELETE", f"/api/v2/silence/{silence_id}")
        if status == 200 or status == 404:
            return
        # Alertmanager 0.25 answers 500 "silence not found" for an unknown id.
        if isinstance(data, str) and "not found" in data:
            return
        if 400 <= status < 500:
            log.warning(
                "Alertmanager refused to expire silence %s (%s): %s", silence_id, status, data
            )
            return
        raise Unavailable(f"Alertmanager answered {status} expiring silence {silence_id}: {data}")

    async def silences(self) -> list[dict[str, Any]]:
        """Every silence Alertmanager holds (active, pending and recently expired)."""
        status, data = await self._request("GET", "/api/v2/silences")
        if status != 200 or not isinstance(data, list):
            raise Unavailable(f"Alertmanager answered {status} listing silences")
        return [s for s in data if isinstance(s, dict)]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
