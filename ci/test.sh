#!/usr/bin/env bash
# Every test of the project; exits non-zero on the first failing stage. Called by `make test` (after `make setup`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PWD/.venv/bin:$PATH"

echo "== hadolint: images/*/Dockerfile"
hadolint images/*/Dockerfile

if [ -f ci/chart-test.sh ]; then
  echo "== chart: lint, unit tests, schemas, security scan"
  bash ci/chart-test.sh
fi

echo "== pytest"
# pytest exits 5 when it collects nothing; set -e turns that into a failure, as it should.
python -m pytest tests "$@"
