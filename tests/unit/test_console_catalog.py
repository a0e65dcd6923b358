"""The console names every incident step and kind the contract has, and nothing else."""

from __future__ import annotations

from typing import get_args

from ioc.contract.events import IncidentEventKind
from ioc.contract.tables import INCIDENT_KINDS
from ioc.services.ops.console import EVENTS, KINDS


def test_the_console_names_exactly_the_incident_steps_of_the_contract() -> None:
    assert set(EVENTS) == set(get_args(IncidentEventKind))


def test_the_console_names_exactly_the_incident_kinds_of_the_contract() -> None:
    assert set(KINDS) == set(INCIDENT_KINDS)
