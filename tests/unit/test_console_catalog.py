"""The console names every incident step the stream carries, and nothing else."""

from __future__ import annotations

from typing import get_args

from ioc.contract.events import IncidentEventKind
from ioc.services.ops.console import EVENTS


def test_the_console_names_exactly_the_incident_steps_of_the_contract() -> None:
    assert set(EVENTS) == set(get_args(IncidentEventKind))
