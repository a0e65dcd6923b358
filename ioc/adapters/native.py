"""What every adapter needs to read a native payload and number its messages.

A native document is JSON; the adapters pick its fields (:func:`number`, :func:`iso_time`),
build the contract's message validated exactly as the workers will (:func:`validated`), and
raise :class:`AdapterError` (a ``ValueError`` with a clear message, for the collector to
count or dead-letter) for anything they cannot map, never another exception.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

import msgspec
import orjson

from ioc.contract import schemas as s

M = TypeVar("M", bound=s.Message)


class AdapterError(ValueError):
    """A native payload that cannot be mapped; the message says what is wrong."""


def document(payload: dict[str, Any] | bytes | str, what: str) -> dict[str, Any]:
    """The payload as a JSON object (a dict passes as it is)."""
    if isinstance(payload, dict):
        return payload
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise AdapterError(f"{what}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise AdapterError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    return doc


def number(doc: dict[str, Any], key: str, what: str, default: float | None = None) -> float:
    """``doc[key]`` as a float (``default`` when absent; absent without one: an error)."""
    value = doc.get(key, default)
    if value is None:
        raise AdapterError(f"{what}: '{key}' is missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AdapterError(f"{what}: '{key}' must be a number, got {value!r:.40}")
    return float(value)


def validated(kind: type[M], fields: dict[str, Any], what: str) -> M:
    """The contract message, validated exactly as the workers will (ranges, lengths)."""
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise AdapterError(f"{what}: {exc}") from None


def iso_time(value: Any, what: str) -> int:
    """An ISO 8601 time with its offset (``2026-11-30T08:00:00+07:00``) -> epoch ms."""
    if not isinstance(value, str):
        raise AdapterError(f"{what}: expected an ISO 8601 time, got {value!r:.40}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise AdapterError(f"{what}: {value!r:.40} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise AdapterError(f"{what}: {value!r:.40} has no UTC offset")
    return int(parsed.timestamp() * 1000)


class Sequencer:
    """Per-device sequence numbers from 1: shared by the adapters of one collector, and an
    adapter's numbering when no collector gives its own (``ioc collect`` continues above a
    previous run's numbers)."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def next(self, device_id: str) -> int:
        self.last[device_id] = n = self.last.get(device_id, 0) + 1
        return n
