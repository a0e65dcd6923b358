"""History behind the dashboards (issue 18 item 5, docs/history.md section 7): 90 days of a
national deployment's history, generated and COPYed at the tiers a deployment holds, then
every dashboard panel's query timed as Grafana's read-only role and as a province's viewer
over 24 h, 7 d, 30 d and 90 d (``--time``), and the monthly SLA report (``--sla``).

What ``--generate`` loads into a private schema (``--schema``; migrations and the
scenario's topology, no Kafka):

- the hourly and daily device and unit rollups of every feed for the last ``--days`` days,
  the 1-minute ones for the last ``--minute-days`` days and the raw rows for the last
  ``--raw-hours`` hours (raw: one simulated report cycle of every device, replayed);
- ``device_state_intervals`` for the last ``--days`` days: every device up, with about
  ``--outages`` outages a month (down, then up again), for the SLA report;
- then every closed chunk of the hourly and daily tables in key order, as the shard leader
  leaves them (migration 0018; ``--no-order`` skips it, ``--order-only`` does only it, on an
  existing schema): about 3 minutes per national week of camera hours on this machine.

Values are plausible, not simulated: per column, by how it combines over time
(``FeedSpec.device_over_time``), a base value shaped by the hour of the day (Vietnam time).
To COPY hundreds of millions of rows from Python at the database's pace, each table's rows
for one bucket are made once per variant (``VARIANTS`` levels of the daily profile) as CSV
without the bucket, and every bucket is that text with its timestamp put in front of each
line (``bytes.replace``). Unit rows count each unit's devices of the class from the
topology, so counts and sums agree with the device rows in size, not row by row.

    .venv/bin/python bench/history.py --generate [--scenario national] [--days 90]
        [--minute-days 2] [--raw-hours 1] [--schema bench_history] [--seed 18]

    .venv/bin/python bench/history.py --time [--sla] [--repeat 10] [--schema bench_history]

Needs the stack's database (`ioc stack up`). About 500 M rows at the defaults: expect most
of an hour on the 2-core machine, and tens of GB (the run prints each tier's size).
``--time`` writes bench/results/history.json and history.png (p95 of every panel at each
range, against the 500 ms goal); exit 1 when a panel misses it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import math
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from bench_machine import machine, percentile, results_dir

from ioc.bootstrap import bootstrap_database
from ioc.config import Settings, load_settings
from ioc.contract import feeds, schemas
from ioc.contract.feeds import Aggregate, FeedSpec
from ioc.contract.history import DAY, HOUR, MINUTE, Tier
from ioc.contract.raw import RAW_COLUMNS
from ioc.contract.topology import Topology, load_scenario
from ioc.dashboards.build import GENERATED
from ioc.dashboards.grafana_sql import expand_sql, grafana_interval_ms, resolve_variables
from ioc.db import connect
from ioc.db.provinces import viewer_connection
from ioc.streams.history import order_closed_chunks
from ioc.streams.writer import open_pool

VARIANTS = 8
PIECE = 120
"""Buckets per loading job (5 days of hours): the unit of work spread over ``--jobs``."""
"""Levels of the daily profile each table's bucket text is made at (and reused)."""
UTC7 = dt.timezone(dt.timedelta(hours=7))
REPORTS_PER_MINUTE = 6.0
"""A device's reports per minute (every 10 s; the simulators' periods are 5-30 s)."""
EVENTS_PER_MINUTE = 0.3
"""Any other count's rate per device-minute (sessions, alerts, frozen samples...)."""


def profile(hour_local: float) -> float:
    """Activity by the hour of the day, Vietnam time: 0.3 at night, 1.0 at the peaks."""
    morning = math.exp(-(((hour_local - 8.0) / 2.5) ** 2))
    evening = math.exp(-(((hour_local - 18.0) / 3.0) ** 2))
    return 0.3 + 0.7 * max(morning, evening)


def level_of(bucket: dt.datetime, tier: Tier) -> int:
    """The profile variant a bucket uses (a day: the middle one)."""
    if tier is DAY:
        return VARIANTS // 2
    hour = bucket.astimezone(UTC7).hour + bucket.minute / 60
    return min(VARIANTS - 1, int(profile(hour) * VARIANTS))


def _csv(values: np.ndarray[Any, Any], kind: str, nulls: np.ndarray[Any, Any] | None) -> list[str]:
    """One column as CSV fields (empty: NULL)."""
    if kind in ("integer", "bigint"):
        text = [str(int(v)) for v in values]
    else:
        text = [f"{v:.3f}" for v in values]
    if nulls is not None:
        text = ["" if n else t for t, n in zip(text, nulls, strict=True)]
    return text


def column_values(
    rng: np.random.Generator,
    a: Aggregate,
    rule: str,
    n: int,
    minutes: int,
    level: float,
    devices: np.ndarray[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """Plausible values of one rollup column for ``n`` rows of a bucket of ``minutes``:
    counts scale with the bucket and the profile (and, per unit, with its devices), means
    and extremes do not."""
    scale = devices if devices is not None else np.ones(n)
    if rule == "sum":
        busy = a.name in ("reports", "heartbeats", "probes", "probes_ok")
        rate = REPORTS_PER_MINUTE if busy else EVENTS_PER_MINUTE
        return rng.poisson(rate * minutes * level * scale).astype(float)
    base = 10.0 + zlib.crc32(a.name.encode()) % 90  # the column's own order of magnitude
    spread = {"avg": 0.1, "max": 0.3, "min": 0.3}[rule]
    shift = {"avg": 1.0, "max": 1.5, "min": 0.5}[rule]
    values = base * shift * (1 + spread * rng.standard_normal(n))
    if devices is not None and "sum(" in a.expr:  # a unit's sum of device gauges
        values = values * scale
    return np.maximum(values, 0.0)


def device_block(
    rng: np.random.Generator, spec: FeedSpec, ids: Sequence[str], tier: Tier, level: float
) -> bytes:
    """One bucket of a feed's device table, without the bucket: ``device_id[,minutes],...``."""
    minutes = int(tier.width.total_seconds() // 60)
    rules = spec.device_over_time()
    fields: list[list[str]] = [list(ids)]
    if tier is not MINUTE:
        fields.append([str(minutes)] * len(ids))
    for a in spec.device_rollup:
        values = column_values(rng, a, rules[a.name], len(ids), minutes, level)
        nulls = None if a.not_null else rng.random(len(ids)) < 0.05
        fields.append(_csv(values, a.type, nulls))
    return "\n".join(",".join(row) for row in zip(*fields, strict=True)).encode()


def unit_block(
    rng: np.random.Generator,
    spec: FeedSpec,
    units: Sequence[tuple[str, int, int]],
    tier: Tier,
    level: float,
) -> bytes:
    """One bucket of a feed's unit table, without the bucket: ``unit_code,level[,minutes],...``
    (``units``: code, level, devices of the feed's class at or below it)."""
    minutes = int(tier.width.total_seconds() // 60)
    rules = spec.unit_over_time()
    fleet = spec.fleet_columns()
    counts = np.array([u[2] for u in units], dtype=float)
    fields: list[list[str]] = [[u[0] for u in units], [str(u[1]) for u in units]]
    if tier is not MINUTE:
        fields.append([str(minutes)] * len(units))
    for a in spec.unit_rollup:
        if fleet is not None and a.name == fleet[0]:
            values = counts
        elif fleet is not None and a.name == fleet[1]:
            values = np.floor(counts * 0.97)
        else:
            values = column_values(rng, a, rules[a.name], len(units), minutes, level, counts)
        fields.append(_csv(values, a.type, None))
    return "\n".join(",".join(row) for row in zip(*fields, strict=True)).encode()


def stamped(block: bytes, bucket: dt.datetime) -> bytes:
    """``block`` with ``bucket,`` in front of every line."""
    prefix = bucket.isoformat().encode() + b","
    return prefix + block.replace(b"\n", b"\n" + prefix) + b"\n"


def buckets(tier: Tier, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
    at = tier.bucket_of(start)
    while at < end:
        yield at
        at += tier.width


def units_of(topology: Topology, device_class: str) -> list[tuple[str, int, int]]:
    """(unit, level, devices of the class at or below it) for every unit with any."""
    per_unit: Counter[str] = Counter()
    for d in topology.devices_of(device_class):
        for code in topology.ancestors(topology.sites[d.site].unit):
            per_unit[code] += 1
    return [(code, topology.units[code].level, n) for code, n in sorted(per_unit.items())]


async def copy(conn: asyncpg.Connection, table: str, columns: list[str], data: bytes) -> None:
    await conn.copy_to_table(table, source=io.BytesIO(data), columns=columns, format="csv")


async def load_tier(
    conn: asyncpg.Connection,
    topology: Topology,
    spec: FeedSpec,
    tier: Tier,
    start: dt.datetime,
    end: dt.datetime,
    rng: np.random.Generator,
) -> int:
    """COPY one tier of one feed, devices and units; returns the rows."""
    ids = [d.id for d in topology.devices_of(spec.cls)]
    units = units_of(topology, spec.cls)
    if not ids:
        return 0
    extra = [] if tier is MINUTE else ["minutes"]
    device_columns = ["bucket", "device_id", *extra, *(a.name for a in spec.device_rollup)]
    unit_columns = ["bucket", "unit_code", "level", *extra, *(a.name for a in spec.unit_rollup)]
    levels = [(i + 0.5) / VARIANTS for i in range(VARIANTS)]
    device_blocks = [device_block(rng, spec, ids, tier, lv) for lv in levels]
    unit_blocks = [unit_block(rng, spec, units, tier, lv) for lv in levels]
    rows = 0
    for bucket in buckets(tier, start, end):
        variant = level_of(bucket, tier)
        await copy(
            conn,
            spec.device_table(tier.name),
            device_columns,
            stamped(device_blocks[variant], bucket),
        )
        await copy(
            conn, spec.unit_table(tier.name), unit_columns, stamped(unit_blocks[variant], bucket)
        )
        rows += len(ids) + len(units)
    return rows


async def load_raw(
    conn: asyncpg.Connection, topology: Topology, start: dt.datetime, end: dt.datetime, seed: int
) -> int:
    """Raw rows for [start, end): one simulated minute of every device's reports, replayed
    minute after minute with its times moved on and its sequence numbers raised (the key is
    ``(ts, device_id, seq)``)."""
    from ioc.simulators.engine import Simulator
    from ioc.simulators.faults import FaultPlan
    from ioc.streams.rows import raw_row

    first = int(start.timestamp() * 1000)
    sim = Simulator(topology, FaultPlan([]), seed=seed, start_ms=first)
    cycle: dict[str, list[tuple[Any, ...]]] = {}
    for out in sim.advance(first + 60_000):
        if out.valid and out.feed in feeds.names():
            row = raw_row(schemas.decode(out.value, feed=out.feed))
            cycle.setdefault(out.feed, []).append(row)
    rows = 0
    minutes = int((end - start).total_seconds() // 60)
    for feed, template in cycle.items():
        columns = list(RAW_COLUMNS[feed])
        for m in range(minutes):
            shift = dt.timedelta(minutes=m)
            records = [(r[0] + shift, r[1], r[2] + m * 1000, *r[3:]) for r in template]
            await conn.copy_records_to_table(
                feeds.spec(feed).raw_table, records=records, columns=columns
            )
            rows += len(records)
    return rows


async def load_intervals(
    conn: asyncpg.Connection,
    topology: Topology,
    start: dt.datetime,
    end: dt.datetime,
    per_month: float,
    rng: np.random.Generator,
) -> int:
    """``device_state_intervals`` over [start, end): up, with outages (down 5-120 minutes)
    about ``per_month`` times a month per device; the last interval is open, and
    ``device_state`` says so."""
    span_s = (end - start).total_seconds()
    out, state = io.StringIO(), io.StringIO()
    rows = 0
    for device in topology.devices.values():
        n = rng.poisson(per_month * span_s / (30 * 86_400))
        starts = np.sort(rng.uniform(0, span_s, n))
        at = start
        for offset in starts:
            down = start + dt.timedelta(seconds=float(offset))
            if down <= at:
                continue
            back = down + dt.timedelta(minutes=float(rng.uniform(5, 120)))
            if back >= end:
                break
            out.write(f"{device.id},up,{at.isoformat()},{down.isoformat()}\n")
            out.write(f"{device.id},down,{down.isoformat()},{back.isoformat()}\n")
            at, rows = back, rows + 2
        out.write(f"{device.id},up,{at.isoformat()},\n")
        state.write(f"{device.id},up,{at.isoformat()}\n")
        rows += 1
    await conn.copy_to_table(
        "device_state",
        source=io.BytesIO(state.getvalue().encode()),
        columns=["device_id", "state", "since"],
        format="csv",
    )
    await conn.copy_to_table(
        "device_state_intervals",
        source=io.BytesIO(out.getvalue().encode()),
        columns=["device_id", "state", "start_ts", "end_ts"],
        format="csv",
    )
    return rows


async def order(
    settings: Settings, loaded: dict[str, Any], tables: Sequence[str] | None = None
) -> None:
    """Every closed chunk of the rolled tiers (or of ``tables``) in key order, as the shard
    leader's retention round leaves them (``order_closed_chunks``, migration 0018): the
    generator writes a bucket of every device at a time, as the history round does, so this
    is what a deployment's history looks like once its chunks have closed."""
    pool = await open_pool(settings.database_dsn(), settings.db_schema, size=1)
    began, chunks = time.monotonic(), 0
    try:
        while True:
            started = time.monotonic()
            done = await order_closed_chunks(pool, lock=0, tables=tables)
            if not done:
                break
            chunks += len(done)
            print(
                f"ordered {len(done)} chunk(s) in {time.monotonic() - started:.0f} s "
                f"({chunks} in all, {time.monotonic() - began:.0f} s)",
                flush=True,
            )
    finally:
        await pool.close()
    loaded["seconds"]["order"] = round(time.monotonic() - began, 1)
    loaded["ordered_chunks"] = chunks


async def generate(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings().model_copy(update={"db_schema": args.schema})
    topology = load_scenario(args.scenario)
    await bootstrap_database(settings, topology)  # ioc bootstrap without Kafka
    rng = np.random.default_rng(args.seed)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    windows = {
        DAY: now - dt.timedelta(days=args.days),
        HOUR: now - dt.timedelta(days=args.days),
        MINUTE: now - dt.timedelta(days=args.minute_days),  # may be a fraction
    }
    loaded: dict[str, Any] = {"now": now.isoformat(), "rows": {}, "seconds": {}}
    # largest first, over --jobs connections: COPY keeps one PostgreSQL backend busy each
    # (feed, tier, start, end): a tier's window in pieces of PIECE buckets, so the biggest
    # table (national cameras, hourly: 90 % of the rows) is loaded over every connection
    jobs: list[tuple[FeedSpec, Tier, dt.datetime, dt.datetime]] = []
    for spec in [] if args.intervals_only else feeds.specs():
        for tier, start in windows.items():
            piece = tier.width * PIECE
            at = tier.bucket_of(start)  # pieces on bucket boundaries: none loads one twice
            while at < now:
                jobs.append((spec, tier, at, min(at + piece, now)))
                at += piece
    jobs.sort(key=lambda j: -len(topology.devices_of(j[0].cls)) * ((j[3] - j[2]) / j[1].width))
    queue: asyncio.Queue[tuple[FeedSpec, Tier, dt.datetime, dt.datetime]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    done = {"rows": 0, "jobs": 0}

    t_start = time.monotonic()

    async def loader(seed: int) -> None:
        own_rng = np.random.default_rng(seed)
        conn = await connect(settings.admin_dsn())
        try:
            await conn.execute(f"SET search_path TO {settings.db_schema}, public")
            while not queue.empty():
                spec, tier, start, end = queue.get_nowait()
                began = time.monotonic()
                rows = await load_tier(conn, topology, spec, tier, start, end, own_rng)
                key = f"{spec.name}_{tier.name}"
                loaded["rows"][key] = loaded["rows"].get(key, 0) + rows
                loaded["seconds"][key] = round(
                    loaded["seconds"].get(key, 0.0) + time.monotonic() - began, 1
                )
                done["rows"] += rows
                done["jobs"] += 1
                print(
                    f"[{done['jobs']}/{len(jobs)}] {key} from {start:%Y-%m-%d %H:%M}: "
                    f"{rows:,} rows in {time.monotonic() - began:.1f} s "
                    f"({done['rows']:,} in all, {time.monotonic() - t_start:.0f} s)",
                    flush=True,
                )
        finally:
            await conn.close()

    await asyncio.gather(*(loader(args.seed * 100 + i) for i in range(args.jobs)))
    conn = await connect(settings.admin_dsn())
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        # the tiers' retention as the workers would record it (the 1-minute tier: 2 days)
        await conn.execute(
            "UPDATE rollup_tiers SET kept = make_interval(days => $2) WHERE tier = $1",
            MINUTE.name,
            max(2, math.ceil(args.minute_days)),
        )
        if not args.intervals_only:
            began = time.monotonic()
            raw_start = now - dt.timedelta(hours=args.raw_hours)
            loaded["rows"]["raw"] = await load_raw(conn, topology, raw_start, now, args.seed)
            loaded["seconds"]["raw"] = round(time.monotonic() - began, 1)
        start = now - dt.timedelta(days=args.days)
        loaded["rows"]["intervals"] = await load_intervals(
            conn, topology, start, now, args.outages, rng
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    if args.order:
        await order(settings, loaded)
    conn = await connect(settings.admin_dsn())
    try:
        sizes = await conn.fetch(
            "SELECT hypertable_name AS t, hypertable_size(format('%I.%I', hypertable_schema, "
            "hypertable_name)::regclass) AS bytes FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = $1 ORDER BY 1",
            settings.db_schema,
        )
        loaded["bytes"] = {r["t"]: r["bytes"] for r in sizes}
    finally:
        await conn.close()
    return loaded


RANGES: dict[str, dt.timedelta] = {
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
    "90d": dt.timedelta(days=90),
}
GOAL_MS = 500.0
"""Issue 18 item 5: every panel's query, p95, at every range."""
SLA_GOAL_S = 5.0
RESULTS = results_dir()


def sql_targets(dash: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(panel title, refId, SQL) of every PostgreSQL target of a dashboard."""
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            if target.get("rawSql"):
                yield panel["title"], target["refId"], target["rawSql"]


async def grafana_connection(settings: Settings) -> asyncpg.Connection:
    """Grafana's read-only role on the benchmark schema. No statement cache: each run is
    parsed and planned, as Grafana's text (a new time range at every refresh) is; planning
    three tiers of hypertables is part of the cost."""
    from ioc.deploy.local.stack import Stack

    conn = await connect(
        Stack(settings).timescaledb.connection_info()["grafana_dsn"], statement_cache_size=0
    )
    await conn.execute(f"SET search_path TO {settings.db_schema}, public")
    return conn


async def time_role(
    conn: asyncpg.Connection,
    role: str,
    repeat: int,
    now: dt.datetime,
    skipped: list[dict[str, str]],
    timeout_ms: float,
    dashboards: str = "*.json",
) -> list[dict[str, Any]]:
    """Every SQL panel of every committed dashboard at every range, as ``conn``: one warm-up,
    then ``repeat`` timed runs each. A dashboard the role may not read (a province's viewer
    and the SLA objects) goes to ``skipped``; a query over ``timeout_ms`` is cancelled and
    recorded as taking that long (``timed_out``): past it only "far over" matters."""
    out: list[dict[str, Any]] = []
    await conn.execute(f"SET statement_timeout = {int(timeout_ms)}")
    for path in sorted(GENERATED.glob(dashboards)):
        dash = json.loads(path.read_text())
        try:
            variables = await resolve_variables(conn, dash, now - RANGES["24h"], now)
        except asyncpg.InsufficientPrivilegeError as exc:  # not this role's dashboard
            print(f"  {role:>10} {dash['uid']:<16} not readable: {exc}")
            skipped.append({"role": role, "dashboard": dash["uid"], "reason": str(exc)})
            continue
        print(f"  {role:>10} {dash['uid']:<16} variables {variables}")
        for title, ref, raw_sql in sql_targets(dash):
            for name, span in RANGES.items():
                t0 = now - span
                sql = expand_sql(raw_sql, t0, now, variables, grafana_interval_ms(t0, now))
                what = {
                    "role": role,
                    "dashboard": dash["uid"],
                    "panel": title,
                    "ref": ref,
                    "range": name,
                    "unit": variables.get("unit"),
                }
                began = time.perf_counter()
                try:  # warm-up: plans and caches as Grafana's
                    rows = len(await conn.fetch(sql))
                except asyncpg.QueryCanceledError:  # over the statement timeout
                    out.append(
                        {
                            **what,
                            "rows": None,
                            "timed_out": True,
                            "p50_ms": timeout_ms,
                            "p95_ms": timeout_ms,
                            "max_ms": timeout_ms,
                        }
                    )
                    continue
                warm_ms = (time.perf_counter() - began) * 1000
                times: list[float] = []
                # a panel far over the goal is timed twice more, not ``repeat`` times
                for _ in range(repeat if warm_ms < 4 * GOAL_MS else min(repeat, 2)):
                    began = time.perf_counter()
                    await conn.fetch(sql)
                    times.append((time.perf_counter() - began) * 1000)
                out.append(
                    {
                        **what,
                        "rows": rows,
                        "timed_out": False,
                        "p50_ms": round(percentile(times, 0.5) or 0.0, 2),
                        "p95_ms": round(percentile(times, 0.95) or 0.0, 2),
                        "max_ms": round(max(times), 2),
                    }
                )
            worst = max(r["p95_ms"] for r in out if r["panel"] == title)
            print(f"  {role:>10} {dash['uid']:<16} {title[:52]:<52} worst p95 {worst:8.1f} ms")
    return out


async def tiers_read(conn: asyncpg.Connection, now: dt.datetime) -> dict[str, dict[str, str]]:
    """The tier ``rollup_tier`` picks at each range for a time series and for a table."""
    out: dict[str, dict[str, str]] = {}
    for name, span in RANGES.items():
        t0 = now - span
        step = dt.timedelta(milliseconds=grafana_interval_ms(t0, now))
        series = await conn.fetchval("SELECT rollup_tier($1, $2, $3)", t0, now, step)
        table = await conn.fetchval("SELECT rollup_tier($1, $2)", t0, now)
        out[name] = {"series": series, "table": table}
    return out


async def time_sla(settings: Settings, topology: Topology, runs: int) -> dict[str, Any]:
    """The monthly SLA report of the largest province and, with several provinces, of the
    whole country (a root unit :func:`country_root` adds for the run), as the operations
    service makes it (``ioc.services.ops.sla.sla_report``), last full month."""
    from typing import cast

    from ioc.services.ops.common import OpsContext
    from ioc.services.ops.sla import current_period, sla_report

    pool = await open_pool(settings.database_dsn(), settings.db_schema, size=2)
    ctx = OpsContext(settings, topology, pool, *(cast(Any, None),) * 3)
    last_month = (dt.datetime.now(dt.UTC).replace(day=1) - dt.timedelta(days=1)).replace(day=15)
    period = current_period("month", last_month)
    # the province with the most devices (the national scenario has no unit above them)
    per_top: dict[str, int] = {}
    for d in topology.devices.values():
        top = topology.ancestors(topology.sites[d.site].unit)[-1]
        per_top[top] = per_top.get(top, 0) + 1
    scopes = {"largest_province": max(per_top, key=lambda code: per_top[code])}
    country = len(per_top) > 1
    if country:
        scopes["whole_country"] = COUNTRY
        await country_root(pool, sorted(per_top), add=True)
    out: dict[str, Any] = {"period": period}
    try:
        for name, unit in scopes.items():
            seconds: list[float] = []
            devices = 0
            for _ in range(runs):
                began = time.perf_counter()
                report = await sla_report(ctx, unit, period)
                seconds.append(time.perf_counter() - began)
                devices = report.overall.devices
            out[name] = {
                "unit": unit,
                "devices": devices,
                "p50_s": round(percentile(seconds, 0.5) or 0.0, 3),
                "max_s": round(max(seconds), 3),
            }
            print(f"  SLA report {name} ({unit}, {devices:,} devices): {out[name]}")
    finally:
        if country:
            await country_root(pool, sorted(per_top), add=False)
        await pool.close()
    return out


COUNTRY = "VN"
"""A root unit above the provinces, for the benchmark only: the national scenario has none,
and the goal is a monthly report over all its devices (a national centre's)."""


async def country_root(pool: asyncpg.Pool, provinces: list[str], *, add: bool) -> None:
    """Put (``add``) or take away the benchmark's country root above ``provinces``, in the
    private benchmark schema, as the topology loader would store it (parent and ancestors)."""
    async with pool.acquire() as conn, conn.transaction():
        if add:
            await conn.execute(
                "INSERT INTO admin_units (code, name, level, level_name, lat, lon) "
                "VALUES ($1, 'Việt Nam', -1, 'country', 16.0, 106.0) ON CONFLICT DO NOTHING",
                COUNTRY,
            )
            await conn.execute(
                "UPDATE admin_units SET parent_code = $1 WHERE code = ANY($2::text[])",
                COUNTRY,
                provinces,
            )
            await conn.execute(
                "INSERT INTO unit_ancestors (unit_code, ancestor_code, depth) "
                "SELECT code, $1, level + 1 FROM admin_units "
                "UNION ALL SELECT $1, $1, 0 ON CONFLICT DO NOTHING",
                COUNTRY,
            )
            # statistics as a loaded topology has them (autovacuum would get there later)
            await conn.execute("ANALYZE admin_units, unit_ancestors")
        else:
            await conn.execute("DELETE FROM unit_ancestors WHERE ancestor_code = $1", COUNTRY)
            await conn.execute(
                "UPDATE admin_units SET parent_code = NULL WHERE parent_code = $1", COUNTRY
            )
            await conn.execute("DELETE FROM admin_units WHERE code = $1", COUNTRY)


async def time_rolls(settings: Settings) -> dict[str, Any]:
    """One hour and one day of every feed rolled as the shard leader's history round does
    (``ioc.streams.history.roll_bucket``, a transaction per feed and bucket): the last whole
    hour (from the 1-minute tier) and the last whole day (from the hourly tier)."""
    from ioc.contract.history import Retention
    from ioc.streams.history import roll_bucket

    conn = await connect(settings.admin_dsn())
    out: dict[str, Any] = {}
    try:
        await conn.execute(f"SET search_path TO {settings.db_schema}, public")
        now = await conn.fetchval("SELECT now()")
        # the newest whole hour and day the loaded minutes and hours hold (the data ends
        # when --generate ran, not now)
        newest = await conn.fetchval("SELECT max(bucket) FROM rollup_camera_1m")
        retention = Retention()
        for tier in (HOUR, DAY):
            bucket = tier.bucket_of(newest + MINUTE.width) - tier.width
            seconds: dict[str, float] = {}
            for spec in feeds.specs():
                began = time.perf_counter()
                async with conn.transaction():
                    await roll_bucket(conn, spec.name, tier, bucket, retention, now)
                seconds[spec.name] = round(time.perf_counter() - began, 3)
            out[tier.name] = {
                "bucket": bucket.isoformat(),
                "seconds": seconds,
                "total_s": round(sum(seconds.values()), 3),
            }
            print(f"  roll one {tier.name} of every feed: {out[tier.name]}")
    finally:
        await conn.close()
    return out


async def time_panels(
    args: argparse.Namespace, settings: Settings, topology: Topology, kept: dict[str, int]
) -> tuple[dt.datetime, dict[str, dict[str, str]], list[dict[str, Any]], list[dict[str, str]]]:
    """Every panel as ``ioc_grafana`` and the first province's viewer (:func:`time_role`)."""
    now = dt.datetime.now(dt.UTC)
    grafana = await grafana_connection(settings)
    province = topology.top_units()[0]
    viewer = await viewer_connection(settings, province, statement_cache_size=0)
    try:
        tiers = await tiers_read(grafana, now)
        print(f"tiers read (kept days {kept}): {tiers}")
        skipped: list[dict[str, str]] = []
        timeout_ms = args.timeout_s * 1000
        panels = await time_role(grafana, "grafana", args.repeat, now, skipped, timeout_ms)
        panels += await time_role(
            viewer, f"viewer {province}", args.repeat, now, skipped, timeout_ms
        )
    finally:
        await grafana.close()
        await viewer.close()
    return now, tiers, panels, skipped


async def time_all(args: argparse.Namespace) -> dict[str, Any]:
    from ioc.db.provinces import ensure_province_viewers

    settings = load_settings().model_copy(update={"db_schema": args.schema})
    topology = load_scenario(args.scenario)
    admin = await connect(settings.admin_dsn())
    try:
        await admin.execute(f"SET search_path TO {settings.db_schema}, public")
        # the viewers read this schema (their search_path follows the last bootstrap)
        await ensure_province_viewers(admin, settings.db_schema, topology)
        sizes = await admin.fetch(
            "SELECT hypertable_name AS t, hypertable_size(format('%I.%I', hypertable_schema, "
            "hypertable_name)::regclass) AS bytes, (SELECT sum(c.reltuples)::bigint FROM "
            "timescaledb_information.chunks k JOIN pg_class c ON c.relname = k.chunk_name "
            "WHERE k.hypertable_schema = h.hypertable_schema "
            "AND k.hypertable_name = h.hypertable_name) AS rows "
            "FROM timescaledb_information.hypertables h WHERE hypertable_schema = $1 ORDER BY 1",
            settings.db_schema,
        )
        kept = {
            r["tier"]: r["kept"].days
            for r in await admin.fetch("SELECT tier, kept FROM rollup_tiers")
        }
    finally:
        await admin.close()
    if args.keep_panels:  # the panels as last timed; only the rolls and the SLA again
        prior = json.loads((RESULTS / "history.json").read_text())
        now = dt.datetime.fromisoformat(prior["at"])
        tiers, panels, skipped = prior["tiers_read"], prior["panels"], prior["skipped"]
    else:
        now, tiers, panels, skipped = await time_panels(args, settings, topology, kept)
    result: dict[str, Any] = {
        "machine": machine(),
        "scenario": args.scenario,
        "devices": len(topology.devices),
        "schema": args.schema,
        "at": now.isoformat(),
        "repeat": args.repeat,
        "kept_days": kept,
        "tiers_read": tiers,
        "tables": {r["t"]: {"rows": r["rows"], "bytes": r["bytes"]} for r in sizes},
        "goal_ms": GOAL_MS,
        "timeout_s": args.timeout_s,
        "panels": panels,
        "skipped": skipped,
    }
    for name in RANGES:
        at_range = [p for p in panels if p["range"] == name]
        worst = max(at_range, key=lambda p: p["p95_ms"])
        result[f"panel_query_p95_ms_{name}"] = worst["p95_ms"]
        result[f"worst_panel_{name}"] = f"{worst['dashboard']}: {worst['panel']} ({worst['role']})"
    result["panels_over_goal"] = sorted(
        {f"{p['dashboard']}: {p['panel']} @ {p['range']}" for p in panels if p["p95_ms"] > GOAL_MS}
    )
    if args.rolls:
        result["rolls"] = await time_rolls(settings)
    if args.sla:
        sla = await time_sla(settings, topology, args.sla_runs)
        result["sla"] = sla
        result["sla_report_s"] = sla["largest_province"]["p50_s"]
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    """p95 of every panel at each range (a dot per panel and role), the goal as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    rng = np.random.default_rng(0)
    for i, name in enumerate(RANGES):
        for role, colour in (("grafana", "tab:blue"), ("viewer", "tab:orange")):
            ys = [
                p["p95_ms"]
                for p in result["panels"]
                if p["range"] == name and p["role"].startswith(role)
            ]
            xs = i + (0.18 if role == "viewer" else -0.18) + rng.uniform(-0.12, 0.12, len(ys))
            ax.scatter(xs, ys, s=12, alpha=0.7, color=colour, label=role if i == 0 else None)
    ax.axhline(
        result["goal_ms"], color="red", linestyle="--", label=f"goal {result['goal_ms']:.0f} ms"
    )
    ax.set_yscale("log")
    ax.set_xticks(range(len(RANGES)), list(RANGES))
    ax.set_xlabel("dashboard time range")
    ax.set_ylabel("query p95, ms (log)")
    ax.set_title(
        f"Every dashboard panel's query: {result['scenario']} ({result['devices']:,} devices), "
        f"as Grafana and a province viewer"
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sla_only(args: argparse.Namespace) -> int:
    """The monthly SLA report alone, its figures beside the goal (``sla_report.json``)."""
    settings = load_settings().model_copy(update={"db_schema": args.schema})
    topology = load_scenario(args.scenario)
    sla = asyncio.run(time_sla(settings, topology, args.sla_runs))
    panels = asyncio.run(time_sla_panels(settings, args))
    result = {
        "machine": machine(),
        "scenario": args.scenario,
        "devices": len(topology.devices),
        "runs": args.sla_runs,
        "goal_s": SLA_GOAL_S,
        **sla,
        "panel_goal_ms": GOAL_MS,
        "panels": panels,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sla_report.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_sla(result, RESULTS / "sla_report.png")
    scopes = [k for k, v in sla.items() if isinstance(v, dict)]
    for name in scopes:
        print(f"{name}: {sla[name]['devices']:,} devices, p50 {sla[name]['p50_s']:.2f} s")
    worst = max(panels, key=lambda r: r["p95_ms"]) if panels else None
    if worst is not None:
        print(
            f"SLA dashboard: worst panel p95 {worst['p95_ms']:.0f} ms "
            f"({worst['panel']}, {worst['range']}, unit {worst['unit']})"
        )
    over = [r for r in panels if r["p95_ms"] >= GOAL_MS]
    return 1 if over or any(sla[k]["p50_s"] >= SLA_GOAL_S for k in scopes) else 0


async def time_sla_panels(settings: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The SLA dashboard's panels (the same function as the report) as Grafana's role."""
    now = dt.datetime.now(dt.UTC)
    grafana = await grafana_connection(settings)
    try:
        skipped: list[dict[str, str]] = []
        return await time_role(
            grafana, "grafana", args.repeat, now, skipped, args.timeout_s * 1000, "ioc-sla.json"
        )
    finally:
        await grafana.close()


def plot_sla(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scopes = [k for k, v in result.items() if isinstance(v, dict) and "p50_s" in v]
    labels = [f"{k.replace('_', ' ')}\n{result[k]['devices']:,} devices" for k in scopes]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = range(len(scopes))
    ax.bar([x - 0.2 for x in xs], [result[k]["p50_s"] for k in scopes], 0.4, label="median")
    ax.bar([x + 0.2 for x in xs], [result[k]["max_s"] for k in scopes], 0.4, label="slowest")
    ax.axhline(result["goal_s"], color="red", linestyle="--", label=f"goal {result['goal_s']} s")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("seconds")
    ax.set_title(f"Monthly SLA report ({result['period']}), {result['runs']} runs each")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--generate", action="store_true", help="create and load the schema")
    ap.add_argument("--time", action="store_true", help="time every panel's query")
    ap.add_argument("--sla", action="store_true", help="with --time: the monthly SLA report")
    ap.add_argument("--sla-runs", type=int, default=3)
    ap.add_argument("--rolls", action="store_true", help="with --time: one hour and day rolled")
    ap.add_argument("--repeat", type=int, default=10, help="timed runs per panel and range")
    ap.add_argument("--timeout-s", type=float, default=10.0, help="a query's cancel point")
    ap.add_argument(
        "--keep-panels",
        action="store_true",
        help="with --time: keep the panels of the last history.json, time rolls/SLA again",
    )
    ap.add_argument("--schema", default="bench_history")
    ap.add_argument("--scenario", default="national")
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--minute-days", type=float, default=2.0)
    ap.add_argument("--jobs", type=int, default=2, help="COPY connections")
    ap.add_argument("--raw-hours", type=float, default=1.0)
    ap.add_argument("--outages", type=float, default=2.0, help="per device per month")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument(
        "--intervals-only",
        action="store_true",
        help="with --generate: only the state intervals (what the SLA report reads), minutes",
    )
    ap.add_argument(
        "--sla-only",
        action="store_true",
        help="time only the monthly SLA report (sla_report.json and .png); with "
        "--generate --intervals-only a few minutes in all",
    )
    ap.add_argument(
        "--no-order",
        dest="order",
        action="store_false",
        help="with --generate: leave the tiers' closed chunks in load order (bucket by bucket)",
    )
    ap.add_argument(
        "--order-only",
        action="store_true",
        help="put the closed chunks of the existing schema's tiers in key order, as the leader "
        "does (migration 0018); --order-tables: only these, comma-separated",
    )
    ap.add_argument("--order-tables", default="")
    args = ap.parse_args(argv)
    if args.order_only:
        settings = load_settings().model_copy(update={"db_schema": args.schema})
        tables = [t for t in args.order_tables.split(",") if t] or None
        ordered: dict[str, Any] = {"seconds": {}}
        asyncio.run(order(settings, ordered, tables))
        print(ordered)
        if not (args.time or args.sla_only):
            return 0
    if not (args.generate or args.time or args.sla_only):
        ap.print_help()
        return 2
    if args.generate:
        loaded = asyncio.run(generate(args))
        print(loaded)
    if args.sla_only:
        return sla_only(args)
    if not args.time:
        return 0
    result = asyncio.run(time_all(args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "history.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / "history.png")
    for name in RANGES:
        print(
            f"{name:>4}: worst panel p95 {result[f'panel_query_p95_ms_{name}']:8.1f} ms "
            f"({result[f'worst_panel_{name}']})"
        )
    if "sla_report_s" in result:
        took = result["sla_report_s"]
        print(f"SLA report, largest province: {took:.2f} s (goal < {SLA_GOAL_S} s)")
    over = result["panels_over_goal"]
    print(
        f"{len(over)} panel-range(s) over {GOAL_MS:.0f} ms"
        + (": " + "; ".join(over) if over else "")
    )
    missed_sla = result.get("sla_report_s", 0.0) >= SLA_GOAL_S
    return 1 if over or missed_sla else 0


if __name__ == "__main__":
    sys.exit(main())
