"""The shard leader's round goes before the worker's next feed batch.

A worker's feed consumer and its shard leader's evaluation round share one event loop. Each
batch the consumer decodes and validates is seconds of CPU on a loaded machine, run between
the round's awaits: the round's read of 100,000 devices' facts arrives in many socket reads,
and every one of them waited behind a batch. In the national run (bench/national.py, 2 cores
saturated) rounds that take 1.1 s on an idle machine took 33-141 s, no outage was judged in
time, and the outbox's publish timed out (docs/scaling.md, "The national run").

So while a round runs, the consumer starts no new batch: writes already in flight go on, and
librdkafka keeps prefetching. The pause is bounded per batch (a round stuck on the database
must not stop ingestion): after ``longest_s`` the batch goes ahead, and the next one waits
again if the round is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from ioc.contract import metrics as m
from ioc.observability import counter


class RoundPriority:
    def __init__(self, longest_s: float) -> None:
        self.longest_s = longest_s
        self._idle = asyncio.Event()
        self._idle.set()
        self._paused = counter(m.FEED_PAUSED_FOR_ROUND_SECONDS)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around the leader's round (and its publish): feed batches wait meanwhile."""
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()

    async def wait(self) -> None:
        """Before the consumer's next batch: until no round runs, at most ``longest_s``."""
        if self._idle.is_set():
            return
        started = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.longest_s)
        self._paused.inc(time.perf_counter() - started)
