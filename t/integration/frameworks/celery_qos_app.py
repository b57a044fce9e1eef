"""The test Celery application plus a task that holds its pool process until released.

A held task keeps its message unacknowledged (it is acknowledged late, once done) for as
long as a test needs, so the messages a worker has taken from the broker -- its prefetch
window, whether running or waiting for a process -- stay where the test can count them,
with no sleeping on either side.
"""

from __future__ import annotations

import redis

from .celery_app import app

__all__ = ["app", "held"]


@app.task(acks_late=True)
def held(redis_url: str, started_key: str, release_key: str, timeout: float) -> bool:
    """Say it started (on a Redis list), then wait for a token on ``release_key``; True if
    one came within ``timeout`` seconds."""
    with redis.Redis.from_url(redis_url, socket_timeout=timeout + 5) as client:
        client.rpush(started_key, "started")
        return client.blpop([release_key], timeout=timeout) is not None
