"""Dead letters always fit: bounded whatever the original's size, and they say so."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from ioc.contract import deadletter as dl

NOW = 1_700_000_000_000


def _letter(key: bytes | None, value: bytes | None, detail: str = "d") -> dl.DeadLetter:
    return dl.make(
        reason="oversized",
        detail=detail,
        feed="camera",
        topic="t" * 300,
        partition=2**31 - 1,
        offset=2**63 - 1,
        key=key,
        value=value,
        kafka_timestamp_ms=2**63 - 1,
        now_ms=NOW,
    )


def test_the_worst_case_dead_letter_fits_every_limit() -> None:
    # The largest value a broker would take, a huge key, and a detail of characters that
    # JSON escapes into six bytes each.
    worst = _letter(b"\xff" * 1_000_000, b"\x00" * 1_048_576, "\x01" * 10_000)
    size = len(dl.encode(worst))
    assert size <= dl.MAX_DEAD_LETTER_BYTES < dl.PRODUCER_MAX_REQUEST_BYTES, size
    assert dl.MAX_DEAD_LETTER_BYTES < dl.TOPIC_MAX_MESSAGE_BYTES


def test_a_cut_original_keeps_its_first_bytes_length_and_hash() -> None:
    value = bytes(range(256)) * 1000
    letter = dl.decode(dl.encode(_letter(b"k", value)))
    assert letter.value_truncated and not letter.key_truncated
    assert letter.value_length == len(value)
    assert letter.value_sha256 == hashlib.sha256(value).hexdigest()
    kept = letter.value()
    assert kept is not None and value.startswith(kept) and len(kept) == dl.MAX_KEPT_VALUE_BYTES


def test_a_tombstone_has_no_value_and_a_small_record_is_kept_whole() -> None:
    tomb = dl.decode(dl.encode(_letter(None, None)))
    assert tomb.value() is None and tomb.key() is None and not tomb.value_truncated
    small = dl.decode(dl.encode(_letter(b"cam-1", b'{"x":1}')))
    assert small.value() == b'{"x":1}' and small.key() == b"cam-1"
    assert small.source.endswith(f"/{2**31 - 1}/{2**63 - 1}")


@given(st.one_of(st.none(), st.binary(max_size=5000)), st.binary(max_size=200_000), st.text())
@settings(max_examples=50, deadline=None)
def test_every_dead_letter_is_bounded(key: bytes | None, value: bytes, detail: str) -> None:
    assert len(dl.encode(_letter(key, value, detail))) <= dl.MAX_DEAD_LETTER_BYTES
