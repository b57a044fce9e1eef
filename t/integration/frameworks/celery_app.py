"""The Celery application the integration tests run (worker and clients alike).

Configured from the environment, so one module serves every broker:
``KL_BROKER_URL``, ``KL_RESULT_BACKEND`` (default ``rpc://``), ``KL_QUEUE`` (the default
task queue) and ``KL_NAMESPACE`` (control/event exchange names, unique per test run so
concurrent runs on the same broker never see each other's workers).  ``KL_CONNECTION_NAME``,
when set, names every broker connection the process opens (Redis ``CLIENT SETNAME``, the
AMQP ``connection_name`` client property), so a test can cut exactly that process's
connections.  ``KL_RECEIPTS_KEY``, when set, names a Redis list (on the result backend's
Redis) the worker appends ``[task id, time]`` to whenever a task message reaches it, so a
test can tell when the broker delivered a task, not only when it ran.
``KL_BROKER_TRANSPORT_OPTIONS``, when set, is a JSON object of broker transport options
(the ``cluster`` option of ``redis+streams://``, a ``global_keyprefix``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from celery import Celery
from celery.worker.control import inspect_command

NAMESPACE = os.environ.get("KL_NAMESPACE", "kl")

app = Celery(
    "kl_celery_tests",
    broker=os.environ.get("KL_BROKER_URL", "memory://"),
    backend=os.environ.get("KL_RESULT_BACKEND", "rpc://"),
)
app.conf.update(
    task_default_queue=os.environ.get("KL_QUEUE", f"{NAMESPACE}.tasks"),
    control_exchange=f"{NAMESPACE}.control",
    event_exchange=f"{NAMESPACE}.ev",
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    result_expires=300,
    # priorities are a queue feature on RabbitMQ
    task_queue_max_priority=10,
    task_default_priority=5,
)
if os.environ.get("KL_MEMORY_EVENT_LOOP") == "1":
    # memory:// declares implements.asynchronous only when asked (Kombu's never does)
    app.conf.broker_transport_options = {"event_loop": True}
if os.environ.get("KL_CONNECTION_NAME"):
    _name = os.environ["KL_CONNECTION_NAME"]
    if app.conf.broker_url.startswith("redis"):
        app.conf.broker_transport_options = {"client_name": _name}
    else:
        app.conf.broker_transport_options = {"client_properties": {"connection_name": _name}}
if os.environ.get("KL_BROKER_TRANSPORT_OPTIONS"):
    app.conf.broker_transport_options = {
        **(app.conf.broker_transport_options or {}),
        **json.loads(os.environ["KL_BROKER_TRANSPORT_OPTIONS"]),
    }


if os.environ.get("KL_RECEIPTS_KEY"):
    from celery.signals import task_received

    @task_received.connect
    def _record_receipt(request: Any, **kwargs: Any) -> None:
        import redis

        with redis.Redis.from_url(app.conf.result_backend) as client:
            client.rpush(os.environ["KL_RECEIPTS_KEY"], json.dumps([request.id, time.time()]))


@inspect_command()
def kl_loop(state: Any) -> dict[str, Any]:
    """``inspect kl_loop``: the loop the worker's consumer runs (asynloop or synloop)."""
    consumer = state.consumer
    return {"loop": consumer.loop.__name__, "hub": consumer.controller.hub is not None}


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def tsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def stamp() -> float:
    """When the task ran (wall clock)."""
    return time.time()


@app.task(bind=True, max_retries=5, default_retry_delay=0.2)
def flaky(self: Any, failures: int) -> int:
    """Fail ``failures`` times (retrying each time), then return how many retries it took."""
    if self.request.retries < failures:
        raise self.retry(countdown=0.2)
    return int(self.request.retries)


@app.task
def sleeper(seconds: float, redis_url: str, started_key: str) -> float:
    """Say it started (on a Redis list the client waits on), sleep, return the seconds."""
    import redis

    with redis.Redis.from_url(redis_url) as client:
        client.rpush(started_key, "started")
    time.sleep(seconds)
    return seconds


@app.task(bind=True)
def echo_request(self: Any) -> dict[str, Any]:
    """What the worker received besides the arguments."""
    request = self.request
    return {
        "headers": dict(request.headers or {}),
        "custom": getattr(request, "custom", None),
        "priority": (request.delivery_info or {}).get("priority"),
        "routing_key": (request.delivery_info or {}).get("routing_key"),
    }


@app.task
def kombu_in_use() -> dict[str, str]:
    """Which library the worker's ``kombu`` is, and which transport the worker uses."""
    import kombu
    from celery import current_app

    with current_app.connection_for_read() as conn:
        transport = type(conn.transport)
    return {"kombu": kombu.__name__, "connection": kombu.Connection.__module__, "transport": transport.__module__}
