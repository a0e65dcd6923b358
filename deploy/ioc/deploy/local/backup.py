"""Base backups, WAL archiving and point-in-time restore of the local TimescaleDB.

Only the tools PostgreSQL ships (pgBackRest is not in the chroot): the stack's server runs
with ``archive_mode=on`` and an ``archive_command`` that copies every finished WAL segment
durably into ``<stack>/timescaledb/rootfs/var/lib/ioc/backup/wal``; ``ioc db backup`` takes a
self-contained ``pg_basebackup`` (WAL streamed into it, checked by ``pg_verifybackup``) into
``.../backup/base/<UTC stamp>`` and prunes old ones with the WAL only they needed;
``ioc db restore`` copies a base backup into a fresh data directory and starts a second
PostgreSQL on its own port in the same chroot, replaying archived WAL up to
``recovery_target_time`` (or ``_lsn``) before it promotes. The operator checks it, then
``ioc db restore --adopt`` makes it the stack's database (docs/backup.md).

Everything runs inside the chroot as its ``postgres`` user, so the archive lives inside the
chroot too; copy ``backup/`` off the host for a real disaster (docs/backup.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ioc.config import Settings
from ioc.deploy.local.process import Progress, StackError, read_pid, spawn, tail, terminate
from ioc.deploy.local.timescaledb import PG_BIN, PG_DATA, TimescaleDB

BACKUP_ROOT = "/var/lib/ioc/backup"  # inside the chroot
WAL_ARCHIVE = f"{BACKUP_ROOT}/wal"
BASE_BACKUPS = f"{BACKUP_ROOT}/base"
ARCHIVE_SCRIPT = "/usr/local/lib/ioc/archive-wal"
RESTORE_PORTS = range(15450, 15460)
DEFAULT_RESTORE_PORT = 15450
ARCHIVE_TIMEOUT_S = 300
"""A segment is archived when full or after this long: the recovery point objective of a
quiet database whose host is lost (a busy one fills 16 MB segments much sooner)."""

_ARCHIVE_SH = f"""#!/bin/sh
# archive_command of the ioc stack (written by ioc.deploy.local.backup): copy one finished
# WAL segment into the archive durably, exactly once. Exit status 0 tells PostgreSQL it may
# recycle the segment, so the copy is synced before it gets its final name.
set -eu
src="$1"
name="$2"
dir={WAL_ARCHIVE}
base={BASE_BACKUPS}
if [ -f "$dir/$name" ]; then
    # archived before a crash lost PostgreSQL's .done marker: fine if identical
    exec cmp -s "$src" "$dir/$name"
fi
cp "$src" "$dir/.$name.tmp"
sync "$dir/.$name.tmp"
mv "$dir/.$name.tmp" "$dir/$name"
sync "$dir"
# A restore starts from a base backup and replays WAL from its start on: with no base backup
# (nor one being taken), no archived segment can ever be replayed. Keep only this one (and
# the timeline histories), so a stack nobody backs up does not fill its disk: a one-hour
# soak at 20,000 events/s archived 60 GB. With base backups, `ioc db backup --keep N` prunes.
if [ -z "$(ls -A "$base")" ]; then
    find "$dir" -maxdepth 1 -type f ! -name "$name" ! -name '*.history' ! -name '.*' -delete
fi
"""

_STAMP = re.compile(r"^\d{8}T\d{6}Z$")


def archive_options() -> dict[str, str]:
    """postgres ``-c`` settings that archive every WAL segment (the stack's server uses them)."""
    return {
        "archive_mode": "on",
        "archive_command": f"{ARCHIVE_SCRIPT} %p %f",
        "archive_timeout": str(ARCHIVE_TIMEOUT_S),
    }


def prepare_archive(rootfs: Path, uid: int, gid: int) -> None:
    """The archive directories and the archive script in the chroot (idempotent)."""
    for sub in (BACKUP_ROOT, WAL_ARCHIVE, BASE_BACKUPS):
        path = rootfs / sub.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
        path.chmod(0o700)
    script = rootfs / ARCHIVE_SCRIPT.lstrip("/")
    script.parent.mkdir(parents=True, exist_ok=True)
    if not script.exists() or script.read_text() != _ARCHIVE_SH:
        script.write_text(_ARCHIVE_SH)
    script.chmod(0o755)


@dataclass
class BaseBackup:
    """One base backup under ``backup/base/<name>`` (its ``ioc-backup.json``)."""

    name: str
    started_at: str  # ISO 8601, UTC: restores to targets before this cannot use it
    finished_at: str
    start_wal: str  # first WAL segment it needs (older archived WAL only serves older ones)
    bytes: int
    verified: bool


@dataclass
class Restored:
    """A restored PostgreSQL running beside the stack's own."""

    port: int
    data_dir: str  # inside the chroot
    backup: str
    target: str
    seconds: float
    pid: int
    target_time: str | None = None


class Backups:
    """Backups of the stack's TimescaleDB (``Backups(settings).take()``, ``.restore(...)``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = TimescaleDB(settings)

    # -- paths --------------------------------------------------------------------------
    def host(self, chroot_path: str) -> Path:
        return self.db.rootfs / chroot_path.lstrip("/")

    @property
    def wal_archive(self) -> Path:
        return self.host(WAL_ARCHIVE)

    @property
    def base_dir(self) -> Path:
        return self.host(BASE_BACKUPS)

    def restore_dir(self, port: int) -> str:
        return f"/var/lib/ioc/restore-{port}"

    def _pidfile(self, port: int) -> Path:
        return self.db.dir / f"restore-{port}.pid"

    def _log(self, port: int) -> Path:
        return self.db.dir / f"restore-{port}.log"

    # -- helpers ------------------------------------------------------------------------
    def _run(self, what: str, *argv: str, timeout: float = 1800) -> str:
        """A PostgreSQL tool in the chroot as postgres; output to the service log."""
        env = dict(os.environ, PGPASSWORD=self.db.credentials().superuser_password)
        cmd = self.db._chroot(*argv)
        with self.db.log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {what}\n".encode())
            result = subprocess.run(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
            )
            out.write(result.stdout)
        text = result.stdout.decode("utf-8", "replace")
        if result.returncode != 0:
            raise StackError(f"{what} failed (exit {result.returncode}):\n{text[-3000:]}")
        return text

    def _superuser_dsn(self, port: int, database: str = "postgres") -> str:
        creds = self.db.credentials()
        return creds.dsn(creds.superuser, port, database)

    async def _fetchval(self, port: int, sql: str) -> Any:
        import asyncpg

        conn = await asyncpg.connect(self._superuser_dsn(port), timeout=5)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    def archiving(self) -> dict[str, Any]:
        """The stack server's archiver state (pg_stat_archiver plus archive_mode)."""

        async def go() -> dict[str, Any]:
            import asyncpg

            conn = await asyncpg.connect(self._superuser_dsn(self.settings.postgres_port))
            try:
                row = await conn.fetchrow(
                    "SELECT current_setting('archive_mode') AS mode, archived_count, "
                    "last_archived_wal, last_archived_time, failed_count, last_failed_wal, "
                    "last_failed_time "
                    "FROM pg_stat_archiver"
                )
                return dict(row) if row else {}
            finally:
                await conn.close()

        return asyncio.run(go())

    def require_archiving(self) -> None:
        """Refuse to back up while WAL archiving is off or failing: a base backup without the
        WAL after it restores only to its own end, and the schedule should fail loudly."""
        state = self.archiving()
        mode = state.get("mode")
        failed, archived = state.get("last_failed_time"), state.get("last_archived_time")
        if failed is not None and (archived is None or failed > archived):
            raise StackError(
                f"WAL archiving is failing (segment {state.get('last_failed_wal')} at {failed}, "
                f"{state.get('failed_count')} failures): see `ioc stack logs timescaledb`"
            )
        if mode != "on":
            raise StackError(
                f"the database runs with archive_mode={mode} (started before WAL archiving "
                "was configured): restart it once with `ioc stack down timescaledb && "
                "ioc stack up timescaledb`"
            )

    def switch_wal(self, timeout: float = 60) -> str:
        """Close the current WAL segment and wait until the archive has it; returns its name.

        What an operator runs before a planned restore, and the test before its restore: the
        archive then holds every commit made before this call."""
        port = self.settings.postgres_port

        async def go() -> str:
            import asyncpg

            conn = await asyncpg.connect(self._superuser_dsn(port), timeout=5)
            try:
                # a committed transaction first (an xid makes its commit a WAL record): an idle
                # server would not switch, and a recovery to a time needs a commit after it
                await conn.execute("SELECT pg_current_xact_id()")
                lsn = await conn.fetchval("SELECT pg_switch_wal()")
                segment: str = await conn.fetchval("SELECT pg_walfile_name($1)", lsn)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if (self.wal_archive / segment).exists():
                        return segment
                    await asyncio.sleep(0.2)
                raise StackError(f"WAL segment {segment} not archived within {timeout:.0f} s")
            finally:
                await conn.close()

        return asyncio.run(go())

    # -- base backups -------------------------------------------------------------------
    def backups(self) -> list[BaseBackup]:
        """Finished base backups, oldest first."""
        found = []
        if self.base_dir.is_dir():
            for entry in sorted(self.base_dir.iterdir()):
                meta = entry / "ioc-backup.json"
                if _STAMP.match(entry.name) and meta.exists():
                    found.append(BaseBackup(**json.loads(meta.read_text())))
        return found

    def take(
        self, progress: Progress, *, verify: bool = True, keep: int | None = None
    ) -> BaseBackup:
        """One base backup (fast checkpoint, WAL streamed in: restorable on its own), verified
        with ``pg_verifybackup``; then, with ``keep``, :meth:`prune`."""
        self.require_archiving()
        started = datetime.now(UTC)
        name = started.strftime("%Y%m%dT%H%M%SZ")
        target = f"{BASE_BACKUPS}/{name}"
        partial = f"{target}.partial"
        shutil.rmtree(self.host(partial), ignore_errors=True)
        progress(f"pg_basebackup into {self.host(target)}")
        self._run(
            "pg_basebackup",
            f"{PG_BIN}/pg_basebackup",
            "-h", "127.0.0.1",
            "-p", str(self.settings.postgres_port),
            "-U", self.db.credentials().superuser,
            "-D", partial,
            "-X", "stream",
            "-c", "fast",
            "-l", f"ioc {name}",
            "--no-password",
        )  # fmt: skip
        label = self.host(partial) / "backup_label"
        match = re.search(r"START WAL LOCATION: \S+ \(file (\w+)\)", label.read_text())
        if not match:
            raise StackError(f"no START WAL LOCATION in {label}")
        if verify:
            progress("pg_verifybackup")
            self._run("pg_verifybackup", f"{PG_BIN}/pg_verifybackup", partial)
        size = sum(p.stat().st_size for p in self.host(partial).rglob("*") if p.is_file())
        info = BaseBackup(
            name=name,
            started_at=started.isoformat(),
            finished_at=datetime.now(UTC).isoformat(),
            start_wal=match[1],
            bytes=size,
            verified=verify,
        )
        (self.host(partial) / "ioc-backup.json").write_text(json.dumps(asdict(info), indent=2))
        self.host(partial).rename(self.host(target))
        if keep is not None:
            self.prune(keep, progress)
        return info

    def prune(self, keep: int, progress: Progress) -> None:
        """Keep the newest ``keep`` base backups and the archived WAL from the oldest kept
        one on (every point in time since then stays restorable)."""
        if keep < 1:
            raise StackError("keep at least one base backup")
        backups = self.backups()
        for old in backups[:-keep]:
            progress(f"removing base backup {old.name}")
            shutil.rmtree(self.base_dir / old.name)
        kept = backups[-keep:]
        if kept:
            progress(f"removing archived WAL before {kept[0].start_wal}")
            self._run(
                "pg_archivecleanup", f"{PG_BIN}/pg_archivecleanup", WAL_ARCHIVE, kept[0].start_wal
            )

    # -- restore ------------------------------------------------------------------------
    def choose(self, target_time: datetime | None, name: str | None) -> BaseBackup:
        backups = self.backups()
        if name is not None:
            for b in backups:
                if b.name == name:
                    return b
            raise StackError(f"no base backup {name} in {self.base_dir}")
        if target_time is not None:
            # a backup is consistent only once it finished: target must come after that
            backups = [b for b in backups if datetime.fromisoformat(b.finished_at) < target_time]
        if not backups:
            raise StackError(f"no base backup in {self.base_dir} finished before the target")
        return backups[-1]

    def running(self, port: int) -> int | None:
        return read_pid(self._pidfile(port))

    def restore(
        self,
        progress: Progress,
        *,
        target_time: datetime | None = None,
        target_lsn: str | None = None,
        backup: str | None = None,
        port: int = DEFAULT_RESTORE_PORT,
        timeout: float = 600,
    ) -> Restored:
        """A fresh PostgreSQL on ``port`` recovered from a base backup plus the WAL archive up
        to the target (none: to the end of the archive), then promoted."""
        if port not in RESTORE_PORTS:
            raise StackError(f"restore ports are {RESTORE_PORTS.start}-{RESTORE_PORTS.stop - 1}")
        if target_time is not None and target_time.tzinfo is None:
            raise StackError("give the target time with its offset, e.g. 2026-11-26T09:40:00Z")
        if self.running(port):
            raise StackError(f"a restored database already runs on port {port}: stop it first")
        chosen = self.choose(target_time, backup)
        data = self.restore_dir(port)
        host_data = self.host(data)
        if host_data.exists():
            shutil.rmtree(host_data)
        progress(f"copying base backup {chosen.name} into {host_data}")
        started = time.monotonic()
        subprocess.run(
            ["cp", "-a", "--reflink=auto", str(self.base_dir / chosen.name), str(host_data)],
            check=True,
        )
        (host_data / "ioc-backup.json").unlink(missing_ok=True)
        settings = {
            "restore_command": f"cp {WAL_ARCHIVE}/%f %p",
            "recovery_target_action": "promote",
            "recovery_target_timeline": "latest",
        }
        target = "end of the WAL archive"
        if target_time is not None:
            settings["recovery_target_time"] = target_time.isoformat()
            target = f"time {target_time.isoformat()}"
        elif target_lsn is not None:
            settings["recovery_target_lsn"] = target_lsn
            target = f"LSN {target_lsn}"
        with (host_data / "postgresql.auto.conf").open("a") as fh:
            fh.write("# ioc db restore\n")
            for key, value in settings.items():
                fh.write(f"{key} = '{value}'\n")
        (host_data / "recovery.signal").touch()
        uid, gid = self.db._ids()
        os.chown(host_data / "recovery.signal", uid, gid)
        progress(f"starting PostgreSQL on port {port}, recovering to {target}")
        pid = spawn(self._command(data, port), self._log(port), self._pidfile(port))
        deadline = time.monotonic() + timeout
        while True:
            if self.running(port) is None:
                log = tail(self._log(port), 25)
                hint = ""
                if "before configured recovery target" in log:
                    hint = (
                        "\nThe archive ends before the target (no commit after it was archived): "
                        "add --switch-wal while the database runs, or restore without a target."
                    )
                raise StackError(
                    f"the restored database exited; last lines of {self._log(port)}:\n{log}{hint}"
                )
            try:
                if asyncio.run(self._fetchval(port, "SELECT NOT pg_is_in_recovery()")):
                    break
            except Exception as exc:  # still starting: refused, or "the database is starting up"
                if time.monotonic() > deadline:
                    raise StackError(f"restore not done in {timeout:.0f} s: {exc}") from None
            if time.monotonic() > deadline:
                raise StackError(f"restore still recovering after {timeout:.0f} s")
            time.sleep(0.5)
        seconds = time.monotonic() - started
        for key in settings:  # promoted: a later restart must not look for the archive
            asyncio.run(self._fetchval(port, f"ALTER SYSTEM RESET {key}"))
        progress(f"restored and promoted in {seconds:.1f} s: {self.dsn_hint(port)}")
        at = target_time.isoformat() if target_time is not None else None
        return Restored(port, data, chosen.name, target, seconds, pid, at)

    def _command(self, data: str, port: int) -> list[str]:
        """The stack server's own command line, on another data directory and port, with
        archiving off: a restored copy must never write into the stack's archive."""
        argv = self.db.command()
        i = argv.index("-D")
        argv[i + 1] = data
        return [*argv, "-c", f"port={port}", "-c", "archive_mode=off"]

    def dsn_hint(self, port: int) -> str:
        return f"postgresql://<role>:<password>@127.0.0.1:{port}/{self.db.credentials().database}"

    def stop(self, port: int) -> bool:
        """Stop the restored database on ``port`` (its data stays until the next restore)."""
        return terminate(self._pidfile(port), self.db.stop_signal)

    def discard(self, port: int) -> None:
        self.stop(port)
        shutil.rmtree(self.host(self.restore_dir(port)), ignore_errors=True)

    def adopt(self, port: int, progress: Progress) -> Path:
        """Make the restored database on ``port`` the stack's: stop both, keep the current
        data directory aside (returned), move the restored one in, start the stack's."""
        restored = self.host(self.restore_dir(port))
        if not (restored / "PG_VERSION").exists():
            raise StackError(f"nothing restored on port {port} ({restored})")
        if (restored / "recovery.signal").exists():
            raise StackError(f"the database on port {port} has not finished recovery")
        self.stop(port)
        self.db.down(progress)
        current = self.host(PG_DATA)
        aside = current.with_name(f"pgdata.before-restore-{time.strftime('%Y%m%dT%H%M%S')}")
        current.rename(aside)
        restored.rename(current)
        progress(f"previous data directory kept in {aside}")
        # the new timeline's history: it promoted without archiving, yet a later restore
        # from an older base backup needs it to follow the timeline switch
        uid, gid = self.db._ids()
        for history in (current / "pg_wal").glob("*.history"):
            archived = self.wal_archive / history.name
            if not archived.exists():
                shutil.copy2(history, archived)
                os.chown(archived, uid, gid)
        self.db.up(progress)
        return aside


def rewind_consumers(settings: Settings, to: datetime) -> dict[str, int]:
    """Commit the feed consumer group's offsets at the first message produced at or after
    ``to`` (the end of a partition without one), so the workers replay from there into a
    restored database; their writes are idempotent, so an earlier ``to`` only costs time.
    The workers must be stopped (a group with members refuses the commit)."""
    from confluent_kafka import Consumer, TopicPartition

    from ioc.contract.topics import FEED_TOPICS
    from ioc.kafka_clients import librdkafka_consumer
    from ioc.streams.consumer import consumer_group

    conf = librdkafka_consumer(settings, consumer_group(settings), "ioc-db-restore")
    consumer = Consumer({**conf, "enable.auto.commit": False})
    try:
        ms = int(to.timestamp() * 1000)
        wanted = []
        for spec in FEED_TOPICS.values():
            topic = settings.topic(spec.name)
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                wanted.append(TopicPartition(topic, p, ms))
        commit = []
        for tp in consumer.offsets_for_times(wanted, timeout=30):
            offset = tp.offset
            if offset < 0:  # nothing produced since `to` in this partition
                offset = consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=10
                )[1]
            commit.append(TopicPartition(tp.topic, tp.partition, offset))
        consumer.commit(offsets=commit, asynchronous=False)
        return {f"{tp.topic}/{tp.partition}": tp.offset for tp in commit}
    finally:
        consumer.close()


# -- `ioc db backup | backups | restore` (registered by ioc/cli.py) ---------------------


def _print(message: str) -> None:
    print(message, flush=True)


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    info = Backups(settings).take(_print, verify=not args.no_verify, keep=args.keep)
    print(
        f"base backup {info.name}: {info.bytes / 1e6:.0f} MB, from WAL {info.start_wal}, "
        f"{'verified' if info.verified else 'not verified'}"
    )
    return 0


def cmd_backups(args: argparse.Namespace, settings: Settings) -> int:
    backups = Backups(settings)
    for b in backups.backups():
        print(f"{b.name}  {b.bytes / 1e6:>8.0f} MB  from {b.start_wal}  finished {b.finished_at}")
    state = backups.archiving()
    segments = sum(1 for p in backups.wal_archive.glob("0*") if not p.name.endswith(".tmp"))
    print(
        f"WAL archive {backups.wal_archive}: {segments} files; archive_mode={state.get('mode')}, "
        f"last archived {state.get('last_archived_wal')} at {state.get('last_archived_time')}, "
        f"{state.get('failed_count')} failures (last {state.get('last_failed_wal')})"
    )
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    backups = Backups(settings)
    if args.stop:
        print("stopped" if backups.stop(args.port) else "not running")
        return 0
    if args.discard:
        backups.discard(args.port)
        print(f"discarded the restored database of port {args.port}")
        return 0
    if args.adopt:
        aside = backups.adopt(args.port, _print)
        print(f"the stack's database is now the restored one; the previous data is in {aside}")
        return 0
    if args.rewind_consumers:
        to = datetime.fromisoformat(args.rewind_consumers) - timedelta(minutes=args.margin)
        offsets = rewind_consumers(settings, to)
        print(f"feed consumers rewound to {to.isoformat()}: {len(offsets)} partitions")
        return 0
    target_time = datetime.fromisoformat(args.target_time) if args.target_time else None
    if args.switch_wal:
        print(f"archived WAL up to segment {backups.switch_wal()}")
    restored = backups.restore(
        _print,
        target_time=target_time,
        target_lsn=args.target_lsn,
        backup=args.backup,
        port=args.port,
    )
    print(
        f"restored base backup {restored.backup} to {restored.target} on port {restored.port} "
        f"in {restored.seconds:.1f} s (data {restored.data_dir} in the chroot).\n"
        f"Check it (same roles and passwords as the stack's database), then either\n"
        f"  ioc db restore --adopt --port {restored.port}    # make it the stack's database\n"
        f"  ioc db restore --discard --port {restored.port}  # throw it away\n"
        "After adopting, stop the workers and replay what the restore rolled back:\n"
        f"  ioc db restore --rewind-consumers {restored.target_time or '<target>'}\n"
        "(docs/backup.md)."
    )
    return 0


def add_db_commands(db_sub: Any) -> None:
    """``ioc db backup``, ``ioc db backups`` and ``ioc db restore``."""
    p = db_sub.add_parser(
        "backup", help="base backup of the local TimescaleDB (schedule it: docs/backup.md)"
    )
    p.add_argument("--keep", type=int, help="then keep only the newest N base backups and WAL")
    p.add_argument("--no-verify", action="store_true", help="skip pg_verifybackup")
    p.set_defaults(handler=cmd_backup)
    p = db_sub.add_parser("backups", help="base backups and the WAL archiver's state")
    p.set_defaults(handler=cmd_backups)
    p = db_sub.add_parser(
        "restore", help="point-in-time restore into a fresh database beside the stack's"
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--target-time", metavar="ISO8601", help="e.g. 2026-11-26T09:40:00+00:00 (with offset)"
    )
    target.add_argument("--target-lsn", metavar="LSN", help="e.g. 0/5A000060")
    target.add_argument("--stop", action="store_true", help="stop the restored database")
    target.add_argument("--discard", action="store_true", help="stop it and delete its data")
    target.add_argument("--adopt", action="store_true", help="make it the stack's database")
    target.add_argument(
        "--rewind-consumers",
        metavar="ISO8601",
        help="after adopting, with the workers stopped: replay the feeds from this time "
        "minus --margin into the database",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=15,
        help="minutes before --rewind-consumers' time (more than the consumer lag then)",
    )
    p.add_argument("--backup", metavar="NAME", help="base backup (default: newest usable)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_RESTORE_PORT,
        help=f"port of the restored database (default {DEFAULT_RESTORE_PORT})",
    )
    p.add_argument(
        "--switch-wal",
        action="store_true",
        help="first archive the stack database's current WAL segment (it must be up)",
    )
    p.set_defaults(handler=cmd_restore)
