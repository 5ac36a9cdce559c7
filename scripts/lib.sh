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

# The reference code of InSPyReNet (transparent-background==1.3.4) and torch, pinned, in a venv
# under .cache (~6 GB: torch's CUDA libraries come with it); prints the venv's path.
inspyrenet_venv() {
  local venv=.cache/refvenv-inspyrenet
  ensure_venv "$venv" transparent-background==1.3.4 torch==2.15.0 torchvision==0.29.2 \
    timm==1.0.31 kornia==0.9.0 numpy==2.4.6 pillow==13.0.0 opencv-python==5.0.0.93 \
    albumentations==2.0.8 scikit-image==0.26.0 >&2
  echo "$venv"
}
