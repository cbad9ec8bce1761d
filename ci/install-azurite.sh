#!/usr/bin/env bash
# Installs Azurite (Microsoft's Azure Storage emulator, AZURITE_VERSION in ci/versions.env) from npm into .tools/npm for
# tests/test_artifact_stores.py (artifacts.type=azure); skipped when that version is installed.
# Usage: bash ci/install-azurite.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/versions.env
prefix=.tools/npm
stamp="$prefix/.azurite-$AZURITE_VERSION"
[ -f "$stamp" ] && [ -x "$prefix/node_modules/.bin/azurite-blob" ] && exit 0
if ! command -v npm >/dev/null; then
  echo "setup: installing Debian's nodejs and npm (for Azurite)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
echo "setup: installing azurite@$AZURITE_VERSION into $prefix"
rm -f "$prefix"/.azurite-*
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
"$prefix/node_modules/.bin/azurite-blob" --version
touch "$stamp"
