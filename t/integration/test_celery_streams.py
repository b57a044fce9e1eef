"""Celery 5.7 on ``redis+streams://``: a real prefork worker, tasks, retries, ETA, revoke --
on one Redis and on a Redis Cluster.

One worker per broker setup (``celery -A app worker -P prefork -c 2`` under
``python -m kombu_like.alias``), as in :mod:`.test_celery`: on the Redis of the suite, and
on the session's Redis Cluster (three masters, ``t/redis_cluster.py``) with the transport's
``cluster`` option, where the task queue, the pidbox and reply queues of remote control
and the exchanges' bindings spread over the masters.  Celery's Redis result backend has no
cluster mode: the cluster run keeps its results on the suite's single Redis.  ETA and
countdown tasks wait in their queue's delayed sorted set in Redis, not in the worker's
memory: the tests check where a waiting task is and when the worker received it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from kombu_like.transport.redis_streams.keys import StreamKeys

from .frameworks.harness import Driver, Worker, unique_suffix
from .test_celery import APP, READY, CeleryRun, _worker_cmd

if TYPE_CHECKING:
    from t.redis_cluster import RedisClusterNodes

pytestmark = [pytest.mark.timeout(900), pytest.mark.redis]


@pytest.fixture(scope="module")
def celery_python() -> Path:
    from .frameworks.venvs import framework_python

    return framework_python("celery")


def _delete_single(redis_url: str, namespace: str) -> None:
    """The run's keys, and its queue and exchange names in the declared-names sets."""
    with redis.Redis.from_url(redis_url) as client:
        keys = [key for key in client.scan_iter(f"*{namespace}*", count=1000)]
        if keys:
            client.delete(*keys)
        names = StreamKeys()
        for listing in (names.queues, names.exchanges):
            ours = [name for name in client.smembers(listing) if namespace.encode() in name]
            if ours:
                client.srem(listing, *ours)


def _delete_cluster(cluster: RedisClusterNodes, prefix: str) -> None:
    """Every key under the run's ``global_keyprefix``, on every master."""
    for port in cluster.masters():
        with contextlib.closing(cluster.node(port).client()) as client:
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(key)


@pytest.fixture(scope="module", params=["single", pytest.param("cluster", marks=pytest.mark.redis_cluster)])
def streams_run(request: pytest.FixtureRequest, redis_url: str, celery_python: Path) -> Iterator[CeleryRun]:
    namespace = f"kl{unique_suffix()}"
    env = {
        "KL_NAMESPACE": namespace,
        "KL_QUEUE": f"{namespace}.tasks",
        "KL_RESULT_BACKEND": redis_url,
        "KL_RECEIPTS_KEY": f"{namespace}.receipts",
    }
    cluster: RedisClusterNodes | None = None
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster_session")
        cluster.heal()  # a master an earlier test killed runs again
        env["KL_BROKER_URL"] = cluster.url()
        # the prefix lets the run's keys be found (and deleted) on every master
        env["KL_BROKER_TRANSPORT_OPTIONS"] = json.dumps({"cluster": True, "global_keyprefix": f"{namespace}:"})
    else:
        env["KL_BROKER_URL"] = redis_url.replace("redis://", "redis+streams://", 1)
    hostname = f"{namespace}@localhost"
    options = ("-c", "2", "--without-mingle", "--without-gossip")
    worker = Worker(_worker_cmd(celery_python, hostname, "prefork", *options), env, ready_pattern=READY)
    driver = Driver(celery_python, "t.integration.frameworks.celery_scenarios", env)
    try:
        yield CeleryRun(f"redis+streams ({request.param})", env, driver, hostname, worker)
    finally:
        driver.close()
        code = worker.stop()
        with redis.Redis.from_url(redis_url) as client:
            client.delete(env["KL_RECEIPTS_KEY"])
        if cluster is not None:
            _delete_cluster(cluster, f"{namespace}:")
        else:
            _delete_single(redis_url, namespace)
        assert code == 0, f"worker did not shut down cleanly ({code}):\n{worker.output.tail()}"


def _keys(run: CeleryRun) -> StreamKeys:
    """The key names of the run's broker (its ``global_keyprefix``, if any)."""
    options = json.loads(run.env.get("KL_BROKER_TRANSPORT_OPTIONS", "{}"))
    return StreamKeys(options.get("global_keyprefix", ""))


def _log(run: CeleryRun) -> str:
    return run.worker.output.tail() if run.worker else ""


def test_worker_runs_its_event_loop_on_the_streams_transport(streams_run: CeleryRun) -> None:
    driver = streams_run.driver
    libraries = driver.call("libraries")
    assert libraries["client"]["kombu"] == "kombu_like"
    assert libraries["worker"]["kombu"] == "kombu_like"
    assert libraries["worker"]["transport"] == "kombu_like.transport.redis_streams"
    assert driver.call("worker_loop", streams_run.hostname) == {"loop": "asynloop", "hub": True}


def test_tasks_chords_and_failures(streams_run: CeleryRun) -> None:
    driver = streams_run.driver
    assert driver.call("delay_get", 2, 3) == 5
    assert driver.call("group_of_adds", 4) == [0, 2, 4, 6]
    assert driver.call("chord_sum", 4) == 12
    outcome = driver.call("failure", "on streams")
    assert (outcome["type"], outcome["message"], outcome["state"]) == ("ValueError", "on streams", "FAILURE")


def test_retries_wait_in_the_broker_and_succeed(streams_run: CeleryRun) -> None:
    # each retry is a new message with a 0.2 s countdown: delayed by the transport
    assert streams_run.driver.call("retry", 2) == 2, _log(streams_run)


def test_eta_task_waits_in_redis_and_reaches_the_worker_at_its_eta(streams_run: CeleryRun) -> None:
    delayed_key = _keys(streams_run).delayed(streams_run.env["KL_QUEUE"])
    outcome = streams_run.driver.call(
        "eta_waits_in_the_broker", streams_run.hostname, 2.0, delayed_key, streams_run.env["KL_RECEIPTS_KEY"]
    )
    assert outcome["looked_before_eta"], "the machine was too slow to look before the ETA"
    assert outcome["in_delayed_set"], outcome
    assert outcome["held_by_worker"] == [], outcome
    [received] = outcome["received"]
    # delivered when due (the Redis server's clock is this machine's), not at the send
    assert outcome["eta"] - 0.05 <= received <= outcome["eta"] + 1.0, outcome
    assert outcome["eta"] - 0.05 <= outcome["ran"], outcome


def test_countdown_task_runs_no_earlier_than_asked(streams_run: CeleryRun) -> None:
    times = streams_run.driver.call("countdown", 0.5)
    assert times["ran"] - times["sent"] >= 0.5 - 0.05


def test_revoked_eta_task_is_not_run(streams_run: CeleryRun) -> None:
    outcome = streams_run.driver.call("revoke_before_eta", 1.0)
    assert outcome == {"revoked": True, "state": "REVOKED", "error": "TaskRevokedError"}, _log(streams_run)
    # Celery marks it revoked at once; the message itself reaches the worker at its ETA
    delayed_key = _keys(streams_run).delayed(streams_run.env["KL_QUEUE"])
    outcome = streams_run.driver.call("revoke_eta_in_the_broker", 0.5, delayed_key)
    assert outcome["waited_in_delayed_set"] and outcome["left_delayed_set"], outcome
    assert outcome["state"] == "REVOKED", outcome
    assert streams_run.worker is not None
    assert streams_run.worker.output.wait_for(f"Discarding revoked task.*{outcome['id']}", 10), _log(streams_run)


def test_registered_tasks(streams_run: CeleryRun) -> None:
    registered = streams_run.driver.call("registered", streams_run.hostname)
    assert {f"{APP}.add", f"{APP}.stamp"} <= {n.split(" ")[0] for n in registered[streams_run.hostname]}


def test_a_task_longer_than_the_lease_runs_once_on_solo_workers(redis_url: str, celery_python: Path) -> None:
    # the complaint leases answer: a task running longer than the visibility timeout is
    # handed to a second worker.  Two solo-pool workers (each runs a task in its event
    # loop's thread, so the loop does nothing else meanwhile) with a 1 s lease share a
    # queue; a task of four leases is received once and runs once
    namespace = f"kl{unique_suffix()}"
    env = {
        "KL_NAMESPACE": namespace,
        "KL_QUEUE": f"{namespace}.tasks",
        "KL_RESULT_BACKEND": redis_url,
        "KL_RECEIPTS_KEY": f"{namespace}.receipts",
        "KL_BROKER_URL": redis_url.replace("redis://", "redis+streams://", 1),
        "KL_BROKER_TRANSPORT_OPTIONS": json.dumps({"lease": 1.0}),
    }
    options = ("--without-mingle", "--without-gossip", "--without-heartbeat")
    started_key = f"{namespace}.started"
    workers: list[Worker] = []
    driver = None
    try:
        for n in range(2):
            workers.append(
                Worker(_worker_cmd(celery_python, f"{namespace}-{n}@localhost", "solo", *options), env, READY)
            )
        driver = Driver(celery_python, "t.integration.frameworks.celery_scenarios", env)
        [task_id] = driver.call("send_sleepers", 1, 4.0, redis_url, started_key)
        assert driver.call("collect", [task_id]) == [4.0]
        with redis.Redis.from_url(redis_url) as client:
            receipts = [json.loads(raw)[0] for raw in client.lrange(env["KL_RECEIPTS_KEY"], 0, -1)]
            assert receipts == [task_id], "the task reached a worker more than once"
            assert client.llen(started_key) == 0, "the task started a second time"
    finally:
        if driver is not None:
            driver.close()
        codes = [worker.stop() for worker in workers]
        with redis.Redis.from_url(redis_url) as client:
            client.delete(env["KL_RECEIPTS_KEY"], started_key)
        _delete_single(redis_url, namespace)
    assert codes == [0, 0], [worker.output.tail() for worker in workers]
