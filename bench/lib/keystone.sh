# shellcheck shell=bash
# The reference Keystone: Debian's keystone package (22.x) on SQLite with fernet tokens, served by uwsgi with one
# single-threaded worker process per core on loopback. Sourced by bench/identity.sh.
#
# uwsgi notes (see docs/benchmarks.md):
# - `--http-socket` answers HTTP/1.1 but closes the connection after each response without saying so; wrk then
#   counts one "read" socket error per request. `--add-header 'Connection: close'` makes the close explicit, so wrk
#   reconnects cleanly and any socket error left is a real one.
# - `--http11-socket` (keep-alive) pins each client connection to one single-threaded worker until it closes:
#   with more connections than workers the other connections starve, so it is not used.
# - `--lazy-apps`: each worker loads the application itself (as in Debian's keystone-uwsgi.ini) instead of
#   inheriting database connections opened in the master before fork.

KEYSTONE_PGID=""
MEMCACHED_PGID=""
KEYSTONE_URL=""
KEYSTONE_PASSWORD=""

keystone_start() {
  local dir=$STATE/keystone port km mport
  mkdir -p "$dir"
  port=$(free_port)
  KEYSTONE_PASSWORD="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  cat >"$dir/keystone.conf" <<EOF
[DEFAULT]
debug = false
log_config_append = $dir/logging.conf
[database]
connection = sqlite:///$dir/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = $dir/fernet
[fernet_receipts]
key_repository = $dir/fernet
[credential]
key_repository = $dir/credential
EOF
  # Default: no cache (oslo.cache is off unless configured, as in Debian's keystone.conf). BENCH_KEYSTONE_CACHE turns
  # on Keystone's caching layer: `memory` = a per-process in-memory dogpile backend, `memcached` = a private
  # memcached on loopback (the usual production setup; its CPU is not counted as Keystone's).
  case ${BENCH_KEYSTONE_CACHE:-none} in
  none) ;;
  memory) printf '[cache]\nenabled = true\nbackend = dogpile.cache.memory\n' >>"$dir/keystone.conf" ;;
  memcached)
    mport=$(free_port)
    setsid memcached -l 127.0.0.1 -p "$mport" -U 0 -m 64 -t 1 -u root </dev/null >"$dir/memcached.log" 2>&1 &
    MEMCACHED_PGID=$!
    printf '[cache]\nenabled = true\nbackend = oslo_cache.memcache_pool\nmemcache_servers = 127.0.0.1:%s\n' \
      "$mport" >>"$dir/keystone.conf"
    ;;
  *) die "BENCH_KEYSTONE_CACHE must be none, memory or memcached" ;;
  esac
  # Quiet logging: warnings and errors only, to a file (no per-request INFO lines).
  cat >"$dir/logging.conf" <<EOF
[loggers]
keys = root
[handlers]
keys = file
[formatters]
keys = plain
[logger_root]
level = WARNING
handlers = file
[handler_file]
class = FileHandler
args = ('$dir/keystone.log', 'a')
formatter = plain
[formatter_plain]
format = %(asctime)s %(process)d %(levelname)s %(name)s %(message)s
EOF
  km="keystone-manage --config-file $dir/keystone.conf"
  log "keystone: db_sync, fernet_setup, credential_setup, bootstrap (port $port)"
  {
    $km db_sync &&
      $km fernet_setup --keystone-user root --keystone-group root &&
      $km credential_setup --keystone-user root --keystone-group root &&
      $km bootstrap --bootstrap-password "$KEYSTONE_PASSWORD" --bootstrap-username admin \
        --bootstrap-project-name admin --bootstrap-role-name admin --bootstrap-region-id RegionOne \
        --bootstrap-admin-url "http://127.0.0.1:$port/v3" --bootstrap-internal-url "http://127.0.0.1:$port/v3" \
        --bootstrap-public-url "http://127.0.0.1:$port/v3"
  } >"$dir/keystone-manage.log" 2>&1 || {
    tail -n 20 "$dir/keystone-manage.log" >&2
    return 1
  }
  KEYSTONE_HASH_PREFIX=$(/usr/bin/python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("select password_hash from password").fetchone()[0][:7])' "$dir/keystone.db")

  log "keystone: starting uwsgi (--processes $KEYSTONE_PROCESSES --threads 1) on 127.0.0.1:$port"
  (cd "$dir" && exec setsid uwsgi --plugin python3 --http-socket "127.0.0.1:$port" \
    --add-header 'Connection: close' \
    --wsgi-file /usr/bin/keystone-wsgi-public --processes "$KEYSTONE_PROCESSES" --threads 1 \
    --master --lazy-apps --die-on-term --disable-logging --listen 100 \
    --env "OS_KEYSTONE_CONFIG_FILES=$dir/keystone.conf" --logto "$dir/uwsgi.log") </dev/null &
  KEYSTONE_PGID=$!
  KEYSTONE_URL="http://127.0.0.1:$port/v3"
  if ! wait_http "$KEYSTONE_URL" 200 60 "$KEYSTONE_PGID"; then
    tail -n 20 "$dir/uwsgi.log" "$dir/keystone.log" >&2 2>/dev/null
    return 1
  fi
  log "keystone: ready at $KEYSTONE_URL"
}

keystone_stop() {
  stop_group "$KEYSTONE_PGID" keystone
  KEYSTONE_PGID=""
  stop_group "$MEMCACHED_PGID" memcached
  MEMCACHED_PGID=""
MEMCACHED_PGID=""
}

keystone_version() { dpkg-query -W -f '${Version}' keystone 2>/dev/null || echo unknown; }
