"""The database roles and their bootstrap SQL are defined once (ioc/db/roles.py)."""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path
from typing import Any

from ioc.db import migrate
from ioc.db.provinces import viewer_role
from ioc.db.roles import (
    ADMIN_ROLE,
    COMPOSE_INITDB,
    COMPOSE_PASSWORD_ENV,
    DATABASE,
    PROVINCE_VIEWER_ROLE,
    READONLY_ROLE,
    ROLES,
    RUNTIME_ROLE,
    bootstrap_sql,
    compose_initdb_script,
    sql_literal,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "ioc" / "deploy"


def test_committed_compose_init_script_is_up_to_date() -> None:
    path = DEPLOY / COMPOSE_INITDB
    assert path.read_text() == compose_initdb_script(), (
        f"{path} is stale: run `ioc db compose-init`"
    )
    assert path.stat().st_mode & stat.S_IXUSR, f"{path} must be executable"


def test_compose_passes_every_role_password_and_requires_it() -> None:
    script = compose_initdb_script()
    compose = (DEPLOY / "compose" / "docker-compose.yml").read_text()
    for role in ROLES:
        env = COMPOSE_PASSWORD_ENV[role]
        assert f'"${{{env}:?}}"' in script
        assert f"{env}: ${{{env}:?" in compose, f"compose does not pass {env} to the database"
    assert "<<'SQL'" in script, "here-documents must be quoted: no shell expansion of SQL"


class _Connection:
    """The two calls of asyncpg.Connection that the grants make; every role exists."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    async def fetch(self, query: str, roles: list[str]) -> list[dict[str, Any]]:
        return [{"rolname": role} for role in roles]

    async def execute(self, sql: str) -> None:
        self.sql.append(sql)


def test_migrations_grant_to_the_same_roles() -> None:
    conn = _Connection()
    asyncio.run(migrate._grant(conn, "ioc"))
    granted = set(re.findall(r"\bTO (\w+);", "\n".join(conn.sql)))
    assert granted == {RUNTIME_ROLE, READONLY_ROLE}


def test_passwords_are_sql_literals_and_every_role_is_created_then_aligned() -> None:
    sql = bootstrap_sql(lambda role: sql_literal(f"it's {role}"), "ioc")
    text = "\n".join(sql.roles)
    attributes = {  # the owner creates the provinces' viewer roles
        ADMIN_ROLE: "CREATEROLE",
        RUNTIME_ROLE: "NOCREATEROLE",
        READONLY_ROLE: "NOCREATEROLE",
    }
    for role in ROLES:
        assert f"CREATE ROLE {role};" in text
        assert re.search(
            rf"ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOBYPASSRLS {attributes[role]} "
            rf"PASSWORD 'it''s {role}';",
            text,
        )
    # the viewers' group logs in as nobody; the owner may add members, not act as one
    assert f"CREATE ROLE {PROVINCE_VIEWER_ROLE};" in text
    assert f"ALTER ROLE {PROVINCE_VIEWER_ROLE} NOLOGIN " in text
    assert (
        f"GRANT {PROVINCE_VIEWER_ROLE} TO {ADMIN_ROLE} WITH ADMIN TRUE, INHERIT FALSE, SET FALSE;"
        in text
    )
    assert sql.create_database == f"CREATE DATABASE {DATABASE} OWNER ioc_admin;"
    assert "SUPERUSER" not in text.replace("NOSUPERUSER", "")


def test_readonly_role_searches_the_configured_schema() -> None:
    sql = bootstrap_sql(lambda role: "'x'", "t123")
    assert (
        f"ALTER ROLE {READONLY_ROLE} IN DATABASE {DATABASE} SET search_path = t123, public;"
        in sql.database
    )


def test_a_provinces_viewer_role_is_a_plain_identifier() -> None:
    assert viewer_role("01") == "ioc_view_01"
    assert viewer_role("old-15") == "ioc_view_old_15"
    assert viewer_role("HN.1") == "ioc_view_hn_1"
