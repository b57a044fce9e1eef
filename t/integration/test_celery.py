"""Celery 5.7 runs unchanged on kombu_like: a real worker, real tasks, real results.

The worker runs as its users run it -- ``celery -A app worker`` (prefork pool, under
``python -m kombu_like.alias``) for Redis and RabbitMQ, and a worker thread in the client
process for ``memory://`` (its broker lives in one process) -- and a client process sends
tasks.  Celery lives in its own cached virtualenv (``frameworks/venvs.py``).  The workers
on Redis and RabbitMQ run Celery's production loop, ``asynloop`` (Kombu's Hub over the
broker sockets, the pool's pipes and the timers), which Celery chooses only for a transport
that implements Kombu's event-loop protocol; the tests check that it did.  On ``memory://``
the worker runs ``synloop``, as on Kombu's memory transport, unless the transport's
``event_loop`` option asks for the hub.  A last group
of tests sends tasks from a client on the real Kombu 5.7 to the kombu_like worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from .frameworks.harness import Driver, RemoteError, Worker, unique_suffix
from .frameworks.venvs import framework_python
from .test_amqp import connection_pids, rabbitmqctl

# the first run builds Celery's virtualenv inside the first test's setup
pytestmark = [pytest.mark.timeout(900), pytest.mark.redis, pytest.mark.amqp]

SCENARIOS = "t.integration.frameworks.celery_scenarios"
APP = "t.integration.frameworks.celery_app"
READY = r"\bready\."


@dataclass
class CeleryRun:
    broker: str
    env: dict[str, str]
    driver: Driver
    hostname: str
    worker: Worker | None


@pytest.fixture(scope="module")
def celery_python() -> Path:
    return framework_python("celery")


def _broker_url(request: pytest.FixtureRequest, broker: str) -> str:
    if broker == "memory":
        return "memory://"
    if broker == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("amqp_url"))


def _worker_cmd(celery_python: Path, hostname: str, pool: str, *options: str) -> list[str]:
    """``celery -A APP worker`` with kombu_like standing in for Kombu."""
    return [
        *(str(celery_python), "-m", "kombu_like.alias", "-m", "celery", "-A", APP, "worker"),
        *("-P", pool, "-n", hostname, "-l", "INFO", *options),
    ]


def _result_backend(request: pytest.FixtureRequest, broker: str) -> str:
    # chords need a backend that stores results (rpc:// cannot); Redis is the common choice
    # next to either broker, memory:// keeps everything in the one process
    if broker == "memory":
        return "cache+memory://"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture(scope="module", params=["memory", "redis", "amqp"])
def celery_run(request: pytest.FixtureRequest, celery_python: Path) -> Iterator[CeleryRun]:
    broker = request.param
    namespace = f"kl{unique_suffix()}"
    env = {
        "KL_BROKER_URL": _broker_url(request, broker),
        "KL_NAMESPACE": namespace,
        "KL_QUEUE": f"{namespace}.tasks",
        "KL_RESULT_BACKEND": _result_backend(request, broker),
    }
    hostname = f"{namespace}@localhost"
    worker = None
    if broker != "memory":
        # remote control needs only the worker's pidbox; mingle (a second spent asking other
        # workers for state at start-up) and gossip (watching other workers' events) add
        # nothing a test here checks
        options = ("-c", "2", "--without-mingle", "--without-gossip")
        worker = Worker(_worker_cmd(celery_python, hostname, "prefork", *options), env, ready_pattern=READY)
    driver = Driver(celery_python, SCENARIOS, env)
    try:
        if worker is None:
            driver.call("start_thread_worker", hostname)
        yield CeleryRun(broker, env, driver, hostname, worker)
    finally:
        driver.close()
        if worker is not None:
            code = worker.stop()
            assert code == 0, f"worker did not shut down cleanly ({code}):\n{worker.output.tail()}"


def test_worker_and_client_use_kombu_like(celery_run: CeleryRun) -> None:
    libraries = celery_run.driver.call("libraries")
    assert libraries["client"] == {"kombu": "kombu_like", "connection": "kombu_like.connection"}
    assert libraries["worker"]["kombu"] == "kombu_like"
    assert libraries["worker"]["transport"].startswith("kombu_like.transport.")


def test_worker_runs_kombus_event_loop(celery_run: CeleryRun) -> None:
    # Celery picks asynloop (its Hub over the broker sockets, pool pipes and timers) only
    # when the transport implements Kombu's event-loop protocol; otherwise synloop -- the
    # choice it makes on Kombu's memory transport, which test suites on memory:// rely on
    expected = {"loop": "synloop", "hub": False} if celery_run.broker == "memory" else {"loop": "asynloop", "hub": True}
    assert celery_run.driver.call("worker_loop", celery_run.hostname) == expected


def test_memory_event_loop_option_gives_the_worker_its_hub(celery_python: Path) -> None:
    namespace = f"kl{unique_suffix()}"
    env = {
        "KL_BROKER_URL": "memory://",
        "KL_MEMORY_EVENT_LOOP": "1",
        "KL_NAMESPACE": namespace,
        "KL_QUEUE": f"{namespace}.tasks",
        "KL_RESULT_BACKEND": "cache+memory://",
    }
    hostname = f"{namespace}@localhost"
    driver = Driver(celery_python, SCENARIOS, env)
    try:
        driver.call("start_thread_worker", hostname)
        assert driver.call("worker_loop", hostname) == {"loop": "asynloop", "hub": True}
        assert driver.call("delay_get", 4, 5) == 9
    finally:
        driver.close()


def test_delay_and_get(celery_run: CeleryRun) -> None:
    assert celery_run.driver.call("delay_get", 2, 3) == 5


def test_apply_async_with_headers_and_priority(celery_run: CeleryRun) -> None:
    seen = celery_run.driver.call("apply_async_options", "x-123", 7)
    assert seen["custom"] == "x-123"
    assert seen["headers"]["custom"] == "x-123"
    assert seen["priority"] == 7


def test_countdown_and_eta_tasks_are_listed_as_scheduled_and_run_no_earlier_than_asked(
    celery_run: CeleryRun,
) -> None:
    # both wait in the worker together, so one wait covers both; a worker that ignored either
    # would run it within a few milliseconds of the send.  The wait leaves a loaded machine
    # time to deliver both tasks and answer ``inspect scheduled`` before they are due.
    times = celery_run.driver.call("scheduled_tasks", celery_run.hostname, 2.5)
    assert times["scheduled"] == times["ids"]
    assert times["countdown_ran"] - times["sent"] >= 2.5 - 0.05
    assert times["eta_ran"] >= times["eta"] - 0.05


def test_retry_until_success(celery_run: CeleryRun) -> None:
    assert celery_run.driver.call("retry", 2) == 2


def test_failure_propagates_to_the_caller(celery_run: CeleryRun) -> None:
    outcome = celery_run.driver.call("failure", "kaboom 42")
    assert outcome["type"] == "ValueError"
    assert outcome["message"] == "kaboom 42"
    assert outcome["state"] == "FAILURE"
    assert "ValueError" in outcome["traceback"]


def test_failure_returned_when_not_propagated(celery_run: CeleryRun) -> None:
    outcome = celery_run.driver.call("failure_not_propagated", "quiet")
    assert outcome == {"state": "FAILURE", "value_type": "ValueError", "value": "quiet"}


def test_chain(celery_run: CeleryRun) -> None:
    assert celery_run.driver.call("chain_of_adds", 1, 2, 3, 4) == 10


def test_group(celery_run: CeleryRun) -> None:
    assert celery_run.driver.call("group_of_adds", 6) == [0, 2, 4, 6, 8, 10]


def test_chord(celery_run: CeleryRun) -> None:
    assert celery_run.driver.call("chord_sum", 5) == 20


def test_remote_control_ping(celery_run: CeleryRun) -> None:
    assert celery_run.driver.call("ping", celery_run.hostname) == [{celery_run.hostname: {"ok": "pong"}}]


def test_remote_control_inspect_registered(celery_run: CeleryRun) -> None:
    registered = celery_run.driver.call("registered", celery_run.hostname)
    assert set(registered) == {celery_run.hostname}
    names = registered[celery_run.hostname]
    ours = {f"{APP}.{name}" for name in ("add", "tsum", "flaky", "fail", "echo_request")}
    assert ours <= {n.split(" ")[0] for n in names}


def test_remote_control_inspect_active_queues(celery_run: CeleryRun) -> None:
    reply = celery_run.driver.call("inspect", celery_run.hostname, "active_queues")
    queues = reply[celery_run.hostname]
    assert [q["name"] for q in queues] == [celery_run.env["KL_QUEUE"]]
    assert queues[0]["bindings"] == [] and queues[0]["exchange"]["name"] == celery_run.env["KL_QUEUE"]


def test_remote_control_inspect_stats(celery_run: CeleryRun) -> None:
    stats = celery_run.driver.call("inspect", celery_run.hostname, "stats")[celery_run.hostname]
    assert stats["broker"]["transport"] == celery_run.broker
    assert stats["pool"]["max-concurrency"] == (1 if celery_run.broker == "memory" else 2)


def test_remote_control_revoke(celery_run: CeleryRun) -> None:
    outcome = celery_run.driver.call("revoke_before_eta", 2.0)
    log = celery_run.worker.output.tail() if celery_run.worker else ""
    assert outcome == {"revoked": True, "state": "REVOKED", "error": "TaskRevokedError"}, log


def test_unknown_scenario_errors_surface(celery_run: CeleryRun) -> None:
    # the harness itself must not swallow failures: an error in the client reaches the test
    with pytest.raises(RemoteError, match="AttributeError"):
        celery_run.driver.call("no_such_scenario")


@contextlib.contextmanager
def _kombu_client(celery_run: CeleryRun, celery_python: Path) -> Iterator[Driver]:
    """A scenario client on the real Kombu 5.7 (no alias) beside the run's worker, closed after use."""
    kombu_client = Driver(celery_python, SCENARIOS, celery_run.env, alias=False)
    try:
        yield kombu_client
    finally:
        kombu_client.close()


@pytest.mark.interop
@pytest.mark.parametrize("celery_run", ["redis", "amqp"], indirect=True)
def test_kombu_client_and_kombu_like_worker_interoperate(celery_run: CeleryRun, celery_python: Path) -> None:
    with _kombu_client(celery_run, celery_python) as kombu_client:
        libraries = kombu_client.call("libraries")
        assert libraries["client"]["kombu"] == "kombu"  # the real Kombu 5.7
        assert libraries["worker"]["kombu"] == "kombu_like"
        assert kombu_client.call("delay_get", 20, 22) == 42
        assert kombu_client.call("chord_sum", 4) == 12
        assert kombu_client.call("ping", celery_run.hostname) == [{celery_run.hostname: {"ok": "pong"}}]
        assert kombu_client.call("retry", 1) == 1


@pytest.fixture(scope="module", params=["redis", "amqp"])
def celery_rpc_run(request: pytest.FixtureRequest, celery_python: Path) -> Iterator[CeleryRun]:
    """A solo-pool worker whose results travel back over the broker (``rpc://``)."""
    namespace = f"kl{unique_suffix()}"
    env = {
        "KL_BROKER_URL": _broker_url(request, request.param),
        "KL_NAMESPACE": namespace,
        "KL_QUEUE": f"{namespace}.tasks",
        "KL_RESULT_BACKEND": "rpc://",
    }
    hostname = f"{namespace}@localhost"
    worker = Worker(
        _worker_cmd(celery_python, hostname, "solo", "--without-mingle", "--without-gossip"), env, ready_pattern=READY
    )
    driver = Driver(celery_python, SCENARIOS, env)
    try:
        yield CeleryRun(request.param, env, driver, hostname, worker)
    finally:
        driver.close()
        code = worker.stop()
        assert code == 0, f"worker did not shut down cleanly ({code}):\n{worker.output.tail()}"


def test_rpc_backend_results_and_failures(celery_rpc_run: CeleryRun) -> None:
    driver = celery_rpc_run.driver
    assert driver.call("worker_loop", celery_rpc_run.hostname) == {"loop": "asynloop", "hub": True}
    assert driver.call("delay_get", 5, 6) == 11
    assert driver.call("group_of_adds", 4) == [0, 2, 4, 6]
    outcome = driver.call("failure", "over rpc")
    assert (outcome["type"], outcome["message"], outcome["state"]) == ("ValueError", "over rpc", "FAILURE")
    # a worker ignoring the countdown would run the task within milliseconds
    times = driver.call("countdown", 0.5)
    assert times["ran"] - times["sent"] >= 0.5 - 0.05


# -- the worker's broker connections cut under it, then a warm shutdown -------------------------
def _cut_connections(broker: str, url: str, name: str) -> int:
    """Close every broker connection named ``name`` from the server side; how many there were."""
    if broker == "redis":
        with redis.Redis.from_url(url) as client:
            ids = [c["id"] for c in client.client_list() if c.get("name") == name]
            for client_id in ids:
                client.client_kill_filter(_id=client_id)
            return len(ids)
    pids = connection_pids(name)
    # each rabbitmqctl call starts an Erlang VM (about a second): close them all at once
    with ThreadPoolExecutor(max(1, len(pids))) as pool:
        list(pool.map(lambda pid: rabbitmqctl("close_connection", pid, "cut by the test"), pids))
    return len(pids)


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_worker_reconnects_after_a_cut_and_shuts_down_warm(
    request: pytest.FixtureRequest, celery_python: Path, broker: str
) -> None:
    redis_url = str(request.getfixturevalue("redis_url"))
    url = _broker_url(request, broker)
    namespace = f"kl{unique_suffix()}"
    env = {
        "KL_BROKER_URL": url,
        "KL_NAMESPACE": namespace,
        "KL_QUEUE": f"{namespace}.tasks",
        "KL_RESULT_BACKEND": redis_url,
    }
    hostname = f"{namespace}@localhost"
    connection_name = f"{namespace}-worker"
    worker = Worker(
        _worker_cmd(celery_python, hostname, "prefork", "-c", "2", "--without-mingle", "--without-gossip"),
        {**env, "KL_CONNECTION_NAME": connection_name},
        ready_pattern=READY,
    )
    driver = Driver(celery_python, SCENARIOS, env)
    try:
        assert driver.call("worker_loop", hostname) == {"loop": "asynloop", "hub": True}
        # two sleepers run in the pool and two wait in the worker's prefetch when the cut comes
        sleeping = driver.call("send_sleepers", 4, 0.5, redis_url, f"{namespace}.started")
        before = driver.call("send_adds", 0, 10)
        assert _cut_connections(broker, url, connection_name) >= 1
        during = driver.call("send_adds", 10, 10)
        assert worker.output.wait_for("Connection to broker lost", 30), worker.output.tail()
        # every connection of the worker was cut: an answer comes over a new one
        assert driver.call("ping_until_answered", hostname) == [{hostname: {"ok": "pong"}}], worker.output.tail()
        assert driver.call("worker_loop", hostname) == {"loop": "asynloop", "hub": True}
        after = driver.call("send_adds", 20, 10)
        results = driver.call("collect", sleeping + before + during + after, 60, timeout=70)
        assert results == [0.5] * 4 + [2 * i for i in range(30)], worker.output.tail()

        # a warm shutdown (SIGTERM) lets the task in flight finish and exits with 0
        last = driver.call("send_sleepers", 1, 0.5, redis_url, f"{namespace}.last")
        code = worker.stop()
        assert code == 0, worker.output.tail()
        assert driver.call("collect", last) == [0.5]
    finally:
        driver.close()
        worker.stop()


# -- Celery's helpers over kombu, each run by a kombu_like client and, where a broker is shared,
# -- by a client on the real Kombu 5.7 as well: the outcomes must match ------------------------
def _on_both(
    celery_run: CeleryRun, celery_python: Path, name: str, *args: object, kombu_args: tuple[object, ...] | None = None
) -> tuple[object, object | None]:
    """The scenario's outcome on a kombu_like client and (not on memory://, which lives in one
    process) on a Kombu client, which gets ``kombu_args`` when given."""
    ours = celery_run.driver.call(name, *args, timeout=120)
    if celery_run.broker == "memory":
        return ours, None
    with _kombu_client(celery_run, celery_python) as kombu_client:
        return ours, kombu_client.call(name, *(args if kombu_args is None else kombu_args), timeout=120)


def test_beat_releases_its_connection_and_channel_on_close(celery_run: CeleryRun, celery_python: Path) -> None:
    outcome, kombu_outcome = _on_both(celery_run, celery_python, "beat_sends_then_closes", 4, 5)
    assert kombu_outcome in (None, outcome)
    assert outcome == {
        "result": 9,
        "open": {"connected": True, "channel_open": True},
        "closed": {"connected": False, "channel_open": False, "forgotten": True},
        "again": 9,
    }


def test_producer_pool_setup_and_limit(celery_run: CeleryRun, celery_python: Path) -> None:
    outcome, kombu_outcome = _on_both(celery_run, celery_python, "producer_pool_limits", 2, True, kombu_args=(2, False))
    assert outcome == {
        "limit": 2,
        "free": 2,
        "distinct": 2,
        "over_limit": "LimitExceeded",
        "waited": 0.5,
        "reused": True,
        "result": 4,
    }
    if kombu_outcome is not None:
        # Kombu's pool lists its free slots twice after Celery resizes it (4), and blocks for
        # good on a third producer, so that step runs on kombu_like only
        assert kombu_outcome == {"limit": 2, "free": 4, "distinct": 2, "reused": True, "result": 4}


def test_event_dispatcher_enable_and_disable(celery_run: CeleryRun, celery_python: Path) -> None:
    outcome, kombu_outcome = _on_both(celery_run, celery_python, "event_dispatcher_toggle")
    assert kombu_outcome in (None, outcome)
    # Celery drops the producer; the connection's default channel stays for others
    assert outcome == {
        "received": ["worker-kl-one", "worker-kl-two"],
        "disabled": {"enabled": False, "producer": False, "channel_open": True},
        "reenabled": True,
        "receiver_stopped": True,
    }


@pytest.mark.parametrize("celery_run", ["redis", "amqp"], indirect=True)
@pytest.mark.parametrize("strategy", ["round-robin", "shuffle"])
def test_failover_strategy_selected_by_name(celery_run: CeleryRun, celery_python: Path, strategy: str) -> None:
    dead = "redis://127.0.0.1:1/0" if celery_run.broker == "redis" else "amqp://guest:guest@127.0.0.1:1//"
    outcome, kombu_outcome = _on_both(celery_run, celery_python, "failover_by_name", strategy, dead, 20, 22)
    assert outcome == kombu_outcome == {"strategy_callable": True, "result": 42}


@pytest.mark.parametrize("celery_run", ["redis", "amqp"], indirect=True)
def test_unknown_failover_strategy_name_with_alternates(celery_run: CeleryRun, celery_python: Path) -> None:
    dead = "redis://127.0.0.1:1/0" if celery_run.broker == "redis" else "amqp://guest:guest@127.0.0.1:1//"
    with _kombu_client(celery_run, celery_python) as kombu_client:
        for client in (celery_run.driver, kombu_client):
            with pytest.raises(RemoteError) as info:
                client.call("failover_by_name", "foo-bar", dead, 1, 1)
            assert info.value.name == "TypeError"


def test_task_migration_helpers(celery_run: CeleryRun, celery_python: Path) -> None:
    outcome, kombu_outcome = _on_both(celery_run, celery_python, "migrate_between_queues", 3)
    assert kombu_outcome in (None, outcome)
    assert outcome == {"moved_by_id": 3, "migrated": 3, "results": [0, 2, 4], "by_id": 101}
