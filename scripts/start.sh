#!/usr/bin/env bash
# Sets up a virtualenv from requirements.txt and starts the playground (local router unless ORQ_API_KEY is set).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
install_missing_debian_packages
setup_virtualenv
exec .venv/bin/streamlit run app.py "$@"
