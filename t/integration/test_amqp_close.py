"""Closing an AMQP channel or connection right after publishing: confirms and returns that
are still on their way are handled, not dropped with a log line."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from kombu_like import Connection, Exchange, Producer, Queue
from kombu_like.exceptions import MessageReturned


def _closing_noise(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "during closing channel" in r.getMessage()]


def test_close_with_confirms_in_flight_is_quiet(
    amqp_url: str, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    queue = Queue(unique_name, durable=False)
    for _ in range(5):
        with Connection(amqp_url) as conn:
            producer = Producer(conn, routing_key=unique_name)
            for i in range(300):
                producer.publish({"i": i}, declare=[queue])
            channel = conn.channel()
            Producer(channel, routing_key=unique_name).publish({"i": -1})
            channel.close()
    with Connection(amqp_url) as conn:
        count = queue(conn.default_channel).queue_declare(passive=True).message_count
        queue(conn.default_channel).delete()
    assert count == 5 * 301
    assert not _closing_noise(caplog)


def test_mandatory_return_reaches_on_return_even_when_closing_at_once(
    amqp_url: str, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    exchange = Exchange(unique_name, type="direct", durable=False, auto_delete=True)
    returned: list[tuple[str, Any]] = []

    def on_return(exc: BaseException, exchange: str, routing_key: str, message: Any) -> None:
        returned.append((routing_key, message.body))

    for options in ({}, {"track_confirms": False}):
        returned.clear()
        with Connection(amqp_url, transport_options=options) as conn:
            producer = Producer(conn, exchange=exchange, on_return=on_return)
            producer.publish({"x": 1}, routing_key="nobody", mandatory=True, declare=[exchange])
        assert len(returned) == 1, options
        assert returned[0][0] == "nobody"
    assert not _closing_noise(caplog)


def test_mandatory_publish_without_on_return_raises_message_returned(amqp_url: str, unique_name: str) -> None:
    """The producers guide's example: with confirms tracked (the default) an unroutable
    mandatory message raises from publish itself, as on every other transport."""
    exchange = Exchange(unique_name, type="direct", durable=False, auto_delete=True)
    with Connection(amqp_url) as conn:
        producer = Producer(conn, exchange=exchange)
        with pytest.raises(MessageReturned) as info:
            producer.publish("lost?", routing_key="nobody", mandatory=True, declare=[exchange])
        assert info.value.reply_code == 312
        # the channel goes on
        producer.publish("fine", routing_key="nobody")


def test_mandatory_returns_go_to_the_publishing_thread(amqp_url: str, unique_name: str) -> None:
    """A return read by a draining thread is raised in the thread that published."""
    import socket

    exchange = Exchange(unique_name, type="direct", durable=False, auto_delete=True)
    stop = threading.Event()
    drain_errors: list[BaseException] = []
    with Connection(amqp_url) as conn:
        producer = Producer(conn, exchange=exchange)
        exchange(conn.default_channel).declare()

        def drainer() -> None:
            while not stop.is_set():
                try:
                    conn.drain_events(timeout=0.1)
                except socket.timeout:
                    continue
                except Exception as exc:  # noqa: BLE001 - asserted below
                    drain_errors.append(exc)

        thread = threading.Thread(target=drainer, daemon=True)
        thread.start()
        try:
            raised = 0
            for _ in range(50):
                try:
                    producer.publish("lost?", routing_key="nobody", mandatory=True)
                except MessageReturned:
                    raised += 1
        finally:
            stop.set()
            thread.join(5)
    assert raised == 50
    assert not drain_errors, drain_errors


def test_connection_closed_under_a_thread_waiting_for_confirms_is_a_connection_error(
    amqp_url: str, unique_name: str
) -> None:
    # Another thread (a consumer reconnecting) closes the connection while a publisher
    # waits for its confirm: the shutdown wakes the publisher's wait for the socket, and
    # by the time it reads, the socket is gone.  That must be a recoverable connection
    # error, so retry=True retries, and never an AttributeError.
    queue = Queue(unique_name, durable=False)
    with Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
        producer = Producer(conn, routing_key=unique_name)
        producer.publish({"i": 0}, declare=[queue])
        transport = conn.connection._transport
        publisher_waits = threading.Event()
        closed = threading.Event()
        real_readable = transport.socket_readable

        def readable(timeout: float | None) -> bool:
            if threading.current_thread().name != "publisher":
                return real_readable(timeout)
            publisher_waits.set()
            closed.wait(5)
            return True  # a shut-down socket polls readable

        transport.socket_readable = readable
        outcome: list[BaseException | None] = []

        def publish() -> None:
            try:
                producer.publish({"i": 1})
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - the test looks at it
                outcome.append(exc)

        publisher = threading.Thread(target=publish, name="publisher")
        publisher.start()
        assert publisher_waits.wait(5)
        transport.close()  # what a reconnect in another thread does to the old socket
        closed.set()
        publisher.join(10)
        assert not publisher.is_alive()
        assert len(outcome) == 1 and outcome[0] is not None
        assert isinstance(outcome[0], conn.recoverable_connection_errors), repr(outcome[0])

        # with retry=True the same cut is survived: the message is published again
        transport = conn.connection._transport
        publisher_waits.clear()
        closed.clear()
        real_readable = transport.socket_readable
        transport.socket_readable = readable
        outcome.clear()

        def publish_retrying() -> None:
            try:
                producer.publish({"i": 2}, retry=True, retry_policy={"max_retries": 3, "interval_start": 0})
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001
                outcome.append(exc)

        publisher = threading.Thread(target=publish_retrying, name="publisher")
        publisher.start()
        assert publisher_waits.wait(5)
        transport.close()
        closed.set()
        publisher.join(10)
        assert outcome == [None]
        bodies = []
        while (message := queue(conn.default_channel).get(no_ack=True)) is not None:
            bodies.append(message.payload)
        queue(conn.default_channel).delete()
    assert {"i": 2} in bodies
