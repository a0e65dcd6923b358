"""Polling for a condition, with a message that says what was awaited and what was seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 1.0,
    what: str = "condition",
) -> T:
    """Call ``predicate`` every ``interval`` s until it returns something truthy; return that
    (never None: a predicate typed ``X | None`` gives an ``X``).

    AssertionError after ``timeout`` s, with ``what`` and the last value.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
