#!/usr/bin/env bash
# Installs Debian packages, one apt run at a time: `make setup` runs ci/setup-python.sh beside ci/install-tools.sh, and
# two apt-get runs at once fail on dpkg's lock (flock serialises ours; the lock timeout waits for anyone else's).
# Usage: bash ci/apt-install.sh [APT-GET-INSTALL-OPTION...] PACKAGE...
set -euo pipefail
exec 9>/tmp/mlflow-stack-apt.lock
flock 9
apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
