"""The transport conformance suite on ``redis+streams://``, on the real Redis server,
every key under a prefix of its own (checked: none written outside it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import MappingProxyType

import pytest
import redis

from kombu_like.testing.conformance import TransportConformance

pytestmark = pytest.mark.redis


class TestRedisStreamsConformance(TransportConformance):
    """Every conformance test, on both APIs (the asyncio one through the I/O-thread driver)."""

    redelivery_wait = 10.0

    @pytest.fixture(autouse=True)
    def _prefix(self, redis_url: str) -> Iterator[None]:
        prefix = f"klstreams-{uuid.uuid4().hex[:8]}:"
        self.url = redis_url.replace("redis://", "redis+streams://", 1)
        self.transport_options = MappingProxyType({"global_keyprefix": prefix, "lease": 2.0})
        yield
        client = redis.Redis.from_url(redis_url)
        try:
            names = [*self._queues_to_delete, *self._exchanges_to_delete]
            outside = [
                key
                for name in names
                for key in client.scan_iter(match=f"*{name}*")
                if not key.startswith(prefix.encode())
            ]
            assert not outside, f"keys written outside global_keyprefix: {outside[:5]}"
        finally:
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)
            client.close()
