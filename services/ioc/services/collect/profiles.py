"""Credentials files of the collectors (``--snmp-credentials``, ``--http-credentials``,
``--rtsp-credentials``): one TOML table per profile, ``[profiles.NAME]``, validated by the
protocol's model, whose secrets are ``SecretStr``. One loader, so every file is read, checked
and reported alike."""

from __future__ import annotations

import logging
import stat
import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

P = TypeVar("P", bound=BaseModel)


def load_profiles(path: Path, model: type[P], what: str, error: type[Exception]) -> dict[str, P]:
    """The ``[profiles.NAME]`` tables of ``path`` as ``model`` instances; a problem raises
    ``error`` naming ``what`` (e.g. "SNMP credentials"), the file and the profile, never a
    secret. A file others may read is used, with a warning: it holds secrets."""
    try:
        mode = path.stat().st_mode
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{what} {path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s %s can be read by others: chmod 600 it", what, path)
    tables = data.get("profiles")
    if not isinstance(tables, dict) or not tables:
        raise error(f"{what} {path}: no [profiles.NAME] table")
    profiles: dict[str, P] = {}
    for name, table in tables.items():
        try:
            profiles[name] = model.model_validate(table)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'profile'}: {e['msg']}"
                for e in exc.errors()
            )
            raise error(f"{what} {path}, profile {name}: {problems}") from None
    return profiles
