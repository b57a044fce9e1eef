"""Plain publishes on Redis (no headers, priority 0, no property but ``delivery_mode``) are
one LPUSH (``redis://``) or XADD (``redis+streams://``) of an envelope filled in from a
template: what is stored must be what the enveloped path stores, for any exchange, routing
key and serializer -- on ``redis://`` Kombu reads it too."""
# ruff: noqa: F401, F811 - the fixtures of streams_fixtures are imported and taken as parameters

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kombu_like import Connection, Exchange, Queue
from kombu_like.serialization import dumps
from kombu_like.transport.redis_streams import StreamKeys
from t.integration.streams_fixtures import prefix, url

pytestmark = pytest.mark.redis


def stored(scheme: str, redis_url: str, prefix: str, queue: str) -> list[dict[str, Any]]:
    """The envelopes in ``queue``, oldest first, without their delivery tags."""
    with redis.Redis.from_url(redis_url) as client:
        if scheme == "redis+streams":
            raw = [fields[b"payload"] for _, fields in client.xrange(StreamKeys(prefix).stream(queue))]
        else:  # Kombu's layout: LPUSH, consumed from the right
            raw = list(reversed(client.lrange(f"{prefix}{queue}", 0, -1)))
    out = []
    for text in raw:
        envelope = json.loads(text)
        del envelope["properties"]["delivery_tag"]
        out.append(envelope)
    return out


@pytest.fixture(params=["redis", "redis+streams"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    exchange_name=st.text(min_size=1, max_size=30) | st.just("\x00kombu_like-body\x00"),
    routing_key=st.text(max_size=30) | st.just('quote"back\\slash'),
    serializer=st.sampled_from(["json", "msgpack", "yaml"]),
    delivery_mode=st.sampled_from([1, 2]),
)
def test_a_plain_publish_stores_what_an_enveloped_one_does(
    scheme: str,
    redis_url: str,
    prefix: str,
    exchange_name: str,
    routing_key: str,
    serializer: str,
    delivery_mode: int,
) -> None:
    url = redis_url.replace("redis://", f"{scheme}://", 1)
    name = f"plain-{uuid.uuid4().hex[:8]}"
    exchange = Exchange(exchange_name, "direct", durable=False)
    queue = Queue(name, exchange, routing_key=routing_key, durable=False)
    body = {"text": "é\u2028\"'\\", "n": [1, 2.5, None]}
    with Connection(url, transport_options={"global_keyprefix": prefix}) as conn:
        queue(conn.default_channel).declare()
        producer = conn.Producer(exchange=exchange, routing_key=routing_key, serializer=serializer, auto_declare=False)
        assert producer.channel is conn.default_channel  # bound: the first publish may take the shortcut
        store = conn.default_channel.store
        taken: list[bool] = []
        put_plain = store.put_plain
        store.put_plain = lambda *args: taken.append(put_plain(*args)) or taken[-1]  # type: ignore[method-assign]
        try:
            producer.publish(body, delivery_mode=delivery_mode)  # plain: put_plain
        finally:
            del store.put_plain
        # the plain path took it, unless a field holds a template's gap mark
        assert taken == [True] or "\x00kombu_like-" in exchange_name
        channel = conn.default_channel
        # the same message the long way: an envelope built, routed and put
        content_type, content_encoding, data = dumps(body, serializer)
        message = channel.prepare_message(data, 0, content_type, content_encoding, {}, {"delivery_mode": delivery_mode})
        channel.basic_publish(message, exchange_name, routing_key)
        plain, enveloped = stored(scheme, redis_url, prefix, name)
        assert plain == enveloped
        got = [queue(channel).get(accept=[serializer]) for _ in range(2)]
        assert [m.payload for m in got if m is not None] == [body, body]
        queue(channel).delete()


@pytest.fixture
def untracked_user(redis_url: str) -> Iterator[tuple[str, str]]:
    """A Redis user that may do everything but client-side caching (``CLIENT TRACKING``)."""
    user, password = f"kl-untracked-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with redis.Redis.from_url(redis_url) as client:
        client.acl_setuser(
            user,
            enabled=True,
            passwords=[f"+{password}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-client|tracking"],
        )
        try:
            yield user, password
        finally:
            client.acl_deluser(user)


def test_bindings_made_elsewhere_route_at_once_when_redis_refuses_caching(
    url: str, prefix: str, untracked_user: tuple[str, str]
) -> None:
    user, password = untracked_user
    refused = url.replace("redis+streams://", f"redis+streams://{user}:{password}@", 1)
    options = {"global_keyprefix": prefix}
    name = f"untracked-{uuid.uuid4().hex[:8]}"
    exchange = Exchange(name, "direct", durable=False)
    first, second = (Queue(f"{name}-{n}", exchange, routing_key="k", durable=False) for n in (1, 2))
    with (
        Connection(refused, transport_options=options) as publisher,
        Connection(url, transport_options=options) as other,
    ):
        first(publisher.default_channel).declare()
        producer = publisher.Producer(exchange=exchange, routing_key="k")
        producer.publish({"n": 1})
        producer.publish({"n": 2})  # the route is cached now, if anything is
        second(other.default_channel).declare()  # bound by another connection
        producer.publish({"n": 3})
        sizes = [q(publisher.default_channel).queue_declare(passive=True).message_count for q in (first, second)]
        assert sizes == [3, 1]
