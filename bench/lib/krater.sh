# shellcheck shell=bash
# Krater's identity service, started from this checkout. Sourced by bench/identity.sh.
# The benchmark itself only needs KRATER_URL (the identity base, ending in /v3) and KRATER_PASSWORD (admin's).
# To measure a Krater that is already running, set BENCH_KRATER_URL and BENCH_KRATER_PASSWORD instead.

KRATER_PGID=""
KRATER_URL=""
KRATER_PASSWORD=""
KRATER_NOT_RUN_REASON=""
KRATER_HASH_PREFIX=""
# `krater up` (the all-in-one: one process, API and agent) unless BENCH_KRATER_WORKERS=N asks for the API alone
# in N cluster worker processes (`krater api --workers N`, the counterpart of uwsgi's --processes).
if [[ ${BENCH_KRATER_WORKERS:-} =~ ^[0-9]+$ ]]; then
  KRATER_MODE=(api --workers "$BENCH_KRATER_WORKERS")
else
  KRATER_MODE=(up)
fi

krater_start() {
  local dir=$STATE/krater port i
  if [[ -n ${BENCH_KRATER_URL:-} ]]; then
    KRATER_URL=${BENCH_KRATER_URL%/}
    KRATER_PASSWORD=${BENCH_KRATER_PASSWORD:?BENCH_KRATER_PASSWORD is required with BENCH_KRATER_URL}
    log "krater: using the running instance at $KRATER_URL"
    return 0
  fi
  mkdir -p "$dir/data"
  if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "krater: npm run build"
    if ! (cd "$REPO" && npm run build) >"$dir/build.log" 2>&1; then
      tail -n 30 "$dir/build.log" >&2
      KRATER_NOT_RUN_REASON="npm run build failed"
      return 1
    fi
  fi
  if [[ ! -f $REPO/dist/cli/main.js ]]; then
    KRATER_NOT_RUN_REASON="dist/cli/main.js missing after build"
    return 1
  fi
  port=$(free_port)
  log "krater: starting \`krater ${KRATER_MODE[*]}\` on 127.0.0.1:$port"
  (cd "$REPO" && exec setsid node bin/krater.js "${KRATER_MODE[@]}" --data-dir "$dir/data" --bind 127.0.0.1 \
    --port "$port" --log-level warn --no-clouds-yaml) </dev/null >"$dir/krater.log" 2>&1 &
  KRATER_PGID=$!
  KRATER_URL="http://127.0.0.1:$port/identity/v3"
  if ! wait_http "$KRATER_URL" 200 120 "$KRATER_PGID"; then
    tail -n 30 "$dir/krater.log" >&2
    KRATER_NOT_RUN_REASON="did not become ready (GET $KRATER_URL)"
    return 1
  fi
  for ((i = 0; i < 50; i++)); do
    [[ -s $dir/data/admin-password ]] && break
    sleep 0.1
  done
  if [[ ! -s $dir/data/admin-password ]]; then
    KRATER_NOT_RUN_REASON="no $dir/data/admin-password"
    return 1
  fi
  KRATER_PASSWORD=$(head -n 1 "$dir/data/admin-password")
  # Best effort: the bcrypt prefix (algorithm and cost) of admin's stored hash, for the record.
  KRATER_HASH_PREFIX=$(/usr/bin/python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("select password_hash from users where name = ?", ("admin",)).fetchone()[0][:7])' \
    "$dir/data/krater.db" 2>/dev/null) || KRATER_HASH_PREFIX=unknown
  log "krater: ready at $KRATER_URL"
}

krater_stop() {
  stop_group "$KRATER_PGID" krater
  KRATER_PGID=""
}

# The agent of `krater up` names its cgroup parent krater-<sha256(data dir)[:10]>; remove ours once empty.
krater_remove_cgroups() {
  local d h cg
  for d in "$STATE/krater/data" "$STATE/krater/data/agent"; do
    h=$(printf '%s' "$d" | sha256sum | cut -c1-10)
    for cg in /sys/fs/cgroup/*/krater-"$h"; do
      [[ -d $cg ]] || continue
      find "$cg" -depth -mindepth 1 -type d -exec rmdir {} + 2>/dev/null || true
      rmdir "$cg" 2>/dev/null || true
    done
  done
}

# The commit measured, with "+dirty" when src/ has uncommitted changes (they are what `npm run build` compiled).
krater_version() {
  local v
  v=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) || { echo unknown; return; }
  [[ -n $(git -C "$REPO" status --porcelain -- src 2>/dev/null) ]] && v="$v+dirty"
  echo "$v"
}
