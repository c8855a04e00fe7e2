#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs every package the tests use, builds, runs unit and end-to-end tests
# (which start their own Krater, PostgreSQL, containerd and registry instances and clean up after themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

apt_ensure ca-certificates curl jq iproute2 python3-openstackclient python3-glanceclient python3-zunclient python3-magnumclient \
  postgresql containerd runc golang-github-containerd-containerd-dev skopeo umoci busybox-static docker-registry openssl nftables dnsmasq-base conntrack \
  haproxy pgbouncer swift swift-proxy swift-account swift-container swift-object python3-swiftclient xfsprogs e2fsprogs util-linux
node_ensure
npm_ensure
npx biome check src tests bench
npm run --silent check:layers   # the layering rule (docs/ARCHITECTURE.md)
npx vitest run "$@"
