"""Versions of an imported scenario: what changed, and a history to go back to.

The scenario file (``--out``) is what commands read; beside it ``<stem>.history/`` keeps every
imported version as ``vNNNN.yaml`` (the same text) and ``CHANGELOG.jsonl``, one JSON object
per import: when, from which file (and its sha256, to tell which spreadsheet it was), the
counts and the ids added, removed and changed. Units carry their own dates (``valid_from``,
``valid_to``, ``merged_into``); this is the history of the equipment list.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ioc.contract.topology import Topology
from ioc.inventory import InventoryError

CHANGELOG: Final = "CHANGELOG.jsonl"
_VERSION = re.compile(r"^v(\d{4,})\.yaml$")
SHOWN: Final = 50
"""Ids listed per kind of change in a summary (the changelog keeps them all)."""


def history_dir(out: Path) -> Path:
    """``prov.yaml`` -> ``prov.history/`` beside it."""
    return out.with_name(out.stem + ".history")


def version_file(history: Path, version: int) -> Path:
    return history / f"v{version:04d}.yaml"


def versions(history: Path) -> list[int]:
    """The versions stored, oldest first."""
    if not history.is_dir():
        return []
    found = (_VERSION.match(entry.name) for entry in history.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def changelog(history: Path) -> list[dict[str, Any]]:
    """The changelog's entries, oldest first."""
    path = history / CHANGELOG
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InventoryError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(entry, dict):
            raise InventoryError(f"{path}:{number}: expected a JSON object")
        entries.append(entry)
    return entries


# --- differences ---


@dataclass(frozen=True)
class Section:
    """Added, removed and changed ids of one kind of item (devices, sites, units)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    """id -> what changed, e.g. ``upstream: nn-1 -> nn-2``."""

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def as_json(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "changed": sorted(self.changed)}


@dataclass(frozen=True)
class Diff:
    devices: Section
    sites: Section
    units: Section
    scenario: list[str]
    """Changes to the scenario itself (name, levels, description, seed)."""

    def __bool__(self) -> bool:
        return bool(self.devices or self.sites or self.units or self.scenario)


def _short(value: Any) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in dict.fromkeys([*old, *new]):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            out += _fields(before, after, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: {_short(before)} -> {_short(after)}")
    return out


def _section(old: list[dict[str, Any]], new: list[dict[str, Any]], key: str) -> Section:
    before = {str(item[key]): item for item in old}
    after = {str(item[key]): item for item in new}
    return Section(
        added=[k for k in after if k not in before],
        removed=[k for k in before if k not in after],
        changed={
            k: _fields(before[k], after[k]) for k in after if k in before and before[k] != after[k]
        },
    )


def diff(current: Topology | None, new: Topology) -> Diff:
    """What importing ``new`` changes in ``current`` (None: everything is added)."""
    old_doc = current.to_document() if current is not None else {}
    new_doc = new.to_document()
    scenario = (
        _fields(
            {k: v for k, v in old_doc.items() if k not in ("units", "sites", "devices")},
            {k: v for k, v in new_doc.items() if k not in ("units", "sites", "devices")},
        )
        if current is not None
        else []
    )
    return Diff(
        devices=_section(old_doc.get("devices", []), new_doc["devices"], "id"),
        sites=_section(old_doc.get("sites", []), new_doc["sites"], "id"),
        units=_section(old_doc.get("units", []), new_doc["units"], "code"),
        scenario=scenario,
    )


def describe(change: Diff, current: Topology | None, new: Topology) -> list[str]:
    """The lines a person reads: per kind, the counts, then each id (the first :data:`SHOWN`)."""
    lines = list(change.scenario)
    kinds = (
        ("devices", change.devices, current.devices if current else {}, new.devices),
        ("sites", change.sites, current.sites if current else {}, new.sites),
        ("units", change.units, current.units if current else {}, new.units),
    )
    for name, section, before, after in kinds:
        lines.append(
            f"{name}: {len(before)} -> {len(after)} (+{len(section.added)} added, "
            f"-{len(section.removed)} removed, ~{len(section.changed)} changed)"
        )
        items = [f"  + {i}" for i in section.added]
        items += [f"  - {i}" for i in section.removed]
        items += [f"  ~ {i}: {'; '.join(what)}" for i, what in section.changed.items()]
        lines += items[:SHOWN]
        if len(items) > SHOWN:
            lines.append(f"  ... and {len(items) - SHOWN} more (all in the changelog)")
    return lines


# --- writing ---


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def record(
    out: Path,
    history: Path,
    text: str,
    topology: Topology,
    change: Diff,
    source: Path,
    sha256: str,
    now: dt.datetime | None = None,
) -> int:
    """Store ``text`` as the next version and as ``out``, and log it; the version number."""
    history.mkdir(parents=True, exist_ok=True)
    version = max(versions(history), default=0) + 1
    _write_atomically(version_file(history, version), text)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(out, text)
    entry = {
        "version": version,
        "time": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "source": str(source),
        "sha256": sha256,
        "scenario": topology.name,
        "counts": {
            "units": len(topology.units),
            "sites": len(topology.sites),
            "devices": len(topology.devices),
            **{k: v for k, v in topology.counts().items() if k.startswith("devices_")},
        },
        "devices": change.devices.as_json(),
        "sites": change.sites.as_json(),
        "units": change.units.as_json(),
    }
    with (history / CHANGELOG).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return version
