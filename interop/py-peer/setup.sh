#!/usr/bin/env bash
# Sets up the py-libp2p peer: native build dependencies (apt, only when missing), a venv at
# interop/py-peer/.venv made with the machine's python3, and the pinned packages of
# requirements.txt. Idempotent: a second run changes nothing and takes seconds.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"

# fastecdsa (a libp2p dependency) builds from source against GMP; coincurve and others may
# build from source too when no wheel fits. They need a C compiler, GMP's headers and the
# Python headers.
missing=()
for pkg in build-essential libgmp-dev pkg-config; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
# Python.h of the interpreter the venv is made from (pyenv builds ship their own headers).
if ! "$PYTHON" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  missing+=(python3-dev)
fi
# Debian's python3 has no ensurepip without python3-venv.
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "py-peer setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "py-peer setup: need root (or sudo) to install ${missing[*]}" >&2; exit 1
    fi
  fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

# A venv left broken (e.g. its interpreter gone) is made anew.
if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import sys' 2>/dev/null; then
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "py-peer setup: creating .venv with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python -c 'import libp2p, trio, multiaddr; print("py-peer setup: libp2p", libp2p.__version__, "ready")'
