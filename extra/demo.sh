#!/usr/bin/env bash
# Publish and consume a few messages on the in-memory transport, printing what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${KOMBU_LIKE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q -e .
exec "$VENV/bin/python" -m kombu_like.demo "$@"
