#!/usr/bin/env bash
# Prints the path of a virtual environment with requirements-dev.txt installed, building it on first
# use. It lives outside the clone, keyed by a hash of the requirements files, so repeated runs reuse
# it; when the requirements change, older environments are removed and a fresh one is built.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${INTERP_VENV_ROOT:-$HOME/.cache/interp/venvs}"
key=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
venv="$root/$key"
if [ ! -f "$venv/.complete" ]; then
  mkdir -p "$root"
  find "$root" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} + 1>&2
  rm -rf "$venv"
  echo "building the environment in $venv (a few minutes, once)" 1>&2
  python3 -m venv "$venv" 1>&2
  "$venv/bin/python" -m pip install -q --upgrade pip 1>&2 || true
  "$venv/bin/python" -m pip install -q -r requirements-dev.txt 1>&2
  touch "$venv/.complete"
fi
echo "$venv"
