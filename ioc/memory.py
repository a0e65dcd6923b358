"""Handing freed heap back to the operating system (glibc's allocator), and keeping the
cyclic garbage collector off the long-lived structures.

Why: a worker catching up a backlog (after a broker or database outage) fills librdkafka's
prefetch queue and the batches in flight. librdkafka's threads and the thread that polls it
allocate from glibc arenas of their own (up to 8 per core), and glibc keeps the freed pages of
those arenas mapped: the hour's soak measured RSS stepping up by 50-240 MiB at each catch-up
and never coming down (docs/performance.md). A periodic ``malloc_trim(0)`` (:func:`trim`, which
releases free pages inside every arena's heaps, not only at their top) gives that memory back
once the backlog is drained; fewer arenas (``MALLOC_ARENA_MAX=2``) did not, in the same
reproduction. A no-op where the C library is not glibc.

That is not all a catch-up leaves: CPython's own small-object allocator (pymalloc) takes
memory in 1 MiB arenas and unmaps one only when every object in it is dead. A catch-up spreads
its batches over many new arenas, and the steady stream's short-lived objects then keep a few
alive in each, so RSS stepped up at every catch-up and stayed (+44 % over the soak's hour).
:func:`use_allocator` can run the worker on jemalloc instead (every object from ``malloc``, which
jemalloc serves from size classes and gives back page by page once freed)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Allocator = Literal["jemalloc", "pymalloc"]
JEMALLOC = "libjemalloc.so.2"
"""Debian's ``libjemalloc2`` (the local stack installs it; the image has it)."""
_SWITCHED = "IOC_ALLOCATOR_SWITCHED"
"""Set across the re-exec: a library that failed to preload must not loop the process."""


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return libc


def trim() -> bool:
    """Return the allocator's free pages to the operating system; whether any were. It walks
    every arena under its lock (140 ms for 480 MiB of holes, measured): call it off the event
    loop."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def jemalloc_library() -> str | None:
    """jemalloc's shared library as ``LD_PRELOAD`` takes it, None where it is not installed."""
    return JEMALLOC if ctypes.util.find_library("jemalloc") else None


def allocator_in_use() -> Allocator:
    """Which allocator this process's objects come from (jemalloc only if both preloaded and
    asked for: pymalloc would otherwise still serve every small object)."""
    if os.environ.get("PYTHONMALLOC") != "malloc":
        return "pymalloc"
    maps = Path("/proc/self/maps")
    loaded = maps.exists() and "libjemalloc" in maps.read_text()
    return "jemalloc" if loaded else "pymalloc"


def use_allocator(wanted: Allocator, command: Sequence[str]) -> Allocator:
    """Make this process run on ``wanted``: for jemalloc, re-execute ``command`` (this
    process's own command line, the interpreter first) with it preloaded and CPython's
    small-object allocator off (an allocator is chosen before the interpreter starts, so only
    a new image can switch). Call it first thing, before threads or connections exist.
    Returns the allocator kept when no switch happens: pymalloc, with a warning, where
    jemalloc is not installed or did not load."""
    current = allocator_in_use()
    if wanted == current or wanted == "pymalloc":
        return current
    library = jemalloc_library()
    if library is None or os.environ.get(_SWITCHED):
        log.warning(
            "jemalloc %s: the worker runs on pymalloc and keeps what each catch-up takes "
            "(apt-get install libjemalloc2, or IOC_WORKER_ALLOCATOR=pymalloc to silence this)",
            "is not installed" if library is None else "did not load",
        )
        return current
    preload = " ".join(filter(None, (library, os.environ.get("LD_PRELOAD"))))
    env = os.environ | {"LD_PRELOAD": preload, "PYTHONMALLOC": "malloc", _SWITCHED: "1"}
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execve(command[0], list(command), env)


def freeze_long_lived() -> None:
    """Move every object the process holds now into CPython's permanent generation, so that
    the cyclic collector's full collections stop walking them.

    Why: a national worker holds the topology and the state machine (about a million objects
    for 100,000 devices) for its whole life, and every evaluation round allocates 100,000
    facts that live through the round; those survivors trigger a full collection every round
    or two, and each walked everything. Call it once the long-lived structures are built
    (after start-up and after a new term restored the state machine); frozen objects are
    still freed when their last reference goes, only a reference cycle among them would stay.
    """
    gc.collect()  # what is garbage now is collected first, not frozen
    gc.freeze()


_pauses = 0
_resume = False


@contextlib.contextmanager
def collector_paused(longest_s: float | None = None) -> Iterator[None]:
    """Keep CPython's cyclic collector from running inside the block (nested and concurrent
    blocks: it resumes when the last one ends, and only if it was running before the first).

    Why: a national evaluation round allocates about 200,000 GC-tracked objects (the facts
    query's records, a ``Facts`` per device) that are acyclic and freed by their reference
    counts when the round ends; while they live, every 700 allocations start a young
    collection that walks them, and their survivors start full collections: a quarter of the
    round's time (0.34 s of 1.39 s, bench/device_scale.py). Cycles made meanwhile (by this or
    another task) are not lost, only collected after the block.

    ``longest_s`` (inside a running event loop): the collector runs again after that long
    even if the block has not ended (a round waiting on a database that does not answer must
    not keep it off, and the other tasks' cycles uncollected, for minutes).
    """
    global _pauses, _resume
    if _pauses == 0:
        _resume = gc.isenabled()
        gc.disable()
    _pauses += 1
    timer = None
    if longest_s is not None:
        timer = asyncio.get_running_loop().call_later(longest_s, _pause_expired)
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        _pauses -= 1
        if _pauses == 0 and _resume:
            gc.enable()


def _pause_expired() -> None:
    """A paused block outlived its bound: the collector runs again (for every open block)."""
    if _pauses and _resume:
        gc.enable()
