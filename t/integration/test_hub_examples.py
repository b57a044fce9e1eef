"""Programs written for Kombu's event loop run unchanged on kombu_like under the import alias
(``python -m kombu_like.alias program.py``), and print what they print on Kombu itself.

The program is ``docs/examples/hub_consume.py`` (shown in the event-loop guide): a
connection registered with a :class:`Hub` before anything else, a consumer, a publish on
that same connection, and ``hub.run_forever()`` until the message arrives.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kombu_like import Connection

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "docs" / "examples" / "hub_consume.py"
EXPECTED = "sent\nreceived: hello world\n"


def run(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("broker", "on_kombu"),
    [
        pytest.param("amqp", True, marks=pytest.mark.amqp),
        pytest.param("redis", True, marks=pytest.mark.redis),
        # Kombu's memory transport has no event loop support: the program gives up there.
        # kombu_like's declares none either (frameworks pick their loop by it, as on Kombu),
        # yet a hub the program registers drives it
        pytest.param("memory", False),
    ],
)
def test_kombus_hub_program_runs_unchanged_under_the_alias(
    request: pytest.FixtureRequest, broker: str, on_kombu: bool
) -> None:
    url = "memory://" if broker == "memory" else str(request.getfixturevalue(f"{broker}_url"))
    if broker != "memory" and not Connection(url).transport.implements.asynchronous:
        pytest.skip(f"{broker}:// does not declare implements.asynchronous")
    name = f"hub-example-{uuid.uuid4().hex[:8]}"
    assert run("-m", "kombu_like.alias", str(PROGRAM), url, name) == EXPECTED
    if on_kombu:
        assert run(str(PROGRAM), url, name + "-kombu") == EXPECTED
