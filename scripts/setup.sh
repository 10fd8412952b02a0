# Sourced by start.sh and test.sh (from the repository's root): Debian packages, then the virtualenv.

# Installs the Debian packages given, and python3 / python3-venv when missing (Debian's python3
# cannot create a virtualenv without python3-venv: no ensurepip). Uses sudo unless root.
install_missing_debian_packages() {
  local missing=("$@")
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
  [ "${#missing[@]}" -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# .venv from requirements.txt (created when missing, brought up to the pins every time).
setup_virtualenv() {
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
}
