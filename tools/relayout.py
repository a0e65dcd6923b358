"""Move the repository to a layout that mypy, ruff, pytest, pip and IDEs follow unaided.

``ioc`` becomes a PEP 420 namespace package made of portions: the core at the root and one
portion per fixed top-level folder, each file at the path its module name says (imports are
unchanged: ``ioc.streams.app`` stays ``ioc.streams.app``):

    ioc/config.py ...                    -> ioc/config.py ...  (the core; the root is its base)
    streams/app.py                       -> streams/ioc/streams/app.py
    services/pager.py                    -> services/ioc/services/pager.py
    simulators/, dashboards/, deploy/    -> likewise (deploy/compose -> deploy/ioc/deploy/compose)
    ioc/__init__.py                      -> removed (a namespace package has none)

``package-dir`` now maps ``ioc.streams`` to ``streams/ioc/streams`` (a conventional path, read
by setuptools only); mypy gets ``mypy_path`` + ``explicit_package_bases``, pytest
``pythonpath``, ruff ``src``, pyright ``extraPaths``; ``make typecheck`` runs ``mypy .`` and
tools/typecheck.py goes; ``make install`` filters setuptools' "Editable installation" notice.
Paths written in docs, comments and code (``streams/app.py``, ``deploy/compose/...``) are
rewritten; lines that grow past 100 characters are listed for rewrapping by hand.

Usage (on a clean tree; nothing is committed):  python3 tools/relayout.py [--dry-run]
Idempotent: a second run finds everything moved and rewritten and changes nothing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORTIONS = ("streams", "services", "simulators", "dashboards", "deploy")
"""Fixed top-level folders; each becomes ``<folder>/ioc/<folder>/``."""
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".sh", ".toml", ".txt", ".cfg", ".ini", ""}

DRY_RUN = False


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def say(message: str) -> None:
    print(("(dry run) " if DRY_RUN else "") + message)


# --- 1. moves ----------------------------------------------------------------------------------
def move_portions() -> None:
    tracked = git("ls-files", "-z").split("\0")
    for folder in PORTIONS:
        inner = f"{folder}/ioc/{folder}"
        entries = sorted(
            {p.split("/")[1] for p in tracked if p.startswith(folder + "/") and p.count("/") >= 1}
            - {"ioc"}
        )
        if not entries:
            say(f"{folder}/: already moved")
            continue
        say(f"{folder}/: {len(entries)} entries -> {inner}/")
        if DRY_RUN:
            continue
        (ROOT / inner).mkdir(parents=True, exist_ok=True)
        git("mv", "-k", *[f"{folder}/{e}" for e in entries], inner + "/")
    left_behind(DRY_RUN)
    init = ROOT / "ioc" / "__init__.py"
    if init.exists():
        say("ioc/__init__.py: removed (ioc is a namespace package; version: pyproject.toml)")
        if not DRY_RUN:
            git("rm", "-q", "ioc/__init__.py")


def left_behind(dry_run: bool) -> None:
    """Ignored files stay where they were: drop stale __pycache__, name the rest (local
    secrets such as deploy/compose/.env move by hand)."""
    for folder in PORTIONS:
        for cache in sorted((ROOT / folder).rglob("__pycache__")):
            moved = f"{folder}/ioc/" in cache.relative_to(ROOT).as_posix()
            if cache.is_dir() and not moved and not dry_run:
                shutil.rmtree(cache)
        ignored = git(
            "ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "--", folder
        )
        for name in ignored.split():
            if not name.startswith(f"{folder}/ioc/") and "__pycache__" not in name:
                print(f"WARNING: {name} is ignored by git and stays; move it by hand")


# --- 2. paths written in files ----------------------------------------------------------------
# `streams/app.py`, "deploy/compose/...", ../../dashboards/generated: a fixed folder followed by
# a name, not preceded by a word, dot, dash or slash (URLs, other paths), not already moved.
PATH_RE = re.compile(r"(?<![\w.\-/])((?:\.\./)*)(" + "|".join(PORTIONS) + r")/(?!ioc/)(?=[\w*.])")
# Paths built in code from the folder names.
CODE_SUBS = [
    (re.compile(r'Path\("deploy"\)'), 'Path("deploy", "ioc", "deploy")'),
    (
        re.compile(r'(ROOT|parents\[\d\]) / "(' + "|".join(PORTIONS) + r')"(?! / "ioc")'),
        r'\1 / "\2" / "ioc" / "\2"',
    ),
]


def rewrite_text() -> None:
    files = [f for f in git("ls-files", "-z").split("\0") if f]
    for name in files:
        path = ROOT / name
        if path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        if name in ("tools/relayout.py", "tools/typecheck.py"):
            continue
        if path.suffix == "" and path.name not in {"Makefile"}:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        new = text
        moved = name.split("/")[0] in PORTIONS and name.split("/")[1:2] == ["ioc"]
        # Relative references to another fixed folder from a file that moved two levels
        # deeper (deploy/compose -> deploy/ioc/deploy/compose: ../../dashboards/generated).
        if moved:
            new = re.sub(
                r"(?<![\w.\-/])((?:\.\./){2,})(" + "|".join(PORTIONS) + r")/(?!ioc/)",
                lambda m: "../../" + m[1] + f"{m[2]}/ioc/{m[2]}/",
                new,
            )
        new = PATH_RE.sub(lambda m: f"{m[1]}{m[2]}/ioc/{m[2]}/", new)
        if path.suffix == ".py":
            for pattern, repl in CODE_SUBS:
                new = pattern.sub(repl, new)
        if new != text:
            say(f"rewrote paths in {name}")
            if not DRY_RUN:
                path.write_text(new)


# --- 3. configuration -------------------------------------------------------------------------
# "ioc.streams" = "streams"  ->  "ioc.streams" = "streams/ioc/streams"
PACKAGE_DIR_RE = re.compile(
    r'"ioc\.(' + "|".join(PORTIONS) + r')" = "(' + "|".join(PORTIONS) + r')"'
)
PACKAGE_DIR_COMMENT = (
    "# One import namespace, `ioc`, mapped onto the fixed top-level folders, so that nothing\n"
    "# generic like `streams` or `services` lands in site-packages.\n",
    "# One import name, `ioc`: a PEP 420 namespace package whose portions are the root (the\n"
    "# core, ioc/) and each fixed top-level folder (streams/ioc/streams/, ...). This mapping\n"
    "# is for setuptools only: the other tools find the portions through their search paths.\n",
)
TOOL_SUBS: list[tuple[str, str]] = [
    (
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n',
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
        "# The portions of `ioc`, so that tests import the tree whatever the install mode.\n"
        'pythonpath = [".", "streams", "services", "simulators", "dashboards", "deploy"]\n',
    ),
    (
        "[tool.ruff]\nline-length = 100\n",
        "[tool.ruff]\nline-length = 100\n"
        'src = [".", "streams", "services", "simulators", "dashboards", "deploy"]\n',
    ),
    (
        "[tool.mypy]\n",
        "[tool.mypy]\n"
        "# `mypy .` from the root: each file's module is its path below the deepest base\n"
        "# (streams/ioc/streams/app.py is ioc.streams.app; bench/ scripts are top-level modules).\n"
        'mypy_path = ["streams", "services", "simulators", "dashboards", "deploy", "bench"]\n'
        "explicit_package_bases = true\n"
        'exclude = ["^build/", "^dist/"]\n',
    ),
]
PYRIGHT = """
[tool.pyright]
# IDEs (Pylance/pyright): the portions of `ioc` and the benchmarks' import root.
extraPaths = ["streams", "services", "simulators", "dashboards", "deploy", "bench"]
"""


def configure() -> None:
    pyproject = ROOT / "pyproject.toml"
    text = pyproject.read_text()
    new = text
    new = PACKAGE_DIR_RE.sub(lambda m: f'"ioc.{m[1]}" = "{m[2]}/ioc/{m[2]}"', new)
    new = new.replace(*PACKAGE_DIR_COMMENT)
    for old, repl in TOOL_SUBS:
        if repl in new or repl.split("\n")[-2] in new:  # done (its last line is there)
            continue
        if old not in new:
            sys.exit(f"pyproject.toml: expected {old!r}; edit by hand")
        new = new.replace(old, repl, 1)
    if "[tool.pyright]" not in new:
        new += PYRIGHT
    if new != text:
        say("pyproject.toml: package-dir, mypy_path, pytest pythonpath, ruff src, pyright")
        if not DRY_RUN:
            pyproject.write_text(new)

    makefile = ROOT / "Makefile"
    text = makefile.read_text()
    new = text.replace("$(BIN)/python tools/typecheck.py", "$(BIN)/mypy .")
    # setuptools' InformationOnly notice for editable installs through a meta path finder
    # ("Editable installation. Please be careful with folders ..."): every `make install`.
    quiet = 'PYTHONWARNINGS="ignore:Editable installation" '
    if quiet not in new:
        new = new.replace(
            "\t$(BIN)/pip install -q -e '.[dev]'", f"\t{quiet}$(BIN)/pip install -q -e '.[dev]'"
        )
    new = new.replace(
        "rm -rf $(VENV) $(QUIX_VENV) .pytest_cache",
        "rm -rf $(VENV) $(QUIX_VENV) build dist .build .pytest_cache",
    )
    if new != text:
        say("Makefile: typecheck runs `mypy .`")
        if not DRY_RUN:
            makefile.write_text(new)

    if (ROOT / "tools" / "typecheck.py").exists():
        say("tools/typecheck.py: removed (mypy . needs no symlink tree)")
        if not DRY_RUN:
            git("rm", "-q", "tools/typecheck.py")


# --- 4. what is left to do by hand -----------------------------------------------------------
def report_long_lines() -> None:
    """Paths grew by ``ioc/<folder>/``: list what ruff now finds too long or unformatted."""
    if DRY_RUN:
        return
    venv_ruff = ROOT / ".venv" / "bin" / "ruff"
    ruff = str(venv_ruff) if venv_ruff.exists() else shutil.which("ruff")
    if ruff is None:
        print("(no ruff: run `ruff check --select E501 .` and `ruff format --check .`)")
        return
    for args in (
        ["check", "--select", "E501", "--output-format", "concise"],
        ["format", "--check"],
    ):
        found = subprocess.run(
            [ruff, *args], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        if found:
            print(f"To rewrap by hand (paths grew), `ruff {' '.join(args)}`:\n{found}")


def main() -> int:
    global DRY_RUN
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="say what would change")
    parser.add_argument("--force", action="store_true", help="run on a tree with changes")
    args = parser.parse_args()
    DRY_RUN = args.dry_run
    if git("status", "--porcelain").strip() and not (args.force or DRY_RUN):
        sys.exit("the tree has uncommitted or untracked files: commit first (or --force)")
    move_portions()
    rewrite_text()
    configure()
    report_long_lines()
    return 0


if __name__ == "__main__":
    sys.exit(main())
