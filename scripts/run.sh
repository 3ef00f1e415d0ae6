#!/usr/bin/env bash
# Installs what interp needs (once) and starts the studio app on http://127.0.0.1:7860 with the best
# available model (the built-in one when no other is available offline). Extra flags go to app.py.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash scripts/env.sh)
exec "$venv/bin/python" app.py "$@"
