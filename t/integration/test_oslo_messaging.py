"""oslo.messaging (OpenStack's RPC) runs on kombu_like.

Two checks: oslo.messaging's own rabbit-driver unit tests (which run on
``kombu+memory:////``) under the ``kombu`` alias, and RPC call/cast between a server and a
client over RabbitMQ.  oslo.messaging lives in its own cached virtualenv
(``frameworks/venvs.py``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from t.early import Early, ProcessRun

from .frameworks.harness import Driver, unique_suffix
from .frameworks.venvs import REPO_ROOT, framework_python, process_env

pytestmark = [pytest.mark.timeout(900)]

RUNNER = REPO_ROOT / "t" / "integration" / "frameworks" / "oslo_runner.py"


def _unit_run(workdir: Path) -> ProcessRun:
    return ProcessRun(
        [str(framework_python("oslo")), "-m", "kombu_like.alias", str(RUNNER), str(workdir / "outcomes.json")],
        workdir,
        env=process_env(),
    )


#: oslo.messaging's rabbit-driver unit tests: about 30 s, nearly all of it in their own
#: sleeps and timeouts, so they run while other tests do
UNIT_RUN = Early("oslo", ("test_oslo_messaging.py::test_rabbit_driver_unit_tests_pass_on_kombu_like",), _unit_run)


@pytest.fixture(scope="module")
def oslo_python() -> Path:
    return framework_python("oslo")


def test_rabbit_driver_unit_tests_pass_on_kombu_like(request: pytest.FixtureRequest) -> None:
    run = UNIT_RUN.run(request)
    returncode, output = run.wait(timeout=800)
    out = run.workdir / "outcomes.json"
    assert out.exists(), f"runner failed ({returncode}):\n{output[-5000:]}"
    report = json.loads(out.read_text())
    assert report["kombu"] == "kombu_like"
    outcomes = report["outcomes"]
    counts = Counter(outcome for outcome, _ in outcomes.values())
    assert len(outcomes) >= 300, counts  # the suite really ran (343 tests in 18.3.1)
    failed = {test: detail[-1500:] for test, (outcome, detail) in outcomes.items() if outcome in ("error", "fail")}
    assert not failed, "\n\n".join(f"{test}:\n{detail}" for test, detail in failed.items())
    assert counts["ok"] == len(outcomes) - counts["skip"]


@pytest.fixture(scope="module")
def oslo_rpc(oslo_python: Path, amqp_url: str) -> Iterator[Driver]:
    env = {"KL_AMQP_URL": amqp_url, "KL_OSLO_NAMESPACE": f"kl{unique_suffix()}"}
    driver = Driver(oslo_python, "t.integration.frameworks.oslo_scenarios", env)
    try:
        assert driver.call("start_server") == "started"
        yield driver
    finally:
        driver.close()


@pytest.mark.amqp
def test_rpc_call_over_rabbitmq(oslo_rpc: Driver) -> None:
    assert oslo_rpc.call("call", "add", x=20, y=22) == 42
    assert oslo_rpc.call("call", "whoami", {"user": "ann"}) == {"kombu": "kombu_like", "user": "ann"}


@pytest.mark.amqp
def test_rpc_cast_over_rabbitmq(oslo_rpc: Driver) -> None:
    oslo_rpc.call("cast", "remember", value=7)
    oslo_rpc.call("cast", "remember", value=8)
    assert sorted(oslo_rpc.call("remembered_until", 2, 20)) == [7, 8]


@pytest.mark.amqp
def test_rpc_remote_error_reaches_the_caller(oslo_rpc: Driver) -> None:
    assert oslo_rpc.call("remote_failure", "bad value 3") == {"type": "ValueError", "message": "bad value 3"}
