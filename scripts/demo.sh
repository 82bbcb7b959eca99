#!/usr/bin/env bash
# The README's first command: set up, then run the demo end to end on a synthetic
# IEMOCAP-layout corpus (written to ./demo unless DEMO_DIR says otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m emocache_demo "${DEMO_DIR:-demo}" "$@"
