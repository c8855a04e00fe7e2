#!/usr/bin/env bash
# Identity benchmark: Krater's Keystone-v3-compatible identity service against a real Keystone, same load, same run.
#
#   sudo bash bench/identity.sh
#
# Scenarios (wrk, fixed duration, same connection count for both systems):
#   password  POST /v3/auth/tokens, password method, project scope by name + domain name
#   rescope   POST /v3/auth/tokens, token method (an unscoped token) rescoped to a project
#   validate  GET  /v3/auth/tokens with X-Auth-Token (admin) + X-Subject-Token (another project token)
#   list      GET  /v3/projects with X-Auth-Token
# Keystone: Debian's keystone package, SQLite, fernet tokens, bcrypt cost 12 (its default), uwsgi with one
# single-threaded worker process per core on 127.0.0.1. Krater: `node bin/krater.js up` from this checkout.
# Both are started and stopped here (by process group); scenarios alternate between them; loopback traffic only.
#
# Output: a table on stdout and bench/results/identity-<UTC time>.json. Exit status 0 only when every scenario
# ran without a single error on every system measured.
#
# Settings (environment):
#   BENCH_SYSTEMS="keystone krater"  which systems to measure
#   BENCH_DURATION=10  BENCH_CONNECTIONS=32             rescope / validate / list
#   BENCH_PASSWORD_DURATION=15  BENCH_PASSWORD_CONNECTIONS=8   password issue (bcrypt-bound)
#   BENCH_WARMUP=2  (seconds of unmeasured load before each scenario)   BENCH_THREADS=1  (wrk threads)
#   BENCH_KEYSTONE_CACHE=none|memory|memcached  (Keystone's oslo.cache layer; default none, as Debian ships it)
#   BENCH_KRATER_WORKERS=N  (run `krater api --workers N` instead of `krater up`)
#   BENCH_KEYSTONE_PROCESSES=<nproc>   BENCH_KEEP=1 (keep the state directory)   BENCH_SKIP_BUILD=1
#   BENCH_KRATER_URL=http://127.0.0.1:P/identity/v3 BENCH_KRATER_PASSWORD=…  (measure an already running Krater)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/keystone.sh
source "$BENCH_DIR/lib/keystone.sh"
# shellcheck source=lib/krater.sh
source "$BENCH_DIR/lib/krater.sh"

SYSTEMS=${BENCH_SYSTEMS:-keystone krater}
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
PW_DURATION=${BENCH_PASSWORD_DURATION:-15}
PW_CONNECTIONS=${BENCH_PASSWORD_CONNECTIONS:-8}
WARMUP=${BENCH_WARMUP:-2}
WRK_THREADS=${BENCH_THREADS:-1}
WRK_TIMEOUT=30
CLK_TCK=$(getconf CLK_TCK)
KEYSTONE_PROCESSES=${BENCH_KEYSTONE_PROCESSES:-$(nproc)}
SCENARIOS=(password rescope validate list)
declare -A GOAL=([password]=1.5 [rescope]=20 [validate]=50 [list]=50)
declare -A TITLE=([password]="password token issue" [rescope]="token rescope issue"
  [validate]="token validation" [list]="GET /v3/projects")

# ---- install step: everything this script runs, from Debian's apt (apt-get update only when something is missing)
ensure_packages() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v curl >/dev/null || missing+=(curl)
  command -v jq >/dev/null || missing+=(jq)
  command -v setsid >/dev/null || missing+=(util-linux)
  command -v uwsgi >/dev/null || missing+=(uwsgi-core)
  [[ -e /usr/lib/uwsgi/plugins/python3_plugin.so ]] || missing+=(uwsgi-plugin-python3)
  { command -v keystone-manage && [[ -x /usr/bin/keystone-wsgi-public ]]; } >/dev/null || missing+=(keystone)
  [[ -x /usr/bin/python3 ]] || missing+=(python3)
  if [[ ${BENCH_KEYSTONE_CACHE:-none} == memcached ]]; then
    command -v memcached >/dev/null || missing+=(memcached)
    /usr/bin/python3 -c 'import memcache' 2>/dev/null || missing+=(python3-memcache)
  fi
  if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}); run as root to install them"
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  command -v node >/dev/null || log "node is not installed: Krater cannot run"
}

# ---- state and cleanup
STATE=$(mktemp -d "/tmp/krater-bench-$$.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  keystone_stop || true
  krater_stop || true
  kill_leftovers "$STATE" || true
  unmount_under "$STATE" || true
  krater_remove_cgroups || true
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    log "state kept in $STATE"
  else
    rm -rf "$STATE"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$STATE/results"

# record SYSTEM SCENARIO JSON — store one scenario result
record() { printf '%s\n' "$3" >"$STATE/results/$1-$2.json"; }
record_failed() { record "$1" "$2" "$(jq -cn --arg r "$3" '{ok:false, rps:null, reason:$r}')"; }

# drain — wait until the measured server is idle again (< 10 % of one CPU over 1 s, at most 120 s): requests that
# wrk abandoned at the end of a run (queued in uwsgi's listen backlog, or bcrypt in progress) must not spill into
# the next run.
drain() {
  local pgid=$1 a b i
  [[ -n $pgid ]] || return 0
  for ((i = 0; i < 120; i++)); do
    a=$(group_cpu_ticks "$pgid")
    sleep 1
    b=$(group_cpu_ticks "$pgid")
    ((b - a <= CLK_TCK / 10)) && return 0
  done
  log "server group $pgid still busy after 120 s"
}

# Per system: base URL, process group, body directory and tokens (filled by prepare).
declare -A BASE=() PGID=() ADMIN_TOKEN=() SUBJECT_TOKEN=() UNSCOPED_TOKEN=()

# prepare SYSTEM BASE_URL ADMIN_PASSWORD PGID — request bodies, and tokens obtained once with curl.
prepare() {
  local sys=$1 base=$2 password=$3 dir=$STATE/$1-bodies tokens
  BASE[$sys]=$base
  PGID[$sys]=$4
  tokens=$base/auth/tokens
  mkdir -p "$dir"
  password_body admin "$password" admin project >"$dir/password.json"
  password_body admin "$password" admin none >"$dir/unscoped.json"
  ADMIN_TOKEN[$sys]=$(issue_token "$tokens" "$dir/password.json" 201) || ADMIN_TOKEN[$sys]=""
  SUBJECT_TOKEN[$sys]=$(issue_token "$tokens" "$dir/password.json" 201) || SUBJECT_TOKEN[$sys]=""
  UNSCOPED_TOKEN[$sys]=$(issue_token "$tokens" "$dir/unscoped.json" 201) || UNSCOPED_TOKEN[$sys]=""
  [[ -n ${UNSCOPED_TOKEN[$sys]} ]] && rescope_body "${UNSCOPED_TOKEN[$sys]}" admin >"$dir/rescope.json"
  log "$sys: tokens: admin ${#ADMIN_TOKEN[$sys]} chars, subject ${#SUBJECT_TOKEN[$sys]} chars," \
    "unscoped ${#UNSCOPED_TOKEN[$sys]} chars (0 = could not be obtained)"
}

# measure SYSTEM NAME CONNS DURATION LUA URL — warm-up, measured wrk run, verdict (environment set by caller).
measure() {
  local sys=$1 name=$2 conns=$3 dur=$4 lua=$5 url=$6 pgid=${PGID[$1]} out res cpu0 cpu1 load
  out=$STATE/results/$sys-$name.wrk
  if ((WARMUP > 0)); then
    run_wrk "$out.warmup" "$conns" "$WARMUP" "$lua" "$url" || true
    drain "$pgid"
  fi
  load=$(cut -d' ' -f1 /proc/loadavg)
  log "$sys: $name — wrk -t $WRK_THREADS -c $conns -d ${dur}s $url (load $load)"
  cpu0=$(group_cpu_ticks "$pgid")
  if ! run_wrk "$out" "$conns" "$dur" "$lua" "$url"; then
    record_failed "$sys" "$name" "wrk failed: $(tail -n 1 "$out")"
    drain "$pgid"
    return 0
  fi
  cpu1=$(group_cpu_ticks "$pgid")
  drain "$pgid"
  # Server CPU seconds spent during the measured run (all processes of its group; null when not started here).
  res=$(parse_wrk "$out" | jq -c --arg pg "$pgid" --argjson t $((cpu1 - cpu0)) --argjson hz "$CLK_TCK" \
    --argjson c "$conns" --argjson d "$dur" --argjson load "$load" '
    {connections: $c, duration_s: $d, loadavg_1m_before: $load} + .
    | .server_cpu_s = (if $pg == "" then null else ($t / $hz) end)
    | .requests_per_server_cpu_s = (if .server_cpu_s == null or .server_cpu_s == 0 then null
                                    else (.requests / .server_cpu_s * 10 | round / 10) end)')
  if [[ $(jq -r .ok <<<"$res") != true ]]; then
    res=$(jq -c '. + {reason: (if .requests == 0 then "no request completed within the run"
      else "errors: \(.non2xx) non-2xx, socket \(.socket_errors | tostring)" end)}' <<<"$res")
    log "$sys: $name FAILED: $(jq -r .reason <<<"$res")"
  else
    log "$sys: $name $(jq -r .rps <<<"$res") req/s ($(jq -r .requests <<<"$res") requests)"
  fi
  record "$sys" "$name" "$res"
}

# run_scenario SYSTEM NAME — one scenario against one prepared system: a curl probe made like the load, then wrk.
run_scenario() {
  local sys=$1 name=$2 dir=$STATE/$1-bodies base=${BASE[$1]} tokens admin=${ADMIN_TOKEN[$1]}
  local subject=${SUBJECT_TOKEN[$1]}
  tokens=$base/auth/tokens
  case $name in
  password)
    if probe POST "$tokens" 201 -H 'Content-Type: application/json' --data-binary "@$dir/password.json"; then
      BENCH_BODY_FILE=$dir/password.json \
        measure "$sys" password "$PW_CONNECTIONS" "$PW_DURATION" "$BENCH_DIR/wrk/post-json.lua" "$tokens"
    else
      record_failed "$sys" password "probe failed: password issue did not answer 201"
    fi
    ;;
  rescope)
    if [[ ! -f $dir/rescope.json ]]; then
      record_failed "$sys" rescope "could not obtain an unscoped token"
    elif probe POST "$tokens" 201 -H 'Content-Type: application/json' --data-binary "@$dir/rescope.json"; then
      BENCH_BODY_FILE=$dir/rescope.json \
        measure "$sys" rescope "$CONNECTIONS" "$DURATION" "$BENCH_DIR/wrk/post-json.lua" "$tokens"
    else
      record_failed "$sys" rescope "probe failed: rescope did not answer 201"
    fi
    ;;
  validate)
    if [[ -z $admin || -z $subject ]]; then
      record_failed "$sys" validate "could not obtain project-scoped tokens"
    elif probe GET "$tokens" 200 -H "X-Auth-Token: $admin" -H "X-Subject-Token: $subject"; then
      BENCH_AUTH_TOKEN=$admin BENCH_SUBJECT_TOKEN=$subject \
        measure "$sys" validate "$CONNECTIONS" "$DURATION" "$BENCH_DIR/wrk/get-auth.lua" "$tokens"
    else
      record_failed "$sys" validate "probe failed: validation did not answer 200"
    fi
    ;;
  list)
    if [[ -z $admin ]]; then
      record_failed "$sys" list "could not obtain a project-scoped token"
    elif probe GET "$base/projects" 200 -H "X-Auth-Token: $admin"; then
      BENCH_AUTH_TOKEN=$admin \
        measure "$sys" list "$CONNECTIONS" "$DURATION" "$BENCH_DIR/wrk/get-auth.lua" "$base/projects"
    else
      record_failed "$sys" list "probe failed: GET /v3/projects did not answer 200"
    fi
    ;;
  esac
}

not_run() {
  local name
  for name in "${SCENARIOS[@]}"; do
    record "$1" "$name" "$(jq -cn --arg r "$2" '{ok:false, rps:null, not_run:true, reason:$r}')"
  done
}

# ---- run
ensure_packages
log "state directory $STATE"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  log "WARNING: load average is $LOAD_START before the run: other work on this machine skews the figures"
fi
KEYSTONE_HASH_PREFIX=""
# Both systems run side by side (the idle one uses no CPU); scenarios alternate between them in an ABBA order so
# that a change in background load does not land on one system only.
ACTIVE=()
if [[ " $SYSTEMS " == *" keystone "* ]]; then
  if keystone_start; then
    prepare keystone "$KEYSTONE_URL" "$KEYSTONE_PASSWORD" "$KEYSTONE_PGID"
    ACTIVE+=(keystone)
  else
    not_run keystone "Keystone did not start"
  fi
else
  not_run keystone "not selected (BENCH_SYSTEMS)"
fi
if [[ " $SYSTEMS " == *" krater "* ]]; then
  if command -v node >/dev/null && krater_start; then
    prepare krater "$KRATER_URL" "$KRATER_PASSWORD" "$KRATER_PGID"
    ACTIVE+=(krater)
  else
    not_run krater "not measured: ${KRATER_NOT_RUN_REASON:-node missing}"
  fi
else
  not_run krater "not selected (BENCH_SYSTEMS)"
fi
drain "$KEYSTONE_PGID"
drain "$KRATER_PGID"
i=0
for name in "${SCENARIOS[@]}"; do
  order=("${ACTIVE[@]}")
  if ((i % 2 == 1 && ${#order[@]} == 2)); then order=("${order[1]}" "${order[0]}"); fi
  for sys in "${order[@]}"; do run_scenario "$sys" "$name"; done
  i=$((i + 1))
done
keystone_stop
krater_stop
kill_leftovers "$STATE"

# ---- report
mkdir -p "$BENCH_DIR/results"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
JSON=$BENCH_DIR/results/identity-$STAMP.json
goals_json=$(for s in "${SCENARIOS[@]}"; do printf '%s %s\n' "$s" "${GOAL[$s]}"; done |
  jq -Rn '[inputs | split(" ") | {key: .[0], value: (.[1] | tonumber)}] | from_entries')
for s in "${SCENARIOS[@]}"; do
  jq -cn --arg s "$s" --arg title "${TITLE[$s]}" --argjson goal "$(jq ".$s" <<<"$goals_json")" \
    --slurpfile k "$STATE/results/keystone-$s.json" --slurpfile r "$STATE/results/krater-$s.json" '
    {scenario: $s, title: $title, keystone: $k[0], krater: $r[0], goal: $goal}
    | .ratio = (if .keystone.ok and .krater.ok and .keystone.rps > 0
                then ((.krater.rps / .keystone.rps) * 100 | round / 100) else null end)
    | .met = (if .ratio == null then null else .ratio >= $goal end)
    | .cpu_ratio = (if .ratio != null and .keystone.requests_per_server_cpu_s and .krater.requests_per_server_cpu_s
                    then ((.krater.requests_per_server_cpu_s / .keystone.requests_per_server_cpu_s) * 100 | round / 100)
                    else null end)'
done | jq -s \
  --arg date "$STAMP" --arg cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
  --argjson nproc "$(nproc)" --arg kernel "$(uname -r)" \
  --arg mem "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)" \
  --arg load0 "$LOAD_START" --arg load1 "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg keystone "$(keystone_version)" --arg uwsgi "$(uwsgi --version 2>/dev/null || echo unknown)" \
  --arg wrk "$(wrk -v 2>&1 | awk 'NR == 1 {print $2}')" --arg node "$(node --version 2>/dev/null || echo none)" \
  --arg krater "$(krater_version)" --arg hash "$KEYSTONE_HASH_PREFIX" --arg khash "$KRATER_HASH_PREFIX" \
  --arg kcache "${BENCH_KEYSTONE_CACHE:-none}" --arg kcmd "krater ${KRATER_MODE[*]}" \
  --argjson kp "$KEYSTONE_PROCESSES" --argjson d "$DURATION" --argjson c "$CONNECTIONS" \
  --argjson pd "$PW_DURATION" --argjson pc "$PW_CONNECTIONS" --argjson w "$WARMUP" --argjson t "$WRK_THREADS" '
  {benchmark: "identity", date: $date,
   machine: {cpu: $cpu, vcpus: $nproc, kernel: $kernel, memory: $mem,
             loadavg_before: $load0, loadavg_after: $load1},
   versions: {keystone: $keystone, uwsgi: $uwsgi, wrk: $wrk, node: $node, krater_commit: $krater},
   settings: {keystone_uwsgi_processes: $kp, keystone_uwsgi_threads: 1, keystone_cache: $kcache,
              keystone_password_hash: $hash, krater_password_hash: $khash, krater_command: $kcmd,
              duration_s: $d, connections: $c, password_duration_s: $pd, password_connections: $pc,
              warmup_s: $w, wrk_threads: $t},
   scenarios: .}' >"$JSON"

fmt_rps() { jq -r 'if .ok then (.rps | tostring) elif .not_run then "not run" else "FAILED" end' <<<"$1"; }
printf '\n%-22s | %14s | %14s | %9s | %6s | %s\n' scenario "keystone req/s" "krater req/s" ratio goal met?
printf '%s\n' "-----------------------+----------------+----------------+-----------+--------+------"
jq -c '.scenarios[]' "$JSON" | while IFS= read -r row; do
  printf '%-22s | %14s | %14s | %9s | %6s | %s\n' "$(jq -r .title <<<"$row")" \
    "$(fmt_rps "$(jq -c .keystone <<<"$row")")" "$(fmt_rps "$(jq -c .krater <<<"$row")")" \
    "$(jq -r 'if .ratio == null then "-" else "\(.ratio)x" end' <<<"$row")" \
    "$(jq -r '">=\(.goal)x"' <<<"$row")" \
    "$(jq -r 'if .met == null then "-" elif .met then "yes" else "NO" end' <<<"$row")"
done
printf '\nrequests per CPU-second used by the server processes (less sensitive to other load on the machine):\n'
printf '%-22s | %14s | %14s | %9s\n' scenario keystone krater ratio
jq -r '.scenarios[] | [.title, (.keystone.requests_per_server_cpu_s // "-"), (.krater.requests_per_server_cpu_s // "-"),
  (if .cpu_ratio == null then "-" else "\(.cpu_ratio)x" end)] | @tsv' "$JSON" |
  while IFS=$'\t' read -r title k r ratio; do printf '%-22s | %14s | %14s | %9s\n' "$title" "$k" "$r" "$ratio"; done
printf '\n'
jq -r '.scenarios[] | . as $r | ["keystone", "krater"][] | . as $sys | $r[$sys]
  | select(.ok | not) | "  \($sys) \($r.scenario): \(.reason)"' "$JSON"
printf '\nresults: %s\n' "$JSON"

# Exit status: 0 only if every selected system ran every scenario cleanly.
failed=0
for sys in $SYSTEMS; do
  [[ $(jq --arg s "$sys" '[.scenarios[][$s].ok] | all' "$JSON") == true ]] || failed=1
done
exit "$failed"
