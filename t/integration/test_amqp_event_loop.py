"""AMQP consumers driven by Kombu's event loop (:class:`kombu_like.asynchronous.Hub`) on
RabbitMQ: deliveries, prefetch, QoS changed while running, heartbeats from the hub's timer,
a cut connection, and a close that leaves nothing behind."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Producer, Queue
from kombu_like.asynchronous import Hub
from kombu_like.exceptions import ConnectionError as KombuConnectionError
from t.faultproxy import FaultProxy
from t.integration.test_amqp import Relay, broker_port, rabbitmqctl, tls_files, tls_relay  # noqa: F401 - amqps fixtures

pytestmark = pytest.mark.amqp


@pytest.fixture
def hub() -> Iterator[Hub]:
    loop = Hub()
    yield loop
    loop.close()


def run_until(hub: Hub, done: Callable[[], bool], timeout: float = 5.0) -> None:
    """Run rounds of ``hub`` until ``done()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the hub did not get there in time"
        hub.run_once()


class Received(list[Any]):
    """Messages a consumer received; each ends the hub's round, so a test sees it at once
    (a round otherwise goes on to poll the sockets)."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def __call__(self, message: Any) -> None:
        self.append(message)
        self.hub.call_soon(_nothing)


def _nothing() -> None:
    pass


def live_timers(hub: Hub) -> list[Any]:
    """The hub's timer entries that are still to run (cancelled ones wait to be skipped)."""
    return [item.entry for item in hub.timer.queue if not item.entry.cancelled]


def ready_count(conn: Connection, queue: Queue) -> int:
    """Messages the broker holds ready (neither delivered nor unacked)."""
    return int(queue(conn.default_channel).queue_declare(passive=True).message_count)


def test_hub_consumer_respects_prefetch_and_a_qos_change_while_running(
    amqp_url: str, unique_name: str, hub: Hub
) -> None:
    threads_before = set(threading.enumerate())
    queue = Queue(unique_name, durable=False)
    received = Received(hub)
    with Connection(amqp_url) as publisher:
        producer = Producer(publisher, routing_key=unique_name)
        for i in range(6):
            producer.publish({"i": i}, declare=[queue])
        conn = Connection(amqp_url)
        assert conn.transport.implements.asynchronous and conn.is_evented
        conn.register_with_event_loop(hub)
        fd = conn.connection.sock.fileno()
        assert fd in hub.readers
        consumer = Consumer(conn, [queue], on_message=received)
        # per channel (global), as Celery sets it on RabbitMQ: a per-consumer limit would
        # not change for a consumer that exists already (Celery reads this property)
        assert conn.qos_semantics_matches_spec is False
        consumer.qos(prefetch_count=2, apply_global=True)
        consumer.consume()

        # the broker stops at the prefetch limit: two out, four still ready
        run_until(hub, lambda: len(received) == 2)
        assert ready_count(publisher, queue) == 4
        assert len(received) == 2

        # a larger prefetch, set from the loop's thread while it runs, lets two more out
        hub.call_soon(consumer.qos, 0, 4, True)
        run_until(hub, lambda: len(received) == 4)
        assert ready_count(publisher, queue) == 2

        # acks make room for the rest
        for message in received:
            message.ack()
        run_until(hub, lambda: len(received) == 6)
        for message in received[4:]:
            message.ack()
        assert sorted(m.decode()["i"] for m in received) == list(range(6))
        assert ready_count(publisher, queue) == 0

        consumer.cancel()
        conn.close()
        # nothing of the connection is left in the loop: no reader, no timer entry
        assert fd not in hub.readers and not hub.writers
        assert not live_timers(hub)
        queue(publisher.default_channel).delete()
    assert set(threading.enumerate()) <= threads_before


def test_deliveries_read_by_a_publish_are_handed_over_by_the_hub(amqp_url: str, unique_name: str, hub: Hub) -> None:
    # a publish looks at what came in and may read the deliveries off the socket, after
    # which the socket is no longer readable: the hub must still hand them over
    queue = Queue(unique_name, durable=False, auto_delete=True)
    received = Received(hub)
    with Connection(amqp_url, heartbeat=30) as conn:
        conn.register_with_event_loop(hub)
        with Consumer(conn, [queue], on_message=received, no_ack=True):
            producer = Producer(conn, routing_key=unique_name)
            for i in range(20):
                producer.publish({"i": i})
            producer.publish({"i": 20}, confirm_timeout=5)  # any confirmed publish reads on
            run_until(hub, lambda: len(received) == 21)
            assert [m.decode()["i"] for m in received] == list(range(21))

            # taken out of the loop, the connection is drained the blocking way again
            conn.transport.unregister_from_event_loop(conn.connection, hub)
            assert not hub.readers
            producer.publish({"i": 21})
            conn.drain_events(timeout=5)
            assert received[-1].decode() == {"i": 21} and len(received) == 22
            assert not live_timers(hub)  # nor heartbeats

            # a hub reset (Celery's, after a connection error) takes the reader with it
            conn.register_with_event_loop(hub)
            assert hub.readers and live_timers(hub)
            hub.reset()
            assert not hub.readers and not live_timers(hub)
            assert conn.connection.loop_reader is None


def test_after_a_callback_raised_the_loop_goes_on_with_the_messages_read_with_it(
    amqp_url: str, unique_name: str, hub: Hub
) -> None:
    queue = Queue(unique_name, durable=False, auto_delete=True)
    received = Received(hub)

    def on_message(message: Any) -> None:
        received(message)
        if len(received) == 1:
            raise KeyError("raised by the first callback")

    with Connection(amqp_url) as conn:
        producer = Producer(conn, routing_key=unique_name)
        conn.register_with_event_loop(hub)
        with Consumer(conn, [queue], on_message=on_message, no_ack=True):
            for i in range(3):
                producer.publish({"i": i})
            with pytest.raises(KeyError):
                run_until(hub, lambda: False)
            # nothing more comes from the broker: the two read along are still handed out
            run_until(hub, lambda: len(received) == 3)
        assert [m.decode()["i"] for m in received] == [0, 1, 2]


@pytest.mark.parametrize("confirm", [False, True], ids=["plain", "confirms"])
def test_another_thread_publishes_on_the_connection_the_hub_reads(
    amqp_url: str, unique_name: str, hub: Hub, confirm: bool
) -> None:
    # the thread's publishes read the socket too (confirms, what else came): deliveries it
    # reads are handed over by the hub, and the hub never waits for the thread
    queue = Queue(unique_name, durable=False, auto_delete=True)
    received = Received(hub)
    count = 300
    errors: list[BaseException] = []
    with Connection(amqp_url, transport_options={"confirm_publish": confirm}) as conn:
        conn.register_with_event_loop(hub)
        with Consumer(conn, [queue], on_message=received, no_ack=True):

            def publish() -> None:
                try:
                    # a reply the hub reads before this thread waits for it is kept for it
                    # (opening and closing a channel: replies the driver also handles itself)
                    for _ in range(100):
                        conn.channel().close()
                    producer = Producer(conn.channel(), routing_key=unique_name)
                    for i in range(count):
                        producer.publish({"i": i})
                except BaseException as exc:  # reported by the test below
                    errors.append(exc)

            thread = threading.Thread(target=publish)
            thread.start()
            run_until(hub, lambda: len(received) == count or bool(errors), timeout=30)
            thread.join(10)
        assert not errors
        assert [m.decode()["i"] for m in received] == list(range(count))


def test_hub_consumer_over_tls_gets_every_message_whatever_its_size(
    amqp_url: str, unique_name: str, hub: Hub, request: pytest.FixtureRequest
) -> None:
    # TLS decrypts record by record: what one read left inside the SSL object is not seen
    # by the poller, so the hub must read it without waiting for the socket
    queue = Queue(unique_name, durable=False)
    sizes = [10, 70_000, 300_000, 5, 1_000_000, 20]
    received = Received(hub)
    with Connection(amqp_url) as publisher:
        producer = Producer(publisher, routing_key=unique_name)
        for n, size in enumerate(sizes):
            producer.publish(bytes([n]) * size, declare=[queue])
        relay: Relay = request.getfixturevalue("tls_relay")
        cert, _ = request.getfixturevalue("tls_files")
        with Connection(f"amqps://guest:guest@localhost:{relay.port}//", ssl={"ca_certs": cert}) as conn:
            conn.register_with_event_loop(hub)
            with Consumer(conn, [queue], on_message=received, no_ack=True):
                run_until(hub, lambda: len(received) == len(sizes), timeout=15)
        assert [len(m.body) for m in received] == sizes
        assert [m.body[:1] for m in received] == [bytes([n]) for n in range(len(sizes))]
        queue(publisher.default_channel).delete()


def test_hub_heartbeats_keep_an_idle_connection_alive_and_find_a_silent_broker(
    amqp_url: str, unique_name: str, hub: Hub
) -> None:
    queue = Queue(unique_name, durable=False, auto_delete=True)
    received = Received(hub)
    with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy:
        conn = Connection(proxy.url_for(amqp_url), heartbeat=1)
        conn.register_with_event_loop(hub)
        assert conn.get_heartbeat_interval() == 1 and conn.supports_heartbeats
        assert len(live_timers(hub)) == 1  # the heartbeat entry
        Consumer(conn, [queue], on_message=received, no_ack=True).consume()
        # RabbitMQ closes a connection silent for 3 s at heartbeat=1
        hub.call_later(3.5, hub.stop)
        hub.run_forever()
        with Connection(amqp_url) as publisher:
            Producer(publisher).publish("still here", routing_key=unique_name)
        run_until(hub, lambda: bool(received))
        assert received[0].decode() == "still here"

        # a broker that goes silent is noticed by the hub's heartbeat check (nothing to read)
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(conn.recoverable_connection_errors):
            run_until(hub, lambda: False)
        assert time.monotonic() - started < 4
        assert not live_timers(hub) and not hub.readers
        conn.collect()


def close_from_the_broker(conn: Connection) -> None:
    """Have RabbitMQ close ``conn`` (connection.close, 320 CONNECTION_FORCED), as an operator's
    ``rabbitmqctl close_connection`` does; found by its port, so no other test's is touched."""
    port = conn.connection.sock.getsockname()[1]
    closed = rabbitmqctl(
        "eval",
        '[rabbit_networking:close_connection(P, "closed by a test") || P <- rabbit_networking:connections(), '
        f"rabbit_networking:connection_info(P, [peer_port]) =:= [{{peer_port, {port}}}]].",
    )
    assert closed.strip() == "[ok]", closed


@pytest.mark.parametrize("how", ["cut", "closed by the broker"])
def test_lost_connection_raises_a_recoverable_error_from_the_loop_and_loses_nothing(
    amqp_url: str, unique_name: str, hub: Hub, how: str
) -> None:
    queue = Queue(unique_name, durable=False)
    received = Received(hub)
    with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy, Connection(amqp_url) as direct:
        producer = Producer(direct, routing_key=unique_name)
        for i in range(3):
            producer.publish({"i": i}, declare=[queue])
        url = proxy.url_for(amqp_url) if how == "cut" else amqp_url
        conn = Connection(url)
        conn.register_with_event_loop(hub)
        fd = conn.connection.sock.fileno()
        Consumer(conn, [queue], on_message=received, prefetch_count=1).consume()
        run_until(hub, lambda: len(received) == 1)  # taken, never acked

        if how == "cut":
            proxy.cut()
        else:
            close_from_the_broker(conn)
        with pytest.raises(conn.recoverable_connection_errors) as caught:
            run_until(hub, lambda: False)
        assert isinstance(caught.value, KombuConnectionError)
        assert fd not in hub.readers  # the lost socket no longer watched
        conn.collect()

        # reconnected: the unacked message comes back, nothing is lost
        with Connection(url) as again:
            again.register_with_event_loop(hub)
            Consumer(again, [queue], on_message=received, no_ack=True).consume()
            run_until(hub, lambda: len(received) == 4)
            assert sorted(m.decode()["i"] for m in received[1:]) == [0, 1, 2]
            assert [m.delivery_info["redelivered"] for m in received[1:] if m.decode()["i"] == 0] == [True]
        queue(direct.default_channel).delete()


def consume_on_hub(
    amqp_url: str, hub: Hub, direct: Connection, queue: Queue, count: int
) -> tuple[Connection, Received]:
    """``count`` messages published to ``queue`` and delivered, unacked, to a consumer of a
    connection driven by ``hub``."""
    producer = Producer(direct, routing_key=queue.name)
    for i in range(count):
        producer.publish({"i": i}, declare=[queue])
    conn = Connection(amqp_url)
    conn.register_with_event_loop(hub)
    received = Received(hub)
    Consumer(conn, [queue], on_message=received, prefetch_count=count).consume()
    run_until(hub, lambda: len(received) == count)
    return conn, received


def drop_silently(conn: Connection, direct: Connection, queue: Queue) -> None:
    """Drop ``conn``'s socket without a word; return once the broker has noticed."""
    conn.connection.sock.shutdown(socket.SHUT_RDWR)
    deadline = time.monotonic() + 10
    while queue(direct.default_channel).queue_declare(passive=True).consumer_count:
        assert time.monotonic() < deadline, "the broker did not notice the lost connection"
        time.sleep(0.02)


def loop_finds_it_lost(conn: Connection, hub: Hub) -> None:
    """The hub raises the loss of ``conn`` as a recoverable error; ``conn`` is collected."""
    with pytest.raises(conn.recoverable_connection_errors):
        run_until(hub, lambda: False)
    conn.collect()


def test_acks_made_by_the_loops_callbacks_reach_the_broker_before_the_loop_waits(
    amqp_url: str, unique_name: str, hub: Hub
) -> None:
    # Celery acks from callbacks queued with call_soon; the acks of one round go out
    # together at its end.  The socket is then dropped without a word: what the broker
    # had not heard of would come back, and nothing does.
    queue = Queue(unique_name, durable=False)
    with Connection(amqp_url) as direct:
        conn, received = consume_on_hub(amqp_url, hub, direct, queue, 5)
        for message in received:
            hub.call_soon(message.ack)
        hub.run_once()
        drop_silently(conn, direct, queue)
        assert ready_count(direct, queue) == 0
        loop_finds_it_lost(conn, hub)
        queue(direct.default_channel).delete()


def test_a_rounds_acks_merged_into_one_never_ack_a_message_still_held(
    amqp_url: str, unique_name: str, hub: Hub
) -> None:
    # a round's acks of consecutive deliveries go out as one ack with ``multiple`` set;
    # a message the application still holds below them must not be acked by it
    queue = Queue(unique_name, durable=False)
    with Connection(amqp_url) as direct:
        conn, received = consume_on_hub(amqp_url, hub, direct, queue, 10)
        for message in received[:4]:  # 1..4: merged
            hub.call_soon(message.ack)
        hub.run_once()
        held = received[4]  # kept by the application, unacked
        received[5].reject(requeue=True)  # outside a round: written at once
        for message in received[6:]:  # 7..10 above the held one: one by one
            hub.call_soon(message.ack)
        hub.run_once()
        drop_silently(conn, direct, queue)
        # the held one and the requeued one (delivered again meanwhile) come back; a third
        # would be one acked too many
        deadline = time.monotonic() + 10
        while ready_count(direct, queue) < 2:
            assert time.monotonic() < deadline, "the broker did not give the unacked messages back"
            time.sleep(0.02)
        time.sleep(0.1)
        back = sorted(queue(direct.default_channel).get(no_ack=True).decode()["i"] for _ in range(2))
        assert back == [held.decode()["i"], received[5].decode()["i"]]
        assert ready_count(direct, queue) == 0
        loop_finds_it_lost(conn, hub)
        queue(direct.default_channel).delete()
