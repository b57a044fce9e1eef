"""What a Celery client does, one function per scenario (run in a driver process).

Every function returns plain data for the test to assert on.  ``start_thread_worker``
runs a worker in this process (needed for ``memory://``, whose broker lives in-process),
the way Celery's own ``celery.contrib.testing`` does.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from typing import Any

from celery import chain, chord, group
from celery.exceptions import TaskRevokedError

from .celery_app import add, app, echo_request, fail, flaky, kombu_in_use, sleeper, stamp, tsum

TIMEOUT = 30
#: how often a result is looked for where the backend is polled (``cache+memory://``; Redis
#: and ``rpc://`` deliver results and ignore it): Celery's default of 0.5 s cost every test
#: on memory:// half a second
POLL = 0.02

_stack = ExitStack()


def start_thread_worker(hostname: str) -> str:
    """Start a solo-pool worker in a thread of this process."""
    import celery.contrib.testing.tasks  # noqa: F401 - the ping task start_worker checks for
    from celery.contrib.testing.worker import start_worker

    _stack.enter_context(
        start_worker(
            app,
            pool="solo",
            concurrency=1,
            perform_ping_check=True,
            hostname=hostname,
            loglevel="WARNING",
            shutdown_timeout=20,
        )
    )
    return hostname


def shutdown() -> None:
    _stack.close()


def libraries() -> dict[str, Any]:
    import kombu

    return {
        "client": {"kombu": kombu.__name__, "connection": kombu.Connection.__module__},
        "worker": kombu_in_use.delay().get(interval=POLL, timeout=TIMEOUT),
    }


def delay_get(x: int, y: int) -> int:
    return int(add.delay(x, y).get(interval=POLL, timeout=TIMEOUT))


def apply_async_options(custom: str, priority: int) -> dict[str, Any]:
    result = echo_request.apply_async(headers={"custom": custom}, priority=priority)
    return dict(result.get(interval=POLL, timeout=TIMEOUT))


def countdown(seconds: float) -> dict[str, float]:
    sent = time.time()
    ran = stamp.apply_async(countdown=seconds).get(interval=POLL, timeout=TIMEOUT + seconds)
    return {"sent": sent, "ran": ran}


def retry(failures: int) -> int:
    return int(flaky.delay(failures).get(interval=POLL, timeout=TIMEOUT))


def failure(message: str) -> dict[str, Any]:
    result = fail.delay(message)
    try:
        result.get(interval=POLL, timeout=TIMEOUT)
    except Exception as exc:
        return {
            "type": type(exc).__name__,
            "message": str(exc),
            "state": result.state,
            "traceback": result.traceback or "",
        }
    return {"type": None}


def failure_not_propagated(message: str) -> dict[str, Any]:
    result = fail.delay(message)
    value = result.get(interval=POLL, timeout=TIMEOUT, propagate=False)
    return {"state": result.state, "value_type": type(value).__name__, "value": str(value)}


def chain_of_adds(start: int, *steps: int) -> int:
    signature = chain(add.s(start, steps[0]), *(add.s(step) for step in steps[1:]))
    return int(signature.apply_async().get(interval=POLL, timeout=TIMEOUT))


def group_of_adds(n: int) -> list[int]:
    return list(group(add.s(i, i) for i in range(n)).apply_async().get(interval=POLL, timeout=TIMEOUT))


def chord_sum(n: int) -> int:
    return int(chord((add.s(i, i) for i in range(n)), tsum.s()).apply_async().get(interval=POLL, timeout=TIMEOUT))


def ping(destination: str) -> list[Any]:
    return list(app.control.ping(destination=[destination], timeout=2.0) or [])


def ping_until_answered(destination: str, timeout: float = TIMEOUT) -> list[Any]:
    """Ping until the worker answers (it may be reconnecting) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    replies: list[Any] = []
    while not replies and time.monotonic() < deadline:
        replies = list(app.control.ping(destination=[destination], timeout=1.0) or [])
    return replies


def registered(destination: str) -> dict[str, list[str]]:
    return dict(app.control.inspect(destination=[destination], timeout=2.0).registered() or {})


def inspect(destination: str, command: str) -> dict[str, Any]:
    """The reply of ``celery inspect <command>`` from one worker."""
    return dict(getattr(app.control.inspect(destination=[destination], timeout=2.0), command)() or {})


def worker_loop(destination: str) -> dict[str, Any]:
    """Which loop the worker's consumer runs (``kl_loop``, a command of the test app)."""
    reply = app.control.inspect(destination=[destination], timeout=2.0)._request("kl_loop") or {}
    return dict(reply.get(destination, {}))


# results sent by one call and collected by a later one (the test acts on the broker between)
_pending: dict[str, Any] = {}


def send_adds(first: int, n: int) -> list[str]:
    """Send ``add(i, i)`` for i in first..first+n; the ids, to :func:`collect` later."""
    results = [add.delay(i, i) for i in range(first, first + n)]
    _pending.update((r.id, r) for r in results)
    return [r.id for r in results]


def send_sleepers(n: int, seconds: float, redis_url: str, started_key: str) -> list[str]:
    """Send ``n`` sleeper tasks and return once the first has started in the worker."""
    import redis

    results = [sleeper.delay(seconds, redis_url, started_key) for _ in range(n)]
    _pending.update((r.id, r) for r in results)
    with redis.Redis.from_url(redis_url, socket_timeout=TIMEOUT + 5) as client:
        if client.blpop([started_key], timeout=TIMEOUT) is None:
            raise TimeoutError(f"no sleeper task started within {TIMEOUT}s")
    return [r.id for r in results]


def collect(ids: list[str], timeout: float = TIMEOUT) -> list[Any]:
    """The results of tasks sent earlier, in the order of ``ids``."""
    deadline = time.monotonic() + timeout
    return [_pending.pop(i).get(interval=POLL, timeout=max(0.1, deadline - time.monotonic())) for i in ids]


def scheduled_tasks(destination: str, seconds: float) -> dict[str, Any]:
    """A countdown task and an ETA task waiting in the worker at once: what ``inspect
    scheduled`` lists while they wait, and when each ran (one wait for both)."""
    sent = time.time()
    by_countdown = stamp.apply_async(countdown=seconds)
    eta = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    by_eta = stamp.apply_async(eta=eta)
    ids = {by_countdown.id, by_eta.id}
    deadline = time.monotonic() + seconds
    seen: set[str] = set()
    while seen != ids and time.monotonic() < deadline:
        reply = app.control.inspect(destination=[destination], timeout=1.0).scheduled() or {}
        seen = {entry["request"]["id"] for entry in reply.get(destination, [])}
    return {
        "sent": sent,
        "eta": eta.timestamp(),
        "scheduled": sorted(seen),
        "ids": sorted(ids),
        "countdown_ran": by_countdown.get(interval=POLL, timeout=TIMEOUT + seconds),
        "eta_ran": by_eta.get(interval=POLL, timeout=TIMEOUT + seconds),
    }


def revoke_before_eta(seconds: float) -> dict[str, Any]:
    result = add.apply_async((1, 1), countdown=seconds)
    app.control.revoke(result.id)
    try:
        value = result.get(interval=POLL, timeout=TIMEOUT + seconds)
    except TaskRevokedError as exc:
        return {"revoked": True, "state": result.state, "error": type(exc).__name__}
    return {"revoked": False, "value": value}


# -- Celery's own helpers over kombu: beat, pools, events, failover, migration ------------------
def _is_open(channel: Any) -> bool:
    return bool(getattr(channel, "is_open", not getattr(channel, "closed", False)))


def beat_sends_then_closes(x: int, y: int) -> dict[str, Any]:
    """A beat scheduler sends a task on its own connection, then ``close()`` releases it."""
    from celery import beat

    scheduler = beat.Scheduler(app=app, lazy=True)
    connection = scheduler.connection
    producer = scheduler.producer
    channel = producer.channel
    entry = scheduler.Entry(name="kl-beat-add", task=add.name, args=(x, y), app=app, schedule=60.0)
    result = scheduler.apply_async(entry, producer=producer)
    value = result.get(interval=POLL, timeout=TIMEOUT)
    opened = {"connected": bool(connection.connected), "channel_open": _is_open(channel)}
    scheduler.close()
    closed = {
        "connected": bool(connection.connected),
        "channel_open": _is_open(channel),
        "forgotten": "connection" not in scheduler.__dict__ and "producer" not in scheduler.__dict__,
    }
    # the publishing resources come back on next use
    again = scheduler.apply_async(entry, producer=scheduler.producer).get(interval=POLL, timeout=TIMEOUT)
    scheduler.close()
    return {"result": value, "open": opened, "closed": closed, "again": again}


def producer_pool_limits(limit: int, over_limit: bool) -> dict[str, Any]:
    """Celery's producer pool at ``broker_pool_limit``: setup, reuse, and (``over_limit``) a
    producer more than the limit, which Kombu waits for forever and kombu_like refuses after
    ``broker_pool_acquire_timeout`` (docs/migrating-from-kombu.rst)."""
    from celery.exceptions import OperationalError as CeleryOperationalError

    saved = (app.conf.broker_pool_limit, app.conf.broker_pool_acquire_timeout)
    app.conf.broker_pool_limit = limit
    app.conf.broker_pool_acquire_timeout = 0.5
    app._pool = None
    app.amqp._producer_pool = None
    try:
        pool = app.amqp.producer_pool
        out: dict[str, Any] = {"limit": pool.limit, "free": len(pool._resource.queue)}
        held = [pool.acquire(block=True, timeout=5) for _ in range(limit)]
        out["distinct"] = len({id(p) for p in held})
        if over_limit:
            started = time.monotonic()
            try:
                with app.producer_or_acquire():
                    out["over_limit"] = "acquired"
            except CeleryOperationalError as exc:
                out["over_limit"] = type(exc.__cause__).__name__
            out["waited"] = round(time.monotonic() - started, 1)
        held[-1].release()
        with app.producer_or_acquire() as producer:
            out["reused"] = producer is held[-1]
            result = add.apply_async((limit, limit), producer=producer)
        out["result"] = result.get(interval=POLL, timeout=TIMEOUT)
        for producer in held[:-1]:
            producer.release()
        return out
    finally:
        app.conf.broker_pool_limit, app.conf.broker_pool_acquire_timeout = saved
        app._pool = None
        app.amqp._producer_pool = None


def event_dispatcher_toggle() -> dict[str, Any]:
    """Events sent while a dispatcher is enabled arrive; while disabled nothing is sent."""
    import threading

    received: list[str] = []
    ready = threading.Event()
    with app.connection_for_read() as rconn, app.connection_for_write() as wconn:
        receiver = app.events.Receiver(rconn, handlers={"*": lambda event: received.append(event["type"])})

        def capture() -> None:
            for _ in receiver.consume(limit=None, timeout=None, wakeup=False):
                ready.set()

        receiver.on_consume_ready = lambda *a, **kw: ready.set()  # type: ignore[method-assign]
        thread = threading.Thread(target=capture, daemon=True)
        thread.start()
        ready.wait(TIMEOUT)
        dispatcher = app.events.Dispatcher(wconn, enabled=True)
        channel = dispatcher.producer.channel
        dispatcher.send("worker-kl-one")
        dispatcher.disable()
        state = {
            "enabled": dispatcher.enabled,
            "producer": dispatcher.producer is not None,
            "channel_open": _is_open(channel),
        }
        dispatcher.send("worker-kl-dropped")
        dispatcher.enable()
        dispatcher.send("worker-kl-two")
        deadline = time.monotonic() + TIMEOUT
        while "worker-kl-two" not in received and time.monotonic() < deadline:
            time.sleep(0.05)
        receiver.should_stop = True
        # the receiver looks at should_stop between waits of up to a second: an event it
        # does not count (not "worker-kl-...") ends the wait at once
        dispatcher.send("worker-wake")
        thread.join(5)
        alive = thread.is_alive()
        dispatcher.close()
    return {
        "received": [t for t in received if t.startswith("worker-kl-")],
        "disabled": state,
        "reenabled": dispatcher.enabled,
        "receiver_stopped": not alive,
    }


def failover_by_name(strategy: str, dead_url: str, x: int, y: int) -> dict[str, Any]:
    """A client whose broker list starts with a dead URL, strategy chosen by name."""
    import os

    from celery import Celery

    client = Celery("kl_failover", broker=f"{dead_url};{os.environ['KL_BROKER_URL']}", backend=app.conf.result_backend)
    # 'shuffle' picks a URL at random for each attempt, and Kombu gives up when every attempt
    # draws the dead one: with a handful of attempts that happened in a few runs in a hundred,
    # with twelve it is about one in eight thousand
    client.conf.update(
        app.conf.table(with_defaults=False),
        broker_url=f"{dead_url};{os.environ['KL_BROKER_URL']}",
        broker_failover_strategy=strategy,
        broker_connection_max_retries=12,
        task_publish_retry_policy={"max_retries": 12, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.3},
    )
    try:
        conn = client.connection_for_write()
        out: dict[str, Any] = {"strategy_callable": callable(conn.failover_strategy)}
        result = client.send_task(add.name, (x, y))
        out["result"] = result.get(interval=POLL, timeout=TIMEOUT)
        return out
    finally:
        client.close()


def migrate_between_queues(n: int) -> dict[str, Any]:
    """Tasks parked in a queue no worker reads, moved to the worker's queue by Celery's helpers."""
    import os

    from celery.contrib.migrate import migrate_tasks, move_task_by_id

    dest = os.environ["KL_QUEUE"]
    parked = f"{dest}.parked.{os.urandom(3).hex()}"
    results = [add.apply_async((i, i), queue=parked) for i in range(n)]
    one_more = add.apply_async((100, 1), queue=parked)
    # one connection per helper: what a helper took and did not move goes back to the queue
    # when its connection closes, for the next helper to find
    with app.connection_for_write() as conn:
        moved = move_task_by_id(
            one_more.id, app.amqp.queues[dest], connection=conn, app=app, queues=[parked], timeout=0.5
        )
    with app.connection_for_write() as conn:
        state = migrate_tasks(conn, conn, queues={parked: dest}, app=app, ack_messages=True, timeout=0.5)
    with app.connection_for_write() as conn, conn.channel() as channel:
        channel.queue_delete(parked)
    # State.count: the messages each helper looked at (move_task_by_id moves the one it matches)
    return {
        "moved_by_id": getattr(moved, "count", moved),
        "migrated": getattr(state, "count", state),
        "results": [r.get(interval=POLL, timeout=TIMEOUT) for r in results],
        "by_id": one_more.get(interval=POLL, timeout=TIMEOUT),
    }


# -- ETA tasks on a broker that delays messages itself (redis+streams://) -------------------
def _broker_redis() -> Any:
    """A plain redis-py client of the broker's Redis (or Redis Cluster), to look at its keys."""
    import redis

    url = str(app.conf.broker_url).split(";")[0].replace("redis+streams://", "redis://", 1)
    if (app.conf.broker_transport_options or {}).get("cluster"):
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url)
    return redis.Redis.from_url(url)


def eta_waits_in_the_broker(destination: str, seconds: float, delayed_key: str, receipts_key: str) -> dict[str, Any]:
    """An ETA task sent ``seconds`` ahead: whether it waits in the broker's delayed set
    (``delayed_key``) or in the worker (``inspect scheduled``/``reserved``), when the
    worker received it (from the receipts the worker appends to ``receipts_key``) and ran it."""
    import json

    import redis

    eta = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    result = stamp.apply_async(eta=eta)
    task_id = result.id.encode()
    with _broker_redis() as broker, redis.Redis.from_url(app.conf.result_backend) as client:
        # while the task waits: the broker holds it, the worker does not
        in_delayed_set = any(task_id in member for member in broker.zrange(delayed_key, 0, -1))
        inspector = app.control.inspect(destination=[destination], timeout=1.0)
        held = [entry for entry in (inspector.scheduled() or {}).get(destination, [])]
        held += [entry for entry in (inspector.reserved() or {}).get(destination, [])]
        still_waiting = time.time() < eta.timestamp()
        ran = result.get(interval=POLL, timeout=TIMEOUT + seconds)
        receipts = [json.loads(raw) for raw in client.lrange(receipts_key, 0, -1)]
    return {
        "eta": eta.timestamp(),
        "in_delayed_set": in_delayed_set,
        "held_by_worker": [str(entry.get("request", entry).get("id")) for entry in held],
        "looked_before_eta": still_waiting,
        "received": [at for received_id, at in receipts if received_id == result.id],
        "ran": ran,
    }


def revoke_eta_in_the_broker(seconds: float, delayed_key: str) -> dict[str, Any]:
    """Revoke a task that waits ``seconds`` in the broker's delayed set, then wait past
    its ETA: where it was, and its state once the worker received it."""
    result = add.apply_async((1, 1), countdown=seconds)
    task_id = result.id.encode()
    app.control.revoke(result.id)
    with _broker_redis() as client:
        waiting = any(task_id in member for member in client.zrange(delayed_key, 0, -1))
        time.sleep(seconds + 1.0)
        left = any(task_id in member for member in client.zrange(delayed_key, 0, -1))
    return {"id": result.id, "waited_in_delayed_set": waiting, "left_delayed_set": not left, "state": result.state}
