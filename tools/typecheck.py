"""Run mypy over the whole ``ioc`` namespace.

pyproject.toml maps several top-level folders into one package (``streams/`` is
``ioc.streams``...). The editable install resolves that with an import hook, which mypy
cannot follow, so this builds a throw-away tree of symlinks shaped like the installed
package (``.build/typecheck/ioc/...``) from the same mapping and checks that.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".build" / "typecheck"


def build_tree() -> Path:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(TREE, ignore_errors=True)
    # Shallow names first so that "ioc" exists before "ioc.streams" is linked inside it.
    for package, folder in sorted(mapping.items(), key=lambda kv: kv[0].count(".")):
        target = TREE.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for entry in (ROOT / folder).iterdir():
            if entry.name == "__pycache__" or (target / entry.name).exists():
                continue
            if entry.is_dir() and not (entry / "__init__.py").exists():
                continue  # data folders (migrations, templates) are not code
            (target / entry.name).symlink_to(entry)
    return TREE / "ioc"


def main() -> int:
    package = build_tree()
    cmd = [sys.executable, "-m", "mypy", *sys.argv[1:], str(package)]
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
