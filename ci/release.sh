#!/usr/bin/env bash
# Releases the chart and its images (server, CPU and CUDA trainer) to an OCI registry; `make release` calls it.
#
#   REGISTRY=ghcr.io/you ci/release.sh           build the images, package (and sign) the chart into .work/release/
#   REGISTRY=ghcr.io/you PUSH=1 ci/release.sh    ... and push images + chart, sign the images, print the install line
#
# The packaged chart's values point at $REGISTRY's images, pinned by tag and (after a push) digest, so
# `helm install oci://$REGISTRY/charts/mlflow-stack --version X` runs exactly the images released with it.
# Env:
#   REGISTRY                 where images and chart go (images: $REGISTRY/mlflow-stack-{server,trainer}, chart:
#                            oci://$REGISTRY/charts/mlflow-stack)
#   TRAINER_VARIANTS         trainer builds to release (default: "cpu cuda", both; TORCH_VARIANT=cpu|cuda, when set,
#                            releases only that one): cpu is pinned as training.image.digest, cuda (tag
#                            <appVersion>-cuda, what values-gpu.yaml selects) as training.image.cudaDigest. A release
#                            of cuda alone makes it the packaged chart's default (training.image.variant), since the
#                            CPU tag was not pushed
#   REGISTRY_USERNAME/_PASSWORD  log in for every push (buildah/docker, helm, cosign); else existing logins are used
#   REGISTRY_CA              CA bundle of a registry with a private CA
#   HELM_SIGN_KEY, HELM_KEYRING  `helm package --sign --key "$HELM_SIGN_KEY" --keyring "$HELM_KEYRING"` (a GnuPG
#                            secret keyring in the legacy format: `gpg --export-secret-keys > secring.gpg`)
#   COSIGN_KEY (+ COSIGN_PASSWORD)  sign each pushed image with cosign (key-based, no transparency-log upload); a file
#                            or any key reference cosign takes (env://VAR, a KMS URI)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.tools/bin:$PATH"
: "${REGISTRY:?set REGISTRY, e.g. REGISTRY=ghcr.io/you}"
PUSH=${PUSH:-}
TRAINER_VARIANTS=${TRAINER_VARIANTS:-${TORCH_VARIANT:-cpu cuda}}
for v in $TRAINER_VARIANTS; do
  [[ $v = cpu || $v = cuda ]] || { echo "TRAINER_VARIANTS: unknown variant $v (cpu, cuda)" >&2; exit 2; }
done
CHART=charts/mlflow-stack
OUT=.work/release
VERSION=$(awk '/^version:/ {print $2}' "$CHART/Chart.yaml")
HOST=${REGISTRY%%/*}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

log() { printf '== release: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

helm_tls() { [ -z "${REGISTRY_CA:-}" ] || printf -- '--ca-file\n%s\n' "$REGISTRY_CA"; }

# pin BLOCK KEY=VALUE...: set the packaged chart's <BLOCK>.image keys (ci/lib/pin_images.py keeps every comment)
pin() { python3 ci/lib/pin_images.py "$TMP/chart/values.yaml" "$@"; }

# digest NAME: the pushed image's digest (.work/images/NAME.digest), empty without PUSH
digest() { [ -z "$PUSH" ] || cat ".work/images/$1.digest"; }

# trainer_ref VARIANT: the trainer image of one build (cpu: <appVersion>, cuda: <appVersion>-cuda)
trainer_ref() { TORCH_VARIANT=$1 bash ci/images.sh ref trainer; }

# images: build (PUSH: and push) the server and each trainer variant, and pin them in the packaged chart; the trainer's
# tag stays "" (appVersion, -cuda for the CUDA variant), so training.image.variant picks both tag and digest
images() {
  local verb=build ref variant key
  [ -z "$PUSH" ] || verb=push
  bash ci/images.sh "$verb" server
  ref=$(bash ci/images.sh ref server)
  pin server "repository=${ref%:*}" "tag=${ref##*:}" "digest=$(digest server)"
  for variant in $TRAINER_VARIANTS; do
    TORCH_VARIANT=$variant bash ci/images.sh "$verb" trainer
    # images.sh writes trainer.digest for either build: keep each variant's apart
    [ -z "$PUSH" ] || cp .work/images/trainer.digest ".work/images/trainer-$variant.digest"
    ref=$(trainer_ref "$variant") key=digest
    [ "$variant" = cpu ] || key=cudaDigest
    pin training "repository=${ref%:*}" "$key=$(digest "trainer-$variant")"
  done
  if [[ " $TRAINER_VARIANTS " != *" cpu "* ]]; then
    pin training variant=cuda
    log "only the CUDA trainer is released: it is the packaged chart's default (training.image.variant=cuda)"
  fi
}

sign_images() {
  local name ref
  [ -n "${COSIGN_KEY:-}" ] || { log "COSIGN_KEY not set: images not signed"; return 0; }
  [ -z "${REGISTRY_CA:-}" ] || export SSL_CERT_FILE=$REGISTRY_CA
  if [ -n "${REGISTRY_USERNAME:-}" ]; then  # else the caller's login (DOCKER_CONFIG) is used
    export DOCKER_CONFIG=$TMP/docker
    cosign login "$HOST" -u "$REGISTRY_USERNAME" --password-stdin <<< "$REGISTRY_PASSWORD" >/dev/null
  fi
  local names=(server) v
  for v in $TRAINER_VARIANTS; do names+=("trainer-$v"); done
  for name in "${names[@]}"; do
    if [ "$name" = server ]; then ref=$(bash ci/images.sh ref server); else ref=$(trainer_ref "${name#trainer-}"); fi
    cosign sign --yes --key "$COSIGN_KEY" --tlog-upload=false "${ref%:*}@$(digest "$name")" 2>"$TMP/cosign.log" ||
      { cat "$TMP/cosign.log" >&2; die "cosign sign $ref failed"; }
    log "signed ${ref%:*}@$(digest "$name")"
  done
}

package() {
  local sign=()
  if [ -n "${HELM_SIGN_KEY:-}" ]; then
    [ -f "${HELM_KEYRING:-}" ] || die "HELM_SIGN_KEY is set but HELM_KEYRING ($HELM_KEYRING) is no file"
    sign=(--sign --key "$HELM_SIGN_KEY" --keyring "$HELM_KEYRING")
  else
    log "HELM_SIGN_KEY not set: the chart is not signed"
  fi
  rm -rf "$OUT"; mkdir -p "$OUT"
  helm package "$TMP/chart" -d "$OUT" "${sign[@]}" >/dev/null
  log "packaged $OUT/mlflow-stack-$VERSION.tgz${sign:+ (+ .prov)}"
}

push_chart() {
  local tls
  mapfile -t tls < <(helm_tls)
  [ -z "${REGISTRY_USERNAME:-}" ] ||
    helm registry login "$HOST" -u "$REGISTRY_USERNAME" --password-stdin "${tls[@]}" <<< "$REGISTRY_PASSWORD" >/dev/null
  helm push "$OUT/mlflow-stack-$VERSION.tgz" "oci://$REGISTRY/charts" "${tls[@]}" 2>&1 | sed 's/^/  /' >&2
}

cp -r "$CHART" "$TMP/chart"
images
package
if [ -n "$PUSH" ]; then
  sign_images
  push_chart
  verify=""
  [ -z "${HELM_SIGN_KEY:-}" ] || verify=" --verify --keyring <the public keyring>"
  log "released; install with:"
  echo "helm install mlflow-stack oci://$REGISTRY/charts/mlflow-stack --version $VERSION$verify"
else
  log "not pushed (PUSH=1 pushes images and chart)"
fi
