#!/usr/bin/env bash
# Tests of charts/mlflow-stack, with Helm 4 (`helm`) and Helm 3 (`helm3`) from ci/install-helm-tools.sh:
#   1. helm lint --strict: defaults, values-cpu.yaml, values-gpu.yaml and every ci/*-values.yaml scenario
#   2. helm-unittest suites (charts/mlflow-stack/tests/*_test.yaml) with --strict
#   3. bad values: each charts/mlflow-stack/tests/bad-values/*.yaml must make `helm template` fail with the message its
#      first line (`# expect: REGEX`) names
#   4. every scenario rendered and validated offline with kubernetes-validate --strict against several Kubernetes versions
#      (KUBE_VALIDATE_VERSIONS); ServiceMonitor and HTTPRoute have no built-in schema: each is checked against its CRD's
#      own openAPIV3Schema when the module pinning it (ci/gomod/prometheus-operator, ci/gomod/gateway-api) is in the Go
#      module cache, else reported as skipped
#   5. kube-score on every scenario: no CRITICAL finding except the checks ignored below (each with its reason)
#   6. helm-docs drift: charts/mlflow-stack/README.md must equal what helm-docs generates, and every value has a description
#   7. version rules (ci/version_check.py, the `ct lint` rule): images/, src/ or image pins that differ from the release
#      recorded in Chart.yaml need an `appVersion` above it; since the last release tag mlflow-stack-<version>, when
#      there is one, a changed chart needs a `version` bump and changed image inputs an `appVersion` bump
#   8. actionlint on .github/workflows (with shellcheck on their run: blocks): the release workflow cannot run here
#   9. the rendered server config of every distinct server of the ci/*-values.yaml scenarios run for real on 127.0.0.1, two at a time
#      (charts/mlflow-stack/tests/smoke/run_rendered.py): the init containers (db-upgrade, auth-admin), `mlflow server`
#      with the chart's args/env, allowed/refused Host headers, basic auth, the ServiceMonitor's scrape, and the
#      `helm test` script; the training Job's containers with the real trainer over HTTPS (server-tls); a changed admin password
#      on the same database; PostgreSQL scenarios against a throwaway Debian PostgreSQL with SSL, existing Secrets given
#      as the user would create them
# Exits non-zero on the first failing section. Called by ci/test.sh (`make test`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.tools/bin:$ROOT/.venv/bin:$PATH"
CHART=charts/mlflow-stack
KUBE_VALIDATE_VERSIONS=${KUBE_VALIDATE_VERSIONS:-"1.31.0 1.33.0 1.35.0 1.37.0"}
TMP=$(mktemp -d)
PG_DATA=""
cleanup() {
  if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then pg_run "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
# Keep Helm's config/cache/data out of $HOME; plugins come from .tools/helm/plugins (see ci/install-helm-tools.sh).
export HELM_CONFIG_HOME=$TMP/helm/config HELM_CACHE_HOME=$TMP/helm/cache HELM_DATA_HOME=$TMP/helm/data
export HELM_PLUGINS=$ROOT/.tools/helm/plugins
HELMS=(helm helm3)

# kube-score checks ignored on purpose (README "Security scan" points here):
KUBE_SCORE_IGNORES=(
  # No CPU limits by design (CFS throttling slows the server and training); memory limits and CPU requests are set
  # everywhere and unit-tested (tests/security_test.yaml).
  container-resources
  # Pinned image tags; IfNotPresent avoids a registry round-trip per pod start. Configurable per image.
  container-image-pull-policy
  # Writable storage is bounded by emptyDir sizeLimits (/tmp, /workspace, /dev/shm) rather than per-container requests.
  container-ephemeral-storage-request-and-limit
  # Client pods (training Job, hooks, helm test) receive no traffic, so no ingress policy selects them (every pod has
  # the release-wide egress policy; networkPolicy.enabled is on by default).
  pod-networkpolicy
  # The issue asks for startup/readiness/liveness on <staticPrefix>/health; liveness has a longer period and threshold.
  pod-probes-identical
)

section() { printf '\n=== chart-test: %s\n' "$2"; SECTION=$1 SECTION_START=$(date +%s); }  # KEY TITLE
done_section() { # the section's time, also a part of the chart stage in the time ledger (ci/lib/ledger.py)
  printf -- '--- ok (%ss)\n' "$(( $(date +%s) - SECTION_START ))"
  [ "$SECTION" = smokes ] || python3 ci/lib/ledger.py add "chart + images" "chart: $SECTION" "$(( $(date +%s) - SECTION_START ))"
}
fail() { printf 'chart-test: FAIL: %s\n' "$*" >&2; exit 1; }

for tool in "${HELMS[@]}" untt helm-docs kube-score kubernetes-validate actionlint shellcheck; do
  command -v "$tool" >/dev/null || fail "$tool not found; run: make setup (ci/install-helm-tools.sh)"
done
echo "helm $(helm version --short), helm3 $(helm3 version --short), kube-score $(kube-score version | awk '{print $3}' | tr -d ,)," \
  "helm-docs $(helm-docs --version | awk '{print $3}'), kubernetes-validate $(kubernetes-validate --version)," \
  "actionlint $(actionlint -version | head -1), shellcheck $(shellcheck --version | awk '/^version:/ {print $2}')"

# Values files of every scenario: name=file ("" = chart defaults).
SCENARIOS=("default=" "values-cpu=$CHART/values-cpu.yaml" "values-gpu=$CHART/values-gpu.yaml")
for f in "$CHART"/ci/*-values.yaml; do SCENARIOS+=("$(basename "$f" .yaml)=$f"); done

section "lint" "helm lint --strict (${#SCENARIOS[@]} values sets x ${#HELMS[@]} Helm versions)"
for h in "${HELMS[@]}"; do
  for s in "${SCENARIOS[@]}"; do
    f=${s#*=}
    out=$("$h" lint --strict "$CHART" ${f:+-f "$f"} 2>&1) || { echo "$out"; fail "$h lint --strict ${f:-(defaults)}"; }
    echo "$h lint: ${s%%=*} ok"
  done
done
done_section

section "unittest" "helm unittest --strict (helm-unittest $(awk -F'"' '/^version/ {print $2}' "$HELM_PLUGINS/unittest/plugin.yaml"))"
for h in "${HELMS[@]}"; do
  echo "--- via $h"
  "$h" unittest --strict "$CHART" || fail "$h unittest"
done
done_section

section "bad values" "bad values are rejected with a message naming the field"
n=0
for f in "$CHART"/tests/bad-values/*.yaml; do
  expect=$(sed -n '1s/^# expect: //p' "$f")
  [ -n "$expect" ] || fail "$f: first line must be '# expect: REGEX'"
  for h in "${HELMS[@]}"; do
    if out=$("$h" template t "$CHART" -n ml -f "$f" 2>&1); then
      fail "$h template accepted $f (expected: $expect)"
    fi
    grep -Eq -- "$expect" <<<"$out" || { echo "$out"; fail "$h template -f $f failed without /$expect/"; }
  done
  echo "rejected: $(basename "$f" .yaml): $(grep -Eo -- "$expect" <<<"$out" | head -1)"
  n=$((n + 1))
done
echo "$n bad value sets rejected by ${HELMS[*]}"
done_section

section "render + validate" "render every scenario (Helm 4 and Helm 3) and validate against Kubernetes $KUBE_VALIDATE_VERSIONS"
mkdir -p "$TMP/render"
for s in "${SCENARIOS[@]}"; do
  name=${s%%=*} f=${s#*=}
  for h in "${HELMS[@]}"; do
    "$h" template mlflow "$CHART" -n ml ${f:+-f "$f"} > "$TMP/render/$name.$h.yaml" || fail "$h template $name"
  done
done
for v in $KUBE_VALIDATE_VERSIONS; do
  # ServiceMonitor, HTTPRoute: no built-in schema (a warning, checked below); everything else must validate strictly.
  out=$(kubernetes-validate --strict -k "$v" --quiet "$TMP"/render/*.yaml 2>&1) || { echo "$out"; fail "kubernetes-validate $v"; }
  grep -Ev "Couldn't find schema for kind (ServiceMonitor|HTTPRoute)" <<<"$out" | grep . && fail "kubernetes-validate $v: unexpected output"
  echo "kubernetes $v: $(ls "$TMP"/render/*.yaml | wc -l) renders valid (--strict)"
done
python3 - "$TMP"/render/*.yaml <<'PY'
# ServiceMonitors and HTTPRoutes against their CRD's schema (the versions ci/versions.env pins), when available.
import glob, json, os, subprocess, sys
import jsonschema
import yaml
rendered = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]
CRDS = [  # kind, version, ci/gomod folder, module, CRD file in the module
    ("ServiceMonitor", "v1", "prometheus-operator", "github.com/prometheus-operator/prometheus-operator",
     "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"),
    ("HTTPRoute", "v1", "gateway-api", "sigs.k8s.io/gateway-api", "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"),
]
for kind, version, gomod, module, path in CRDS:
    docs = [d for d in rendered if d.get("kind") == kind]
    crd = None
    try:
        mod = subprocess.run(["go", "list", "-m", "-json", module], cwd=f"ci/gomod/{gomod}", capture_output=True,
                             text=True, check=True, env=dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off"))
        d = json.loads(mod.stdout).get("Dir")
        paths = glob.glob(f"{d}/{path}") if d else []
        crd = yaml.safe_load(open(paths[0])) if paths else None
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError):
        pass
    if crd is None:
        print(f"{kind}: {len(docs)} documents not schema-checked ({module} CRD not in the Go module cache)")
        continue
    schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
    for doc in docs:
        jsonschema.validate(doc, schema)
    print(f"{kind}: {len(docs)} documents valid against the {crd['spec']['group']}/{version} CRD schema")
PY
done_section

section "kube-score" "kube-score (ignored, with reasons in ci/chart-test.sh: ${KUBE_SCORE_IGNORES[*]})"
ignores=$(IFS=,; echo "${KUBE_SCORE_IGNORES[*]}")
for s in "${SCENARIOS[@]}"; do
  name=${s%%=*}
  out=$(kube-score score "$TMP/render/$name.helm.yaml" --output-format ci --ignore-test "$ignores" 2>&1) || true
  if grep -q '^\[CRITICAL\]' <<<"$out"; then
    grep '^\[CRITICAL\]' <<<"$out"
    fail "kube-score: critical findings in scenario $name"
  fi
  echo "kube-score $name: no critical findings ($(grep -c '^\[WARNING\]' <<<"$out" || true) warnings)"
done
done_section

section "helm-docs" "helm-docs drift ($CHART/README.md)"
cp -r "$CHART" "$TMP/docs"
(cd "$TMP/docs" && helm-docs --chart-search-root . --skip-version-footer --log-level warning)
if ! diff -u "$CHART/README.md" "$TMP/docs/README.md"; then
  fail "$CHART/README.md is out of date: run helm-docs --chart-search-root $CHART --skip-version-footer"
fi
undocumented=$(awk '/^## Values/ {v=1} v && /^\| [a-zA-Z]/ && $0 !~ /^\| Key/ {n=split($0, c, " \\| "); if (c[n] ~ /^ *\|? *$/) print c[1]}' "$CHART/README.md")
[ -z "$undocumented" ] || fail "values without a description (add a '# --' comment in values.yaml): $undocumented"
echo "README.md is up to date; $(awk '/^## Values/ {v=1} v && /^\| [a-z]/' "$CHART/README.md" | wc -l) values documented"
done_section

section "version rules" "version rules against the recorded release and the last release tag (ci/version_check.py)"
python ci/version_check.py || fail "version rules (docs/releasing.md): bump what the message names"
done_section

section "actionlint" "actionlint .github/workflows ($(ls .github/workflows/*.yml | wc -l) workflows, shellcheck on run: blocks)"
actionlint -no-color || fail "actionlint: fix the workflows above"
echo "workflows ok: $(cd .github/workflows && echo *.yml)"
done_section

section "smokes" "rendered server config of every distinct server against the real mlflow $(python -c 'import mlflow; print(mlflow.__version__)') on 127.0.0.1"
smoke() { # NAME VALUES-FILE [FROM=TO ...]: render with Helm 4 (+ SMOKE_SET), run the server as rendered, helm test it
  local name=$1 values=$2 dir=$TMP/smoke-${SMOKE_DIR:-$1} start=$SECONDS; shift 2
  helm template mlflow "$CHART" -n ml ${values:+-f "$values"} "${SMOKE_SET[@]}" > "$TMP/smoke-$name.yaml"
  [ -z "${SMOKE_SECRETS:-}" ] || printf -- '---\n%s\n' "$SMOKE_SECRETS" >> "$TMP/smoke-$name.yaml"  # existing Secrets
  mkdir -p "$dir"
  python "$CHART/tests/smoke/run_rendered.py" "$TMP/smoke-$name.yaml" "$dir" "$@" > "$TMP/smoke-$name.log" 2>&1 ||
    { tail -40 "$TMP/smoke-$name.log"; tail -20 "$dir/server.log" 2>/dev/null; fail "smoke $name"; }
  grep -E '^(smoke|helm test):' "$TMP/smoke-$name.log" | sed "s/^/$name: /"
  python3 ci/lib/ledger.py add "chart + images" "chart: smoke $name$([ "${SMOKE_TRAIN:-0}" != 1 ] || echo ' (+ training)')" $((SECONDS - start))
}
# bg CMD...: run a smoke (or a chain of smokes that share a data directory) in the background, two at a time: a smoke
# mostly waits (server start, migrations, requests), so two of them fill the 2 cores that one leaves half idle. Its
# output goes to a file, printed by bg_wait in the order they started.
BG=()
bg() {
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n || true; done
  local out=$TMP/bg-${#BG[@]}
  ( "$@"; ) > "$out.log" 2>&1 && touch "$out.ok" &
  BG+=("$out")
}
bg_wait() { # every smoke started by bg; fails on the first that failed, after printing its output
  local out
  wait
  for out in "${BG[@]}"; do
    cat "$out.log"
    [ -f "$out.ok" ] || fail "a smoke failed (its output is above)"
  done
  BG=()
}
secret() { # NAME KEY=VALUE...: an existing Secret (what the user would have created) as YAML
  local name=$1; shift
  printf 'apiVersion: v1\nkind: Secret\nmetadata: {name: %s}\ndata:\n' "$name"
  for kv in "$@"; do printf '  %s: %s\n' "${kv%%=*}" "$(printf %s "${kv#*=}" | base64 -w0)"; done
}
python -c 'import flask_wtf, prometheus_flask_exporter' ||
  fail "the server extra lacks Flask-WTF or prometheus-flask-exporter (basic auth / metrics): run make setup"
SMOKE_SET=()
# One smoke per distinct server: gpu-values.yaml and serving-values.yaml render sqlite-default's server unchanged. The
# defaults' training Job (tags k8s.job/image, a tag with a comma) runs on the real node (tests/e2e), not here.
bg smoke sqlite-default "$CHART/ci/sqlite-default-values.yaml"
bg smoke open "$CHART/ci/open-values.yaml"  # no basic auth, no NetworkPolicies
# The server behind the OIDC sidecar (no basic auth, /mlflow prefix): `helm test` uses MLflow's own port, as the Job
# does; the sidecar itself runs against a mock provider in tests/chart/test_oidc.py.
bg smoke oidc "$CHART/ci/oidc-values.yaml"
# HTTPS from the server itself: a CA and a certificate for the Service (and 127.0.0.1, where the smoke reaches it) in an
# existing Secret; the helm test pod, the ServiceMonitor's scrape and the training Job (trainer and MLflow client)
# verify it with the CA the chart mounts for them.
TLS_DIR=$TMP/tls && mkdir -p "$TLS_DIR"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=smoke-ca -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=mlflow-service -keyout "$TLS_DIR/tls.key" -out "$TLS_DIR/tls.csr" 2>/dev/null
openssl x509 -req -in "$TLS_DIR/tls.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" -CAcreateserial -days 1 \
  -out "$TLS_DIR/tls.crt" -extfile <(echo "subjectAltName=DNS:mlflow-service.ml.svc.cluster.local,DNS:mlflow-service.ml.svc,IP:127.0.0.1") 2>/dev/null
SMOKE_SET=()
SMOKE_TRAIN=${CHART_SMOKE_TRAIN:-1} SMOKE_SECRETS="$(secret mlflow-tls "tls.crt=$(cat "$TLS_DIR/tls.crt")" \
  "tls.key=$(cat "$TLS_DIR/tls.key")" "ca.crt=$(cat "$TLS_DIR/ca.crt")")" bg smoke server-tls "$CHART/ci/server-tls-values.yaml"
# Then a changed admin password on the same database: the Job and `helm test` read the new one from the Secret. With
# metrics and a ServiceMonitor: its scrape of /metrics (outside the static prefix) logs in with the new password.
password_changed() {  # (run in bg's subshell: SMOKE_SET changes only there)
  SMOKE_SET=()
  smoke sqlite-auth-prefix "$CHART/ci/ingress-tls-auth-values.yaml"
  SMOKE_SET=(--set server.auth.adminPassword=rotated-password-0123 --set server.metrics.enabled=true
             --set server.metrics.serviceMonitor.enabled=true)
  SMOKE_DIR=sqlite-auth-prefix smoke sqlite-auth-password-changed "$CHART/ci/ingress-tls-auth-values.yaml"
}
bg password_changed
# PostgreSQL: a throwaway cluster from the Debian packages (as the postgres user when run as root), with SSL (a
# self-signed certificate) for the external scenario's sslmode=require.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
pg_run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ -n "$PG_BIN" ] && { [ "$(id -u)" != 0 ] || id postgres >/dev/null 2>&1; } ||
  fail "no Debian PostgreSQL binaries (/usr/lib/postgresql/*/bin): run make setup"
PG_DATA=$TMP/pg/data PG_PASS=smoke-$RANDOM-password
PG_PORT=$(python ci/lib/ports.py)
mkdir -p "$TMP/pg" && printf '%s\n' "$PG_PASS" > "$TMP/pg/pw"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout "$TMP/pg/key.pem" -out "$TMP/pg/cert.pem" 2>/dev/null
chmod 600 "$TMP/pg/key.pem"
[ "$(id -u)" = 0 ] && chown -R postgres "$TMP/pg" && chmod 755 "$TMP"
pg_run "$PG_BIN/initdb" -D "$PG_DATA" -U mlflow --pwfile="$TMP/pg/pw" -A scram-sha-256 >/dev/null
pg_run "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -l "$TMP/pg/log" -o "-p $PG_PORT -k $TMP/pg -c listen_addresses=127.0.0.1 \
  -c ssl=on -c ssl_cert_file=$TMP/pg/cert.pem -c ssl_key_file=$TMP/pg/key.pem" start >/dev/null
psql_pg() { PGPASSWORD=$PG_PASS "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U mlflow -d postgres -qc "$1"; }
psql_pg "CREATE DATABASE mlflow"
BUNDLED_PG="mlflow-mlflow-stack-postgresql.ml.svc.cluster.local:5432=127.0.0.1:$PG_PORT"
# The bundled PostgreSQL with basic auth, metrics and a ServiceMonitor (its scrape logs in): the server this renders is
# the one of the chart's defaults on PostgreSQL with metrics on, and postgres-bundled's differs only by metrics off.
SMOKE_SET=(--set "backend.postgresql.password=$PG_PASS")
bg smoke networkpolicy-servicemonitor "$CHART/ci/networkpolicy-servicemonitor-values.yaml" "$BUNDLED_PG"
# External PostgreSQL over SSL and S3 keys from existing Secrets: the endpoint comes from the values alone.
psql_pg "CREATE ROLE mlflow_app LOGIN PASSWORD '$PG_PASS'" && psql_pg "CREATE DATABASE mlflow_tracking OWNER mlflow_app"
SMOKE_SET=()
SMOKE_S3_ENDPOINT=https://s3.eu-central-1.amazonaws.com SMOKE_SECRETS="$(secret mlflow-db "password=$PG_PASS"
  echo ---; secret mlflow-minio-credentials AWS_ACCESS_KEY_ID=smoke-key AWS_SECRET_ACCESS_KEY=smoke-secret-key
  echo ---; secret mlflow-auth admin-password=external-admin-0123 flask-secret-key=smoke-flask-key
  echo ---; secret mlflow-auth-client client-password=external-client-0123)" \
  bg smoke postgres-external "$CHART/ci/postgres-external-values.yaml" "postgres.databases.svc.cluster.local:5433=127.0.0.1:$PG_PORT"
bg_wait
done_section

printf '\n=== chart-test: all passed\n'
