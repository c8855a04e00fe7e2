#!/usr/bin/env bash
# Private, throw-away PostgreSQL cluster for Krater's tests.
#
#   scripts/test-postgres.sh [start [DIR]]   start a cluster (in DIR, or a new /tmp/krater-pg.XXXXXX) and print its URL:
#                                            postgres://krater:krater@127.0.0.1:<port>/krater
#   scripts/test-postgres.sh url DIR         print the URL of the running cluster in DIR
#   scripts/test-postgres.sh stop DIR        stop the cluster in DIR and remove DIR
#
# Only the URL goes to stdout; everything else goes to stderr. `start` is idempotent: a DIR that already holds a
# running cluster just prints its URL again. The role `krater` (password `krater`) has CREATEDB, so tests can create
# and drop their own databases (`CREATE DATABASE krater_<random>`).
#
# Installs PostgreSQL from apt when it is missing (root only). As root, the cluster runs as user `postgres` (initdb and
# the server refuse to run as root); otherwise as the calling user. The system's default cluster
# (/var/lib/postgresql/<v>/main, port 5432) is never touched: the cluster has its own data directory, port and
# Unix-socket directory, and listens on 127.0.0.1 only.
set -euo pipefail

MARKER=.krater-test-postgres
ROLE=krater
PASSWORD=krater
DATABASE=krater

log() { printf 'test-postgres: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pg_bindir() {
  local v
  v=$(ls -1 /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1 || true)
  if [[ -n "${PG_BINDIR:-}" ]]; then
    echo "$PG_BINDIR"
  elif [[ -n "$v" && -x "/usr/lib/postgresql/$v/bin/initdb" ]]; then
    echo "/usr/lib/postgresql/$v/bin"
  fi
}

ensure_installed() {
  if [[ -z "$(pg_bindir)" ]]; then
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed and we are not root (apt-get install postgresql)"
    log "installing PostgreSQL from apt"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
  fi
  [[ -n "$(pg_bindir)" ]] || die "no /usr/lib/postgresql/*/bin/initdb after installing"
}

# Run a command as the cluster owner.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
  local p i
  for i in $(seq 1 100); do
    p=$((20000 + RANDOM % 30000))
    if ! port_in_use "$p"; then echo "$p"; return 0; fi
  done
  die "no free port found"
}

url_of() { echo "postgres://$ROLE:$PASSWORD@127.0.0.1:$(cat "$1/port")/$DATABASE"; }

is_running() {
  local dir=$1 bindir
  bindir=$(pg_bindir)
  [[ -f "$dir/port" && -d "$dir/data" && -n "$bindir" ]] && as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

psql_owner() {
  local dir=$1; shift
  as_owner "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$(cat "$dir/port")" -U postgres -d postgres "$@"
}

cmd_start() {
  local dir=${1:-} bindir port attempt
  ensure_installed
  bindir=$(pg_bindir)
  if [[ -z "$dir" ]]; then
    dir=$(mktemp -d /tmp/krater-pg.XXXXXX)
  else
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
  fi
  if [[ -f "$dir/$MARKER" ]] && is_running "$dir"; then
    log "already running in $dir"
    url_of "$dir"
    return 0
  fi
  [[ -z "$(ls -A "$dir")" || -f "$dir/$MARKER" ]] || die "$dir is neither empty nor a test cluster"
  # Unix socket paths are limited to 107 bytes (".s.PGSQL.<port>" included).
  ((${#dir} <= 80)) || die "directory path too long for a Unix socket: $dir"
  touch "$dir/$MARKER"
  chmod 0755 "$dir"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres:postgres "$dir"
    # The postgres user must be able to reach the directory.
    runuser -u postgres -- test -x "$dir" || die "user postgres cannot enter $dir (choose a directory under /tmp)"
  fi
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    rm -rf "$dir/data"
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust --auth-host=scram-sha-256 -E UTF8 \
      --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    cat >>"$dir/data/postgresql.conf" <<EOF
# krater test cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  for attempt in 1 2 3 4 5; do
    port=$(pick_port)
    echo "$port" >"$dir/port"
    [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$dir/port"
    if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start >&2; then
      break
    fi
    log "start on port $port failed (attempt $attempt)"
    tail -n 20 "$dir/server.log" >&2 || true
    [[ $attempt -lt 5 ]] || die "could not start PostgreSQL in $dir"
  done
  psql_owner "$dir" <<EOF
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
END \$\$;
EOF
  if [[ -z "$(psql_owner "$dir" -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" ]]; then
    psql_owner "$dir" -c "CREATE DATABASE $DATABASE OWNER $ROLE"
  fi
  log "running in $dir (port $port); stop with: $0 stop $dir"
  url_of "$dir"
}

cmd_url() {
  local dir=${1:?usage: $0 url DIR}
  is_running "$dir" || die "no running test cluster in $dir"
  url_of "$dir"
}

cmd_stop() {
  local dir=${1:?usage: $0 stop DIR} bindir
  [[ -d "$dir" ]] || { log "$dir does not exist"; return 0; }
  [[ -f "$dir/$MARKER" ]] || die "$dir is not a test cluster (no $MARKER); refusing to remove it"
  bindir=$(pg_bindir)
  if [[ -n "$bindir" && -f "$dir/data/postmaster.pid" ]]; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >&2 || log "pg_ctl stop failed"
  fi
  rm -rf "$dir"
  log "stopped and removed $dir"
}

case "${1:-start}" in
  start) cmd_start "${2:-}" ;;
  url) cmd_url "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  -h | --help | help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command: $1 (start [DIR] | url DIR | stop DIR)" ;;
esac
