"""docs/openapi.json is the document the operations service serves: a change to the API
without regenerating it fails here, with the command that regenerates it."""

from __future__ import annotations

from ioc.services.ops.app import openapi_document, render_openapi
from ioc.services.ops.cli import DEFAULT_OPENAPI, OPENAPI_COMMAND


def test_committed_openapi_is_current() -> None:
    expected = render_openapi(openapi_document())
    assert DEFAULT_OPENAPI.exists(), f"{DEFAULT_OPENAPI} is missing: run `{OPENAPI_COMMAND}`"
    committed = DEFAULT_OPENAPI.read_text(encoding="utf-8")
    assert committed == expected, f"{DEFAULT_OPENAPI} is stale: run `{OPENAPI_COMMAND}`"


def test_document_covers_the_api() -> None:
    paths = openapi_document()["paths"]
    for path in (
        "/api/v1/incidents",
        "/api/v1/incidents/{incident_id}/acknowledge",
        "/api/v1/incidents/{incident_id}/cap.xml",
        "/api/v1/incidents/{incident_id}/ngsi-ld",
        "/api/v1/tokens",
        "/api/v1/audit",
        "/healthz",
    ):
        assert path in paths, path
    assert not any(p.startswith("/console") for p in paths)
