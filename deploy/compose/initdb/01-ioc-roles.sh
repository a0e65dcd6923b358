#!/bin/bash
# Same database and roles as the local stack (deploy/local/stack.py TimescaleDB._bootstrap):
# ioc_admin owns the schema and runs migrations, ioc_app reads/writes rows, ioc_grafana reads.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres <<SQL
CREATE ROLE ioc_admin   LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '${IOC_ADMIN_PASSWORD}';
CREATE ROLE ioc_app     LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '${IOC_APP_PASSWORD}';
CREATE ROLE ioc_grafana LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '${IOC_GRAFANA_DB_PASSWORD}';
CREATE DATABASE ioc OWNER ioc_admin;
SQL
psql -v ON_ERROR_STOP=1 --username postgres --dbname ioc <<SQL
CREATE EXTENSION IF NOT EXISTS timescaledb;
REVOKE ALL ON DATABASE ioc FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE ioc TO ioc_app;
GRANT CONNECT ON DATABASE ioc TO ioc_grafana;
ALTER ROLE ioc_grafana IN DATABASE ioc SET search_path = ioc, public;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
