#!/usr/bin/env bash
# Builds the Go tools pinned in ci/versions.env into .tools/bin, installs the Debian packages of the real node and the
# npm packages of the tests (each script skips what is already done). The apt and npm installs are downloads, so they
# run beside the CPU-bound Go builds (ci/apt-install.sh takes one apt run at a time). The Go builds run one after the
# other: two at once on 2 cores took longer in all (a cold set-up of 22 min against 19), each `go build` already using
# both cores. Every Go build drops DWARF at compile time (`-gcflags=all=-dwarf=false`; the links strip it anyway with
# `-s -w`): measured 16 % less compile time on a cold build cache. Each part's wall time goes into the time ledger
# (ci/lib/ledger.py).
# Usage: bash ci/install-tools.sh
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A parts=()
# part NAME CMD...: run CMD in the background, its wall time recorded as the set-up part NAME
part() { python3 ci/lib/ledger.py time setup "$1" -- "${@:2}" & parts[$!]=$1; }

part "Debian packages of the node" bash ci/install-node-tools.sh
part "npm tools" bash ci/install-npm-tools.sh
part "Go tools" bash -c 'bash ci/install-helm-tools.sh && bash ci/install-cluster-tools.sh'
failed=()
for pid in "${!parts[@]}"; do wait "$pid" || failed+=("${parts[$pid]}"); done
[ ${#failed[@]} -eq 0 ] || { echo "install-tools: failed: ${failed[*]}" >&2; exit 1; }
