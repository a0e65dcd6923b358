"""ioc.memory: glibc's malloc_trim, and the worker's use of it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ioc import memory

TRIM_PROBE = """
from ioc import memory

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

chunks = [bytearray(8192) for _ in range(20_000)]  # 160 MiB in glibc's heap (not mmap'd)
del chunks[::2]  # holes in the middle of the heap: free but not at its top
before = rss_mib()
released = memory.trim()
print(released, before - rss_mib())
"""


def test_trim_hands_freed_pages_back() -> None:
    """Free pages inside the heap (a drained backlog's holes) go back to the OS."""
    if memory._glibc() is None:
        pytest.skip("not glibc")
    out = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True
    )
    released, freed_mib = out.stdout.split()
    assert released == "True"
    assert float(freed_mib) > 25, out.stdout  # a page or so of each 8 KiB hole


def test_worker_trims_every_30_s_by_default() -> None:
    import argparse

    from ioc.streams import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["worker"])
    assert args.memory_trim_every_s == 30.0
    assert parser.parse_args(["worker", "--memory-trim-every-s", "0"]).memory_trim_every_s == 0


FREEZE_PROBE = """
import gc
from ioc import memory

class Node:
    def __init__(self):
        self.me = self  # a cycle: only the cyclic collector frees it

kept = [Node() for _ in range(50_000)]  # long-lived, like a topology
memory.freeze_long_lived()
frozen = gc.get_freeze_count()
gc.collect()
# what is allocated after the freeze is still collected (by this collection, not earlier ones)
gc.disable()
for _ in range(1000):
    Node()
print(frozen >= 50_000, gc.collect() >= 1000, gc.get_freeze_count() == frozen)
"""


def test_freeze_keeps_the_long_lived_out_of_full_collections() -> None:
    """What exists at the freeze leaves the collector's generations; later garbage does not."""
    out = subprocess.run(
        [sys.executable, "-c", FREEZE_PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True", "True", "True"]


def test_collector_paused_nests_and_resumes_only_what_was_running() -> None:
    """Overlapping rounds (two tasks) resume the collector when the last one ends; a
    collector that was off before stays off."""
    import gc

    assert gc.isenabled()
    try:
        with memory.collector_paused():
            assert not gc.isenabled()
            with memory.collector_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()  # the outer block still runs
        assert gc.isenabled()
        try:
            with memory.collector_paused():
                raise ValueError("a failed round")
        except ValueError:
            pass
        assert gc.isenabled()
        gc.disable()
        with memory.collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: not turned on behind the owner's back
    finally:
        gc.enable()


async def test_a_pause_ends_at_its_bound_even_if_the_block_has_not() -> None:
    """A round stuck on an unanswering database does not keep the collector off."""
    import asyncio
    import gc

    try:
        with memory.collector_paused(longest_s=0.05):
            assert not gc.isenabled()
            await asyncio.sleep(0.2)
            assert gc.isenabled()  # past the bound, still inside
        assert gc.isenabled()
        with memory.collector_paused(longest_s=5):  # ended in time: the timer is cancelled
            pass
        assert gc.isenabled()
    finally:
        gc.enable()


async def test_a_round_runs_with_the_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluator's round pauses the collector around its body (and resumes it after)."""
    import gc

    from ioc.streams.evaluator import Evaluator

    seen: list[bool] = []

    async def body(self: Evaluator, wall_ms: int | None, leader: object) -> None:
        seen.append(gc.isenabled())

    monkeypatch.setattr(Evaluator, "_round", body)
    evaluator = Evaluator.__new__(Evaluator)
    evaluator.pause_collector = True  # the default (__init__ needs a topology and a pool)
    assert await evaluator.run_once(wall_ms=1) is None
    evaluator.pause_collector = False  # bench/device_scale.py's comparison rounds
    assert await evaluator.run_once(wall_ms=1) is None
    assert seen == [False, True] and gc.isenabled()


ALLOCATOR_PROBE = """
import sys
from ioc import memory

print(memory.use_allocator(sys.argv[1], [sys.executable, *sys.orig_argv[1:]]), flush=True)
print(memory.allocator_in_use())
"""


def _probe(wanted: str, **env: str) -> list[str]:
    import os

    out = subprocess.run(
        [sys.executable, "-c", ALLOCATOR_PROBE, wanted],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | env,
    )
    return out.stdout.split()


def test_worker_allocator_switches_to_jemalloc_by_re_executing() -> None:
    """The process re-executes itself once: the new image answers with jemalloc loaded."""
    if memory.jemalloc_library() is None:
        pytest.skip("libjemalloc2 is not installed (ioc stack up installs it)")
    assert _probe("jemalloc") == ["jemalloc", "jemalloc"]


def test_pymalloc_is_kept_without_a_re_execution() -> None:
    assert _probe("pymalloc") == ["pymalloc", "pymalloc"]


def test_a_failed_switch_does_not_loop() -> None:
    """After one re-execution that did not load jemalloc, the process goes on, on pymalloc."""
    assert _probe("jemalloc", IOC_ALLOCATOR_SWITCHED="1") == ["pymalloc", "pymalloc"]


def test_workers_default_to_pymalloc_until_an_hour_on_jemalloc_keeps_up() -> None:
    from ioc.config import Settings

    assert Settings.model_fields["worker_allocator"].default == "pymalloc"
