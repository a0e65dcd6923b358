"""The database, its three roles and the SQL that creates them: defined once.

Two deployments create them: the local stack (``ioc stack up``,
deploy/ioc/deploy/local/timescaledb.py, which runs these statements with the generated
passwords) and compose (``deploy/ioc/deploy/compose/initdb/01-ioc-roles.sh``, generated from
here by ``ioc db compose-init``; a unit test fails when the committed script is stale). The
schema-level grants that follow every migration are :func:`ioc.db.migrate.migrate`'s, with
the same role names.

| role | may |
|---|---|
| ``ioc_admin`` | own the database and the schema, run migrations, create viewer roles |
| ``ioc_app`` | read and write rows at run time, stage batches in temporary tables |
| ``ioc_grafana`` | connect and read every province (the national room) |
| ``ioc_province_viewer`` | nothing itself: the group of the provinces' viewer roles |

Each province's viewer role (``ioc_view_<code>``, made per province by bootstrap,
:mod:`ioc.db.provinces`) reads only its province's rows, through views.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DATABASE = "ioc"
SUPERUSER = "postgres"
ADMIN_ROLE = "ioc_admin"
RUNTIME_ROLE = "ioc_app"
READONLY_ROLE = "ioc_grafana"
ROLES = (ADMIN_ROLE, RUNTIME_ROLE, READONLY_ROLE)
"""The login roles with a password each."""
PROVINCE_VIEWER_ROLE = "ioc_province_viewer"
"""The group (no login) of every province's viewer role (ioc.db.provinces)."""

LOGIN_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOBYPASSRLS"
CREATEROLE: frozenset[str] = frozenset({ADMIN_ROLE})
"""The login roles with CREATEROLE (CloudNativePG's managed roles declare the same,
``ioc deploy k8s``): the owner creates the provinces' viewer roles at bootstrap."""


def role_attributes(role: str) -> str:
    """``role``'s attributes as SQL (``LOGIN NOSUPERUSER NOCREATEDB NOBYPASSRLS CREATEROLE``)."""
    return f"{LOGIN_ATTRIBUTES} {'' if role in CREATEROLE else 'NO'}CREATEROLE"


COMPOSE_PASSWORD_ENV = {
    ADMIN_ROLE: "IOC_ADMIN_PASSWORD",
    RUNTIME_ROLE: "IOC_APP_PASSWORD",
    READONLY_ROLE: "IOC_GRAFANA_DB_PASSWORD",
}
"""The compose environment variable holding each role's password (docker-compose.yml)."""

COMPOSE_INITDB = "compose/initdb/01-ioc-roles.sh"
"""The generated compose init script, relative to ``deploy/``."""


def sql_literal(value: str) -> str:
    """``value`` as a standard-conforming SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _create_if_missing(role: str) -> str:
    return (
        "DO $$ BEGIN\n"
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {sql_literal(role)}) THEN\n"
        f"    CREATE ROLE {role};\n"
        "  END IF;\n"
        "END $$;"
    )


@dataclass(frozen=True)
class BootstrapSQL:
    """The bootstrap, in the order and connection each part needs (all as the superuser).

    ``roles`` runs in database ``postgres`` and is idempotent (roles are created if missing,
    then their attributes and passwords set). ``create_database`` cannot run inside a
    transaction and is not idempotent: run it alone, only when the database is missing.
    ``database`` runs in the new database, is idempotent and can be re-applied on every start.
    """

    roles: list[str]
    create_database: str
    database: list[str]


def bootstrap_sql(password: Callable[[str], str] | None, schema: str) -> BootstrapSQL:
    """The roles' bootstrap; ``password(role)`` is the SQL expression of a role's password.

    ``password=None`` leaves passwords alone: where something else owns them (CloudNativePG's
    managed roles set them from Secrets, ``ioc deploy k8s``), the SQL must not reset them.

    ``schema`` is where the read-only role looks for tables (Grafana's PostgreSQL datasource
    has no schema setting, so its role gets a ``search_path``).
    """
    roles: list[str] = []
    for role in ROLES:
        roles.append(_create_if_missing(role))
        secret = "" if password is None else f" PASSWORD {password(role)}"
        roles.append(f"ALTER ROLE {role} {role_attributes(role)}{secret};")
    roles += [
        _create_if_missing(PROVINCE_VIEWER_ROLE),
        f"ALTER ROLE {PROVINCE_VIEWER_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;",
        # the owner adds each province's viewer role to the group at bootstrap
        f"GRANT {PROVINCE_VIEWER_ROLE} TO {ADMIN_ROLE} WITH ADMIN TRUE, INHERIT FALSE, SET FALSE;",
    ]
    return BootstrapSQL(
        roles=roles,
        create_database=f"CREATE DATABASE {DATABASE} OWNER {ADMIN_ROLE};",
        database=[
            "CREATE EXTENSION IF NOT EXISTS timescaledb;",
            f"REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC;",
            # The writer stages batches in temporary tables; Grafana only connects.
            f"GRANT CONNECT, TEMPORARY ON DATABASE {DATABASE} TO {RUNTIME_ROLE};",
            f"GRANT CONNECT ON DATABASE {DATABASE} TO {READONLY_ROLE};",
            f"GRANT CONNECT ON DATABASE {DATABASE} TO {PROVINCE_VIEWER_ROLE};",
            f"ALTER ROLE {READONLY_ROLE} IN DATABASE {DATABASE} "
            f"SET search_path = {schema}, public;",
            # Dashboards run short queries whose plans PostgreSQL costs in the millions (the
            # maintenance view's recursive estimate): compiling them (JIT) took 1-2 s per
            # SLA panel and saved nothing (docs/history.md, section 5).
            f"ALTER ROLE {READONLY_ROLE} IN DATABASE {DATABASE} SET jit = off;",
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
        ],
    )


def _psql_variable(role: str) -> str:
    return f"{role}_password"


def compose_initdb_script() -> str:
    """``deploy/ioc/deploy/compose/initdb/01-ioc-roles.sh``: the bootstrap for the compose database.

    The passwords reach psql as variables (``-v``) and the SQL as a quoted here-document, so
    no password is ever part of the script's text or needs shell or SQL quoting.
    """
    from ioc.config import Settings

    schema = Settings.model_fields["db_schema"].default  # compose runs the default IOC_DB_SCHEMA
    sql = bootstrap_sql(lambda role: f":'{_psql_variable(role)}'", schema)
    variables = "".join(
        f' \\\n  -v {_psql_variable(role)}="${{{COMPOSE_PASSWORD_ENV[role]}:?}}"' for role in ROLES
    )
    create_database = (
        f"SELECT {sql_literal(sql.create_database.rstrip(';'))}\n"
        f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {sql_literal(DATABASE)})"
        "\\gexec"
    )
    lines = [
        "#!/bin/bash",
        "# GENERATED by `ioc db compose-init` from ioc/db/roles.py: do not edit.",
        "# The same database and roles as the local stack "
        "(deploy/ioc/deploy/local/timescaledb.py runs",
        "# the same SQL):",
        f"#   {ADMIN_ROLE} owns the schema and runs migrations,",
        f"#   {RUNTIME_ROLE} reads and writes rows, {READONLY_ROLE} only reads.",
        "# Passwords come from the container's environment (docker-compose.yml) as psql",
        "# variables, never as part of the SQL text.",
        "set -euo pipefail",
        f"psql -v ON_ERROR_STOP=1 --username {SUPERUSER} --dbname {SUPERUSER}{variables} <<'SQL'",
        *sql.roles,
        create_database,
        "SQL",
        f"psql -v ON_ERROR_STOP=1 --username {SUPERUSER} --dbname {DATABASE} <<'SQL'",
        *sql.database,
        "SQL",
    ]
    return "\n".join(lines) + "\n"
