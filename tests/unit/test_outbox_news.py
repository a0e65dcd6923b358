"""Which transitions the shard leader publishes to the incident agent (ioc.streams.evaluator
``is_news``): every one the agent can act on, not a device's first verdict or a move between
``unknown`` and ``up``, which a national first round makes about 190,000 of."""

from __future__ import annotations

import itertools

from ioc.contract import tables as t
from ioc.streams.evaluator import is_news
from ioc.streams.state import Transition


def _tr(old: str, new: str) -> Transition:
    return Transition("cam-1", old, new, "", 0)


def test_first_verdicts_and_moves_between_unknown_and_up_are_not_news() -> None:
    assert not is_news(_tr(t.STATE_UNKNOWN, t.STATE_UP))  # a first verdict, or data again
    assert not is_news(_tr(t.STATE_UNKNOWN, t.STATE_UNKNOWN))  # a first verdict: no data
    assert not is_news(_tr(t.STATE_UP, t.STATE_UNKNOWN))


def test_every_transition_into_or_out_of_an_incident_state_is_news() -> None:
    worthy = (t.STATE_DOWN, t.STATE_FLAPPING, t.STATE_DEGRADED, t.STATE_UNREACHABLE)
    for old, new in itertools.product(t.STATES, t.STATES):
        if old == new:
            continue
        if old in worthy or new in worthy:
            assert is_news(_tr(old, new)), (old, new)
