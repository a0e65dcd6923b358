"""The CLI's way to the operations service: a small, synchronous HTTP client.

The CLI never touches the database or Kafka for an operator action: it asks the service, so
authentication, roles, the audit log and the incident events are the same whether a person
uses the console, the API or a terminal. Every failure becomes one line the operator can act
on: the service is not running, the token is refused, or the service's own reason for a 4xx.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from ioc.config import ENV_PREFIX, Settings
from ioc.errors import IocError

API = "/api/v1"
ACT_TIMEOUT_S = 60.0
"""An action may wait for another on the same incident, the broker and the incident agent
(the service's worst case is under a minute): the CLI waits that long for its answer."""

ParamValue = str | int | bool | None


class OpsClientError(IocError):
    """The operations service refused or failed a request; the message says why in one line."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OpsServiceDown(OpsClientError):
    """Nothing answers at the service's address."""


def _reason(body: bytes) -> str:
    """The service's ``{"error": reason}`` (or FastAPI's ``detail``), else the raw text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text.splitlines()[0][:300] if text else ""
    if isinstance(doc, dict):
        for key in ("error", "detail", "message"):
            value = doc.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, list) and value:  # pydantic validation errors
                first = value[0]
                if isinstance(first, dict):
                    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
                    msg = str(first.get("msg", first))
                    return f"{where}: {msg}" if where else msg
                return str(first)
    return text[:300]


class OpsClient:
    """Typed calls of the operations API (``/api/v1``) with a bearer token."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"<OpsClient {self.base_url}>"

    @classmethod
    def from_settings(cls, settings: Settings, timeout: float = 30.0) -> OpsClient:
        return cls(settings.ops_base_url, settings.resolved_ops_token(), timeout)

    # --- transport -------------------------------------------------------------------------
    def _url(self, path: str, params: Mapping[str, ParamValue] | None) -> str:
        url = self.base_url + path
        query = {
            key: ("true" if value is True else "false" if value is False else str(value))
            for key, value in (params or {}).items()
            if value is not None
        }
        return f"{url}?{urllib.parse.urlencode(query)}" if query else url

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, ParamValue] | None = None,
        body: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        unanswered: str = "",
    ) -> bytes:
        """The response body of a 2xx; :class:`OpsClientError` with a one-line reason else
        (``unanswered``: what to add when the service took the request but did not answer
        within ``timeout``, default :attr:`timeout`)."""
        wait = self.timeout if timeout is None else timeout
        data = None if body is None else json.dumps(body, default=str).encode()
        req = urllib.request.Request(self._url(path, params), data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=wait) as resp:
                payload: bytes = resp.read()
                return payload
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc.code, exc.read()) from None
        except TimeoutError:  # connected and sent, then no answer (a refused connect is below)
            raise OpsClientError(
                f"the operations service at {self.base_url} gave no answer within {wait:g} s"
                + (f"; {unanswered}" if unanswered else "")
            ) from None
        except (urllib.error.URLError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OpsServiceDown(
                f"the operations service at {self.base_url} is not answering ({reason}); "
                "start it with `ioc ops serve` (or `ioc run`)"
            ) from None

    def _http_error(self, status: int, body: bytes) -> OpsClientError:
        reason = _reason(body) or "no reason given"
        if status == 401:
            return OpsClientError(
                f"the operations service refused the token (401: {reason}); set "
                f"{ENV_PREFIX}OPS_TOKEN to a valid API token (`ioc ops token`), or unset it to "
                "use the local stack's admin token",
                status,
            )
        if status == 403:
            return OpsClientError(
                f"this token's role may not do that (403: {reason}); ask an admin for an "
                "operator or admin token",
                status,
            )
        if status >= 500:
            return OpsClientError(
                f"the operations service failed ({status}: {reason}); see its log", status
            )
        return OpsClientError(f"{reason} ({status})", status)

    def json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, ParamValue] | None = None,
        body: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        unanswered: str = "",
    ) -> Any:
        raw = self.request(
            method, path, params=params, body=body, timeout=timeout, unanswered=unanswered
        )
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise OpsClientError(
                f"the operations service at {self.base_url} answered {path} with something "
                "that is not JSON; is IOC_OPS_URL pointing at it?"
            ) from None

    def healthy(self) -> bool:
        """Whether ``/healthz`` answers 2xx (no token needed)."""
        try:
            with urllib.request.urlopen(self.base_url + "/healthz", timeout=2.0):
                return True
        except (OSError, ValueError):
            return False

    # --- incidents -------------------------------------------------------------------------
    def list_incidents(
        self, filters: Mapping[str, ParamValue] | None = None
    ) -> list[dict[str, Any]]:
        """Incident summaries matching ``filters`` (IncidentFilter's fields)."""
        return _list(self.json("GET", f"{API}/incidents", params=filters))

    def incident(self, incident_id: int) -> dict[str, Any]:
        return _dict(self.json("GET", f"{API}/incidents/{incident_id}"))

    def act(
        self,
        incident_id: int,
        action: str,
        note: str = "",
        assignee: str | None = None,
    ) -> dict[str, Any]:
        """``action``: acknowledge, assign, comment or resolve; the incident afterwards."""
        body: dict[str, Any] = {"note": note}
        if assignee is not None:
            body["assignee"] = assignee
        return _dict(
            self.json(
                "POST",
                f"{API}/incidents/{incident_id}/{action}",
                body=body,
                timeout=max(self.timeout, ACT_TIMEOUT_S),
                unanswered=(
                    f"the action may have been applied: check `ioc incidents show {incident_id}`"
                ),
            )
        )

    # --- maintenance -----------------------------------------------------------------------
    def list_windows(self, include_cancelled: bool = False) -> list[dict[str, Any]]:
        params: dict[str, ParamValue] = {"include_cancelled": True} if include_cancelled else {}
        return _list(self.json("GET", f"{API}/maintenance", params=params))

    def create_window(self, window: Mapping[str, Any]) -> dict[str, Any]:
        """``window``: WindowIn's fields (scope_kind, scope, starts_at, ends_at, cron,
        duration_minutes, note)."""
        return _dict(self.json("POST", f"{API}/maintenance", body=window))

    def cancel_window(self, window_id: int) -> dict[str, Any]:
        result = self.json("DELETE", f"{API}/maintenance/{window_id}")
        return result if isinstance(result, dict) else {"id": window_id}

    # --- on-call and SLA -------------------------------------------------------------------
    def on_call(
        self, domain: str | None = None, unit: str | None = None, at: str | None = None
    ) -> Any:
        return self.json("GET", f"{API}/oncall", params={"domain": domain, "unit": unit, "at": at})

    def sla_report(self, unit: str, period: str, fmt: str, lang: str = "vi") -> bytes:
        """The rendered report (CSV or HTML text, or PDF bytes)."""
        return self.request(
            "GET",
            f"{API}/sla/report",
            params={"unit": unit, "period": period, "format": fmt, "lang": lang},
        )


def _list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):  # a paged answer: {"items": [...]}
        value = value.get("items", value.get("incidents", value.get("windows", [])))
    if not isinstance(value, list):
        raise OpsClientError("the operations service answered with an unexpected document")
    return [item for item in value if isinstance(item, dict)]


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OpsClientError("the operations service answered with an unexpected document")
    return value
