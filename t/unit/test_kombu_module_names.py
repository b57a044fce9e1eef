"""Names added for Kombu's module surface behave as Kombu's do (same scenario on both)."""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Callable
from typing import Any

import kombu
import kombu.asynchronous.debug as kdebug
import kombu.compat
import kombu.transport.virtual as kvirtual
import kombu.transport.virtual.exchange as kexchange
import kombu.utils.url as kurl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kombu_like
import kombu_like.asynchronous.debug as debug
import kombu_like.compat
import kombu_like.transport.virtual as virtual
import kombu_like.transport.virtual.exchange as exchange
import kombu_like.utils.url as url
from kombu_like.exceptions import PreconditionFailed
from kombu_like.transport.base import StdChannel
from kombu_like.utils import json as kl_json
from kombu_like.utils.eventio import ERR, READ, WRITE


def _name() -> str:
    return f"surface-{uuid.uuid4().hex[:10]}"


# -- kombu.compat ------------------------------------------------------------------------
def _carrot_round_trip(lib: Any, compat: Any) -> dict[str, Any]:
    queue, ex = _name(), _name()
    with lib.Connection("memory://") as conn:
        consumer = compat.Consumer(conn, queue=queue, exchange=ex, routing_key="rk")
        publisher = compat.Publisher(conn, exchange=ex, routing_key="rk")
        for i in range(3):
            publisher.send({"n": i})
        first = consumer.fetch()
        first.ack()
        rest = [m.payload for m in consumer.iterqueue(limit=5)]
        for i in range(2):
            publisher.send({"again": i})
        discarded = consumer.discard_all()
        after = consumer.fetch()
        publisher.close()
        consumer.close()
        return {
            "first": first.payload,
            "rest": rest,
            "discarded": discarded,
            "after": after,
            "publisher_exchange": (publisher.exchange.name, publisher.exchange.type, publisher.exchange.durable),
            "closed": (publisher._closed, consumer._closed),
        }


def test_compat_publisher_and_consumer_match_kombu() -> None:
    ours = _carrot_round_trip(kombu_like, kombu_like.compat)
    theirs = _carrot_round_trip(kombu, kombu.compat)
    assert ours["publisher_exchange"][0].startswith("surface-")
    ours["publisher_exchange"] = ours["publisher_exchange"][1:]
    theirs["publisher_exchange"] = theirs["publisher_exchange"][1:]
    assert ours == theirs
    assert ours["first"] == {"n": 0} and ours["rest"] == [{"n": 1}, {"n": 2}] and ours["discarded"] == 2


def test_compat_consumer_iterconsume_hands_messages_to_callbacks() -> None:
    queue = _name()
    got: list[Any] = []
    with kombu_like.Connection("memory://") as conn:
        consumer = kombu_like.compat.Consumer(conn, queue=queue, exchange=queue, routing_key=queue)
        consumer.register_callback(lambda body, message: (got.append(body), message.ack()))
        kombu_like.compat.Publisher(conn, exchange=queue, routing_key=queue).send("x")
        list(consumer.iterconsume(limit=1))
        consumer.close()
    assert got == ["x"]


# -- kombu.transport.virtual ---------------------------------------------------------------
@given(st.binary() | st.text())
def test_base64_matches_kombu(data: bytes | str) -> None:
    encoded = virtual.Base64().encode(data)
    assert encoded == kvirtual.Base64().encode(data)
    assert virtual.Base64().decode(encoded) == kvirtual.Base64().decode(encoded)


_STATE_OPS = st.lists(
    st.tuples(
        st.sampled_from(["declare", "delete", "delete_queue", "clear"]),
        st.sampled_from(["q1", "q2"]),
        st.sampled_from(["ex", "other"]),
        st.sampled_from(["a", "b"]),
    ),
    max_size=20,
)


def _apply(state: Any, ops: list[tuple[str, str, str, str]]) -> Any:
    for op, queue, ex, key in ops:
        if op == "declare":
            state.binding_declare(queue, ex, key, {"k": key})
        elif op == "delete":
            state.binding_delete(queue, ex, key)
        elif op == "delete_queue":
            state.queue_bindings_delete(queue)
        else:
            state.clear()
    return (
        {tuple(k): v for k, v in state.bindings.items()},
        {q: sorted(map(tuple, keys)) for q, keys in state.queue_index.items() if keys},
        {q: sorted(map(tuple, state.queue_bindings(q))) for q in ("q1", "q2")},
        [state.has_binding(q, "ex", "a") for q in ("q1", "q2")],
    )


@given(_STATE_OPS)
def test_broker_state_matches_kombu(ops: list[tuple[str, str, str, str]]) -> None:
    assert _apply(virtual.BrokerState(), ops) == _apply(kvirtual.BrokerState(), ops)


def test_binding_tuples_and_errors_have_kombus_shape() -> None:
    assert virtual.binding_key_t._fields == kvirtual.binding_key_t._fields
    assert virtual.queue_binding_t._fields == kvirtual.queue_binding_t._fields
    assert issubclass(virtual.UndeliverableWarning, UserWarning)
    assert virtual.Empty is kvirtual.Empty


def test_redeclaring_an_exchange_differently_raises_not_equivalent() -> None:
    name = _name()
    with kombu_like.Connection("memory://") as conn:
        kombu_like.Exchange(name, "direct")(conn.default_channel).declare()
        with pytest.raises(virtual.NotEquivalentError) as info:
            kombu_like.Exchange(name, "topic")(conn.default_channel).declare()
    assert isinstance(info.value, PreconditionFailed)


def test_virtual_message_from_an_envelope() -> None:
    envelope = {
        "body": virtual.Base64().encode(b'{"a": 1}'),
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {"h": 1, "compression": None},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": "t1",
            "delivery_info": {"exchange": "", "routing_key": "q"},
        },
    }
    message = virtual.Message(envelope)
    assert message.payload == {"a": 1}
    assert message.delivery_tag == "t1"
    assert message.delivery_info["routing_key"] == "q"
    again = message.serializable()
    assert "compression" not in again["headers"]
    assert virtual.Base64().decode(again["body"]) == b'{"a": 1}'


def test_management_lists_bindings() -> None:
    queue, ex = _name(), _name()
    with kombu_like.Connection("memory://") as conn:
        kombu_like.Queue(queue, kombu_like.Exchange(ex, "direct"), routing_key="rk")(conn.default_channel).declare()
        management = virtual.Management(conn.transport)
        try:
            bindings = management.get_bindings()
        finally:
            management.close()
    assert {"destination": queue, "source": ex, "routing_key": "rk"} in bindings


_TABLE = [("a.b", None, "q1"), ("a.*", None, "q2"), ("#", None, "q3"), ("x", None, "q4")]


@pytest.mark.parametrize("kind", ["DirectExchange", "TopicExchange", "FanoutExchange"])
@pytest.mark.parametrize("key", ["a.b", "a.c", "x", "y.z"])
def test_exchange_types_look_up_like_kombu(kind: str, key: str) -> None:
    ours = getattr(exchange, kind)(None)
    theirs = getattr(kexchange, kind)(None)
    our_rows = [ours.prepare_bind(q, "ex", k, None) for k, _, q in _TABLE]
    their_rows = [theirs.prepare_bind(q, "ex", k, None) for k, _, q in _TABLE]
    assert ours.lookup(our_rows, "ex", key, None) == theirs.lookup(their_rows, "ex", key, None)
    prev = {"type": kind, "durable": True, "auto_delete": False, "arguments": None}
    for change in ({}, {"durable": False}, {"arguments": {"x": 1}}):
        args = {"type": kind, "durable": True, "auto_delete": False, "arguments": None, **change}
        assert ours.equivalent(prev, "ex", **args) == theirs.equivalent(prev, "ex", **args)


# -- kombu.transport.base.StdChannel ---------------------------------------------------------
def test_every_channel_is_a_std_channel() -> None:
    queue = _name()
    with kombu_like.Connection("memory://") as conn:
        channel = conn.channel()
        assert isinstance(channel, StdChannel)
        producer = channel.Producer()
        producer.publish("hi", routing_key=queue, declare=[kombu_like.Queue(queue)])
        got: list[Any] = []
        with channel.Consumer([kombu_like.Queue(queue)], callbacks=[lambda b, m: (got.append(b), m.ack())]):
            conn.drain_events(timeout=2)
        assert got == ["hi"]
        assert channel.prepare_queue_arguments({"x": 1}) == {"x": 1}
        with channel:
            pass
        assert not channel.is_open


# -- kombu.asynchronous.debug ---------------------------------------------------------------------
class _Hub:
    def __init__(self, callback: Callable[..., Any]) -> None:
        self.readers = {3: (callback, (1, 2)), 4: (callback, ())}
        self.writers = {5: (callback, ("x",)), 6: None}
        self.consolidate = {6}
        self.consolidate_callback = callback


def _on_ready(*args: Any) -> None: ...


def test_debug_helpers_describe_a_hub_as_kombu_does() -> None:
    hub = _Hub(_on_ready)
    events = [(3, READ), (5, WRITE), (6, WRITE), (9, READ | ERR)]
    assert debug.repr_readers(hub) == kdebug.repr_readers(hub)
    assert debug.repr_writers(hub) == kdebug.repr_writers(hub)
    assert debug.repr_active(hub) == kdebug.repr_active(hub)
    assert debug.repr_events(hub, events) == kdebug.repr_events(hub, events)
    for flag in range(0, 32):
        assert debug.repr_flag(flag) == kdebug.repr_flag(flag)
    assert debug.callback_for(hub, 6, WRITE) is kdebug.callback_for(hub, 6, WRITE) is _on_ready
    assert debug.callback_for(hub, 99, READ, "gone") == "gone"
    with pytest.raises(KeyError):
        debug.callback_for(hub, 99, READ)


# -- kombu.utils.url / json / encoding --------------------------------------------------------------
@pytest.mark.parametrize("value", ["required", "optional", "none", "CERT_REQUIRED", "CERT_OPTIONAL", "CERT_NONE"])
def test_parse_ssl_cert_reqs_matches_kombu(value: str) -> None:
    assert url.parse_ssl_cert_reqs(value) == kurl.parse_ssl_cert_reqs(value)
    assert isinstance(url.parse_ssl_cert_reqs(value), ssl.VerifyMode)


def test_parse_ssl_cert_reqs_refuses_unknown_values_like_kombu() -> None:
    for parse in (url.parse_ssl_cert_reqs, kurl.parse_ssl_cert_reqs):
        with pytest.raises(KeyError):
            parse("sometimes")
    assert url.ssl_available is kurl.ssl_available is True


@given(st.text())
def test_safequote_matches_kombu(text: str) -> None:
    assert url.safequote(text) == kurl.safequote(text)


class _Lazy:
    def __str__(self) -> str:
        return "lazy text"


def test_textual_types_are_encoded_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError):
        kl_json.dumps({"v": _Lazy()})
    monkeypatch.setattr(kl_json, "textual_types", (_Lazy,))
    assert json.loads(kl_json.dumps({"v": _Lazy()})) == {"v": "lazy text"}


def test_default_encoding_file_follows_the_setter() -> None:
    import io

    from kombu_like.utils import encoding

    assert encoding.default_encoding_file is None
    stream = io.StringIO()
    encoding.set_default_encoding_file(stream)
    try:
        assert encoding.default_encoding_file is stream
    finally:
        encoding.set_default_encoding_file(None)


def test_connection_module_offers_the_pools() -> None:
    from kombu_like.connection import ChannelPool, ConnectionPool, Resource

    with kombu_like.Connection("memory://") as conn:
        pool = ConnectionPool(conn, limit=2)
        assert isinstance(pool, Resource)
        with pool.acquire(block=True, timeout=1) as pooled:
            assert pooled.transport.driver_type == "memory"
        channels = ChannelPool(conn, limit=1)
        channel = channels.acquire(block=True, timeout=1)
        channel.release()
        channels.force_close_all()
        pool.force_close_all()
