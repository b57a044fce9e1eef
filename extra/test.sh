#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: create a virtualenv, install the package
# with every extra, start the brokers, lint, type-check, run pytest (which also builds the
# docs with warnings as errors and runs their examples, t/unit/test_docs.py).
# Extra arguments go to pytest (e.g. `extra/test.sh t/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${KOMBU_LIKE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[all,test,docs]"

bash extra/start-brokers.sh

echo "== ruff"
"$VENV/bin/ruff" check kombu_like t extra
echo "== mypy"
"$VENV/bin/mypy" kombu_like
echo "== pytest"
exec "$VENV/bin/python" -m pytest "$@"
