"""Run mypy over the whole ``ioc`` namespace, the tests and the benchmarks.

pyproject.toml maps several top-level folders into one package (``streams/`` is
``ioc.streams``...). The editable install resolves that with an import hook, which mypy
cannot follow, so this builds a throw-away tree of symlinks shaped like the installed
package (``.build/typecheck/ioc/...``) from the same mapping and checks that.

``tests/`` is linked next to it (``.build/typecheck/tests``: the package ``tests``, which
imports ``ioc.*`` and ``tests.support.*``). ``bench/`` is checked in place: its scripts are
top-level modules that import each other by name (``from bench_machine import machine``),
so their module base is ``bench/`` itself; ``tools/`` likewise.

Paths in mypy's report are mapped back to the files in the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".build" / "typecheck"
TESTS = "tests"
BENCH = "bench"
TOOLS = "tools"


def package_dirs() -> dict[str, str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return mapping


def build_tree() -> list[Path]:
    """The symlink tree; returns what mypy checks (the ``ioc`` package and the tests)."""
    shutil.rmtree(TREE, ignore_errors=True)
    # Shallow names first so that "ioc" exists before "ioc.streams" is linked inside it.
    for package, folder in sorted(package_dirs().items(), key=lambda kv: kv[0].count(".")):
        target = TREE.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for entry in (ROOT / folder).iterdir():
            if entry.name == "__pycache__" or (target / entry.name).exists():
                continue
            if entry.is_dir() and not (entry / "__init__.py").exists():
                continue  # data folders (migrations, templates) are not code
            (target / entry.name).symlink_to(entry)
    (TREE / TESTS).symlink_to(ROOT / TESTS)
    return [TREE / "ioc", TREE / TESTS]


def real_paths(line: str) -> str:
    """``.build/typecheck/ioc/streams/app.py:3: ...`` -> ``streams/app.py:3: ...``."""
    tree = str(TREE.relative_to(ROOT)) + "/"
    if not line.startswith(tree):
        return line
    rest = line[len(tree) :]
    # Deepest package first: "ioc/streams/" before "ioc/".
    prefixes = {"/".join(p.split(".")) + "/": f for p, f in package_dirs().items()}
    prefixes[TESTS + "/"] = TESTS
    for prefix in sorted(prefixes, key=len, reverse=True):
        if rest.startswith(prefix):
            folder = prefixes[prefix]
            return (folder + "/" if folder else "") + rest[len(prefix) :]
    return line


def main() -> int:
    targets = [*build_tree(), ROOT / BENCH, ROOT / TOOLS]
    cmd = [sys.executable, "-m", "mypy", *sys.argv[1:], *map(str, targets)]
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(real_paths(line))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
