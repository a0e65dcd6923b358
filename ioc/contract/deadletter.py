"""The dead-letter record (``ioc.deadletter.v1``): one wire format, written by the stream
workers and read by ``ioc deadletter``, the tests and anyone who subscribes.

A dead letter always fits: the original key and value are kept whole up to
:data:`MAX_KEPT_KEY_BYTES` / :data:`MAX_KEPT_VALUE_BYTES` and cut beyond, with their full
length and SHA-256 recorded and ``value_truncated`` / ``key_truncated`` set, so the encoded
record never exceeds :data:`MAX_DEAD_LETTER_BYTES`, well below the producer's request size
and the topic's ``max.message.bytes`` (both set from it). Sending one can then only fail for
transient reasons (the broker is away), which the workers retry like database outages.

The record's Kafka key is ``topic/partition/offset`` of the source record, so a batch
dead-lettered again after a crash repeats its keys and the compacted topic collapses them.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

import msgspec

from ioc.contract.schemas import MAX_MESSAGE_BYTES

MAX_KEPT_VALUE_BYTES: Final = MAX_MESSAGE_BYTES
"""Every value small enough to be valid is kept whole; only oversized ones are cut."""
MAX_KEPT_KEY_BYTES: Final = 1024
MAX_DETAIL_CHARS: Final = 500
MAX_TOPIC_CHARS: Final = 249  # Kafka's own limit on topic names
MAX_DEAD_LETTER_BYTES: Final = 128 * 1024
"""Upper bound of one encoded dead letter (worst case ~92 KiB: base64 of the kept bytes plus
escaped detail and metadata); a unit test checks the worst case against it."""
PRODUCER_MAX_REQUEST_BYTES: Final = 1024 * 1024
TOPIC_MAX_MESSAGE_BYTES: Final = 1024 * 1024


class DeadLetter(msgspec.Struct, kw_only=True, omit_defaults=False):
    reason: str
    detail: str
    feed: str | None
    topic: str
    partition: int
    offset: int
    kafka_timestamp_ms: int | None
    dead_lettered_at_ms: int
    key_b64: str | None
    key_length: int | None
    key_truncated: bool
    value_b64: str | None
    value_length: int | None
    value_sha256: str | None
    value_truncated: bool

    @property
    def source(self) -> str:
        return source_key(self.topic, self.partition, self.offset)

    def value(self) -> bytes | None:
        """The kept bytes of the original value (all of it unless ``value_truncated``)."""
        return None if self.value_b64 is None else base64.b64decode(self.value_b64)

    def key(self) -> bytes | None:
        return None if self.key_b64 is None else base64.b64decode(self.key_b64)


def source_key(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}/{offset}"


def _kept(data: bytes | None, limit: int) -> tuple[str | None, int | None, bool]:
    if data is None:
        return None, None, False
    return base64.b64encode(data[:limit]).decode(), len(data), len(data) > limit


def make(
    *,
    reason: str,
    detail: str,
    feed: str | None,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    kafka_timestamp_ms: int | None,
    now_ms: int,
) -> DeadLetter:
    key_b64, key_length, key_cut = _kept(key, MAX_KEPT_KEY_BYTES)
    value_b64, value_length, value_cut = _kept(value, MAX_KEPT_VALUE_BYTES)
    return DeadLetter(
        reason=reason,
        detail=detail[:MAX_DETAIL_CHARS],
        feed=feed,
        topic=topic[:MAX_TOPIC_CHARS],
        partition=partition,
        offset=offset,
        kafka_timestamp_ms=kafka_timestamp_ms,
        dead_lettered_at_ms=now_ms,
        key_b64=key_b64,
        key_length=key_length,
        key_truncated=key_cut,
        value_b64=value_b64,
        value_length=value_length,
        value_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
        value_truncated=value_cut,
    )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DeadLetter)


def encode(letter: DeadLetter) -> bytes:
    return _encoder.encode(letter)


def decode(data: bytes) -> DeadLetter:
    return _decoder.decode(data)
