"""A dashboard's queries as Grafana runs them: its macros and template variables expanded,
its PromQL asked of Prometheus (the live dashboard tests of every feed)."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import asyncpg


def expand_sql(sql: str, t0: dt.datetime, t1: dt.datetime, variables: Mapping[str, str]) -> str:
    """Grafana's PostgreSQL macros and template variables, as Grafana expands them."""

    def ts(value: dt.datetime) -> str:
        return f"'{value.strftime('%Y-%m-%dT%H:%M:%SZ')}'"

    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m[1]} BETWEEN {ts(t0)} AND {ts(t1)}", sql
    )
    sql = sql.replace("$__timeFrom()", ts(t0)).replace("$__timeTo()", ts(t1))
    sql = sql.replace("$__interval", "1m")
    for name, value in variables.items():
        sql = sql.replace(f"${name}", value)
    assert "$" not in sql, sql
    return sql


def expand_promql(expr: str, variables: Mapping[str, str]) -> str:
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
    for name, value in variables.items():
        expr = expr.replace(f"${name}", value)
    return expr


def prom_query(url: str, expr: str, instant: bool) -> list[Any]:
    now = time.time()
    if instant:
        q = urllib.parse.urlencode({"query": expr, "time": now})
        path = f"/api/v1/query?{q}"
    else:
        q = urllib.parse.urlencode({"query": expr, "start": now - 600, "end": now, "step": 15})
        path = f"/api/v1/query_range?{q}"
    with urllib.request.urlopen(url + path, timeout=15) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", (expr, body)
    result: list[Any] = body["data"]["result"]
    return result


async def resolve_variables(
    conn: asyncpg.Connection,
    dash: Mapping[str, Any],
    t0: dt.datetime,
    t1: dt.datetime,
    preset: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every template variable of ``dash`` as Grafana first resolves it: a constant's value
    (the console's address), a fixed list's first entry, a query's first row, which must
    exist. ``preset`` values win; their queries must still return rows."""
    variables = dict(preset or {})
    for var in dash["templating"]["list"]:
        name = var["name"]
        if var["type"] == "constant":
            variables.setdefault(name, var["query"])
        elif var["type"] == "custom":
            variables.setdefault(name, var["query"].split(",")[0].strip())
        else:
            rows = await conn.fetch(expand_sql(var["query"], t0, t1, variables))
            assert rows, f"{dash['title']}: variable {name} resolves to nothing"
            first = rows[0]
            variables.setdefault(name, str(first["__value"] if "__value" in first else first[0]))
    return variables
