#!/usr/bin/env bash
# Creates .venv/ with the trainer package (editable) and all extras; a no-op when pyproject.toml, versions.env and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/versions.env
stamp=".venv/.installed-$(cat pyproject.toml ci/versions.env ci/setup-python.sh | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0

# System packages: libGL/glib for opencv (a yolov5 dependency), PostgreSQL and MariaDB for the integration tests, Chromium for the UI test.
missing=()
ldconfig -p | grep -q 'libGL.so.1 ' || missing+=(libgl1)
ldconfig -p | grep -q 'libglib-2.0.so.0 ' || missing+=(libglib2.0-0)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)  # tests/chart/test_mysql.py (backend.type=mysql)
command -v unshare >/dev/null || missing+=(util-linux)
command -v chromium >/dev/null || missing+=(chromium)  # headless browser of tests/test_ui.py
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  bash ci/apt-install.sh "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "uv==${UV_VERSION}"
# --compile-bytecode: uv writes no .pyc by default, and CI machines set PYTHONDONTWRITEBYTECODE, so without it every python
# process (each trainer, server and test subprocess) compiled torch, yolov5 and mlflow from source again: 20-40 s a start.
.venv/bin/uv pip install --compile-bytecode --python .venv/bin/python -e '.[train,server,dev]'
rm -f .venv/.installed-*
touch "$stamp"
