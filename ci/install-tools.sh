#!/usr/bin/env bash
# Builds the Go tools pinned in ci/versions.env into .tools/bin, installs the Debian packages of the real node and the
# npm packages of the tests (each script skips what is already done). Everything runs at once: the apt and npm installs
# are downloads (ci/apt-install.sh takes one apt run at a time), and the Go builds go in two lanes of about equal length, because one `go build` leaves a core idle
# while it resolves modules, downloads and links. Each part's wall time goes into the time ledger (ci/lib/ledger.py).
# Usage: bash ci/install-tools.sh
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A parts=()
# part NAME CMD...: run CMD in the background, its wall time recorded as the set-up part NAME
part() { python3 ci/lib/ledger.py time setup "$1" -- "${@:2}" & parts[$!]=$1; }

part "Debian packages of the node" bash ci/install-node-tools.sh
part "npm tools" bash ci/install-npm-tools.sh
part "Go lane 1: Helm tools, cosign, oauth2-proxy" \
  bash -c 'bash ci/install-helm-tools.sh && bash ci/install-cluster-tools.sh cosign oauth2-proxy'
part "Go lane 2: etcd, Kubernetes, kwok, CoreDNS, registry" \
  bash ci/install-cluster-tools.sh etcd kubernetes kwok coredns registry
failed=()
for pid in "${!parts[@]}"; do wait "$pid" || failed+=("${parts[$pid]}"); done
[ ${#failed[@]} -eq 0 ] || { echo "install-tools: failed: ${failed[*]}" >&2; exit 1; }
