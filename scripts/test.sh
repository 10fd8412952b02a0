#!/usr/bin/env bash
# Sets up a virtualenv from requirements.txt (and Debian's chromium and postgresql for the tests), then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Debian packages the tests need: chromium (browser tests) and postgresql (the store's tests start a
# throwaway cluster from its server binaries; the package's own cluster is not used).
needed=()
command -v chromium >/dev/null 2>&1 || needed+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || needed+=(postgresql)
install_missing_debian_packages "${needed[@]}"
setup_virtualenv
exec .venv/bin/python -m pytest "$@"
