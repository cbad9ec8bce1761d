#!/usr/bin/env bash
# `make setup`: the Python environment (ci/setup-python.sh, mostly downloads) beside the tools (ci/install-tools.sh,
# mostly CPU-bound Go builds); neither needs the other, and Debian packages go in one apt run at a time
# (ci/apt-install.sh). Each part skips what is already done. It starts a new time ledger (ci/lib/ledger.py) with its
# parts' wall times: `make test` adds its stages and prints it.
# Usage: bash ci/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 ci/lib/ledger.py reset
start=$(date +%s)
# a fresh machine's Go build cache is empty: the Go builds are then most of the set-up
gocache=$(go env GOCACHE 2>/dev/null || true)
if [ -n "$gocache" ] && [ -n "$(find "$gocache" -mindepth 1 -maxdepth 1 -name '??' -print -quit 2>/dev/null)" ]; then
  python3 ci/lib/ledger.py add machine warm 0
else
  python3 ci/lib/ledger.py add machine cold 0
fi
python3 ci/lib/ledger.py time setup "Python environment" -- bash ci/setup-python.sh & python_pid=$!
tools=0; bash ci/install-tools.sh || tools=$?
python=0; wait "$python_pid" || python=$?
python3 ci/lib/ledger.py add setup - "$(( $(date +%s) - start ))"
[ "$python" = 0 ] || echo "setup: ci/setup-python.sh failed (exit $python)" >&2
[ "$tools" = 0 ] || echo "setup: ci/install-tools.sh failed (exit $tools)" >&2
[ "$python" = 0 ] && [ "$tools" = 0 ]
