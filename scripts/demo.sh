#!/usr/bin/env bash
# Set up, then run the whole pipeline on the bundled sample crawl (local storage, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/danqing-demo "$@"
