#!/usr/bin/env bash
# Helpers sourced by the other scripts. Nothing here runs on its own.

# Install Debian packages that are not installed yet (apt-get update first, as a fresh machine needs).
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "installing Debian packages: ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Where cargo puts binaries for a profile.
target_dir() {
  echo "${CARGO_TARGET_DIR:-$(pwd)/target}"
}

# A Python virtual environment under .cache with the given pip requirements.
ensure_venv() {
  local venv=$1
  shift
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
}
