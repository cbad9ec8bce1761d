#!/usr/bin/env bash
# Builds the Go tools pinned in ci/versions.env into .tools/bin and installs the Debian packages of the real node
# and Azurite (npm) for the Azure artifact tests (each script skips what is already done).
set -euo pipefail
cd "$(dirname "$0")/.."
for s in ci/install-helm-tools.sh ci/install-cluster-tools.sh ci/install-node-tools.sh ci/install-azurite.sh; do
  [ -f "$s" ] && bash "$s"
done
exit 0
