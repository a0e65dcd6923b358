"""The fault-log record (``ioc.faults.v1``): what the simulators broke, when, and what it
cut off. One record at each fault's start and end, keyed by the fault id; tests and
operators' rehearsals read it to know what should have been detected."""

from __future__ import annotations

from typing import Any

import msgspec


class FaultRecord(msgspec.Struct, kw_only=True):
    fault_id: str
    type: str
    event: str  # start | end | summary (in a simulation summary)
    ts_ms: int
    start_ms: int
    end_ms: int | None  # None: until the end of the run
    target: str | None
    rate: float | None
    params: dict[str, Any]
    affected: list[str]  # the target and, for node faults, every device behind it


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(FaultRecord)


def encode(record: FaultRecord) -> bytes:
    return _encoder.encode(record)


def decode(data: bytes) -> FaultRecord:
    return _decoder.decode(data)
