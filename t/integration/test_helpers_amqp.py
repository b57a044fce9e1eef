"""The helpers (SimpleQueue, pools, mixins, common, pidbox, RPC, events) on RabbitMQ.

:class:`HelperBehaviour` holds the tests; this module runs them on RabbitMQ and
``test_helpers_redis`` on Redis.  Every name is unique per test and everything a test
declares is deleted at its end.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kombu_like import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu_like.common import Broadcast, collect_replies, itermessages, maybe_declare, send_reply
from kombu_like.events import EventPublisher, EventSubscriber
from kombu_like.exceptions import ChannelError, NotFound
from kombu_like.mixins import ConsumerMixin
from kombu_like.pidbox import Mailbox
from kombu_like.pools import ProducerPool
from kombu_like.rpc import DIRECT_REPLY_TO, RemoteError, RpcClient, RpcServer, RpcTimeout
from t.faultproxy import FaultProxy

#: retry quickly: these tests cut connections on purpose
FAST_RETRY = {"interval_start": 0, "interval_step": 0.1, "interval_max": 0.3}


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def drain_until(conn: Connection, predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        try:
            conn.drain_events(timeout=0.2)
        except socket.timeout:
            pass


class Cleanup:
    """Queues and exchanges to delete when the test ends."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def queue(self, name: str) -> str:
        self.queues.append(name)
        return name

    def exchange(self, name: str) -> str:
        self.exchanges.append(name)
        return name

    def run(self) -> None:
        with Connection(self.url, transport_options=self.options) as conn:
            for name in self.queues:
                with contextlib.suppress(ChannelError, NotFound):
                    Queue(name)(conn.channel()).delete()
            for name in self.exchanges:
                with contextlib.suppress(ChannelError, NotFound):
                    Exchange(name)(conn.channel()).delete()


class Threaded:
    """Run a consumer program (``run``) in a thread for the duration of a block."""

    def __init__(self, program: ConsumerMixin) -> None:
        self.program = program
        self.thread = threading.Thread(target=program.run, kwargs={"safety_interval": 0.2}, daemon=True)

    def __enter__(self) -> ConsumerMixin:
        self.thread.start()
        return self.program

    def __exit__(self, *exc_info: Any) -> None:
        self.program.should_stop = True
        self.thread.join(20)
        assert not self.thread.is_alive()


class HelperBehaviour:
    """Helper tests against a real broker; subclasses provide the ``url`` fixture."""

    transport_options: dict[str, Any] = {}
    broker_port = 0

    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def cleanup(self, url: str) -> Iterator[Cleanup]:
        done = Cleanup(url, dict(self.transport_options))
        yield done
        done.run()

    def connection(self, url: str, **options: Any) -> Connection:
        return Connection(url, transport_options={**self.transport_options, **options})

    # -- SimpleQueue -----------------------------------------------------------------------
    def test_simple_queue(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        name = cleanup.queue(unique_name)
        cleanup.exchange(unique_name)
        with self.connection(url) as conn, conn.SimpleQueue(name) as queue:
            for n in range(3):
                queue.put({"n": n}, headers={"h": n})
            wait_for(lambda: queue.qsize() == 3)
            first = queue.get(timeout=10)
            assert (first.payload, first.headers["h"]) == ({"n": 0}, 0)
            first.ack()
            assert queue.get(timeout=10).payload == {"n": 1}
            with pytest.raises(queue.Empty):
                for _ in range(3):
                    queue.get(timeout=1).ack()

    def test_simple_queue_close_gives_messages_back(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        name = cleanup.queue(unique_name)
        cleanup.exchange(unique_name)
        with self.connection(url) as conn:
            with conn.SimpleQueue(name) as queue:
                for n in range(5):
                    queue.put(n)
                queue.get(timeout=10).ack()
            with self.connection(url) as other, other.SimpleQueue(name) as again:
                got = []
                for _ in range(4):
                    message = again.get(timeout=10)
                    got.append(message.payload)
                    message.ack()
        assert sorted(got) == [1, 2, 3, 4]

    # -- pools -----------------------------------------------------------------------------
    def test_pools(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        name = cleanup.queue(unique_name)
        conn = self.connection(url)
        connections = conn.Pool(limit=2)
        producers = ProducerPool(connections, limit=2)
        errors: list[BaseException] = []

        def publish(offset: int) -> None:
            try:
                for i in range(25):
                    with producers.acquire(block=True, timeout=20) as producer:
                        producer.publish({"id": offset + i}, routing_key=name, declare=[Queue(name)])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=publish, args=(n * 100,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert connections.in_use == 0 and connections.idle <= 2
        channels = conn.ChannelPool(limit=1)
        seen: set[int] = set()
        channel = channels.acquire()
        for body, message in itermessages(conn, channel, Queue(name), limit=None, timeout=2):
            seen.add(body["id"])
            message.ack()
            if len(seen) == 100:
                break
        channel.release()
        assert seen == {n * 100 + i for n in range(4) for i in range(25)}
        connections.force_close_all()
        conn.release()

    # -- ConsumerMixin -----------------------------------------------------------------------
    def test_consumer_mixin_survives_connection_cuts(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        name = cleanup.queue(unique_name)
        cleanup.exchange(unique_name)
        queue = Queue(name, Exchange(name), routing_key=name, durable=False)
        received: list[int] = []
        revived: list[bool] = []

        class Worker(ConsumerMixin):
            def __init__(self, connection: Connection) -> None:
                self.connection = connection

            def get_consumers(self, Consumer: Any, channel: Any) -> list[Any]:  # noqa: N803
                return [Consumer(queues=[queue], callbacks=[self.on_message], prefetch_count=10)]

            def on_message(self, body: Any, message: Message) -> None:
                received.append(body["id"])
                message.ack()

            def on_connection_revived(self) -> None:
                revived.append(True)

            def on_connection_error(self, exc: BaseException, interval: float) -> None:
                pass

        with self.connection(url) as direct:
            queue(direct.default_channel).declare()
            producer = Producer(direct, exchange=queue.exchange, routing_key=name)
            with FaultProxy("127.0.0.1", self.broker_port) as proxy:
                worker = Worker(self.connection(proxy.url_for(url), **FAST_RETRY))
                with Threaded(worker):
                    for round_ in range(3):
                        # publish once the worker is connected again: a message that
                        # arrives while the broker still serves a cut connection is the
                        # transport's business (test_faults), not the mixin's
                        wait_for(lambda round_=round_: len(revived) == round_ + 1)
                        for i in range(10):
                            producer.publish({"id": round_ * 10 + i})
                        wait_for(lambda round_=round_: len(set(received)) >= (round_ + 1) * 10)
                        proxy.cut()
                    wait_for(lambda: len(revived) == 4)
                    producer.publish({"id": 30})
                    wait_for(lambda: 30 in received)
        assert set(received) == set(range(31))

    # -- common ----------------------------------------------------------------------------
    def test_maybe_declare_caches_per_connection(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        queue = Queue(cleanup.queue(unique_name), durable=False)
        with self.connection(url) as conn:
            assert maybe_declare(queue, conn.default_channel) is True
            assert maybe_declare(queue, conn.default_channel) is False
            assert queue(conn.channel()).queue_declare(passive=True).queue == unique_name

    def test_broadcast(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        exchange = cleanup.exchange(unique_name)
        got: dict[int, list[Any]] = {1: [], 2: []}
        with self.connection(url) as first, self.connection(url) as second:
            consumers = []
            for n, conn in ((1, first), (2, second)):
                consumer = Consumer(
                    conn,
                    [Broadcast(exchange)],
                    callbacks=[lambda body, message, n=n: (got[n].append(body), message.ack())],
                )
                consumer.consume()
                consumers.append(consumer)
            for conn in (first, second):
                with contextlib.suppress(socket.timeout):  # subscribe before anything is sent
                    conn.drain_events(timeout=0.3)
            Producer(first).publish("to everyone", exchange=Exchange(exchange, type="fanout"))
            drain_until(first, lambda: bool(got[1]))
            drain_until(second, lambda: bool(got[2]))
            for consumer in consumers:
                consumer.cancel()
        assert got == {1: ["to everyone"], 2: ["to everyone"]}

    def test_send_reply_and_collect_replies(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        requests = Queue(cleanup.queue(f"{unique_name}.req"), durable=False)
        replies = Queue(cleanup.queue(f"{unique_name}.reply"), durable=False, auto_delete=True)
        with self.connection(url) as conn:
            producer = Producer(conn)
            producer.publish(
                {"q": 21},
                routing_key=requests.name,
                declare=[requests, replies],
                reply_to=replies.name,
                correlation_id="c1",
            )
            request = None
            deadline = time.monotonic() + 10
            while request is None and time.monotonic() < deadline:
                request = requests(conn.default_channel).get()
            assert request is not None
            send_reply(Exchange(""), request, {"a": request.payload["q"] * 2}, producer=producer)
            request.ack()
            assert list(collect_replies(conn, conn.channel(), replies, limit=1, timeout=10)) == [{"a": 42}]

    # -- pidbox ----------------------------------------------------------------------------
    def _node(
        self, url: str, mailbox: Mailbox, hostname: str, stop: threading.Event, ready: threading.Barrier
    ) -> threading.Thread:
        def run() -> None:
            with self.connection(url) as conn:
                node = mailbox(conn).Node(hostname, state={"name": hostname})

                @node.handler
                def whoami(state: dict[str, Any]) -> str:
                    return str(state["name"])

                @node.handler
                def fail(state: dict[str, Any]) -> None:
                    raise RuntimeError("node failed")

                node.listen()
                with contextlib.suppress(socket.timeout):
                    conn.drain_events(timeout=0.2)
                ready.wait(20)
                while not stop.is_set():
                    with contextlib.suppress(socket.timeout):
                        conn.drain_events(timeout=0.2)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    @pytest.mark.parametrize("exchange_type", ["direct", "fanout"])
    def test_pidbox_multi_call_and_call(self, url: str, unique_name: str, cleanup: Cleanup, exchange_type: str) -> None:
        mailbox = Mailbox(unique_name, type=exchange_type)
        cleanup.exchange(mailbox.exchange.name)
        cleanup.exchange(mailbox.reply_exchange.name)
        stop = threading.Event()
        names = [f"node{n}@{unique_name}" for n in range(3)]
        ready = threading.Barrier(len(names) + 1)
        threads = [self._node(url, mailbox, name, stop, ready) for name in names]
        try:
            ready.wait(20)
            with self.connection(url) as conn:
                bound = mailbox(conn)
                replies = bound.multi_call("whoami", timeout=2)
                assert sorted(replies, key=str) == sorted(({n: n} for n in names), key=str)
                assert bound.call([names[1]], "whoami", timeout=5) == [{names[1]: names[1]}]
                failed = bound.call([names[2]], "fail", timeout=5)
                assert failed == [{names[2]: {"error": "RuntimeError('node failed')"}}]
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)

    def test_pidbox_interoperates_with_kombu(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        import kombu  # a test dependency: interoperability is part of the contract
        import kombu.pidbox

        namespace = unique_name
        cleanup.exchange(f"{namespace}.pidbox")
        cleanup.exchange(f"reply.{namespace}.pidbox")
        stop = threading.Event()
        ready = threading.Barrier(2)
        ours = self._node(url, Mailbox(namespace), f"ours@{namespace}", stop, ready)

        def kombu_node() -> None:
            with kombu.Connection(url) as conn:
                node = kombu.pidbox.Mailbox(namespace)(conn).Node(f"kombu@{namespace}", channel=conn.default_channel)
                node.handlers["whoami"] = lambda state: "kombu node"
                node.listen()
                while not stop.is_set():
                    with contextlib.suppress(socket.timeout):
                        conn.drain_events(timeout=0.2)

        theirs = threading.Thread(target=kombu_node, daemon=True)
        theirs.start()
        try:
            ready.wait(20)
            time.sleep(0.5)  # the Kombu node declares its queue on its own schedule
            with self.connection(url) as conn:
                replies = Mailbox(namespace)(conn).multi_call("whoami", timeout=3)
            assert {name: value for reply in replies for name, value in reply.items()} == {
                f"ours@{namespace}": f"ours@{namespace}",
                f"kombu@{namespace}": "kombu node",
            }
            with kombu.Connection(url) as conn:
                from_kombu = kombu.pidbox.Mailbox(namespace)(conn).call([f"ours@{namespace}"], "whoami", timeout=5)
            assert from_kombu == [{f"ours@{namespace}": f"ours@{namespace}"}]
        finally:
            stop.set()
            ours.join(10)
            theirs.join(10)

    # -- RPC -------------------------------------------------------------------------------
    def expect_direct_reply_to(self) -> bool:
        return False

    def test_rpc(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        name = cleanup.queue(unique_name)
        release = threading.Event()

        def handler(payload: Any) -> Any:
            if payload == "fail":
                raise KeyError("missing")
            if payload == "slow":
                release.wait(10)
            return {"echo": payload}

        server = RpcServer(self.connection(url), name, handler)
        server.declare()
        with Threaded(server), RpcClient(self.connection(url)) as client:
            assert client.call(name, "hello", timeout=10) == {"echo": "hello"}
            assert client.reply_queue is not None
            assert (client.reply_queue.name == DIRECT_REPLY_TO) is self.expect_direct_reply_to()
            with pytest.raises(RemoteError) as info:
                client.call(name, "fail", timeout=10)
            assert info.value.exc_type == "KeyError" and "missing" in info.value.exc_message
            with pytest.raises(RpcTimeout):
                client.call(name, "slow", timeout=0.5)
            release.set()
            # the late reply to "slow" is not taken for this call's answer
            assert client.call(name, "after", timeout=10) == {"echo": "after"}

    def test_rpc_timeout_without_server(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        name = cleanup.queue(unique_name)
        with self.connection(url) as conn:
            Queue(name, durable=False)(conn.default_channel).declare()
            with RpcClient(conn) as client, pytest.raises(RpcTimeout):
                client.call(name, "anyone?", timeout=0.5)

    # -- events ----------------------------------------------------------------------------
    def test_events_group_and_broadcast(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        exchange = cleanup.exchange(unique_name)
        group_seen: list[tuple[int, Any]] = []
        broadcast_seen: list[tuple[int, Any]] = []
        subscribers = []
        for n in (1, 2):
            subscriber = EventSubscriber(self.connection(url), service="svc", exchange=exchange)
            subscriber.subscribe("order.*", lambda event, n=n: group_seen.append((n, event.payload)), name="orders")
            subscriber.subscribe(
                "config.#", lambda event, n=n: broadcast_seen.append((n, event.payload)), broadcast=True, name="config"
            )
            subscriber.declare()
            subscribers.append(subscriber)
        for subscription in subscribers[0].subscriptions + subscribers[1].subscriptions:
            cleanup.queue(subscription.queue.name)
        with Threaded(subscribers[0]), Threaded(subscribers[1]), self.connection(url) as conn:
            publisher = EventPublisher(conn, exchange=exchange)
            for i in range(10):
                publisher.publish("order.created", i)
            publisher.publish("config.changed", "reload")
            wait_for(lambda: len(group_seen) >= 10 and len(broadcast_seen) >= 2)
            time.sleep(0.3)  # room for a wrong duplicate to arrive
        assert sorted(payload for _, payload in group_seen) == list(range(10))
        assert sorted(broadcast_seen) == [(1, "reload"), (2, "reload")]


@pytest.mark.amqp
class TestHelpersAmqp(HelperBehaviour):
    broker_port = 5672
    transport_options = {"confirm_publish": True}

    @pytest.fixture
    def url(self, amqp_url: str) -> str:
        return amqp_url

    def expect_direct_reply_to(self) -> bool:
        return True

    def test_rpc_to_missing_queue_is_returned(self, url: str, unique_name: str) -> None:
        from kombu_like.exceptions import MessageReturned
        from kombu_like.rpc import RpcNoRoute

        with self.connection(url) as conn, RpcClient(conn) as client:
            started = time.monotonic()
            with pytest.raises(RpcNoRoute, match="is the RPC server running") as info:
                client.call(f"{unique_name}.nobody", "hello?", timeout=10)
            # sooner than the timeout, and caught by the handlers the other transports need
            assert time.monotonic() - started < 5
            assert isinstance(info.value, RpcTimeout) and isinstance(info.value, MessageReturned)

    def test_pidbox_node_name_in_use(self, url: str, unique_name: str, cleanup: Cleanup) -> None:
        from kombu_like.exceptions import InconsistencyError

        mailbox = Mailbox(unique_name)
        cleanup.exchange(mailbox.exchange.name)
        with self.connection(url) as first, self.connection(url) as second:
            mailbox(first).Node("same@host").listen()
            with pytest.raises(InconsistencyError, match="already using this process mailbox") as info:
                mailbox(second).Node("same@host").listen()
            assert getattr(info.value.__cause__, "reply_code", None) == 405
