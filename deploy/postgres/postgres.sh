#!/usr/bin/env bash
# Local PostgreSQL for the project: installs Debian's server when missing, runs a project-owned
# cluster, and creates the project's role and database. Idempotent.
#   postgres.sh start | stop | status
# Environment: PGPORT (5432), PG_ROLE / PG_PASSWORD / PG_DATABASE (orderflow), DATA_DIR (<repo>/.data)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${PGPORT:-5432}"
role="${PG_ROLE:-orderflow}"
password="${PG_PASSWORD:-orderflow}"
database="${PG_DATABASE:-orderflow}"
data="${DATA_DIR:-$repo/.data}/postgres"

log() { echo "postgres: $*" >&2; }

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

install_server() {
  if [[ -n "$(bindir)" && -x "$(bindir)/initdb" ]]; then return; fi
  log "installing Debian's postgresql"
  if [[ $EUID -ne 0 ]]; then log "need root to apt-get install postgresql"; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib >/dev/null
}

# The server refuses to run as root: as root it runs as the 'postgres' user.
as_owner() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pick_data_dir() {
  if [[ $EUID -ne 0 ]]; then return; fi
  mkdir -p "$data"
  chown postgres: "$data"
  # A clone under a folder that 'postgres' cannot enter gets its cluster under the postgres home.
  if ! runuser -u postgres -- test -w "$data"; then
    data="/var/lib/postgresql/orderflow-$(echo -n "$repo" | sha256sum | cut -c1-12)"
    mkdir -p "$data" && chown postgres: "$data"
    log "using $data ($repo is not reachable by the postgres user)"
  fi
}

running() { as_owner "$(bindir)/pg_ctl" -D "$data/cluster" status >/dev/null 2>&1; }

psql_admin() {
  as_owner "$(bindir)/psql" -h "$data" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
}

start() {
  install_server
  pick_data_dir
  local bin; bin="$(bindir)"
  if [[ ! -f "$data/cluster/PG_VERSION" ]]; then
    log "initialising a cluster in $data/cluster"
    mkdir -p "$data" && { [[ $EUID -ne 0 ]] || chown postgres: "$data"; }
    as_owner "$bin/initdb" -D "$data/cluster" -U postgres --auth-local=trust \
      --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! running; then
    as_owner "$bin/pg_ctl" -D "$data/cluster" -l "$data/server.log" -w -t 60 start \
      -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=on" >/dev/null
  fi
  local deadline=$((SECONDS + 60))
  until as_owner "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; do
    if (( SECONDS > deadline )); then log "not ready in time; see $data/server.log"; exit 1; fi
    sleep 0.3
  done
  psql_admin <<SQL
SELECT 'CREATE ROLE ${role} LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}')\gexec
ALTER ROLE ${role} LOGIN PASSWORD '${password}';
SELECT 'CREATE DATABASE ${database} OWNER ${role}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '${database}')\gexec
SQL
  log "ready on 127.0.0.1:${port} (database ${database}, role ${role})"
}

stop() {
  pick_data_dir
  if [[ -z "$(bindir)" ]] || ! running; then log "not running"; return; fi
  as_owner "$(bindir)/pg_ctl" -D "$data/cluster" -m fast -w stop >/dev/null
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) pick_data_dir; running ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
