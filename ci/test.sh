#!/usr/bin/env bash
# Every test of the project; exits non-zero on the first failing stage. Called by `make test` (after `make setup`).
#   1. chart: lint, unit tests, schemas, security scan (ci/chart-test.sh)
#   2. images: the server and trainer images plus the test stand-ins, built for real (ci/images.sh; unchanged ones are
#      not rebuilt). The trainer is the CUDA variant: the CPU one needs the PyTorch index, which CI cannot reach.
#   3. pytest, all but the end-to-end tests
#   4. pytest -m e2e: those images and the chart released (signed) into the real node's registry (ci/node, ci/release.sh),
#      installed from oci:// and pulled with an imagePullSecret
#   5. nothing left running: every process started by this run (servers, the node, a gpg-agent) has ended
#      (ci/lib/leftovers.py finds them by the MLFLOW_STACK_TEST_RUN marker each one inherits)
# Where the kernel allows, pytest runs in a network namespace that has only loopback: proof that training, servers
# and the clusters need nothing from outside (the real node lives in a namespace of its own inside it).
# MLFLOW_STACK_REQUIRE_E2E=1 (set by .ci/run) turns a skipped end-to-end test into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PWD/.venv/bin:$PATH"
export MLFLOW_STACK_TEST_RUN="$$-$(date +%s%N)"

echo "== chart: lint, unit tests, schemas, security scan"
bash ci/chart-test.sh

echo "== images (ci/images.sh)"
if bash ci/node check >/dev/null; then
  TORCH_VARIANT=cuda bash ci/images.sh build server trainer postgres s3 pause
else
  echo "note: $(bash ci/node check || true); the images are not built and the end-to-end tests will skip"
fi

# pytest exits 5 when it collects nothing; set -e turns that into a failure, as it should.
pytest() {
  if unshare -n true 2>/dev/null; then
    MLFLOW_STACK_NETNS=1 unshare -n bash -c 'ip link set lo up && exec python -m pytest tests "$@"' pytest "$@"
  else
    echo "note: unshare -n is not permitted here; running pytest without the loopback-only namespace"
    python -m pytest tests "$@"
  fi
}

echo "== pytest (all but e2e)"
pytest -m "not e2e" --durations=25 "$@"

echo "== pytest -m e2e (real node)"
pytest -m e2e --durations=10 "$@"

echo "== nothing left running"
python3 ci/lib/leftovers.py
