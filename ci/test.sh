#!/usr/bin/env bash
# Every test of the project; exits non-zero on the first failing stage. Called by `make test` (after `make setup`).
# Stages run in two pairs side by side (1 + 2, 3 + 4): each alone keeps about one of the machine's two cores busy.
#   1. chart: lint, unit tests, schemas, security scan (ci/chart-test.sh)
#   2. images: the server and trainer images plus the test stand-ins, built for real (ci/images.sh; unchanged ones are
#      not rebuilt) beside stage 1. The trainer is the CUDA variant: the CPU one needs the PyTorch index, which CI
#      cannot reach.
#   3. pytest, all but the end-to-end tests, then tests/cluster (the API server with kwok), beside stage 4
#   4. pytest -m e2e: those images and the chart released (signed) into the real node's registry (ci/node,
#      ci/release.sh), installed from oci:// and pulled with an imagePullSecret
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
rm -f "$LEDGER"/*.xml "$LEDGER"/*.log
# ledger STAGE PART SECONDS: a row of the time ledger (ci/lib/ledger.py; PART "-" is the stage's own wall time). The
# ledger is printed at the end, pass or fail.
ledger() { python3 ci/lib/ledger.py add "$@"; }
side_pids=()
finish() {
  local pid
  for pid in "${side_pids[@]}"; do kill -- -"$pid" 2>/dev/null || true; done  # a failed stage stops its twin too
  python3 ci/lib/ledger.py report "$LEDGER"/pytest.xml "$LEDGER"/pytest-cluster.xml "$LEDGER"/e2e.xml
}
trap finish EXIT
# beside LOG CMD...: run CMD in its own process group (setsid, so finish() can stop all of it), output to
# $LEDGER/LOG.log; its pid is appended to side_pids.
beside() { local log=$1; shift; setsid "$@" > "$LEDGER/$log.log" 2>&1 & side_pids+=("$!"); }
# join PID LOG WHAT: wait for a `beside` command, print its output, fail if it failed
join() {
  local rc=0
  wait "$1" || rc=$?
  side_pids=("${side_pids[@]/$1}")
  echo "== $3 (ran beside the above)"
  cat "$LEDGER/$2.log"
  [ "$rc" = 0 ] || { echo "$3 failed (exit $rc)" >&2; exit "$rc"; }
}
# pytest PATH [PYTEST-ARG...]: in a network namespace of its own. pytest exits 5 when it collects nothing; set -e turns
# that into a failure, as it should.
pytest() {
  if unshare -n true 2>/dev/null; then
    MLFLOW_STACK_NETNS=1 unshare -n bash -c 'ip link set lo up && exec python -m pytest "$@"' pytest "$@"
  else
    echo "note: unshare -n is not permitted here; running pytest without the loopback-only namespace"
    python -m pytest "$@"
  fi
}
timed() { # STAGE PART CMD...: run CMD, record its wall time as PART of STAGE
  local stage=$1 part=$2 start=$SECONDS rc=0; shift 2
  "$@" || rc=$?
  ledger "$stage" "$part" $((SECONDS - start))
  return "$rc"
}
export -f pytest ledger timed

# 1 + 2. The images build (downloads and disk writes, mostly) runs beside the chart tests (CPU): neither needs the other.
start=$SECONDS
e2e=1
if bash ci/node check >/dev/null; then
  beside images env TORCH_VARIANT=cuda bash -c 'timed "chart + images" images bash ci/images.sh build server trainer postgres s3 pause'
  images_pid=$!
else
  e2e=0
  echo "note: $(bash ci/node check || true); the images are not built and the end-to-end tests will skip"
fi
echo "== chart: lint, unit tests, schemas, security scan"
timed "chart + images" chart bash ci/chart-test.sh
[ "$e2e" = 0 ] || join "$images_pid" images "images (ci/images.sh)"
ledger "chart + images" - $((SECONDS - start))

# 3 + 4. Two pytest runs side by side, each about half the CPU on its own: the real node's (e2e: waits on pods, pulls
# and probes) beside all the others, the API-server tests (tests/cluster: waits on kwok and the control plane) last, so
# that both lanes take about as long.
start=$SECONDS
beside e2e bash -c 'timed "pytest + e2e" "e2e (real node)" pytest tests -m e2e --junitxml="$0/e2e.xml" "$@"' "$LEDGER" "$@"
lane_pid=$!
echo "== pytest (all but e2e, tests/cluster last; e2e runs beside it)"
timed "pytest + e2e" "pytest (all but e2e and tests/cluster)" \
  pytest tests -m "not e2e" --ignore=tests/cluster --junitxml="$LEDGER/pytest.xml" "$@"
timed "pytest + e2e" "tests/cluster" pytest tests/cluster -m "not e2e" --junitxml="$LEDGER/pytest-cluster.xml" "$@"
join "$lane_pid" e2e "pytest -m e2e (real node)"
ledger "pytest + e2e" - $((SECONDS - start))

echo "== nothing left running"
timed leftovers - python3 ci/lib/leftovers.py
