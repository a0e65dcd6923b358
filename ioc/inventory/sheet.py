"""Spreadsheets as numbered rows of text: CSV as Excel writes it and XLSX.

Every cell becomes stripped, NFC-normalised text (a Vietnamese name typed on one machine and
pasted from another compares equal), numbers included, so CSV and XLSX go through one
validation and give the same topology. Row numbers are the ones the spreadsheet shows: the
header is row 1. openpyxl is imported only when a workbook is read or written.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ioc.inventory import InventoryError

CSV_SUFFIXES = (".csv",)
XLSX_SUFFIXES = (".xlsx", ".xlsm")
DEVICES_SHEET = "devices"
UNITS_SHEET = "units"


@dataclass(frozen=True)
class Row:
    """One non-blank row: its number as the spreadsheet shows it and its cells' text."""

    number: int
    values: tuple[str, ...]


@dataclass(frozen=True)
class Sheet:
    """A header (normalised column names, ``""`` for an unnamed column) and its rows."""

    source: str
    """How messages name it: the file, and ``[sheet]`` for a workbook's secondary sheet."""
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    blank_rows: int
    """Rows with no value at all, skipped (and said so)."""


def column_name(header: str) -> str:
    """``"Site ID"`` -> ``"site_id"``: headers match whatever case and spacing Excel kept."""
    return re.sub(r"[\s\-]+", "_", unicodedata.normalize("NFC", header).strip().lower())


def cell_text(value: Any) -> str:
    """A cell as text: numbers as Python writes them (21.0042, 100), dates ISO."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return unicodedata.normalize("NFC", str(value)).strip()


def kind_of(path: Path) -> str:
    """``csv`` or ``xlsx`` from the file name; anything else is refused up front."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in XLSX_SUFFIXES:
        return "xlsx"
    if suffix == ".xls":
        raise InventoryError(f"{path}: an old .xls workbook: save it as .xlsx (or CSV UTF-8)")
    raise InventoryError(f"{path}: expected a .csv or .xlsx file")


def read_sheet(path: Path, sheet: str | None = None) -> Sheet | None:
    """The rows of a CSV file, or of a workbook's sheet ``sheet`` (None: the ``devices`` sheet,
    else the first); None when the workbook has no sheet of that name."""
    if kind_of(path) == "csv":
        return _to_sheet(str(path), _csv_records(path))
    return _xlsx_sheet(path, sheet)


def _csv_records(path: Path) -> list[list[str]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        raise InventoryError(
            f"{path}: not UTF-8 text (byte {exc.start}): save it from Excel as "
            "'CSV UTF-8 (Comma delimited)' or import the .xlsx"
        ) from None
    first = text.split("\n", 1)[0]
    # Excel in a locale whose decimal mark is a comma (Vietnamese among them) writes ';'
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return [[cell_text(cell) for cell in record] for record in reader]
    except csv.Error as exc:
        raise InventoryError(f"{path}:{reader.line_num}: not valid CSV: {exc}") from None


def _xlsx_sheet(path: Path, name: str | None) -> Sheet | None:
    book = _load_workbook(path)
    try:
        names = list(book.sheetnames)
        if name is None:
            chosen = DEVICES_SHEET if DEVICES_SHEET in names else names[0]
        elif name in names:
            chosen = name
        else:
            return None
        ws = book[chosen]
        source = str(path) if chosen == names[0] or chosen == DEVICES_SHEET else f"{path}[{chosen}]"
        merged = sorted(str(r) for r in ws.merged_cells.ranges)
        if merged:
            raise InventoryError(
                f"{source}: merged cells ({', '.join(merged[:5])}): unmerge them and repeat "
                "the value on every row (a merged cell's value is only on its first row)"
            )
        records = [
            [cell_text(value) for value in row]
            for row in ws.iter_rows(min_row=1, max_row=max(ws.max_row, 1), values_only=True)
        ]
    finally:
        book.close()
    return _to_sheet(source, records)


def _load_workbook(path: Path) -> Any:
    try:
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException
    except ImportError:  # a dependency (pyproject.toml); only a broken install lacks it
        raise InventoryError(
            f"{path}: reading .xlsx needs openpyxl (pip install openpyxl)"
        ) from None
    try:
        # data_only: a formula's value as Excel last computed it, not its text
        return openpyxl.load_workbook(path, data_only=True)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, InvalidFileException) as exc:
        raise InventoryError(f"{path}: cannot read it as an .xlsx workbook: {exc}") from None


def _to_sheet(source: str, records: Sequence[Sequence[str]]) -> Sheet:
    if not records or not any(records[0]):
        raise InventoryError(f"{source}:1: row 1 must be the header (the column names)")
    columns = [column_name(cell) for cell in records[0]]
    while columns and not columns[-1]:
        columns.pop()
    rows: list[Row] = []
    blank: list[int] = []
    for number, record in enumerate(records[1:], start=2):
        values = list(record)
        while values and not values[-1]:
            values.pop()
        if values:
            rows.append(Row(number, tuple(values)))
        else:
            blank.append(number)
    # blank rows after the last one are the sheet's end, not skipped data
    last = rows[-1].number if rows else 1
    return Sheet(source, tuple(columns), tuple(rows), sum(1 for n in blank if n < last))


# --- writing (the template) ---


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """UTF-8 with a BOM, so Excel shows Vietnamese names right when it opens the file."""
    path.write_text(csv_text(columns, rows), encoding="utf-8-sig", newline="")


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """The CSV form of a table (what :func:`write_csv` writes after its BOM)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell_text(row.get(column)) for column in columns])
    return buffer.getvalue()


def write_xlsx(
    path: Path, sheets: Mapping[str, tuple[Sequence[str], Iterable[Mapping[str, Any]]]]
) -> None:
    """One sheet per entry (name -> columns, rows), header bold and frozen."""
    import openpyxl
    from openpyxl.styles import Font

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, (columns, rows) in sheets.items():
        ws = book.create_sheet(name)
        ws.append(list(columns))
        for cell in ws[1]:
            cell.font = Font(bold=True)
        ws.freeze_panes = "A2"
        for row in rows:
            ws.append([row.get(column) for column in columns])
        for letter_cells in ws.iter_cols():
            width = max(len(cell_text(cell.value)) for cell in letter_cells)
            ws.column_dimensions[letter_cells[0].column_letter].width = min(width + 2, 60)
    book.save(path)
