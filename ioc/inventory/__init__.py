"""Device inventory import (``ioc inventory``): a province's device list, kept as the
spreadsheet its integrator already has, becomes a scenario file (:mod:`ioc.contract.topology`)
that every command reads, with a history of versions beside it.

- :mod:`.sheet` reads CSV (UTF-8, with or without Excel's BOM) and XLSX into numbered rows of
  text, so both formats go through one validation;
- :mod:`.build` checks the rows against the province's administrative units and builds the
  topology, collecting every bad row as ``file:row: problem`` rather than stopping at the first;
- :mod:`.history` compares the result with the current version, writes the scenario and keeps
  each version (``vNNNN.yaml``) and a changelog beside it;
- :mod:`.template` is the template that ships with the project (docs/inventory-template.csv);
- :mod:`.cli` holds the commands. See docs/inventory.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from ioc.errors import IocError

MAX_PROBLEMS = 200
"""Bad rows listed at most (then a count of the rest): enough to fix a file in one pass
without burying the terminal when a whole column is wrong."""


class InventoryError(IocError):
    """The inventory cannot be imported. The message is one summary line; ``problems`` lists
    every bad row as ``file:row: problem`` (the CLI prints them before the summary)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class Problems:
    """Every problem of one file, as ``file:row: problem``, reported together."""

    def __init__(self) -> None:
        self._items: list[tuple[str, int, int, str]] = []  # (source, row, order, problem)

    def add(self, source: str, row: int, problem: str) -> None:
        self._items.append((source, row, len(self._items), problem))

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def lines(self) -> list[str]:
        """In file and row order, at most :data:`MAX_PROBLEMS` (then how many more)."""
        ordered = sorted(self._items)
        lines = [f"{source}:{row}: {problem}" for source, row, _, problem in ordered]
        if len(lines) > MAX_PROBLEMS:
            lines = [*lines[:MAX_PROBLEMS], f"... and {len(lines) - MAX_PROBLEMS} more problems"]
        return lines

    def raise_if_any(self, what: str) -> None:
        """Raise :class:`InventoryError` listing them; ``what`` names the file for the summary."""
        if self._items:
            rows = len({(source, row) for source, row, _, _ in self._items})
            raise InventoryError(
                f"{what}: {len(self._items)} problem(s) on {rows} row(s); nothing imported",
                self.lines(),
            )
