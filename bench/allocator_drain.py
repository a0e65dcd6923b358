"""Drain rate of one backlog by one worker on jemalloc against pymalloc (IOC_WORKER_ALLOCATOR),
interleaved in one run so that machine noise hits both alike: what the allocator that keeps a
worker's RSS flat after catch-ups (ioc.memory) costs on the hot path.

    .venv/bin/python bench/allocator_drain.py [EVENTS [REPEAT]]   # default 1000000 3

Needs the stack (`ioc stack up`, which installs libjemalloc2). Prints each drain and the
ratio of the medians (docs/performance.md, "Soak")."""

import asyncio
import statistics
import sys
import uuid
from pathlib import Path

from baselines import SCENARIO, forget_group, namespace, produce_backlog, product_drain

from ioc.bootstrap import bootstrap, drop_namespace, drop_schema
from ioc.streams.consumer import consumer_group


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    tag = f"alloc{uuid.uuid4().hex[:6]}"
    settings = namespace(tag)
    asyncio.run(bootstrap(settings, SCENARIO))
    log_dir = Path("/tmp/ioc-allocator-drain")
    log_dir.mkdir(exist_ok=True)
    runs: dict[str, list[int]] = {"jemalloc": [], "pymalloc": []}
    try:
        valid = produce_backlog(settings, events)
        print("backlog", valid, flush=True)
        for r in range(repeat):
            for alloc in ("jemalloc", "pymalloc") if r % 2 == 0 else ("pymalloc", "jemalloc"):
                s = settings.model_copy(
                    update={"db_schema": f"{tag}{alloc[0]}{r}", "worker_allocator": alloc}
                )
                asyncio.run(bootstrap(s, SCENARIO))
                got = product_drain(s, valid, 1, log_dir)
                runs[alloc].append(round(got))
                print(r, alloc, round(got), flush=True)
                asyncio.run(drop_schema(s))
                forget_group(consumer_group(settings), settings)
    finally:
        asyncio.run(drop_namespace(settings))
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(runs, med, "ratio jemalloc/pymalloc", round(med["jemalloc"] / med["pymalloc"], 3))


if __name__ == "__main__":
    main()
