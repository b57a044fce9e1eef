"""What ``import kombu_like`` does to a program: nothing it did not ask for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_library_logs_nothing_when_the_program_did_not_configure_logging() -> None:
    # without a handler of its own, Python's last-resort handler would print warnings
    result = run_python(
        "import logging, kombu_like\n"
        "logging.getLogger('kombu_like.rpc').error('handler raised')\n"
        "logging.getLogger('kombu_like').warning('warned')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_configured_logging_still_sees_library_records() -> None:
    result = run_python(
        "import logging, kombu_like\n"
        "logging.basicConfig(format='%(name)s %(message)s')\n"
        "logging.getLogger('kombu_like.rpc').error('handler raised')\n"
    )
    assert result.stderr == "kombu_like.rpc handler raised\n"
