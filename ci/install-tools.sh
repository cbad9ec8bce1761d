#!/usr/bin/env bash
# Builds the Go tools pinned in ci/versions.env into .tools/bin, installs the Debian packages of the real node and the
# npm packages of the tests (each script skips what is already done).
set -euo pipefail
cd "$(dirname "$0")/.."
for s in ci/install-helm-tools.sh ci/install-cluster-tools.sh ci/install-node-tools.sh ci/install-npm-tools.sh; do
  [ -f "$s" ] && bash "$s"
done
exit 0
