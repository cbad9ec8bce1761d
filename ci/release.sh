#!/usr/bin/env bash
# Releases the chart and its two images to an OCI registry; `make release` calls it.
#
#   REGISTRY=ghcr.io/you ci/release.sh           build the images, package (and sign) the chart into .work/release/
#   REGISTRY=ghcr.io/you PUSH=1 ci/release.sh    ... and push images + chart, sign the images, print the install line
#
# The packaged chart's values point at $REGISTRY's images, pinned by tag and (after a push) digest, so
# `helm install oci://$REGISTRY/charts/mlflow-stack --version X` runs exactly the images released with it.
# Env:
#   REGISTRY                 where images and chart go (images: $REGISTRY/mlflow-stack-{server,trainer}, chart:
#                            oci://$REGISTRY/charts/mlflow-stack)
#   TORCH_VARIANT            trainer build (cpu or cuda; see ci/images.sh)
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
CHART=charts/mlflow-stack
OUT=.work/release
VERSION=$(awk '/^version:/ {print $2}' "$CHART/Chart.yaml")
HOST=${REGISTRY%%/*}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

log() { printf '== release: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

helm_tls() { [ -z "${REGISTRY_CA:-}" ] || printf -- '--ca-file\n%s\n' "$REGISTRY_CA"; }

# values NAME REF DIGEST: point the packaged chart's server/training image at REF (repository:tag) and DIGEST
values() {
  python3 - "$TMP/chart/values.yaml" "$1" "$2" "$3" <<'PY'
import re, sys
path, block, ref, digest = sys.argv[1:]
repo, tag = ref.rsplit(":", 1)
text = open(path).read()
# the image block of the top-level `server:` / `training:` key: its repository, tag and digest lines
start = re.search(rf"^{block}:\n(?:.*\n)*?  image:\n", text, re.M)
if not start:
    sys.exit(f"no {block}.image in values.yaml")
head, rest = text[: start.end()], text[start.end():]
for key, value in (("repository", repo), ("tag", f'"{tag}"'), ("digest", f'"{digest}"' if digest else '""')):
    rest, n = re.subn(rf"^(    {key}:).*$", rf"\g<1> {value}", rest, count=1, flags=re.M)
    if n != 1:
        sys.exit(f"no {block}.image.{key} in values.yaml")
open(path, "w").write(head + rest)
PY
}

images() {
  local digest name
  if [ -n "$PUSH" ]; then bash ci/images.sh push server trainer; else bash ci/images.sh build server trainer; fi
  for name in server trainer; do
    digest=
    [ -z "$PUSH" ] || digest=$(cat ".work/images/$name.digest")
    values "$( [ $name = server ] && echo server || echo training)" "$(bash ci/images.sh ref $name)" "$digest"
  done
}

sign_images() {
  local name ref
  [ -n "${COSIGN_KEY:-}" ] || { log "COSIGN_KEY not set: images not signed"; return 0; }
  [ -z "${REGISTRY_CA:-}" ] || export SSL_CERT_FILE=$REGISTRY_CA
  if [ -n "${REGISTRY_USERNAME:-}" ]; then  # else the caller's login (DOCKER_CONFIG) is used
    export DOCKER_CONFIG=$TMP/docker
    cosign login "$HOST" -u "$REGISTRY_USERNAME" --password-stdin <<< "$REGISTRY_PASSWORD" >/dev/null
  fi
  for name in server trainer; do
    ref=$(bash ci/images.sh ref $name)
    cosign sign --yes --key "$COSIGN_KEY" --tlog-upload=false "${ref%:*}@$(cat ".work/images/$name.digest")" 2>"$TMP/cosign.log" ||
      { cat "$TMP/cosign.log" >&2; die "cosign sign $ref failed"; }
    log "signed ${ref%:*}@$(cat ".work/images/$name.digest")"
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
