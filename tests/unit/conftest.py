"""Unit tests see the settings' defaults, whatever mode the suite's stack runs in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ioc.config import ENV_PREFIX

DEPLOYMENT_MODE_VARIABLES = ("IOC_KAFKA_PLAINTEXT",)
"""Set for a whole run (e.g. `IOC_KAFKA_PLAINTEXT=false make test`, the suite over SCRAM):
the integration tests follow them, the unit tests check the defaults and set what they test."""


@pytest.fixture(autouse=True)
def _default_deployment_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DEPLOYMENT_MODE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No IOC_ variable and no .env (the working directory is the test's own): only what a
    test sets reaches Settings, and the stack directory is the test's own too."""
    for key in list(os.environ):
        if key.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    monkeypatch.setenv("IOC_STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.chdir(tmp_path)
    return monkeypatch
