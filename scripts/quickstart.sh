#!/usr/bin/env bash
# One command to a working cloud: installs what Krater needs, builds it, starts `krater up` in the background on
# the embedded store and shows it working with the real OpenStack CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DATA_DIR=${KRATER_DATA_DIR:-/var/lib/krater}
PORT=${KRATER_PORT:-8786}
LOG=${KRATER_LOG:-$DATA_DIR/krater.log}

apt_ensure ca-certificates curl python3-openstackclient python3-zunclient python3-magnumclient python3-glanceclient \
  containerd runc golang-github-containerd-containerd-dev skopeo umoci busybox-static iproute2 nftables dnsmasq-base conntrack
node_ensure
npm_ensure
ln -sf "$PWD/bin/krater.js" /usr/local/bin/krater

# The data dir holds the store, keys and the admin password: owner-only (Krater narrows it too).
mkdir -p "$DATA_DIR"
chmod 700 "$DATA_DIR"
# The offline default image: busybox from Debian's busybox-static, imported by the agent at start.
sh scripts/engine-build-busybox.sh "$DATA_DIR/default-image.oci.tar"
PIDFILE=$DATA_DIR/krater.pid
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo ">> krater is already running (pid $(cat "$PIDFILE"))"
else
  echo ">> starting: krater up --data-dir $DATA_DIR --port $PORT (log: $LOG)"
  # The log is the operator's only (created 0600, or narrowed if an older run left it wider).
  (umask 077 && : >>"$LOG") && chmod 600 "$LOG"
  nohup krater up --data-dir "$DATA_DIR" --port "$PORT" >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/identity/v3" >/dev/null 2>&1 && break
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 0.1
  done
fi
grep -v '^{' "$LOG" | head -10 || true
# The admin password is never in the log: shown here once, on the start that generated it.
if grep -q '^Bootstrapped:' "$LOG" 2>/dev/null && [ -f "$DATA_DIR/admin-password" ]; then
  echo ">> admin password (shown once; kept in $DATA_DIR/admin-password, mode 0600): $(cat "$DATA_DIR/admin-password")"
fi
echo
echo ">> openstack --os-cloud krater catalog list"
openstack --os-cloud krater catalog list
echo ">> openstack --os-cloud krater token issue"
openstack --os-cloud krater token issue -c expires -c project_id -c user_id
echo ">> krater run --rm busybox echo …   (a real container on containerd/runc, through the Zun API)"
krater run --rm busybox sh -c 'echo "hello from container $(hostname) at $(ip -4 -o addr show eth0 | awk "{print \$4}")"'
echo ">> openstack --os-cloud krater network list   (the project's default network, made on first use)"
openstack --os-cloud krater network list
echo
echo "Web console: http://127.0.0.1:$PORT/dashboard/ (user admin; password in $DATA_DIR/admin-password)"
echo "Krater is running (pid $(cat "$PIDFILE")); stop it with: kill \$(cat $PIDFILE)"
