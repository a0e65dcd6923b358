"""Unit tests see the settings' defaults, whatever mode the suite's stack runs in."""

from __future__ import annotations

import pytest

DEPLOYMENT_MODE_VARIABLES = ("IOC_KAFKA_PLAINTEXT",)
"""Set for a whole run (e.g. `IOC_KAFKA_PLAINTEXT=false make test`, the suite over SCRAM):
the integration tests follow them, the unit tests check the defaults and set what they test."""


@pytest.fixture(autouse=True)
def _default_deployment_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DEPLOYMENT_MODE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
