#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: create a virtualenv, install the package
# with every extra, start the brokers, lint, type-check, run pytest (which also builds the
# docs with warnings as errors and runs their examples, t/unit/test_docs.py).
# Extra arguments go to pytest (e.g. `extra/test.sh t/unit -x`).
#
# pytest runs in KOMBU_LIKE_TEST_WORKERS processes (default 3; 0 runs it in this one):
# most tests wait on brokers, timers and worker processes rather than on the CPU, so
# three share two cores well. Tests that must share one process (a session's cluster of
# redis-servers, say) are marked `xdist_group` and stay together.
#
#   --differential-long   run the differential tests against Kombu (t/differential) with
#                         the long hypothesis profile: random seeds, many more and longer
#                         scenarios (KOMBU_LIKE_DIFFERENTIAL=long); with no other arguments
#                         only t/differential runs.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTEST_ARGS=()
for arg in "$@"; do
    if [ "$arg" = "--differential-long" ]; then
        export KOMBU_LIKE_DIFFERENTIAL=long
    else
        PYTEST_ARGS+=("$arg")
    fi
done
if [ "${KOMBU_LIKE_DIFFERENTIAL:-}" = "long" ] && [ ${#PYTEST_ARGS[@]} -eq 0 ]; then
    PYTEST_ARGS=(t/differential)
fi

VENV="${KOMBU_LIKE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[all,test,docs]"

bash extra/start-brokers.sh

echo "== ruff"
"$VENV/bin/ruff" check kombu_like t extra
"$VENV/bin/ruff" format --check kombu_like t extra docs/examples
echo "== mypy"
"$VENV/bin/mypy" kombu_like
echo "== pytest"
WORKERS="${KOMBU_LIKE_TEST_WORKERS:-3}"
if [ "$WORKERS" != "0" ]; then
    PYTEST_ARGS=(-n "$WORKERS" --dist loadgroup ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"})
fi
exec "$VENV/bin/python" -m pytest ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"}
