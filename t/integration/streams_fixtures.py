"""Fixtures of the Redis Streams tests on the shared Redis: a module takes them with
``from t.integration.streams_fixtures import prefix, url``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def url(redis_url: str) -> str:
    """The shared Redis as a ``redis+streams://`` URL."""
    return redis_url.replace("redis://", "redis+streams://", 1)


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of the test's own (``global_keyprefix``); its keys go when it ends."""
    name = f"klst-{uuid.uuid4().hex[:8]}:"
    yield name
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{name}*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
