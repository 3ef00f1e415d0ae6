#!/usr/bin/env bash
# Installs what the tests need (once) and runs the whole test suite, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash scripts/env.sh)
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$venv/bin/python" -m pytest -q "$@"
