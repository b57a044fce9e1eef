"""Kombu 5.7 and the asyncio API (:mod:`kombu_like.aio`) on one broker: each consumes what
the other publishes, on RabbitMQ and Redis (memory:// is one broker per library's process
state, so there is nothing to share there).

One message per serializer, content type and compression method, each with headers and
properties; body, headers, properties, content type and encoding must arrive as sent.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import pytest
import redis

import kombu_like
from kombu_like import aio
from t.integration.test_redis_interop import consume

pytestmark = pytest.mark.interop

ACCEPT = ["json", "msgpack", "yaml", "application/octet-stream", "text/plain"]
BODY = {"text": "h\u00e9llo \u2603", "n": 42, "f": 2.5, "items": [1, None, True], "nested": {"a": "b"}}
LARGE = {"data": "abc" * 2000, "text": "\u00e9\u2603"}
#: case -> (body, publish options, content type, content encoding)
CASES: dict[str, tuple[Any, dict[str, Any], str, str]] = {
    "json": (BODY, {"serializer": "json"}, "application/json", "utf-8"),
    "msgpack": (BODY, {"serializer": "msgpack"}, "application/x-msgpack", "binary"),
    "yaml": (BODY, {"serializer": "yaml"}, "application/x-yaml", "utf-8"),
    "raw": (
        bytes(range(256)),
        {"content_type": "application/octet-stream", "content_encoding": "binary"},
        "application/octet-stream",
        "binary",
    ),
    "text": ("pl\u00e4in text", {"content_type": "text/plain", "content_encoding": "utf-8"}, "text/plain", "utf-8"),
    **{
        method: (LARGE, {"serializer": "json", "compression": method}, "application/json", "utf-8")
        for method in ("zlib", "bzip2", "lzma", "brotli", "zstd")
    },
}
COMPRESSION_HEADERS = {
    "zlib": "application/x-gzip",
    "bzip2": "application/x-bz2",
    "lzma": "application/x-lzma",
    "brotli": "application/x-brotli",
    "zstd": "application/zstd",
}
HEADERS = {"str": "v\u00e9", "int": 7, "bool": True, "list": [1, "two"], "nested": {"k": None}}


def properties(case: str) -> dict[str, Any]:
    return {
        "correlation_id": f"corr-{case}",
        "reply_to": "replies",
        "message_id": f"mid-{case}",
        "app_id": "interop",
        "type": "kind.x",
        "priority": 3,
        "delivery_mode": 1,
    }


@pytest.fixture(
    params=[pytest.param("amqp", marks=pytest.mark.amqp), pytest.param("redis", marks=pytest.mark.redis)],
)
def broker_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def name(broker_url: str) -> Iterator[str]:
    name = f"t-aio-interop-{uuid.uuid4().hex[:10]}"
    yield name
    if broker_url.startswith("redis"):
        client = redis.Redis.from_url(broker_url)
        for key in client.scan_iter(match=f"*{name}*"):
            client.delete(key)
        client.close()
    else:
        with kombu_like.Connection(broker_url) as conn:
            conn.default_channel.queue_delete(name)
            conn.default_channel.exchange_delete(name)


def entities(lib: Any, name: str) -> Any:
    """The test's queue, bound to a direct exchange, as ``lib`` (kombu or kombu_like) declares it."""
    return lib.Queue(name, lib.Exchange(name, type="direct", durable=False), routing_key="k", durable=False)


def check(received: list[tuple[Any, Any]], exchange: str) -> None:
    """``(body, message)`` pairs, one per case, as sent to ``exchange``."""
    by_case = {message.headers.get("case"): (body, message) for body, message in received}
    assert sorted(by_case) == sorted(CASES) and len(received) == len(CASES), sorted(by_case)
    for case, (sent, _, content_type, content_encoding) in CASES.items():
        body, message = by_case[case]
        assert body == sent, case
        assert message.content_type == content_type, case
        assert message.content_encoding == content_encoding, case
        headers = dict(message.headers)
        assert headers.pop("compression", None) == COMPRESSION_HEADERS.get(case), case
        assert headers == {**HEADERS, "case": case}, case
        for key, value in properties(case).items():
            assert message.properties.get(key) == value, (case, key)
        assert (message.delivery_info["exchange"], message.delivery_info["routing_key"]) == (exchange, "k"), case


def test_kombu_publishes_the_asyncio_api_consumes(broker_url: str, name: str) -> None:
    with kombu.Connection(broker_url) as conn:
        producer = conn.Producer()
        queue = entities(kombu, name)
        for case, (body, options, _, _) in CASES.items():
            producer.publish(
                body,
                exchange=queue.exchange,
                routing_key="k",
                declare=[queue],
                headers={**HEADERS, "case": case},
                **options,
                **properties(case),
            )

    async def main() -> list[tuple[Any, Any]]:
        received: list[tuple[Any, Any]] = []
        async with aio.Connection(broker_url) as conn:
            async with conn.Consumer([entities(kombu_like, name)], accept=ACCEPT, prefetch_count=20) as consumer:
                async for message in consumer:
                    received.append((message.payload, message))
                    await message.ack()
                    if len(received) == len(CASES):
                        break
            left = await entities(kombu_like, name)(conn.default_channel).queue_declare(passive=True)
            assert left.message_count == 0
        return received

    check(asyncio.run(asyncio.wait_for(main(), 20)), name)


def test_the_asyncio_api_publishes_kombu_consumes(broker_url: str, name: str) -> None:
    async def main() -> None:
        async with aio.Connection(broker_url) as conn:
            producer = conn.Producer()
            queue = entities(kombu_like, name)
            for case, (body, options, _, _) in CASES.items():
                await producer.publish(
                    body,
                    exchange=queue.exchange,
                    routing_key="k",
                    declare=[queue],
                    headers={**HEADERS, "case": case},
                    **options,
                    **properties(case),
                )

    asyncio.run(asyncio.wait_for(main(), 20))
    check(consume(kombu, broker_url, [entities(kombu, name)], len(CASES), accept=ACCEPT), name)
