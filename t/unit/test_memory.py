"""The in-memory transport: brokers per virtual host, threads, priority, TTL, max length."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu_like.exceptions import ChannelError, NotFound, PreconditionFailed
from kombu_like.transport import memory
from kombu_like.transport.memory import Broker, get_broker, reset_brokers

Collect = Callable[..., list[Message]]


def vhost() -> str:
    return f"vh-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def registry_connections() -> Iterator[Callable[[str], Connection]]:
    """Connections through the process-wide broker registry (by URL), released afterwards."""
    made: list[Connection] = []

    def factory(url: str) -> Connection:
        conn = Connection(url)
        made.append(conn)
        return conn

    yield factory
    for conn in made:
        conn.release()


def exists(conn: Connection, name: str) -> bool:
    channel = conn.channel()
    try:
        Queue(name)(channel).queue_declare(passive=True)
        return True
    except NotFound:
        return False
    finally:
        channel.close()


class TestBrokersPerVirtualHost:
    def test_same_virtual_host_shares_one_broker(self, registry_connections: Callable[[str], Connection]) -> None:
        url = f"memory:///{vhost()}"
        first, second = registry_connections(url), registry_connections(url)
        Queue("shared")(first).declare()
        first.Producer().publish("across connections", routing_key="shared")
        message = Queue("shared")(second).get()
        assert message is not None and message.payload == "across connections"

    def test_virtual_hosts_are_separate(self, registry_connections: Callable[[str], Connection]) -> None:
        name = f"only-here-{uuid.uuid4().hex[:8]}"
        first = registry_connections(f"memory:///{vhost()}")
        other = registry_connections(f"memory:///{vhost()}")
        Queue(name)(first).declare()
        assert exists(first, name)
        assert not exists(other, name)

    def test_default_and_named_memory_urls_are_separate(
        self, registry_connections: Callable[[str], Connection]
    ) -> None:
        name = f"in-default-{uuid.uuid4().hex[:8]}"
        default = registry_connections("memory://")
        other = registry_connections(f"memory://{vhost()}")
        Queue(name)(default).declare()
        try:
            assert not exists(other, name), "memory://<name> must not share memory://'s broker"
        finally:
            Queue(name)(default).delete()

    def test_explicit_broker_is_private(self, registry_connections: Callable[[str], Connection]) -> None:
        name = f"private-{uuid.uuid4().hex[:8]}"
        private = Connection("memory://", transport_options={"broker": Broker()})
        try:
            Queue(name)(private).declare()
            assert not exists(registry_connections("memory://"), name)
        finally:
            private.release()

    def test_connections_with_the_same_broker_share_it(self) -> None:
        broker = Broker()
        first = Connection("memory://", transport_options={"broker": broker})
        second = Connection("memory://x", transport_options={"broker": broker})
        try:
            Queue("via-broker")(first).declare()
            assert exists(second, "via-broker")
        finally:
            first.release()
            second.release()

    def test_get_broker_is_per_virtual_host(self) -> None:
        name = vhost()
        assert get_broker(name) is get_broker(name)
        assert get_broker(name) is not get_broker(vhost())

    def test_reset_brokers(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(memory, "_brokers", {})
        before = get_broker("/")
        reset_brokers()
        assert get_broker("/") is not before

    def test_broker_survives_connection_close(self, registry_connections: Callable[[str], Connection]) -> None:
        url = f"memory:///{vhost()}"
        first = registry_connections(url)
        Queue("durable-ish")(first).declare()
        first.Producer().publish("kept", routing_key="durable-ish")
        first.release()
        message = Queue("durable-ish")(registry_connections(url)).get()
        assert message is not None and message.payload == "kept"


class TestCapabilities:
    def test_declared_capabilities(self, conn: Connection) -> None:
        capabilities = conn.transport.capabilities
        assert capabilities.priority and capabilities.ttl and capabilities.batch_publish
        assert capabilities.exchange_types == {"direct", "topic", "fanout", "headers"}
        assert not capabilities.exchange_bindings
        assert conn.transport.implements is capabilities

    def test_event_loop_declared_only_with_the_option_and_driven_either_way(self) -> None:
        import kombu

        from kombu_like.asynchronous import Hub

        # frameworks choose their loop by the declaration: by default the one Kombu's makes
        assert kombu.Connection("memory://").transport.implements.asynchronous is False
        broker = Broker()
        plain = Connection("memory://", transport_options={"broker": broker})
        evented = Connection("memory://", transport_options={"broker": broker, "event_loop": True})
        assert not plain.is_evented and not plain.transport.implements.asynchronous
        assert not memory.Transport.capabilities.asynchronous
        assert evented.is_evented and evented.transport.implements.asynchronous
        with pytest.raises(ValueError, match="event_loop"):
            Connection("memory://", transport_options={"event_loop": "sometimes"}).connect()
        # undeclared, a hub still drives the connection
        queue = Queue(f"evloop-{uuid.uuid4().hex[:8]}")
        got: list[Any] = []
        hub = Hub()
        try:
            with plain, Consumer(plain, [queue], callbacks=[lambda body, msg: (got.append(body), msg.ack())]):
                plain.register_with_event_loop(hub)
                Producer(plain).publish("via hub", routing_key=queue.name, declare=[queue])
                deadline = time.monotonic() + 5
                while not got and time.monotonic() < deadline:
                    hub.run_once()
        finally:
            hub.close()
            evented.release()
        assert got == ["via hub"]

    def test_exchange_to_exchange_binding_is_refused(self, conn: Connection) -> None:
        with pytest.raises(NotImplementedError, match="memory"):
            Exchange("e2e_dest")(conn).bind_to("e2e_src")

    def test_driver(self, conn: Connection) -> None:
        assert conn.transport.driver_type == "memory"
        assert conn.transport.driver_name == "memory"


class TestThreads:
    def test_blocked_consumer_wakes_on_publish_from_other_thread(self, connect: Callable[..., Connection]) -> None:
        consumer_conn, producer_conn = connect(), connect()
        queue = Queue("wake")
        queue(consumer_conn).declare()
        received: list[Any] = []
        errors: list[BaseException] = []
        ready = threading.Event()

        def consume() -> None:
            try:
                with Consumer(consumer_conn, [queue], callbacks=[lambda body, message: received.append(body)]):
                    ready.set()
                    consumer_conn.drain_events(timeout=30)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        assert ready.wait(10)
        producer_conn.Producer().publish("wake up", routing_key="wake")
        thread.join(10)
        assert not thread.is_alive(), "the blocked drain_events did not wake up on publish"
        assert errors == []
        assert received == ["wake up"]

    def test_each_message_delivered_once_to_competing_consumers(self, connect: Callable[..., Connection]) -> None:
        total = 200
        queue = Queue("compete")
        producer_conn = connect()
        queue(producer_conn).declare()
        received: list[int] = []
        lock = threading.Lock()
        done = threading.Event()
        errors: list[BaseException] = []

        def on_message(body: Any, message: Message) -> None:
            with lock:
                received.append(body)
                if len(received) >= total:
                    done.set()
            message.ack()

        def consume(conn: Connection) -> None:
            try:
                with Consumer(conn, [queue], callbacks=[on_message], prefetch_count=10):
                    while not done.is_set():
                        try:
                            conn.drain_events(timeout=0.2)
                        except socket.timeout:
                            continue
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=consume, args=(connect(),), daemon=True) for _ in range(3)]
        for thread in threads:
            thread.start()
        producer = producer_conn.Producer()
        for n in range(total):
            producer.publish(n, routing_key="compete")
        assert done.wait(20)
        for thread in threads:
            thread.join(10)
        assert errors == []
        assert sorted(received) == list(range(total))

    def test_publishing_from_many_threads(self, connect: Callable[..., Connection], collect: Collect) -> None:
        queue = Queue("many_publishers")
        conn = connect()
        queue(conn).declare()

        def publish(worker: int) -> None:
            with connect() as own:
                producer = own.Producer()
                for n in range(50):
                    producer.publish([worker, n], routing_key="many_publishers")

        threads = [threading.Thread(target=publish, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        received = collect(conn, queue(conn), 200)
        assert sorted(tuple(m.payload) for m in received) == [(w, n) for w in range(4) for n in range(50)]
        for worker in range(4):
            assert [m.payload[1] for m in received if m.payload[0] == worker] == list(range(50))


class TestPriority:
    def test_higher_priority_first(self, conn: Connection, collect: Collect) -> None:
        queue = Queue("prio", max_priority=9)(conn)
        queue.declare()
        producer = Producer(conn)
        for priority in (3, 0, 9, 5, 1):
            producer.publish(priority, routing_key="prio", priority=priority)
        assert [m.payload for m in collect(conn, queue, 5)] == [9, 5, 3, 1, 0]

    def test_priority_above_max_is_capped(self, conn: Connection, collect: Collect) -> None:
        queue = Queue("prio_cap", max_priority=5)(conn)
        queue.declare()
        producer = Producer(conn)
        producer.publish("five", routing_key="prio_cap", priority=5)
        producer.publish("twenty", routing_key="prio_cap", priority=20)
        producer.publish("one", routing_key="prio_cap", priority=1)
        assert [m.payload for m in collect(conn, queue, 3)] == ["five", "twenty", "one"]

    def test_without_max_priority_order_is_fifo(self, conn: Connection, collect: Collect) -> None:
        queue = Queue("no_prio")(conn)
        queue.declare()
        producer = Producer(conn)
        for priority in (1, 9, 5):
            producer.publish(priority, routing_key="no_prio", priority=priority)
        assert [m.payload for m in collect(conn, queue, 3)] == [1, 9, 5]

    def test_basic_get_respects_priority(self, conn: Connection) -> None:
        queue = Queue("prio_get", max_priority=3)(conn)
        queue.declare()
        Producer(conn).publish("low", routing_key="prio_get", priority=0)
        Producer(conn).publish("high", routing_key="prio_get", priority=3)
        message = queue.get()
        assert message is not None and message.payload == "high"

    def test_requeued_message_keeps_its_priority(self, conn: Connection) -> None:
        queue = Queue("prio_requeue", max_priority=5)(conn)
        queue.declare()
        producer = Producer(conn)
        producer.publish("high", routing_key="prio_requeue", priority=5)
        producer.publish("low", routing_key="prio_requeue", priority=1)
        first = queue.get()
        assert first is not None and first.payload == "high"
        first.requeue()
        again = queue.get()
        assert again is not None and again.payload == "high"

    def test_redeclare_with_other_max_priority_fails(self, conn: Connection) -> None:
        Queue("prio_redeclare", max_priority=5)(conn).declare()
        with pytest.raises(PreconditionFailed, match="x-max-priority"):
            Queue("prio_redeclare", max_priority=7)(conn.channel()).declare()


class TestConsumerTags:
    def test_consuming_again_under_a_tag_replaces_the_consumer(self, conn: Connection) -> None:
        # as on Kombu's virtual channels (AMQP brokers answer NOT_ALLOWED instead)
        channel = conn.channel()
        for name in ("tag_first", "tag_second"):
            Queue(name)(channel).declare()
        got: list[tuple[str, Any]] = []
        channel.basic_consume("tag_first", callback=lambda m: got.append(("old", m.body)), consumer_tag="t1")
        channel.basic_consume("tag_second", callback=lambda m: got.append(("new", m.body)), consumer_tag="t1")
        producer = Producer(channel)
        producer.publish("a", routing_key="tag_first")
        producer.publish("b", routing_key="tag_second")
        conn.drain_events(timeout=1)
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.1)  # nobody consumes tag_first any more
        assert [who for who, _ in got] == ["new"]
        assert Queue("tag_first")(channel).get() is not None


class TestExpiry:
    @pytest.fixture
    def broker(self) -> Broker:
        """A broker that drops expired messages, as RabbitMQ does (not the default)."""
        return Broker(honour_expiration=True)

    def test_message_expiration(self, conn: Connection, collect: Collect) -> None:
        queue = Queue("exp")(conn)
        queue.declare()
        producer = Producer(conn)
        producer.publish("short", routing_key="exp", expiration=0.05)
        producer.publish("long", routing_key="exp", expiration=60)
        time.sleep(0.2)  # let the short-lived message expire
        assert [m.payload for m in collect(conn, queue)] == ["long"]
        assert queue.get() is None

    def test_queue_message_ttl(self, conn: Connection) -> None:
        queue = Queue("ttl", message_ttl=0.05)(conn)
        queue.declare()
        Producer(conn).publish("gone", routing_key="ttl")
        time.sleep(0.2)  # let it expire
        assert queue.get() is None

    def test_shorter_of_message_expiration_and_queue_ttl_wins(self, conn: Connection) -> None:
        long_queue = Queue("ttl_long", message_ttl=60)(conn)
        short_queue = Queue("ttl_short", message_ttl=0.05)(conn)
        long_queue.declare()
        short_queue.declare()
        Producer(conn).publish("msg short", routing_key="ttl_long", expiration=0.05)
        Producer(conn).publish("queue short", routing_key="ttl_short", expiration=60)
        time.sleep(0.2)  # let both expire
        assert long_queue.get() is None
        assert short_queue.get() is None

    def test_by_default_expired_messages_are_kept_as_kombu_keeps_them(self) -> None:
        # the default broker, and any made without honour_expiration (Kombu's memory
        # transport ignores expiration; t/differential checks that against Kombu)
        for broker in (None, Broker()):
            options = {"broker": broker} if broker else {}
            with Connection("memory://", transport_options=options) as conn:
                name = f"exp_kept_{uuid.uuid4().hex[:8]}"
                kept = Queue(name)(conn)
                ttl = Queue(f"{name}_ttl", message_ttl=0.05)(conn)
                kept.declare()
                ttl.declare()
                Producer(conn).publish("kept", routing_key=kept.name, expiration=0)
                Producer(conn).publish("gone", routing_key=ttl.name)
                time.sleep(0.2)  # past the queue's TTL
                message = kept.get()
                assert message is not None and message.payload == "kept"
                assert message.properties["expiration"] == "0"
                assert ttl.get() is None  # a queue's own TTL still applies
                kept.delete()
                ttl.delete()

    def test_unexpired_message_is_delivered(self, conn: Connection) -> None:
        queue = Queue("ttl_fresh", message_ttl=60)(conn)
        queue.declare()
        Producer(conn).publish("fresh", routing_key="ttl_fresh", expiration=60)
        message = queue.get()
        assert message is not None and message.payload == "fresh"


class TestMaxLength:
    def test_drops_oldest(self, conn: Connection, collect: Collect) -> None:
        queue = Queue("maxlen", max_length=3)(conn)
        queue.declare()
        producer = Producer(conn)
        for n in range(5):
            producer.publish(n, routing_key="maxlen")
        assert queue.queue_declare(passive=True).message_count == 3
        assert [m.payload for m in collect(conn, queue, 3)] == [2, 3, 4]


class TestAcknowledgementBookkeeping:
    def test_requeue_goes_to_the_head(self, conn: Connection) -> None:
        queue = Queue("head")(conn)
        queue.declare()
        for label in ("a", "b", "c"):
            Producer(conn).publish(label, routing_key="head")
        first = queue.get()
        assert first is not None and first.payload == "a"
        first.requeue()
        again = queue.get()
        assert again is not None and again.payload == "a" and again.redelivered

    def test_restored_messages_keep_their_order(self, conn: Connection, collect: Collect) -> None:
        queue = Queue("order_restore")
        queue(conn).declare()
        for n in range(4):
            Producer(conn).publish(n, routing_key="order_restore")
        channel = conn.channel()
        collect(conn, queue, 4, ack=False, channel=channel)
        channel.close()
        again = collect(conn, queue, 4)
        assert [m.payload for m in again] == [0, 1, 2, 3]
        assert all(m.redelivered for m in again)

    def test_ack_multiple(self, connect: Callable[..., Connection], collect: Collect) -> None:
        conn = connect()
        queue = Queue("ack_multi")(conn)
        queue.declare()
        for n in range(3):
            Producer(conn).publish(n, routing_key="ack_multi")
        received = collect(conn, queue, 3, ack=False)
        received[-1].ack(multiple=True)
        conn.release()
        assert Queue("ack_multi")(connect()).get() is None

    def test_reject_is_not_restored_on_close(self, connect: Callable[..., Connection]) -> None:
        conn = connect()
        queue = Queue("rej")(conn)
        queue.declare()
        Producer(conn).publish("x", routing_key="rej")
        message = queue.get()
        assert message is not None
        message.reject()
        conn.release()
        assert Queue("rej")(connect()).get() is None

    def test_queue_size_excludes_unacked(self, conn: Connection) -> None:
        queue = Queue("sizes")(conn)
        queue.declare()
        Producer(conn).publish(1, routing_key="sizes")
        Producer(conn).publish(2, routing_key="sizes")
        assert queue.get() is not None
        assert queue.queue_declare(passive=True).message_count == 1


class TestQueueLifecycle:
    def test_auto_delete_queue_stays_by_default(self, conn: Connection) -> None:
        """As on Kombu's memory transport: kept on cancel and on channel close, still filling."""
        queue = Queue("autodel_kept", auto_delete=True)
        channel = conn.channel()
        consumer = Consumer(channel, [queue], callbacks=[lambda body, message: None])
        consumer.consume()
        consumer.cancel()
        assert exists(conn, "autodel_kept")
        consumer.consume()
        channel.close()
        assert exists(conn, "autodel_kept")
        Producer(conn).publish("later", routing_key="autodel_kept")
        message = Queue("autodel_kept")(conn).get()
        assert message is not None and message.payload == "later"

    def test_auto_delete_queue_goes_when_last_consumer_cancels_if_honoured(
        self, connect: Callable[..., Connection]
    ) -> None:
        conn = connect(transport_options={"broker": Broker(honour_auto_delete=True)})
        queue = Queue("autodel", auto_delete=True)
        first = Consumer(conn, [queue], callbacks=[lambda body, message: None])
        second = Consumer(conn, [queue], callbacks=[lambda body, message: None])
        first.consume()
        second.consume()
        first.cancel()
        assert exists(conn, "autodel")
        second.cancel()
        assert not exists(conn, "autodel")

    def test_exclusive_queue_goes_with_its_channel_if_honoured(self, conn: Connection, broker: Broker) -> None:
        channel = conn.channel()
        Queue("excl_kept", exclusive=True)(channel).declare()
        channel.close()
        assert exists(conn, "excl_kept"), "kept by default, as on Kombu's memory transport"
        broker.honour_auto_delete = True
        channel = conn.channel()
        Queue("excl", exclusive=True)(channel).declare()
        assert exists(conn, "excl")
        channel.close()
        assert not exists(conn, "excl")

    def test_delete_if_empty(self, conn: Connection) -> None:
        queue = Queue("if_empty")(conn)
        queue.declare()
        Producer(conn).publish(1, routing_key="if_empty")
        with pytest.raises(PreconditionFailed):
            Queue("if_empty")(conn.channel()).delete(if_empty=True)
        assert exists(conn, "if_empty")

    def test_delete_if_unused(self, conn: Connection) -> None:
        queue = Queue("if_unused")
        with Consumer(conn, [queue], callbacks=[lambda body, message: None]):
            with pytest.raises(PreconditionFailed):
                Queue("if_unused")(conn.channel()).delete(if_unused=True)
        Queue("if_unused")(conn).delete(if_unused=True)
        assert not exists(conn, "if_unused")

    def test_delete_cancels_consumers(self, conn: Connection) -> None:
        queue = Queue("delete_consumed")
        consumer = Consumer(conn, [queue], callbacks=[lambda body, message: None])
        consumer.consume()
        Queue("delete_consumed")(conn.channel()).delete()
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.05)

    def test_exchange_delete_if_unused(self, conn: Connection) -> None:
        exchange = Exchange("ex_in_use")
        Queue("ex_in_use_q", exchange, "k")(conn).declare()
        with pytest.raises(PreconditionFailed):
            exchange(conn.channel()).delete(if_unused=True)

    def test_closed_channel_refuses_work(self, conn: Connection) -> None:
        channel = conn.channel()
        channel.close()
        with pytest.raises(ChannelError, match="closed"):
            Queue("closed_chan")(channel).declare()

    def test_closed_connection_refuses_new_channels(self, conn: Connection) -> None:
        from kombu_like.exceptions import ConnectionError

        raw = conn.connection
        conn.release()
        with pytest.raises(ConnectionError):
            raw.channel()


def test_message_to_python_as_in_kombu() -> None:
    with Connection("memory://", transport_options={"broker": Broker()}) as conn:
        channel = conn.default_channel
        queue = Queue("m2p", routing_key="m2p")(channel)
        queue.declare()
        Producer(conn).publish({"n": 1}, routing_key="m2p", headers={"h": "v"})
        received = queue.get(no_ack=True)
        assert received is not None
        # a message is returned as it is; an envelope becomes a message
        assert channel.message_to_python(received) is received
        converted = channel.message_to_python(received._raw)
        assert isinstance(converted, Message)
        assert (converted.payload, converted.headers, converted.content_type) == (
            {"n": 1},
            {"h": "v"},
            "application/json",
        )
