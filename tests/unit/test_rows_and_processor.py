"""Rows, latest-facts merging and edge validation: the hot path without a database."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson

from ioc.contract import schemas as s
from ioc.contract.raw import RAW_COLUMNS
from ioc.contract.topology import load_scenario
from ioc.streams.processor import FeedProcessor, Record, dead_letter
from ioc.streams.rows import Batch, LastSeen, minute_of, raw_row

NOW = int(time.time() * 1000)


def test_every_kind_has_a_row_of_its_feed_width() -> None:
    samples: list[s.Message] = [
        s.CameraHeartbeat(v=1, device_id="c", seq=1, ts_ms=NOW, status="ok", uptime_s=1),
        s.CameraStream(
            v=1,
            device_id="c",
            seq=2,
            ts_ms=NOW,
            fps=25,
            bitrate_kbps=1,
            dropped_frames=0,
            frozen=False,
            black=False,
        ),
        s.CameraTraffic(
            v=1,
            device_id="c",
            seq=3,
            ts_ms=NOW,
            interval_s=60,
            vehicles=3,
            mean_speed_kmh=40,
            occupancy_pct=10,
        ),
        s.CameraIncident(
            v=1,
            device_id="c",
            seq=4,
            ts_ms=NOW,
            incident_id="i",
            incident="congestion",
            state="open",
        ),
        s.TelehealthHeartbeat(
            v=1, device_id="t", seq=1, ts_ms=NOW, status="ok", waiting_patients=2, active_sessions=1
        ),
        s.TelehealthSession(v=1, device_id="t", seq=2, ts_ms=NOW, session_id="s", event="start"),
        s.TelehealthQuality(
            v=1,
            device_id="t",
            seq=3,
            ts_ms=NOW,
            session_id="s",
            rtt_ms=1,
            jitter_ms=1,
            loss_pct=0,
            video_height=720,
        ),
        s.NetnodeProbe(v=1, device_id="n", seq=1, ts_ms=NOW, reachable=True, rtt_ms=1, loss_pct=0),
        s.NetnodeCounters(
            v=1,
            device_id="n",
            seq=2,
            ts_ms=NOW,
            interface="u",
            interval_s=15,
            in_bps=1,
            out_bps=1,
            in_errors=0,
            out_errors=0,
            capacity_bps=1,
        ),
        s.NetnodeLink(v=1, device_id="n", seq=3, ts_ms=NOW, interface="u", state="down"),
    ]
    for m in samples:
        row = raw_row(m)
        assert len(row) == len(RAW_COLUMNS[m.feed]), m.kind
        assert row[1:4] == (m.device_id, m.seq, m.kind)


def test_last_seen_keeps_the_newest_facts_and_ignores_probes_for_liveness() -> None:
    entry = LastSeen("n", "netnode")
    entry.add(
        s.NetnodeProbe(
            v=1, device_id="n", seq=5, ts_ms=NOW, reachable=False, rtt_ms=None, loss_pct=100
        )
    )
    entry.add(
        s.NetnodeProbe(
            v=1, device_id="n", seq=4, ts_ms=NOW - 5000, reachable=True, rtt_ms=2, loss_pct=0
        )
    )  # late: must not win
    assert entry.probe_reachable is False and entry.probe_ts == NOW
    assert entry.last_ts is None  # the node itself said nothing
    # the newest good and failed probe, whatever their order: a cut between rounds shows
    assert (entry.probe_ok_ts, entry.probe_fail_ts) == (NOW - 5000, NOW)
    cam = LastSeen("c", "camera")
    cam.add(
        s.CameraStream(
            v=1,
            device_id="c",
            seq=2,
            ts_ms=NOW,
            fps=3,
            bitrate_kbps=1,
            dropped_frames=0,
            frozen=True,
            black=False,
        )
    )
    cam.add(
        s.CameraStream(
            v=1,
            device_id="c",
            seq=1,
            ts_ms=NOW - 10_000,
            fps=25,
            bitrate_kbps=1,
            dropped_frames=0,
            frozen=False,
            black=False,
        )
    )
    assert cam.frozen is True and cam.fps == 3 and cam.last_seq == 2


def test_batch_marks_each_minute_once() -> None:
    msgs: list[s.Message] = [
        s.CameraHeartbeat(
            v=1, device_id="c", seq=i, ts_ms=NOW + i * 20_000, status="ok", uptime_s=1
        )
        for i in range(6)
    ]
    batch = Batch.build("camera", msgs, "camera")
    assert batch.minutes == {minute_of(m.ts_ms) for m in msgs}
    assert len(batch.rows) == 6 and batch.newest_ts_ms == msgs[-1].ts_ms


def test_batch_rows_are_made_on_each_read_and_skip_in_batch_duplicates() -> None:
    """The COPY reads the rows; a retry (or the replay path's staging COPY) reads them again."""
    msgs: list[s.Message] = [
        s.CameraHeartbeat(v=1, device_id="c", seq=i, ts_ms=NOW + i, status="ok", uptime_s=1)
        for i in (1, 2, 2)
    ]
    batch = Batch.build("camera", msgs, "camera")
    first, again = list(batch.rows), list(batch.rows)
    assert first == again == [raw_row(msgs[0]), raw_row(msgs[1])] and len(batch.rows) == 2


class FakePool:
    """Stands in for asyncpg (pure logic only: the real writer is tested on the stack)."""


def make_processor() -> tuple[FeedProcessor, list[tuple[bytes | None, bytes]]]:
    sent: list[tuple[bytes | None, bytes]] = []

    async def send(key: bytes | None, value: bytes) -> Any:
        sent.append((key, value))
        return None

    return FeedProcessor(load_scenario("demo"), FakePool(), send), sent


def record(value: bytes, key: bytes | None = b"cam-991-001", offset: int = 0) -> Record:
    return Record("ioc.camera.v1", 0, offset, key, value)


def test_validation_routes_every_bad_message_with_a_reason() -> None:
    processor, _ = make_processor()
    good = s.encode(
        s.CameraHeartbeat(v=1, device_id="cam-991-001", seq=1, ts_ms=NOW, status="ok", uptime_s=1)
    )
    stranger = s.encode(
        s.CameraHeartbeat(v=1, device_id="cam-000", seq=1, ts_ms=NOW, status="ok", uptime_s=1)
    )
    node_on_camera_feed = s.encode(
        s.CameraHeartbeat(v=1, device_id="nn-991", seq=1, ts_ms=NOW, status="ok", uptime_s=1)
    )
    valid, invalid = processor.validate(
        "camera",
        [
            record(good),
            record(b"{oops"),
            record(stranger, b"cam-000"),
            record(node_on_camera_feed, b"nn-991"),
            record(good, b"someone-else"),
        ],
        NOW,
    )
    assert len(valid) == 1
    assert [e.reason for _, e in invalid] == [
        s.REASON_NOT_JSON,
        s.REASON_UNKNOWN_DEVICE,
        s.REASON_WRONG_FEED,
        s.REASON_KEY_MISMATCH,
    ]


def test_dead_letters_carry_the_original_bytes_and_where_they_came_from() -> None:
    processor, sent = make_processor()
    asyncio.run(processor.process("camera", [record(b"\xff\x00 garbage", offset=41)]))
    assert len(sent) == 1
    assert sent[0][0] == b"ioc.camera.v1/0/41"
    doc = orjson.loads(sent[0][1])
    assert doc["reason"] == s.REASON_NOT_JSON
    assert base64.b64decode(doc["value_b64"]) == b"\xff\x00 garbage"
    assert (doc["topic"], doc["partition"], doc["offset"]) == ("ioc.camera.v1", 0, 41)
    assert processor.positions[("ioc.camera.v1", 0)] == 41
    assert orjson.loads(dead_letter(record(b"x"), "r", "d" * 2000, NOW))["detail"] == "d" * 500


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.binary(max_size=40)), st.binary(max_size=300)),
        max_size=20,
    )
)
@settings(max_examples=300, deadline=None)
def test_no_input_escapes_validation(batch: list[tuple[bytes | None, bytes]]) -> None:
    """Hostile keys and values: every record comes out valid or dead-lettered, nothing raises."""
    processor, _ = make_processor()
    records = [record(value, key, offset=i) for i, (key, value) in enumerate(batch)]
    for feed in ("camera", "telehealth", "netnode"):
        valid, invalid = processor.validate(feed, records, NOW)
        assert len(valid) + len(invalid) == len(records)
        assert all(exc.reason in s.DLQ_REASONS for _, exc in invalid)
