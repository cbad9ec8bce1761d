#!/usr/bin/env bash
# Installs the npm packages the tests run (no build step), idempotently:
#   azurite (Azure Storage emulator of tests/chart/test_artifact_stores.py) <- ci/npm/azurite (AZURITE_VERSION)
#   oauth2-mock-server (mock OIDC provider of tests/chart/test_oidc.py) <- ci/npm/oauth2-mock-server (OAUTH2_MOCK_SERVER_VERSION)
# Each ci/npm/<tool>/ holds a package.json that pins the version of ci/versions.env and a committed package-lock.json
# that pins every dependency (with its integrity hash); `npm ci` installs exactly that into
# .tools/store/<tool>-<version>-<hash of both>/, linked as .tools/npm/<tool>. Needs node and npm (Debian's, installed
# when missing) and the npm registry; only a cold machine pays (about a minute, mostly Azurite's).
#
# Usage: ci/install-npm-tools.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=versions.env
source ci/versions.env
: "${AZURITE_VERSION:?}" "${OAUTH2_MOCK_SERVER_VERSION:?}"
STORE=$ROOT/.tools/store
mkdir -p "$STORE" "$ROOT/.tools/npm"
NPM_TOOLS=("azurite=$AZURITE_VERSION" "oauth2-mock-server=$OAUTH2_MOCK_SERVER_VERSION")

log() { printf '== install-npm-tools: %s\n' "$*" >&2; }

if ! command -v npm >/dev/null; then
  log "installing Debian's nodejs and npm"
  bash ci/apt-install.sh nodejs npm
fi

for spec in "${NPM_TOOLS[@]}"; do
  tool=${spec%%=*} version=${spec#*=} dir=ci/npm/${spec%%=*}
  grep -q "\"$tool\": \"$version\"" "$dir/package.json" ||
    { log "$dir/package.json does not pin $tool $version (ci/versions.env)"; exit 1; }
  key=$tool-$version-$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -c1-12)
  if [ ! -f "$STORE/$key/.complete" ]; then
    log "installing $tool $version"
    start=$(date +%s)
    tmp=$(mktemp -d "$STORE/.build-$tool.XXXXXX")
    cp "$dir/package.json" "$dir/package-lock.json" "$tmp/"
    (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    chmod 755 "$tmp"; touch "$tmp/.complete"
    rm -rf "${STORE:?}/$key"; mv "$tmp" "$STORE/$key"
    log "installed $tool $version in $(( $(date +%s) - start ))s"
  fi
  ln -sfn "../store/$key" "$ROOT/.tools/npm/$tool"
done
