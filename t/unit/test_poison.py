"""Poison messages on memory://: a malformed envelope reaches on_decode_error (or is raised
naming its queue), never crashes drain_events, and the next good message is delivered;
the Producer refuses what no transport can carry, naming the field."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kombu_like import Connection, Consumer, Message, Producer, Queue
from kombu_like.exceptions import DecodeError, EncodeError, KombuError
from kombu_like.testing.hostile import CollectingWorker, garbage
from kombu_like.transport.memory import Broker, MemoryStore

GOOD_BODY = "eyJnb29kIjogdHJ1ZX0="  # base64 of {"good": true}


def envelope(**changes: Any) -> dict[str, Any]:
    """A memory-store envelope as Kombu writes it, with ``changes`` applied."""
    env: dict[str, Any] = {
        "body": GOOD_BODY,
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {},
        "properties": {"body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": "q"}},
    }
    env.update(changes)
    return env


POISON = {
    "headers is a list": (envelope(headers=[1, 2]), "headers must be a mapping"),
    "headers is text": (envelope(headers="x"), "headers must be a mapping"),
    "properties is a list": (envelope(properties=[1]), "properties must be a mapping"),
    "content type is a number": (envelope(**{"content-type": 5}), "content_type must be text"),
    "content encoding is a list": (envelope(**{"content-encoding": ["utf-8"]}), "content_encoding must be text"),
    "compression header is a number": (envelope(headers={"compression": 5}), "compression header must be text"),
    "compression header unknown": (envelope(headers={"compression": "x/unknown"}), "x/unknown"),
    "body not base64": (envelope(body="abcde"), "base64"),
    "body is a number": (envelope(body=5), "base64"),
    "body not utf-8": (envelope(body="/w=="), "UnicodeDecodeError"),
    "body truncated json": (envelope(body="eyJnb29k"), "json"),
    "body compressed wrongly": (envelope(headers={"compression": "application/x-gzip"}), "decompress"),
}


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def conn(broker: Broker) -> Iterator[Connection]:
    with Connection("memory://", transport_options={"broker": broker}) as connection:
        yield connection


def put_raw(conn: Connection, broker: Broker, queue: Queue, payload: dict[str, Any]) -> None:
    queue(conn.default_channel).declare()
    MemoryStore(broker).put(queue.name, payload)


def drain(conn: Connection, until: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "condition not met in time"
        try:
            conn.drain_events(timeout=0.2)
        except socket.timeout:
            pass


@pytest.mark.parametrize("case", sorted(POISON))
def test_poison_goes_to_on_decode_error_and_the_next_message_arrives(
    conn: Connection, broker: Broker, case: str
) -> None:
    payload, reason = POISON[case]
    queue = Queue("poison")
    put_raw(conn, broker, queue, payload)
    Producer(conn).publish({"n": 1}, routing_key="poison")
    errors: list[tuple[Message, BaseException]] = []
    bodies: list[Any] = []

    def on_error(message: Message, exc: BaseException) -> None:
        errors.append((message, exc))
        message.reject()

    def callback(body: Any, message: Message) -> None:
        bodies.append(body)
        message.ack()

    with Consumer(conn, [queue], callbacks=[callback], on_decode_error=on_error):
        drain(conn, lambda: bool(bodies))
    assert bodies == [{"n": 1}]
    [(message, exc)] = errors
    assert reason in str(exc)
    assert message.state == "REJECTED"
    assert queue(conn.default_channel).queue_declare(passive=True).message_count == 0


@pytest.mark.parametrize("case", ["headers is a list", "properties is a list", "content type is a number"])
def test_poison_without_handler_is_raised_naming_the_queue(conn: Connection, broker: Broker, case: str) -> None:
    payload, reason = POISON[case]
    queue = Queue("poison_raise")
    put_raw(conn, broker, queue, payload)
    Producer(conn).publish({"n": 2}, routing_key="poison_raise")
    bodies: list[Any] = []
    with Consumer(conn, [queue], callbacks=[lambda body, message: (bodies.append(body), message.ack())]):
        with pytest.raises(DecodeError) as info:
            drain(conn, lambda: False)
        assert "poison_raise" in str(info.value)
        assert reason in str(info.value)
        drain(conn, lambda: bool(bodies))  # the consumer keeps going
    assert bodies == [{"n": 2}]


def test_building_a_message_never_raises() -> None:
    message = Message(
        body=object(),
        headers=[1],
        properties="p",
        delivery_info=3,
        content_type=b"\xff",
        content_encoding=7,
        postencode="utf-8",
    )
    problems = " | ".join(str(exc) for _, exc, _ in message.errors)
    for field in ("headers", "properties", "delivery_info", "content_type", "content_encoding"):
        assert f"{field} must be" in problems
    assert message.headers == {} and message.properties == {} and message.delivery_info == {}
    with pytest.raises(DecodeError, match="Malformed message"):
        message.decode()


def test_unencodable_text_body_is_an_error_not_a_crash() -> None:
    message = Message(body="\ud800", content_type="text/plain", postencode="utf-8")
    with pytest.raises(DecodeError, match="encodable"):
        message.decode()


def test_consumer_mixin_logs_one_line_rejects_and_keeps_running(
    conn: Connection, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue("mixin_poison")
    for payload, _ in POISON.values():
        put_raw(conn, broker, queue, payload)
    Producer(conn).publish({"n": 3}, routing_key="mixin_poison")
    worker = CollectingWorker(conn, queue)
    thread = threading.Thread(target=worker.run, daemon=True)
    with caplog.at_level(logging.ERROR, logger="kombu_like.mixins"):
        thread.start()
        deadline = time.monotonic() + 10
        while not worker.bodies and time.monotonic() < deadline:
            time.sleep(0.01)
        alive = thread.is_alive()
        worker.should_stop = True
        thread.join(10)
    assert worker.bodies == [{"n": 3}]
    assert alive
    records = [r for r in caplog.records if r.name == "kombu_like.mixins"]
    assert len(records) == len(POISON)
    for record, (_, reason) in zip(records, POISON.values(), strict=True):
        text = record.getMessage()
        assert "\n" not in text
        assert "'mixin_poison'" in text
        assert reason in text
    # rejected: nothing left behind to crash the next start
    assert queue(conn.default_channel).queue_declare(passive=True).message_count == 0


# -- the Producer ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"headers": [1, 2]}, "headers must be a mapping"),
        ({"headers": "x"}, "headers must be a mapping"),
        ({"headers": {1: "x"}}, "key must be a string"),
        ({"headers": {"when": object()}}, "'when' has type object"),
        ({"headers": {"deep": [{"x": {1, 2}}]}}, "'deep'[0]['x'] has type set"),
        ({"priority": "high"}, "priority"),
        ({"priority": 300}, "priority"),
        ({"content_type": 5}, "content_type"),
        ({"content_encoding": b"utf-8"}, "content_encoding"),
        ({"compression": 1}, "compression"),
        ({"serializer": ["json"]}, "serializer"),
        ({"correlation_id": 12}, "correlation_id"),
        ({"content_type": "application/json", "body": {"a": 1}}, "body must be bytes or str"),
    ],
)
def test_producer_names_the_bad_field(conn: Connection, kwargs: dict[str, Any], field: str) -> None:
    body = kwargs.pop("body", {"a": 1})
    with pytest.raises(EncodeError, match=None) as info:
        Producer(conn).publish(body, routing_key="nowhere", **kwargs)
    assert isinstance(info.value, ValueError)
    assert field in str(info.value)
    assert "'nowhere'" in str(info.value)


def test_producer_accepts_header_mappings_and_values(conn: Connection) -> None:
    from types import MappingProxyType

    queue = Queue("hdr_ok")
    queue(conn.default_channel).declare()
    Producer(conn).publish(
        {"a": 1}, routing_key="hdr_ok", headers=MappingProxyType({"x": [1, "a", {"b": None}], "y": 1.5})
    )
    message = queue(conn.default_channel).get()
    assert message is not None
    assert message.headers == {"x": [1, "a", {"b": None}], "y": 1.5}


# -- the same scenarios on Kombu 5.7 ---------------------------------------------------------
def _on_memory(library: Any, payload: dict[str, Any]) -> tuple[list[str], list[Any], str | None]:
    """Put ``payload`` raw into a memory queue, then a good message; consume both with
    on_decode_error.  Returns (error class names, bodies, what drain_events raised)."""
    import uuid

    errors: list[str] = []
    bodies: list[Any] = []
    raised = None
    with library.Connection(f"memory://differential-{uuid.uuid4().hex[:8]}") as conn:
        queue = library.Queue(f"diff-{uuid.uuid4().hex[:8]}")
        channel = conn.default_channel
        queue(channel).declare()
        # straight into the store, as Kombu's memory channel and ours keep envelopes
        if isinstance(payload.get("properties"), dict):
            # Kombu's channel keeps the delivery tag in the envelope
            payload = {**payload, "properties": {**payload["properties"], "delivery_tag": str(uuid.uuid4())}}
        store = getattr(channel, "store", None)
        if store is not None:
            store.put(queue.name, payload)
        else:
            channel._put(queue.name, payload)
        library.Producer(conn).publish({"good": 1}, routing_key=queue.name)

        def on_error(message: Any, exc: BaseException) -> None:
            errors.append(type(exc).__name__)
            message.reject()

        with library.Consumer(
            conn, [queue], callbacks=[lambda body, m: (bodies.append(body), m.ack())], on_decode_error=on_error
        ):
            for _ in range(4):
                try:
                    conn.drain_events(timeout=0.2)
                except socket.timeout:
                    break
                except Exception as exc:  # noqa: BLE001 - recording what each library raises
                    raised = type(exc).__name__
                    break
    return errors, bodies, raised


KOMBU_SAME = {
    "malformed json": envelope(body="eyJub3Q="),
    "disallowed content type": envelope(**{"content-type": "application/x-yaml"}),
    "unknown compression": envelope(headers={"compression": "x/unknown"}),
    "corrupt compressed body": envelope(headers={"compression": "application/x-gzip"}),
    "body not utf-8": envelope(body="/w=="),
}


@pytest.mark.parametrize("case", sorted(KOMBU_SAME))
def test_decode_errors_take_kombus_path(case: str) -> None:
    import kombu

    import kombu_like

    ours = _on_memory(kombu_like, KOMBU_SAME[case])
    theirs = _on_memory(kombu, KOMBU_SAME[case])
    # on_decode_error is called once, with the same kind of error, and the good message follows
    assert len(ours[0]) == len(theirs[0]) == 1, (ours, theirs)
    if case == "corrupt compressed body":
        assert (theirs[0], ours[0]) == (["error"], ["DecodeError"])  # zlib.error, wrapped here
    elif case == "unknown compression":
        assert (theirs[0], ours[0]) == (["KeyError"], ["_UnknownCompression"])  # ours is a KeyError too
    else:
        assert ours[0] == theirs[0]
    assert ours[1] == theirs[1] == [{"good": 1}]
    assert ours[2] is theirs[2] is None


@pytest.mark.parametrize("case", ["headers is a list", "headers is text"])
def test_malformed_envelopes_crash_kombu_but_not_us(case: str) -> None:
    import kombu

    import kombu_like

    payload, _ = POISON[case]
    theirs = _on_memory(kombu, payload)
    ours = _on_memory(kombu_like, payload)
    assert theirs[2] == "AttributeError"  # Kombu 5.7: out of drain_events, on_decode_error never called
    assert ours == (["DecodeError"], [{"good": 1}], None)


# -- generated: building and decoding never fail with anything but a decode error -------------
_any = st.one_of(garbage, st.binary(max_size=32), st.builds(object))


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(_any, st.text(max_size=20)),
    content_type=_any,
    content_encoding=_any,
    delivery_info=_any,
    properties=_any,
    headers=st.one_of(_any, st.dictionaries(st.just("compression"), _any, max_size=1)),
    accept=st.one_of(st.none(), st.just({"application/json"})),
)
def test_any_fields_give_a_message_whose_decode_fails_cleanly(
    body: Any,
    content_type: Any,
    content_encoding: Any,
    delivery_info: Any,
    properties: Any,
    headers: Any,
    accept: Any,
) -> None:
    message = Message(
        body=body,
        content_type=content_type,
        content_encoding=content_encoding,
        delivery_info=delivery_info,
        properties=properties,
        headers=headers,
        postencode="utf-8",
        accept=accept,
    )
    repr(message)
    assert isinstance(message.headers, dict) and isinstance(message.properties, dict)
    assert isinstance(message.delivery_info, dict)
    try:
        message.decode()
    except (KombuError, KeyError):  # KeyError: an unknown compression method, as in Kombu
        pass
