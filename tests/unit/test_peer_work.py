"""The benchmark peers' rollup is the product's: its SQLite dialect of the contract's
expressions must mean what PostgreSQL makes of them (bench/peer_work.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from peer_work import PeerWork, _greatest, _Percentile, sqlite_expr


def test_percentile_is_postgres_percentile_cont() -> None:
    expr, needed = sqlite_expr("sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY rtt_ms))")
    assert expr == "sat_real(pct_0_95(rtt_ms))"
    assert needed == {"pct_0_95": 0.95}
    agg = type("p", (_Percentile,), {"fraction": 0.95})()
    for v in (1.0, 2.0, 3.0, 4.0, None):
        agg.step(v)
    # SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY x) FROM (VALUES (1),(2),(3),(4)) -> 3.85
    assert abs(agg.finalize() - 3.85) < 1e-9


def test_greatest_ignores_nulls_like_postgres() -> None:
    assert _greatest(None, 2, 1) == 2
    assert _greatest(None, None) is None


def test_every_feed_rollup_compiles_and_invalid_records_are_dead_letters() -> None:
    work = PeerWork({})
    batch = work.process(
        [("camera", "t", 0, 7, b"cam-1", b"{}"), ("camera", "t", 0, 8, None, b"x")]
    )
    assert batch.valid == 0
    assert [d.key for d in batch.dead] == [b"t/0/7", b"t/0/8"]
