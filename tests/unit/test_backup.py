"""The WAL archiving the stack configures, and the commands that back up and restore."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ioc.cli import build_parser
from ioc.deploy.local.backup import (
    ARCHIVE_SCRIPT,
    BASE_BACKUPS,
    WAL_ARCHIVE,
    archive_options,
    cmd_backup,
    cmd_restore,
    prepare_archive,
)


def test_archiving_is_on_with_the_durable_script() -> None:
    options = archive_options()
    assert options["archive_mode"] == "on"
    assert options["archive_command"] == f"{ARCHIVE_SCRIPT} %p %f"
    assert int(options["archive_timeout"]) <= 300


def test_prepare_archive_is_idempotent(tmp_path: Path) -> None:
    for _ in range(2):
        prepare_archive(tmp_path, os.getuid(), os.getgid())
    script = tmp_path / ARCHIVE_SCRIPT.lstrip("/")
    assert os.access(script, os.X_OK)
    assert (tmp_path / WAL_ARCHIVE.lstrip("/")).is_dir()


def test_archive_script_copies_once_and_refuses_a_different_copy(tmp_path: Path) -> None:
    prepare_archive(tmp_path, os.getuid(), os.getgid())
    text = (tmp_path / ARCHIVE_SCRIPT.lstrip("/")).read_text()
    archive = tmp_path / "wal"
    archive.mkdir()
    script = tmp_path / "archive-wal"
    (tmp_path / "base" / "20261127T000000Z").mkdir(parents=True)  # a base backup exists
    script.write_text(
        text.replace(f"dir={WAL_ARCHIVE}", f"dir={archive}").replace(
            f"base={BASE_BACKUPS}", f"base={tmp_path / 'base'}"
        )
    )
    segment = tmp_path / "000000010000000000000001"
    segment.write_bytes(b"x" * 1000)

    def run() -> int:
        return subprocess.run(["sh", str(script), str(segment), segment.name]).returncode

    assert run() == 0
    assert (archive / segment.name).read_bytes() == segment.read_bytes()
    assert run() == 0  # archived again after a crash: identical, accepted
    segment.write_bytes(b"y" * 1000)
    assert run() != 0  # a different segment under the same name is never overwritten
    assert not list(archive.glob(".*.tmp"))


def test_without_a_base_backup_the_archive_keeps_only_the_newest_segment(
    tmp_path: Path,
) -> None:
    """Nothing can replay WAL older than the oldest base backup: with none (nor one being
    taken) the archive would only fill the disk (60 GB in an hour of soak)."""
    prepare_archive(tmp_path, os.getuid(), os.getgid())
    text = (tmp_path / ARCHIVE_SCRIPT.lstrip("/")).read_text()
    archive, base = tmp_path / "wal", tmp_path / "base"
    archive.mkdir()
    base.mkdir()
    script = tmp_path / "archive-wal"
    script.write_text(
        text.replace(f"dir={WAL_ARCHIVE}", f"dir={archive}").replace(
            f"base={BASE_BACKUPS}", f"base={base}"
        )
    )
    (archive / "00000002.history").write_text("1\t0/3000000\tbefore a promotion\n")

    def archive_segment(n: int) -> None:
        segment = tmp_path / f"0000000100000000000000{n:02X}"
        segment.write_bytes(bytes([n]) * 100)
        assert subprocess.run(["sh", str(script), str(segment), segment.name]).returncode == 0

    archive_segment(1)
    archive_segment(2)
    assert sorted(p.name for p in archive.iterdir()) == [
        "000000010000000000000002",
        "00000002.history",
    ]
    (base / "20261127T000000Z.partial").mkdir()  # a backup being taken: keep everything
    archive_segment(3)
    archive_segment(4)
    assert len([p for p in archive.iterdir() if not p.name.endswith(".history")]) == 3


@pytest.mark.parametrize(
    ("argv", "handler"),
    [
        (["db", "backup", "--keep", "7"], cmd_backup),
        (
            ["db", "restore", "--target-time", "2026-11-26T09:40:00+00:00", "--port", "15451"],
            cmd_restore,
        ),
        (["db", "restore", "--adopt"], cmd_restore),
        (["db", "restore", "--rewind-consumers", "2026-11-26T09:40:00+00:00"], cmd_restore),
    ],
)
def test_commands_parse(argv: list[str], handler: object) -> None:
    args = build_parser().parse_args(argv)
    assert args.handler is handler


def test_target_and_adopt_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["db", "restore", "--adopt", "--target-lsn", "0/1"])
