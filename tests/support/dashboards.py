"""A dashboard's queries as Grafana runs them: its macros and template variables expanded,
its PromQL asked of Prometheus (the live dashboard tests of every feed)."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from ioc.dashboards.grafana_sql import expand_sql, resolve_variables

__all__ = ["expand_promql", "expand_sql", "prom_query", "resolve_variables"]


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
