"""``ioc inventory import | history | template`` (docs/inventory.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ioc.config import Settings
from ioc.contract.topology import Topology, load_scenario, load_yaml, parse_topology
from ioc.inventory import InventoryError
from ioc.inventory import history as h
from ioc.inventory.build import BBox, Units, build_topology, scenario_yaml, units_from_sheet
from ioc.inventory.sheet import UNITS_SHEET, kind_of, read_sheet
from ioc.inventory.template import write_template

Handler = Callable[[argparse.Namespace, Settings], int]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _reporting(handler: Handler) -> Handler:
    """Print every bad row before the CLI prints the one-line summary."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return handler(args, settings)
        except InventoryError as exc:
            for line in exc.problems:
                print(line, file=sys.stderr)
            raise

    return run


def _day(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InventoryError(f"--on {text!r}: expected a date YYYY-MM-DD") from None


def _units(args: argparse.Namespace, source: Path, current: Topology | None) -> Units:
    """Where the province's units come from, most explicit first: ``--units FILE``,
    ``--base SCENARIO``, the workbook's ``units`` sheet, the version being replaced."""
    if args.units:
        path = Path(args.units)
        sheet = read_sheet(path, UNITS_SHEET if kind_of(path) == "xlsx" else None)
        if sheet is None:  # a workbook without a units sheet: its first sheet
            sheet = read_sheet(path)
        assert sheet is not None
        return units_from_sheet(sheet)
    sheet = read_sheet(source, UNITS_SHEET) if kind_of(source) == "xlsx" else None
    if args.base:
        if sheet is not None:
            _say(f"units: from --base {args.base}, not the {UNITS_SHEET} sheet of {source}")
        return Units.of(load_scenario(args.base), f"scenario {args.base}")
    if sheet is not None:
        return units_from_sheet(sheet)
    if current is not None:
        return Units.of(current, f"the current version, {args.out}")
    raise InventoryError(
        f"{source}: no units to check it against: give --base SCENARIO (e.g. demo) or "
        f"--units FILE.csv, or a '{UNITS_SHEET}' sheet in the workbook"
    )


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    source, out = Path(args.file), Path(args.out)
    if not source.is_file():
        raise InventoryError(f"{source}: no such file")
    history = Path(args.history) if args.history else h.history_dir(out)
    current = load_scenario(str(out)) if out.exists() else None
    units = _units(args, source, current)
    sheet = read_sheet(source)
    assert sheet is not None
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise InventoryError(f"{source}: cannot read: {exc.strerror or exc}") from None
    topology = build_topology(
        sheet,
        units,
        name=args.name or (current.name if current else out.stem),
        seed=current.seed if current else 0,
        bbox=BBox.parse(args.bbox) if args.bbox else None,
        on=_day(args.on),
    )
    _say(
        f"{source}: {len(sheet.rows)} rows, {len(topology.devices)} devices at "
        f"{len(topology.sites)} sites, checked against {len(units.units)} units of "
        f"{units.province} ({units.source})"
        + (f"; {sheet.blank_rows} blank row(s) skipped" if sheet.blank_rows else "")
    )
    change = h.diff(current, topology)
    stored = h.versions(history)
    latest = f"v{stored[-1]:04d}" if stored else "no version yet"
    if not change:
        print(f"nothing changed: {out} ({latest}) already has this inventory; nothing written")
        return 0
    lines = h.describe(change, current, topology)
    next_version = max(stored, default=0) + 1
    if args.dry_run:
        print(f"dry run: {source} -> {out} would be v{next_version:04d} (now: {latest})")
        print("\n".join(lines))
        print("nothing written (dry run)")
        return 0
    digest = hashlib.sha256(data).hexdigest()
    text = (
        f"# Imported by `ioc inventory import` from {source.name} (sha256 {digest[:16]}),\n"
        f"# version {next_version} (history: {history}). Edit the inventory and import it\n"
        "# again rather than this file.\n" + scenario_yaml(topology)
    )
    parse_topology(load_yaml(text, str(out)), str(out))  # what is written loads as it is
    version = h.record(out, history, text, topology, change, source, digest)
    print("\n".join(lines))
    print(f"wrote {out} (v{version:04d}; kept as {h.version_file(history, version)})")
    return 0


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.scenario)
    default = path if path.is_dir() else h.history_dir(path)
    history = Path(args.history) if args.history else default
    entries = h.changelog(history)
    if not entries:
        raise InventoryError(f"{history}: no imported versions (no {h.CHANGELOG})")
    for e in entries:
        counts = e.get("counts", {})
        parts = []
        for kind in ("devices", "sites", "units"):
            s = e.get(kind, {})
            n = (len(s.get("added", [])), len(s.get("removed", [])), len(s.get("changed", [])))
            if any(n):
                parts.append(f"{kind} +{n[0]} -{n[1]} ~{n[2]}")
        print(
            f"v{int(e.get('version', 0)):04d}  {e.get('time', '?')}  {e.get('source', '?')}  "
            f"sha256 {str(e.get('sha256', ''))[:12]}  {counts.get('devices', '?')} devices, "
            f"{counts.get('sites', '?')} sites  {', '.join(parts) or 'no change'}"
        )
    if not path.is_dir() and path.exists():
        last = h.version_file(history, int(entries[-1].get("version", 0)))
        same = last.exists() and last.read_bytes() == path.read_bytes()
        print(
            f"{path} is v{int(entries[-1].get('version', 0)):04d}"
            if same
            else f"{path} differs from the last version ({last}): edited since?"
        )
    return 0


def cmd_template(args: argparse.Namespace, settings: Settings) -> int:
    out = Path(args.out)
    if args.units and kind_of(out) != "csv":
        raise InventoryError(f"--units: a CSV file; {out} would hold both sheets anyway")
    what = write_template(out, units=args.units)
    print(f"wrote {out}: {what}")
    return 0


def add_inventory_commands(sub: Any) -> None:
    """``ioc inventory`` and its actions, on the top-level parser's sub-commands."""
    inventory = sub.add_parser(
        "inventory", help="import a province's device list (CSV/XLSX) as a scenario"
    )
    inv_sub = inventory.add_subparsers(dest="inventory_command", required=True, metavar="ACTION")
    p = inv_sub.add_parser(
        "import",
        help="check a device list and write it as a scenario, keeping its versions",
        description="Every bad row is reported as file:row: problem; nothing is written then.",
    )
    p.add_argument("file", metavar="FILE", help="the inventory, .xlsx or .csv (UTF-8)")
    p.add_argument(
        "--out",
        required=True,
        metavar="SCENARIO.yaml",
        help="the scenario to write (what `ioc run --scenario` and `ioc bootstrap` read)",
    )
    units = p.add_mutually_exclusive_group()
    units.add_argument(
        "--base",
        metavar="SCENARIO",
        help="take the province's units from this scenario (built-in name or file); default: "
        "the workbook's units sheet, else the current version of --out",
    )
    units.add_argument(
        "--units",
        metavar="FILE",
        help="take them from this units table (.csv, or a workbook's units sheet)",
    )
    p.add_argument(
        "--history", metavar="DIR", help="where versions are kept (default: <out>.history/)"
    )
    p.add_argument("--name", help="the scenario's name (default: the current one, or <out> stem)")
    p.add_argument(
        "--bbox",
        metavar="S,W,N,E",
        help="where sites may be, in degrees (default: the units' extent widened by 0.3°)",
    )
    p.add_argument(
        "--on",
        metavar="YYYY-MM-DD",
        help="the day the inventory describes: its units must exist then (default: today)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="show what would change and write nothing"
    )
    p.set_defaults(handler=_reporting(cmd_import))
    p = inv_sub.add_parser("history", help="the imported versions of a scenario")
    p.add_argument("scenario", metavar="PATH", help="the scenario file (or its history folder)")
    p.add_argument("--history", metavar="DIR", help="default: <PATH>.history/")
    p.set_defaults(handler=_reporting(cmd_history))
    p = inv_sub.add_parser("template", help="write the inventory template (.xlsx or .csv)")
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.xlsx or FILE.csv")
    p.add_argument(
        "--units", action="store_true", help="with a .csv: the units table instead of devices"
    )
    p.set_defaults(handler=_reporting(cmd_template))
