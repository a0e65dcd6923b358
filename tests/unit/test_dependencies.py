"""Dependencies point one way: the contract depends on no component, and no runtime component
(streams, services, dashboards) depends on the simulators.

Imports are read from the source with :mod:`ast` (every ``import``, ``from ... import``, also
inside functions and ``TYPE_CHECKING`` blocks, relative ones resolved, and
``importlib.import_module("...")`` with a literal name), over the folders that
pyproject.toml's ``package-dir`` maps into the ``ioc`` namespace.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("ioc.simulators", "ioc.streams", "ioc.services", "ioc.dashboards")

# package -> what it must never import (the package itself or anything below it)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "ioc.contract": COMPONENTS,
    "ioc.streams": ("ioc.simulators",),
    "ioc.services": ("ioc.simulators",),
    "ioc.dashboards": ("ioc.simulators",),
}


def _folder(package: str) -> Path:
    """The source folder of ``package``, from the deepest mapped prefix of its name."""
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]["package-dir"]
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in mapping:
            return ROOT / mapping[prefix] / Path(*parts[cut:])
    raise AssertionError(f"{package} is not mapped in pyproject.toml")


def _modules(package: str) -> Iterator[tuple[str, bool, Path]]:
    """(module name, is a package __init__, path) of every source file of ``package``."""
    folder = _folder(package)
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(folder).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        yield ".".join([package, *parts]), path.name == "__init__.py", path


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Every module name ``source`` (the text of ``module``) imports, fully qualified."""
    names: set[str] = set()
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            names.add(origin)
            # `from ioc import simulators` imports the module ioc.simulators
            names.update(f"{origin}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if (
                called in ("import_module", "__import__")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
    return names


def _violations(module: str, names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for name in names
        for banned in forbidden
        if name == banned or name.startswith(banned + ".")
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package: str) -> None:
    found = list(_modules(package))
    assert found, f"no source files found for {package} under {_folder(package)}"
    problems: list[str] = []
    for module, is_package, path in found:
        names = imported_names(path.read_text(encoding="utf-8"), module, is_package)
        problems += _violations(module, names, FORBIDDEN[package])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "module", "is_package"),
    [
        ("import ioc.simulators.run", "ioc.streams.app", False),
        ("from ioc.simulators import province", "ioc.streams.app", False),
        ("from ioc import simulators", "ioc.contract.topology", False),
        ("def f():\n    from ioc.simulators.province import generate", "ioc.contract.x", False),
        ("from ..simulators import engine", "ioc.streams.app", False),
        ("from .. import simulators", "ioc.streams", True),
        ("import importlib\nimportlib.import_module('ioc.simulators.run')", "ioc.streams.x", False),
    ],
)
def test_the_check_sees_every_form_of_import(source: str, module: str, is_package: bool) -> None:
    names = imported_names(source, module, is_package)
    assert _violations(module, names, ("ioc.simulators",)), names


def test_the_check_does_not_flag_lookalikes() -> None:
    names = imported_names(
        "import ioc.simulators_extra\nfrom ioc.contract import topology", "ioc.streams.x", False
    )
    assert not _violations("ioc.streams.x", names, ("ioc.simulators",))
