#!/usr/bin/env bash
# Every test of the project; exits non-zero on the first failing stage. Called by `make test` (after `make setup`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PWD/.venv/bin:$PATH"

if [ -f ci/chart-test.sh ]; then
  echo "== chart: lint, unit tests, schemas, security scan"
  bash ci/chart-test.sh
fi

echo "== pytest"
# pytest exits 5 when it collects nothing; set -e turns that into a failure, as it should.
# Where the kernel allows, the tests run in a network namespace that has only loopback: proof that
# training, servers and the cluster need nothing from outside (tests/test_training.py checks it).
if unshare -n true 2>/dev/null; then
  MLFLOW_STACK_NETNS=1 unshare -n bash -c 'ip link set lo up && exec python -m pytest tests "$@"' pytest "$@"
else
  echo "note: unshare -n is not permitted here; running pytest without the loopback-only namespace"
  python -m pytest tests "$@"
fi
