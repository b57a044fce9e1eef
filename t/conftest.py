"""Shared test set-up: real brokers.

RabbitMQ and Redis are expected on 127.0.0.1 (``extra/start-brokers.sh`` starts them);
the SQS endpoint is moto's standalone server, started here on a free port.  A test that
needs a broker which is not there fails: a missing broker is never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from t.early import Early

if TYPE_CHECKING:
    from t.redis_cluster import RedisClusterNodes

AMQP_URL = os.environ.get("KOMBU_LIKE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("KOMBU_LIKE_REDIS_URL", "redis://127.0.0.1:6379/0")


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require(host: str, port: int, what: str) -> None:
    if not port_open(host, port):
        pytest.fail(f"{what} is not reachable on {host}:{port}; run extra/start-brokers.sh")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """URL of the RabbitMQ under test."""
    _require("127.0.0.1", 5672, "RabbitMQ")
    return AMQP_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the Redis under test."""
    _require("127.0.0.1", 6379, "Redis")
    return REDIS_URL


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """A moto SQS server on a free port, reached by boto3 over real HTTP."""
    exe = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
    if not os.path.exists(exe):
        pytest.fail('moto_server not found: pip install "moto[server]"')
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port, 0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("moto_server did not start")
        time.sleep(0.1)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test (or test run) uses, for queues, exchanges and key prefixes."""
    base = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"t_{base}_{uuid.uuid4().hex[:8]}"


def own_unacked_keys(name: str) -> dict[str, str]:
    """Redis transport options that give ``name`` an unacked store of its own.

    Every Redis consumer sweeps its unacked hash with its own ``visibility_timeout``: a
    test with a short one on the shared hash would give back messages that other tests,
    running at the same time or just before, still hold.  Pass this to every connection
    of such a test, and delete the two keys afterwards (:func:`delete_unacked_keys`).
    """
    return {"unacked_key": f"{name}.unacked", "unacked_index_key": f"{name}.unacked_index"}


def delete_unacked_keys(url: str, keys: dict[str, str]) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.delete(keys["unacked_key"], keys["unacked_index_key"])
    finally:
        client.close()


@pytest.fixture
def own_unacked(redis_url: str, unique_name: str) -> Iterator[dict[str, str]]:
    """:func:`own_unacked_keys` for this test, deleted when it ends."""
    keys = own_unacked_keys(unique_name)
    yield keys
    delete_unacked_keys(redis_url, keys)


@pytest.fixture(scope="session")
def redis_cluster_session() -> Iterator[RedisClusterNodes]:
    """A Redis Cluster (3 masters, 3 replicas) of the tests' own, started once per session
    when a test first asks for it (see ``t/redis_cluster.py``)."""
    from t.redis_cluster import start_cluster

    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def redis_cluster(redis_cluster_session: RedisClusterNodes) -> RedisClusterNodes:
    """The session's Redis Cluster, whole: a node an earlier test killed is running again."""
    redis_cluster_session.heal()
    return redis_cluster_session


# -- slow runs a test only checks, started as soon as the session knows it will need them (t/early.py)
def _early_runs() -> list[Early]:
    from t.integration.test_docs_on_brokers import BROKER_DOCS
    from t.integration.test_oslo_messaging import UNIT_RUN
    from t.unit.test_docs import DOCS_BUILD, TOY_TRANSPORT_RUN

    return [UNIT_RUN, DOCS_BUILD, TOY_TRANSPORT_RUN, BROKER_DOCS]


def pytest_collection_finish(session: pytest.Session) -> None:
    for early in _early_runs():
        early.begin(session)


def pytest_sessionfinish(session: pytest.Session) -> None:
    for early in _early_runs():
        early.end(session)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist each worker has its own session: the tests of the session's Redis
    Cluster run in one worker, so one cluster is started, not one per worker."""
    for item in items:
        uses_cluster = "redis_cluster_session" in getattr(item, "fixturenames", ())
        # a test that asks for the cluster only for some parameters says so with the mark
        if uses_cluster or item.get_closest_marker("redis_cluster") is not None:
            item.add_marker(pytest.mark.xdist_group("redis-cluster"))
