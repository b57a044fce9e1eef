#!/usr/bin/env bash
# Celery's own unit test suite, run twice in one scratch virtualenv: once on Kombu 5.7, once
# with kombu_like standing in for ``kombu`` (the import alias, installed by a sitecustomize
# before Celery imports anything).  Prints the tests that fail only on kombu_like -- each of
# them is a parity bug -- and the ones that fail only on Kombu.
#
# Usage:  extra/celery-unit.sh [pytest selection...]
#         extra/celery-unit.sh                                # the whole t/unit (~4 min each run)
#         extra/celery-unit.sh t/unit/app/test_beat.py        # a targeted rerun
#
# Environment:
#   CELERY_UNIT_DIR   scratch directory (default /tmp/kombu_like-celery-unit); it holds the
#                     virtualenv, Celery's sdist (which ships t/unit) and the reports
#   PYTHON            interpreter to build the virtualenv with (default python3)
#   JOBS              pytest-xdist workers (default 2; 0 runs without xdist)
#   ONLY              "kombu" or "kombu_like" to run one side only (the other side's last
#                     report is reused for the comparison)
#
# The Celery, Kombu and amqp versions are the ones the framework integration tests use
# (t/integration/frameworks/venvs.py).  Nothing here touches the repository's own venv, and
# this is not part of CI: it downloads Celery's test dependencies.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORKDIR="${CELERY_UNIT_DIR:-/tmp/kombu_like-celery-unit}"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-2}"
ONLY="${ONLY:-}"
VENV="$WORKDIR/venv"
mkdir -p "$WORKDIR"

read -r -a PINS <<<"$(cd "$REPO" && "$PYTHON" -c \
    'from t.integration.frameworks.venvs import REQUIREMENTS; print(" ".join(REQUIREMENTS["celery"]))')"
CELERY_PIN=""
for pin in "${PINS[@]}"; do
    case "$pin" in celery==*) CELERY_PIN="$pin" ;; esac
done
CELERY_VERSION="${CELERY_PIN#celery==}"
SRC="$WORKDIR/celery-$CELERY_VERSION"

if [ ! -f "$VENV/.complete-$CELERY_VERSION" ]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # Celery's requirements/test.txt, less what the unit suite does not need (pytest-celery's
    # docker extras, mypy, pre-commit) and less pytest-rerunfailures, whose xdist server
    # thread trips Celery's lingering-thread check on every later test; plus kombu_like's
    # own optional dependencies so both runs import the same things.
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}" \
        pytest==9.1.1 pytest-subtests==0.15.0 pytest-timeout==2.4.0 pytest-click==1.1.0 \
        pytest-order==1.5.0 pytest-xdist freezegun==1.5.5 "boto3>=1.43" moto==5.2.3 \
        msgpack pyyaml pymongo pydantic cryptography zstandard brotli "backports-zstd; python_version<'3.14'"
    touch "$VENV/.complete-$CELERY_VERSION"
fi

if [ ! -d "$SRC/t/unit" ]; then
    # the sdist ships the test suite; the wheel does not
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
        -d "$WORKDIR" "$CELERY_PIN"
    tar -xzf "$WORKDIR/celery-$CELERY_VERSION.tar.gz" -C "$WORKDIR"
fi

ALIAS_DIR="$WORKDIR/alias"
mkdir -p "$ALIAS_DIR"
cat >"$ALIAS_DIR/sitecustomize.py" <<'EOF'
import os

if os.environ.get("KOMBU_LIKE_ALIAS") == "1":
    import kombu_like.alias

    kombu_like.alias.install()
EOF

SELECTION=("$@")
[ ${#SELECTION[@]} -eq 0 ] && SELECTION=(t/unit)
XDIST=()
[ "$JOBS" != 0 ] && XDIST=(-n "$JOBS")

run() {  # run SIDE ALIAS PYTHONPATH
    local side="$1" alias="$2" path="$3"
    echo "== Celery $CELERY_VERSION t/unit on $side"
    # its own process group: some of Celery's tests fork children that outlive the run,
    # and they are ended with it (only this run's processes are in the group)
    set -m
    (cd "$SRC" && KOMBU_LIKE_ALIAS="$alias" PYTHONPATH="$path" exec "$VENV/bin/python" -m pytest \
        -p no:cacheprovider -q -rfE --timeout=120 "${XDIST[@]}" "${SELECTION[@]}" \
        >"$WORKDIR/report-$side.txt" 2>&1) &
    local pid=$!
    set +m
    wait "$pid" || true
    kill -- "-$pid" 2>/dev/null || true
    tail -n 1 "$WORKDIR/report-$side.txt"
    grep -E '^(FAILED|ERROR) ' "$WORKDIR/report-$side.txt" | sed -E 's/ - .*//' | sort -u \
        >"$WORKDIR/failing-$side.txt" || true
}

[ "$ONLY" != kombu_like ] && run kombu 0 ""
[ "$ONLY" != kombu ] && run kombu_like 1 "$ALIAS_DIR:$REPO"

echo "== failing only on kombu_like ($(comm -13 "$WORKDIR/failing-kombu.txt" "$WORKDIR/failing-kombu_like.txt" | wc -l)):"
comm -13 "$WORKDIR/failing-kombu.txt" "$WORKDIR/failing-kombu_like.txt"
echo "== failing only on Kombu ($(comm -23 "$WORKDIR/failing-kombu.txt" "$WORKDIR/failing-kombu_like.txt" | wc -l)):"
comm -23 "$WORKDIR/failing-kombu.txt" "$WORKDIR/failing-kombu_like.txt"
echo "(reports: $WORKDIR/report-kombu.txt, $WORKDIR/report-kombu_like.txt)"
