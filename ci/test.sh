#!/usr/bin/env bash
# Every test of the project; exits non-zero on the first failing stage. Called by `make test` (after `make setup`).
#   1. chart: lint, unit tests, schemas, security scan (ci/chart-test.sh)
#   2. images: the server and trainer images plus the test stand-ins, built for real (ci/images.sh; unchanged ones are
#      not rebuilt) beside stage 1. The trainer is the CUDA variant: the CPU one needs the PyTorch index, which CI
#      cannot reach.
#   3. pytest, all but the end-to-end tests
#   4. pytest -m e2e: those images and the chart released (signed) into the real node's registry (ci/node, ci/release.sh),
#      installed from oci:// and pulled with an imagePullSecret
#   5. nothing left running: every process started by this run (servers, the node, a gpg-agent) has ended
#      (ci/lib/leftovers.py finds them by the MLFLOW_STACK_TEST_RUN marker each one inherits)
# Where the kernel allows, pytest runs in a network namespace that has only loopback: proof that training, servers
# and the clusters need nothing from outside (the real node lives in a namespace of its own inside it).
# MLFLOW_STACK_REQUIRE_E2E=1 (set by .ci/run) turns a skipped end-to-end test into a failure.
# It ends with the time ledger (ci/lib/ledger.py): the wall time of make setup's parts and of each stage against its
# budget, the slowest tests, and OVER BUDGET lines (docs/testing.md#time-budget).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PWD/.venv/bin:$PATH"
export MLFLOW_STACK_TEST_RUN="$$-$(date +%s%N)"

LEDGER=.work/ledger
mkdir -p "$LEDGER"
rm -f "$LEDGER"/*.xml "$LEDGER"/images.log
# The time ledger (ci/lib/ledger.py): each stage's wall time, after make setup's parts; printed at the end, pass or fail.
images_pid=""
finish() {
  [ -z "$images_pid" ] || kill -- -"$images_pid" 2>/dev/null || true  # a failed chart stage: stop the images build too
  python3 ci/lib/ledger.py report "$LEDGER"/pytest.xml "$LEDGER"/e2e.xml
}
trap finish EXIT
stage_start() { echo "== $*"; STAGE_START=$(date +%s); }
stage_end() { python3 ci/lib/ledger.py add "$1" - "$(( $(date +%s) - STAGE_START ))"; }

# The images build (downloads and disk writes, mostly) runs beside the chart tests (CPU), which need none of them.
if bash ci/node check >/dev/null; then
  # its own process group (setsid), so that finish() can stop all of it
  TORCH_VARIANT=cuda setsid python3 ci/lib/ledger.py time images -- \
    bash ci/images.sh build server trainer postgres s3 pause > "$LEDGER/images.log" 2>&1 & images_pid=$!
else
  echo "note: $(bash ci/node check || true); the images are not built and the end-to-end tests will skip"
fi

stage_start "chart: lint, unit tests, schemas, security scan"
bash ci/chart-test.sh
stage_end chart

if [ -n "$images_pid" ]; then
  echo "== images (ci/images.sh, built beside the chart tests)"
  images=0; wait "$images_pid" || images=$?
  images_pid=""
  cat "$LEDGER/images.log"
  [ "$images" = 0 ] || { echo "images: ci/images.sh failed (exit $images)" >&2; exit "$images"; }
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

stage_start "pytest (all but e2e)"
pytest -m "not e2e" --junitxml="$LEDGER/pytest.xml" "$@"
stage_end pytest

stage_start "pytest -m e2e (real node)"
pytest -m e2e --junitxml="$LEDGER/e2e.xml" "$@"
stage_end e2e

stage_start "nothing left running"
python3 ci/lib/leftovers.py
stage_end leftovers
