#!/usr/bin/env bash
# Installs what interp needs (once) and renders the bundled example pair on the best available model.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash scripts/env.sh)
exec "$venv/bin/python" -m interp render assets/examples/astronaut.jpg assets/examples/chelsea.jpg \
  --prompt "a photo" --out out/example "$@"
