#!/usr/bin/env bash
# Sets up a virtualenv from requirements.txt (and Debian's chromium and postgresql for the tests), then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests need: chromium (browser tests) and postgresql (the store's tests start a
# throwaway cluster from its server binaries; the package's own cluster is not used).
# python3-venv: Debian's python3 cannot create a virtualenv without it (no ensurepip).
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
exec .venv/bin/python -m pytest "$@"
