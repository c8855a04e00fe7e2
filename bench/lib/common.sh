# shellcheck shell=bash
# Helpers shared by the identity benchmark (sourced by bench/identity.sh).

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A free TCP port on 127.0.0.1, chosen by the kernel (bind to port 0), never one already in use.
free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL EXPECTED_CODE TIMEOUT_S PID — poll until URL answers EXPECTED_CODE; fail early if PID died.
wait_http() {
  local url=$1 want=$2 timeout=$3 pid=$4 code deadline
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "process $pid exited while waiting for $url"
      return 1
    fi
    code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$url" || true)
    [[ $code == "$want" ]] && return 0
    sleep 0.2
  done
  log "timeout after ${timeout}s waiting for $url (last status ${code:-none})"
  return 1
}

# stop_group PGID NAME — TERM the process group led by PGID (started with setsid), KILL it after 15 s.
stop_group() {
  local pgid=$1 name=$2 i
  [[ -n $pgid ]] || return 0
  kill -0 -- "-$pgid" 2>/dev/null || return 0
  log "stopping $name (process group $pgid)"
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 -- "-$pgid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$name did not stop within 15 s: KILL"
  kill -KILL -- "-$pgid" 2>/dev/null || true
}

# issue_token URL BODY_FILE EXPECTED_CODE — POST BODY_FILE, print the X-Subject-Token of the answer.
issue_token() {
  local url=$1 body=$2 want=$3 hdr code token
  hdr=$(mktemp -p "$STATE")
  code=$(curl -sS -m 60 -o /dev/null -D "$hdr" -w '%{http_code}' -H 'Content-Type: application/json' \
    -H 'Accept: application/json' --data-binary "@$body" "$url") || code=000
  token=$(awk 'tolower($1) == "x-subject-token:" { print $2 }' "$hdr" | tr -d '\r')
  rm -f "$hdr"
  if [[ $code != "$want" || -z $token ]]; then
    log "POST $url answered $code (wanted $want with X-Subject-Token)"
    return 1
  fi
  printf '%s\n' "$token"
}

# probe METHOD URL EXPECTED_CODE [curl args…] — one request made like the load; fails unless the status matches.
probe() {
  local method=$1 url=$2 want=$3 code
  shift 3
  code=$(curl -sS -m 60 -o /dev/null -w '%{http_code}' -X "$method" "$@" "$url") || code=000
  if [[ $code != "$want" ]]; then
    log "probe $method $url answered $code (wanted $want)"
    return 1
  fi
}

# Password-method body, optionally project-scoped (SCOPE=project|none).
password_body() {
  local user=$1 password=$2 project=$3 scope=$4
  jq -cn --arg u "$user" --arg p "$password" --arg proj "$project" --arg scope "$scope" '
    {auth: ({identity: {methods: ["password"],
                        password: {user: {name: $u, domain: {name: "Default"}, password: $p}}}}
            + (if $scope == "project" then {scope: {project: {name: $proj, domain: {name: "Default"}}}} else {} end))}'
}

# Token-method body rescoping TOKEN to PROJECT (by name + domain name).
rescope_body() {
  jq -cn --arg t "$1" --arg proj "$2" '
    {auth: {identity: {methods: ["token"], token: {id: $t}},
            scope: {project: {name: $proj, domain: {name: "Default"}}}}}'
}

# run_wrk OUT CONNECTIONS DURATION LUA URL — run wrk once, output into OUT. Extra environment comes from the caller.
run_wrk() {
  local out=$1 conns=$2 dur=$3 lua=$4 url=$5
  wrk -t "$WRK_THREADS" -c "$conns" -d "${dur}s" --timeout "${WRK_TIMEOUT}s" --latency -s "$lua" "$url" >"$out" 2>&1
}

# parse_wrk OUT — print a JSON object with the figures of one wrk run and its verdict.
# A run fails when wrk failed, when any response was not 2xx/3xx, or on any socket error (connect/read/write/timeout).
parse_wrk() {
  local out=$1
  awk '
    /requests in/            { requests = $1; elapsed = $4; sub(/,$/, "", elapsed) }
    /^Requests\/sec:/        { rps = $2 }
    /Non-2xx or 3xx/         { non2xx = $NF }
    /Socket errors:/         { gsub(/,/, ""); connect = $4; read = $6; write = $8; timeout = $10 }
    /^ +50%/                 { p50 = $2 }
    /^ +99%/                 { p99 = $2 }
    /^ +Latency +[0-9]/      { avg = $2 }
    END {
      if (rps == "") rps = 0; if (requests == "") requests = 0; if (non2xx == "") non2xx = 0
      if (connect == "") connect = 0; if (read == "") read = 0; if (write == "") write = 0
      if (timeout == "") timeout = 0
      errors = non2xx + connect + read + write + timeout
      ok = (requests > 0 && errors == 0) ? "true" : "false"
      printf "{\"ok\":%s,\"rps\":%s,\"requests\":%s,\"elapsed\":\"%s\",\"non2xx\":%s,", ok, rps, requests, elapsed, non2xx
      printf "\"socket_errors\":{\"connect\":%s,\"read\":%s,\"write\":%s,\"timeout\":%s},", connect, read, write, timeout
      printf "\"latency\":{\"avg\":\"%s\",\"p50\":\"%s\",\"p99\":\"%s\"}}\n", avg, p50, p99
    }' "$out"
}

# group_cpu_ticks PGID — user+system CPU clock ticks used so far by the live processes of process group PGID.
group_cpu_ticks() {
  local pgid=$1 f rest total=0
  [[ -n $pgid ]] || { echo 0; return; }
  for f in /proc/[0-9]*/stat; do
    { read -r rest <"$f"; } 2>/dev/null || continue
    rest=${rest##*) }            # fields after "pid (comm) ": state ppid pgrp … utime(12th) stime(13th)
    # shellcheck disable=SC2086
    set -- $rest
    [[ ${3:-} == "$pgid" ]] && total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

# kill_leftovers DIR — processes started (directly or not) by this run that outlived their parent, recognised by
# DIR (the private state directory) in their command line, e.g. a containerd started detached by `krater up`.
# TERM them by PID, KILL after 10 s.
kill_leftovers() {
  local dir=$1 f pid pids=() i
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if tr '\0' ' ' <"$f" 2>/dev/null | grep -qF -- "$dir/"; then pids+=("$pid"); fi
  done
  ((${#pids[@]})) || return 0
  log "stopping leftover processes of this run: ${pids[*]}"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "${pids[@]}" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

# unmount_under DIR — unmount anything mounted below DIR (deepest first) before it is removed.
unmount_under() {
  local dir=$1 m
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while IFS= read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
