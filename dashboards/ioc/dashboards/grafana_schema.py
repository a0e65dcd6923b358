"""Check dashboards against Grafana's published schema (npm ``@grafana/schema``) with ``tsc``.

Each dashboard becomes a TypeScript file (under ``dashboards/ioc/dashboards/schema/out/``) holding

* the whole dashboard as one fresh object literal typed as the schema's ``Dashboard``,
* for every panel, its ``options`` as a fresh literal typed as that panel type's ``Options``
  and its ``fieldConfig.defaults.custom`` as that panel type's ``FieldConfig`` (or as empty,
  for panel types that have none),

so that ``tsc --strict`` reports every unknown key (excess-property check), every missing
required key and every value of the wrong type. The types
(``dashboards/ioc/dashboards/schema/grafana.ts``) are the pinned package's, read as JSON
(string enums as their values).

``dashboards/ioc/dashboards/schema/package.json`` pins ``@grafana/schema`` and ``typescript``;
``package-lock.json`` is committed, ``node_modules`` is not (``npm ci`` installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ioc.errors import IocError

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
OUT = SCHEMA_DIR / "out"
TSC = SCHEMA_DIR / "node_modules" / "typescript" / "bin" / "tsc"

# Grafana panel plugin id -> (module name in @grafana/schema, has a custom FieldConfig type)
PANEL_TYPES: dict[str, tuple[str, bool]] = {
    "annolist": ("AnnotationsList", False),
    "barchart": ("BarChart", True),
    "bargauge": ("BarGauge", False),
    "candlestick": ("Candlestick", True),
    "canvas": ("Canvas", False),
    "dashlist": ("DashboardList", False),
    "gauge": ("Gauge", False),
    "geomap": ("Geomap", False),
    "heatmap": ("Heatmap", True),
    "histogram": ("Histogram", True),
    "logs": ("Logs", False),
    "news": ("News", False),
    "nodeGraph": ("NodeGraph", False),
    "piechart": ("PieChart", True),
    "stat": ("Stat", False),
    "state-timeline": ("StateTimeline", True),
    "status-history": ("StatusHistory", True),
    "table": ("Table", True),
    "text": ("Text", False),
    "timeseries": ("TimeSeries", True),
    "trend": ("Trend", True),
    "xychart": ("XYChart", True),
}


class SchemaCheckError(IocError):
    """The check could not run (npm or tsc missing or failing), as opposed to finding errors."""


@dataclass(frozen=True)
class Diagnostic:
    file: str  # the stem of the checked source ("ioc-overview")
    line: int
    code: str
    message: str
    source: str = ""  # the offending line of the generated TypeScript

    def __str__(self) -> str:
        where = f"  | {self.source.strip()}" if self.source else ""
        return f"{self.file}.ts:{self.line}: {self.code}: {self.message}{where}"


def _module(panel_type: str) -> str:
    name, _ = PANEL_TYPES[panel_type]
    folder = name.lower()
    return f"@grafana/schema/dist/esm/raw/composable/{folder}/panelcfg/x/{name}PanelCfg_types.gen"


def _literal(value: Any, indent: int = 2) -> str:
    """A JSON value as a TypeScript literal (JSON is valid TypeScript)."""
    return json.dumps(value, indent=indent, ensure_ascii=False)


def _ident(text: str) -> str:
    return re.sub(r"\W", "_", text)


def typescript(name: str, dashboard: Mapping[str, Any]) -> str:
    """The TypeScript source that type-checks one dashboard (see the module docstring)."""
    panels = [p for p in dashboard.get("panels", []) if p.get("type") != "row"]
    for row in (p for p in dashboard.get("panels", []) if p.get("type") == "row"):
        panels.extend(row.get("panels", []))
    unknown = sorted({p.get("type", "?") for p in panels} - PANEL_TYPES.keys())
    if unknown:
        raise SchemaCheckError(f"{name}: no @grafana/schema options type for panels {unknown}")
    used = sorted({p["type"] for p in panels})
    lines = [
        f"// Generated from dashboard {name!r} by ioc.dashboards.grafana_schema: do not edit.",
        "import type { Dashboard, Json, NoCustomFieldConfig } from '../../grafana';",
    ]
    for panel_type in used:
        alias = _ident(PANEL_TYPES[panel_type][0])
        imported = ["Options"] + (["FieldConfig"] if PANEL_TYPES[panel_type][1] else [])
        names = ", ".join(f"{i} as {alias}{i}" for i in imported)
        lines.append(f"import type {{ {names} }} from '{_module(panel_type)}';")
    lines += ["", f"export const dashboard: Dashboard = {_literal(dashboard)};", ""]
    for i, panel in enumerate(panels):
        alias = _ident(PANEL_TYPES[panel["type"]][0])
        var = f"panel{i}"
        lines.append(f"// panel {i}: {json.dumps(panel.get('title', ''), ensure_ascii=False)}")
        if "options" in panel:
            lines.append(
                f"export const {var}Options: Json<{alias}Options> = {_literal(panel['options'])};"
            )
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None:
            kind = (
                f"Json<{alias}FieldConfig>"
                if PANEL_TYPES[panel["type"]][1]
                else "NoCustomFieldConfig"
            )
            lines.append(f"export const {var}Custom: {kind} = {_literal(custom)};")
        lines.append("")
    return "\n".join(lines)


def npm_ci() -> None:
    """Install the pinned packages into dashboards/ioc/dashboards/schema/node_modules if they
    are missing."""
    if TSC.exists() and (SCHEMA_DIR / "node_modules" / "@grafana" / "schema").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SchemaCheckError(
            "npm is not installed: the Grafana schema check needs Node.js >= 18 and npm "
            "(then `npm ci` in dashboards/ioc/dashboards/schema)"
        )
    try:
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--fetch-timeout=60000"],
            cwd=SCHEMA_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        raise SchemaCheckError(
            f"`npm ci` in {SCHEMA_DIR} took over 10 minutes; is the npm registry reachable?"
        ) from None
    if proc.returncode != 0 or not TSC.exists():
        raise SchemaCheckError(
            f"`npm ci` in {SCHEMA_DIR} failed (exit {proc.returncode}); is the npm registry "
            f"reachable?\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )


_DIAGNOSTIC = re.compile(r"^(?P<file>[^\s(][^(]*)\((?P<line>\d+),\d+\): error (?P<code>TS\d+): ")


def tsc(sources: Mapping[str, str]) -> list[Diagnostic]:
    """Run ``tsc --strict --noEmit`` over ``sources`` (file stem -> TypeScript) and return its
    errors (continuation lines kept in the message).

    The files go to a fresh folder under dashboards/ioc/dashboards/schema/out (removed
    afterwards) with a tsconfig extending dashboards/ioc/dashboards/schema/tsconfig.json, so
    concurrent runs do not collide.
    """
    npm_ci()
    node = shutil.which("node")
    if node is None:
        raise SchemaCheckError("node is not installed: the Grafana schema check needs Node.js")
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="check-", dir=OUT))
    try:
        (work / "tsconfig.json").write_text(
            json.dumps({"extends": "../../tsconfig.json", "include": ["*.ts", "../../grafana.ts"]})
        )
        for stem, text in sources.items():
            (work / f"{stem}.ts").write_text(text)
        proc = subprocess.run(
            [node, str(TSC), "--strict", "--noEmit", "--pretty", "false", "-p", "tsconfig.json"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        diagnostics = _parse(proc.stdout, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if proc.returncode not in (0, 1, 2) or (proc.returncode != 0 and not diagnostics):
        raise SchemaCheckError(f"tsc failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return diagnostics


def _parse(output: str, work: Path) -> list[Diagnostic]:
    diagnostics: list[Diagnostic] = []
    for raw in output.splitlines():
        match = _DIAGNOSTIC.match(raw)
        if match:
            path = (work / match["file"]).resolve()
            line = int(match["line"])
            text = path.read_text().splitlines() if path.exists() else []
            source = text[line - 1] if 0 < line <= len(text) else ""
            stem = path.stem if path.parent == work.resolve() else str(path)
            diagnostics.append(Diagnostic(stem, line, match["code"], raw[match.end() :], source))
        elif diagnostics and raw.startswith(" "):
            last = diagnostics[-1]
            diagnostics[-1] = Diagnostic(
                last.file, last.line, last.code, f"{last.message}\n{raw.strip()}", last.source
            )
    return diagnostics


def by_file(diagnostics: Iterable[Diagnostic]) -> dict[str, list[Diagnostic]]:
    """Diagnostics keyed by the stem of the source they are in."""
    result: dict[str, list[Diagnostic]] = {}
    for d in diagnostics:
        result.setdefault(d.file, []).append(d)
    return result


def pinned_version() -> str:
    """The @grafana/schema version the check uses (package.json pins it exactly)."""
    package = json.loads((SCHEMA_DIR / "package.json").read_text())
    version: str = package["devDependencies"]["@grafana/schema"]
    return version


def check(dashboards: Mapping[str, Mapping[str, Any]]) -> list[Diagnostic]:
    """Type-check dashboards (name -> JSON); an empty list means zero errors."""
    return tsc({name: typescript(name, data) for name, data in dashboards.items()})
