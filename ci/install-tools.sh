#!/usr/bin/env bash
# Builds the Go tools pinned in ci/versions.env into .tools/bin, installs the Debian packages of the real node and the
# npm packages of the tests (each script skips what is already done). The npm installs are downloads, so they run
# beside the CPU-bound Go builds instead of after them.
set -euo pipefail
cd "$(dirname "$0")/.."
npm_pid=""
if command -v npm >/dev/null; then bash ci/install-npm-tools.sh & npm_pid=$!; fi
for s in ci/install-helm-tools.sh ci/install-cluster-tools.sh ci/install-node-tools.sh; do
  [ -f "$s" ] && bash "$s"
done
if [ -n "$npm_pid" ]; then wait "$npm_pid"; else bash ci/install-npm-tools.sh; fi
exit 0
