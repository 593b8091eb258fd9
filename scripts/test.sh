#!/usr/bin/env bash
# Set up, then run the test suite (it starts and stops its own servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
