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

from .celery_app import add, app, echo_request, fail, flaky, kombu_in_use, stamp, tsum

TIMEOUT = 30

_stack = ExitStack()


def start_thread_worker(hostname: str) -> str:
    """Start a solo-pool worker in a thread of this process."""
    import celery.contrib.testing.tasks  # noqa: F401 - the ping task start_worker checks for
    from celery.contrib.testing.worker import start_worker

    _stack.enter_context(
        start_worker(app, pool="solo", concurrency=1, perform_ping_check=True, hostname=hostname,
                     loglevel="WARNING", shutdown_timeout=20)
    )
    return hostname


def shutdown() -> None:
    _stack.close()


def libraries() -> dict[str, Any]:
    import kombu

    return {"client": {"kombu": kombu.__name__, "connection": kombu.Connection.__module__},
            "worker": kombu_in_use.delay().get(timeout=TIMEOUT)}


def delay_get(x: int, y: int) -> int:
    return int(add.delay(x, y).get(timeout=TIMEOUT))


def apply_async_options(custom: str, priority: int) -> dict[str, Any]:
    result = echo_request.apply_async(headers={"custom": custom}, priority=priority)
    return dict(result.get(timeout=TIMEOUT))


def countdown(seconds: float) -> dict[str, float]:
    sent = time.time()
    ran = stamp.apply_async(countdown=seconds).get(timeout=TIMEOUT + seconds)
    return {"sent": sent, "ran": ran}


def eta(seconds: float) -> dict[str, float]:
    when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    ran = stamp.apply_async(eta=when).get(timeout=TIMEOUT + seconds)
    return {"eta": when.timestamp(), "ran": ran}


def retry(failures: int) -> int:
    return int(flaky.delay(failures).get(timeout=TIMEOUT))


def failure(message: str) -> dict[str, Any]:
    result = fail.delay(message)
    try:
        result.get(timeout=TIMEOUT)
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc), "state": result.state,
                "traceback": result.traceback or ""}
    return {"type": None}


def failure_not_propagated(message: str) -> dict[str, Any]:
    result = fail.delay(message)
    value = result.get(timeout=TIMEOUT, propagate=False)
    return {"state": result.state, "value_type": type(value).__name__, "value": str(value)}


def chain_of_adds(start: int, *steps: int) -> int:
    signature = chain(add.s(start, steps[0]), *(add.s(step) for step in steps[1:]))
    return int(signature.apply_async().get(timeout=TIMEOUT))


def group_of_adds(n: int) -> list[int]:
    return list(group(add.s(i, i) for i in range(n)).apply_async().get(timeout=TIMEOUT))


def chord_sum(n: int) -> int:
    return int(chord((add.s(i, i) for i in range(n)), tsum.s()).apply_async().get(timeout=TIMEOUT))


def ping(destination: str) -> list[Any]:
    return list(app.control.ping(destination=[destination], timeout=2.0) or [])


def registered(destination: str) -> dict[str, list[str]]:
    return dict(app.control.inspect(destination=[destination], timeout=2.0).registered() or {})


def inspect(destination: str, command: str) -> dict[str, Any]:
    """The reply of ``celery inspect <command>`` from one worker."""
    return dict(getattr(app.control.inspect(destination=[destination], timeout=2.0), command)() or {})


def scheduled_while_waiting(destination: str, seconds: float) -> dict[str, Any]:
    """``inspect scheduled`` while an ETA task waits in the worker, then its result."""
    result = add.apply_async((2, 2), countdown=seconds)
    deadline = time.monotonic() + seconds
    seen: list[Any] = []
    while not seen and time.monotonic() < deadline:
        reply = app.control.inspect(destination=[destination], timeout=1.0).scheduled() or {}
        seen = [entry["request"]["id"] for entry in reply.get(destination, [])]
    return {"scheduled": seen, "id": result.id, "result": result.get(timeout=TIMEOUT + seconds)}


def revoke_before_eta(seconds: float) -> dict[str, Any]:
    result = add.apply_async((1, 1), countdown=seconds)
    app.control.revoke(result.id)
    try:
        value = result.get(timeout=TIMEOUT + seconds)
    except TaskRevokedError as exc:
        return {"revoked": True, "state": result.state, "error": type(exc).__name__}
    return {"revoked": False, "value": value}
