#!/usr/bin/env bash
# Create .venv and install the project with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip wheel
# torch/torchvision resolve from the local wheel mirror where the machine has one.
.venv/bin/python -m pip install --quiet --progress-bar off -e '.[dev]'
