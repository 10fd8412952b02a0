#!/usr/bin/env bash
# Sets up a virtualenv from requirements.txt and starts the playground (local router unless ORQ_API_KEY is set).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
exec .venv/bin/streamlit run app.py "$@"
