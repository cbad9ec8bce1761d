#!/usr/bin/env bash
# Installs what `make images` and the real node (ci/node) need from Debian 12's packages, idempotently, and checks the
# upstream versions pinned in ci/versions.env: containerd, runc, the CNI plugins, buildah (image builds without a
# Docker engine), mmdebstrap (the local base image), iptables/conntrack (kube-proxy), gcc + static libc (the pause
# image), htpasswd (bcrypt users of the node's registry), gnupg (`helm package --sign`), shellcheck (actionlint
# runs it on the workflows' run: blocks). kubelet, kube-proxy, CoreDNS, the registry and cosign are Go builds:
# ci/install-cluster-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=versions.env
source ci/versions.env

log() { printf '== install-node-tools: %s\n' "$*" >&2; }

# package:pinned-upstream-version ("-" = any)
wanted=(containerd:"$CONTAINERD_VERSION" runc:"$RUNC_VERSION" containernetworking-plugins:"$CNI_PLUGINS_VERSION"
        buildah:"$BUILDAH_VERSION" mmdebstrap:"$MMDEBSTRAP_VERSION" iptables:- conntrack:- gcc:- libc6-dev:-
        uidmap:- apache2-utils:- gnupg:- shellcheck:"$SHELLCHECK_VERSION")

installed_version() { dpkg-query -W -f '${db:Status-Status} ${Version}' "$1" 2>/dev/null | awk '$1 == "installed" {print $2}'; }

missing=()
for w in "${wanted[@]}"; do
  [ -n "$(installed_version "${w%%:*}")" ] || missing+=("${w%%:*}")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  bash ci/apt-install.sh --no-install-recommends "${missing[@]}"
fi
for w in "${wanted[@]}"; do
  pkg=${w%%:*} pin=${w#*:} v=$(installed_version "${w%%:*}")
  v=${v#*:}   # epoch
  if [ "$pin" != - ] && [[ $v != "$pin"[~+-]* ]]; then
    log "$pkg is $v here, ci/versions.env pins $pin: install that version or change the pin"
    exit 1
  fi
done
log "ok: containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, CNI plugins $CNI_PLUGINS_VERSION, buildah $BUILDAH_VERSION," \
  "shellcheck $SHELLCHECK_VERSION"
