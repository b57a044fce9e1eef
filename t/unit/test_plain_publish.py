"""Plain publishes -- no headers, priority 0, no property but ``delivery_mode``, the most
common kind -- may skip building an envelope (``VirtualChannel.publish_plain`` and a
store's ``put_plain``): what is stored must be what the enveloped path stores."""

from __future__ import annotations

import json
import uuid
from typing import Any
from unittest.mock import MagicMock, Mock

from hypothesis import given, settings
from hypothesis import strategies as st

from kombu_like import Connection, Exchange, Producer, Queue
from kombu_like.transport.redis.codec import plain_template
from kombu_like.transport.virtual.channel import VirtualChannel, plain_envelope

names = st.text(max_size=40) | st.sampled_from(["", "\x00kombu_like-body\x00", "\x00kombu_like-tag\x00", '"\\'])
content_types = st.none() | st.sampled_from(["application/json", "application/x-msgpack"]) | st.text(max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    body=st.text(max_size=200),
    tag=st.text(max_size=60),
    content_type=content_types,
    content_encoding=content_types,
    delivery_mode=st.integers(min_value=-(2**70), max_value=2**70),
    body_encoding=st.sampled_from(["base64", None]),
    exchange=names,
    routing_key=names,
)
def test_template_text_is_the_plain_envelope_json(
    body: str,
    tag: str,
    content_type: str | None,
    content_encoding: str | None,
    delivery_mode: int,
    body_encoding: str | None,
    exchange: str,
    routing_key: str,
) -> None:
    shape = (content_type, content_encoding, delivery_mode, exchange, routing_key)
    template = plain_template(shape, body_encoding)
    if template is None:
        # only fields holding a gap's mark leave no template (those messages are encoded whole)
        assert any("\x00kombu_like-" in str(v) for v in shape)
        return
    assert json.loads(template.text(body, tag)) == plain_envelope(body, tag, shape, body_encoding)


def test_plain_envelope_is_what_basic_publish_builds() -> None:
    with Connection("memory://") as conn:
        channel = conn.default_channel
        message = channel.prepare_message("{}", 0, "application/json", "utf-8", {}, {"delivery_mode": 2})
        channel._finish_envelope(message, "ex", "key")
        tag = message["properties"]["delivery_tag"]
        shape = ("application/json", "utf-8", 2, "ex", "key")
        assert message == plain_envelope(message["body"], tag, shape, channel.body_encoding)


def test_a_mock_channel_still_gets_basic_publish() -> None:
    # framework test suites hand Producer a Mock channel and assert on basic_publish
    for channel in (Mock(name="channel"), MagicMock(name="channel")):
        producer = Producer(channel, exchange=Exchange("ex", "direct"), auto_declare=False)
        producer.publish({"x": 1}, routing_key="key")
        assert channel.basic_publish.called
        assert not channel.publish_plain.called


def test_a_channel_subclass_that_changes_publishing_loses_the_shortcut() -> None:
    class Logged(VirtualChannel):
        def basic_publish(self, *args: Any, **kwargs: Any) -> Any:
            return super().basic_publish(*args, **kwargs)

    class Renamed(VirtualChannel):
        pass

    assert VirtualChannel.publishes_plain
    assert not Logged.publishes_plain
    assert Renamed.publishes_plain


@settings(max_examples=20, deadline=None)
@given(
    serializer=st.sampled_from(["json", "msgpack", "yaml"]),
    delivery_mode=st.sampled_from([1, 2, "transient", "persistent"]),
    body=st.dictionaries(st.text(max_size=10), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20), max_size=4),
)
def test_plain_and_enveloped_publishes_deliver_the_same_message(
    serializer: str, delivery_mode: Any, body: dict[str, Any]
) -> None:
    name = f"plain-{uuid.uuid4().hex[:8]}"
    with Connection("memory://") as conn:
        exchange = Exchange(name, "direct")
        queue = Queue(name, exchange, routing_key="k")
        queue(conn.default_channel).declare()
        producer = conn.Producer(exchange=exchange, routing_key="k", serializer=serializer, auto_declare=False)
        producer.publish(body, delivery_mode=delivery_mode)
        producer.publish(body, delivery_mode=delivery_mode, headers={"enveloped": True})
        plain, enveloped = (queue(conn.default_channel).get(accept=[serializer]) for _ in range(2))
        assert plain is not None and enveloped is not None
        assert plain.payload == enveloped.payload == body
        assert enveloped.headers == {"enveloped": True} and plain.headers == {}
        assert plain.content_type == enveloped.content_type
        assert plain.content_encoding == enveloped.content_encoding
        assert {k: v for k, v in plain.properties.items() if k != "delivery_tag"} == {
            k: v for k, v in enveloped.properties.items() if k != "delivery_tag"
        }
        assert plain.delivery_info["routing_key"] == enveloped.delivery_info["routing_key"] == "k"
        assert plain.delivery_info["exchange"] == enveloped.delivery_info["exchange"] == name


def test_a_basic_publish_patched_on_the_channel_sees_plain_publishes() -> None:
    with Connection("memory://") as conn:
        channel = conn.default_channel
        seen: list[Any] = []
        original = channel.basic_publish

        def spy(message: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(message)
            return original(message, *args, **kwargs)

        channel.basic_publish = spy
        conn.Producer().publish({"x": 1}, routing_key="patched-plain")
        assert len(seen) == 1 and seen[0]["headers"] == {}
