"""A Celery worker's prefetch follows its pool size on kombu_like, on RabbitMQ and Redis.

Celery sets its prefetch to ``processes * worker_prefetch_multiplier`` and raises it when the
pool grows (``pool_grow``, autoscale).  On RabbitMQ the raise reaches the consumer already
running only when made channel-wide, which Celery does when the connection's
``qos_semantics_matches_spec`` is false -- a property it reads without calling.  The worker
here runs as users run it (prefork, ``celery -A ... worker`` under ``kombu_like.alias``);
its tasks hold their process until released, so what it took from the broker stays
countable: the queue's ready messages, read from the broker.  On Redis the window is the
channel's whichever way Celery asks; there the test shows the transport applies a new
window to a consumer already running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from kombu_like import Connection

from .frameworks.harness import Driver, Worker, unique_suffix
from .frameworks.venvs import framework_python
from .test_amqp import connection_pids, rabbitmqctl

pytestmark = [pytest.mark.timeout(900), pytest.mark.redis, pytest.mark.amqp]

APP = "t.integration.frameworks.celery_qos_app"
SCENARIOS = "t.integration.frameworks.celery_qos_scenarios"
MULTIPLIER = 4
SENT = 12
WAIT = 15.0


def _wait_for(read: Callable[[], int], expected: int, log: Callable[[], str]) -> None:
    # the broker tells no one when a consumer takes a message: read the count until it shows
    deadline = time.monotonic() + WAIT
    while (value := read()) != expected:
        assert time.monotonic() < deadline, f"{value} ready, not {expected}, after {WAIT}s; worker log:\n{log()}"
        time.sleep(0.02)


def _channel_prefetch(connection_name: str) -> list[tuple[int, int]]:
    """``(prefetch_count, global_prefetch_count)`` of each channel of the connections named so."""
    # each rabbitmqctl call starts an Erlang VM: both at once
    with ThreadPoolExecutor(2) as pool:
        connections = pool.submit(connection_pids, connection_name)
        channels = pool.submit(rabbitmqctl, "list_channels", "connection", "prefetch_count", "global_prefetch_count")
        pids, rows = set(connections.result()), [line.split("\t") for line in channels.result().splitlines()]
    assert pids, f"no RabbitMQ connection named {connection_name}"
    return sorted((int(row[1]), int(row[2])) for row in rows if row[0] in pids)


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_pool_grow_raises_the_prefetch_of_the_running_consumer(request: pytest.FixtureRequest, broker: str) -> None:
    celery_python: Path = framework_python("celery")
    redis_url = str(request.getfixturevalue("redis_url"))
    url = redis_url if broker == "redis" else str(request.getfixturevalue("amqp_url"))
    namespace = f"kl{unique_suffix()}"
    queue = f"{namespace}.tasks"
    started_key, release_key = f"{namespace}.started", f"{namespace}.release"
    connection_name = f"{namespace}-worker"
    env = {"KL_BROKER_URL": url, "KL_NAMESPACE": namespace, "KL_QUEUE": queue, "KL_RESULT_BACKEND": redis_url}
    hostname = f"{namespace}@localhost"
    worker = Worker(
        [
            *(str(celery_python), "-m", "kombu_like.alias", "-m", "celery", "-A", APP, "worker", "-P", "prefork"),
            *("-c", "1", "--prefetch-multiplier", str(MULTIPLIER), "-n", hostname, "-l", "INFO"),
            *("--without-mingle", "--without-gossip"),
        ],
        {**env, "KL_CONNECTION_NAME": connection_name},
        ready_pattern=r"\bready\.",
    )
    client = redis.Redis.from_url(redis_url, socket_timeout=WAIT + 5)
    broker_conn = Connection(url)
    driver: Driver | None = None
    try:
        driver = Driver(celery_python, SCENARIOS, env)
        assert driver.call("worker_loop", hostname) == {"loop": "asynloop", "hub": True}

        def ready() -> int:
            return int(broker_conn.default_channel.queue_declare(queue=queue, passive=True).message_count)

        # one process: the prefetch window is MULTIPLIER messages, running or reserved
        ids = driver.call("send_held", SENT, redis_url, started_key, release_key)
        assert client.blpop([started_key], timeout=WAIT) is not None, worker.output.tail()
        _wait_for(ready, SENT - MULTIPLIER, worker.output.tail)

        # a second process doubles the window of the consumer already running.  Celery starts
        # the process on its next pool check (every 5 s); the window grows without waiting
        assert driver.call("pool_grow", hostname, 1) == [{hostname: {"ok": "pool will grow"}}]
        _wait_for(ready, SENT - 2 * MULTIPLIER, worker.output.tail)
        # the worker answers after its loop had every chance to take more than its window
        counts = driver.call("inspect_counts", hostname)
        assert counts["active"] + counts["reserved"] == 2 * MULTIPLIER, counts
        assert ready() == SENT - 2 * MULTIPLIER
        if broker == "amqp":
            # RabbitMQ's own account: the task channel's prefetch is channel-wide, at the new size
            # (the control channel sets none)
            prefetch = _channel_prefetch(connection_name)
            assert [p for p in prefetch if p != (0, 0)] == [(0, 2 * MULTIPLIER)], prefetch

        # released, every task runs to completion: nothing was lost on the way
        client.rpush(release_key, *["go"] * SENT)
        assert driver.call("collect", ids) == [True] * SENT
        assert ready() == 0
        code = worker.stop()
        assert code == 0, worker.output.tail()
    finally:
        if driver is not None:
            driver.close()
        worker.stop()
        client.delete(started_key, release_key)
        client.close()
        with Connection(url) as admin:
            admin.default_channel.queue_delete(queue=queue)
        broker_conn.release()
