"""Kombu 5.7 and kombu_like driven in lockstep on every broker transport (see machine.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis.stateful import run_state_machine_as_test

import kombu_like

from .harness import LIBRARIES, Outcome, Side, unique_prefix
from .machine import TransportSpec, machine_for
from .profiles import profile

pytestmark = pytest.mark.interop

SQS_OPTIONS = {"region": "us-east-1", "wait_time_seconds": 0, "polling_interval": 0.1}


def routable(url: str, options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The exchange types whose routing the transport declares it supports.

    A transport whose ``capabilities.fanout`` is false (Redis: publish/subscribe reaches
    only listening consumers; SQS: none) is driven without fanout exchanges.
    """
    caps = kombu_like.Connection(url, transport_options=options or {}).transport.capabilities
    kinds = [k for k in ("direct", "topic", "fanout") if k in caps.exchange_types]
    return tuple(k for k in kinds if k != "fanout" or caps.fanout)


def run(spec: TransportSpec, examples: int, steps: int) -> None:
    run_state_machine_as_test(machine_for(spec), settings=profile(examples, steps))


def test_memory() -> None:
    # reconnecting with messages unacknowledged is the departure pinned below
    spec = TransportSpec(
        "memory",
        "memory://",
        exchange_types=routable("memory://"),
        reconnect_with_unacked=False,
        retire_deleted=True,
        requeue_only_alone=True,
        restore_reroutes=True,
    )
    run(spec, examples=12, steps=25)


def test_memory_close_gives_unacked_messages_back() -> None:
    # Deliberate departure ("Unacknowledged messages survive a closed channel on
    # memory://"): Kombu's memory channel drops them (do_restore = False)
    left = {}
    for lib, side in {lib: Side(lib, "memory://", unique_prefix()) for lib in LIBRARIES}.items():
        side.connect()
        queue = side.lib.Queue(side.name("q"))(side.channel)
        queue.declare()
        side.lib.Producer(side.channel).publish({"n": 1}, routing_key=side.name("q"))
        assert queue.get(no_ack=False) is not None
        side.close()
        side.connect()
        left[lib] = side.lib.Queue(side.name("q"))(side.channel).queue_declare(passive=True)[1]
        side.close()
    assert left == {"kombu": 0, "kombu_like": 1}


@pytest.mark.redis
def test_redis(redis_url: str) -> None:
    run(
        TransportSpec(
            "redis",
            redis_url,
            exchange_types=routable(redis_url),
            redis_url=redis_url,
            consume_only_ready=True,
            retire_deleted=True,
            requeue_only_alone=True,
            redeclare_exchanges_on_reconnect=True,
            restore_reroutes=True,
        ),
        examples=8,
        steps=20,
    )


@pytest.mark.amqp
def test_amqp(amqp_url: str) -> None:
    run(TransportSpec("amqp", amqp_url, exchange_types=routable(amqp_url)), examples=8, steps=20)


@pytest.mark.sqs
def test_sqs(sqs_endpoint: str) -> None:
    url = f"sqs://testing:testing@{sqs_endpoint.split('://', 1)[1]}"
    spec = TransportSpec(
        "sqs",
        url,
        dict(SQS_OPTIONS),
        exchange_types=routable(url, SQS_OPTIONS),
        can_delete=False,
        reconnect_with_unacked=False,
        restore_reroutes=True,
        rebind_on_reconnect=True,
        purge_only_unheld=True,
    )
    run(spec, examples=5, steps=15)


def test_memory_delete_removes_the_queues_bindings() -> None:
    # Deliberate departure ("Deleting a queue removes its bindings"): Kombu's memory
    # transport keeps routing to a deleted queue's bindings, so a queue declared again under
    # that name receives what the old bindings route
    left = {}
    for lib, side in {lib: Side(lib, "memory://", unique_prefix()) for lib in LIBRARIES}.items():
        side.connect()
        exchange = side.lib.Exchange(side.name("x"), type="direct")
        side.lib.Queue(side.name("q"), exchange, routing_key="old")(side.channel).declare()
        side.lib.Queue(side.name("q"))(side.channel).delete()
        side.lib.Queue(side.name("q"), exchange, routing_key="new")(side.channel).declare()
        side.lib.Producer(side.channel).publish({"n": 1}, exchange=side.name("x"), routing_key="old")
        left[lib] = side.lib.Queue(side.name("q"))(side.channel).queue_declare(passive=True)[1]
        side.close()
    assert left == {"kombu": 1, "kombu_like": 0}


@pytest.mark.parametrize("transport", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_requeue_puts_the_message_back_first(transport: str, request: pytest.FixtureRequest) -> None:
    # Deliberate departure ("A requeued message goes back to the head of its queue"):
    # Kombu's memory and Redis transports append it behind the messages already waiting
    url = "memory://" if transport == "memory" else request.getfixturevalue("redis_url")
    first = {}
    for lib, side in {lib: Side(lib, url, unique_prefix()) for lib in LIBRARIES}.items():
        side.connect()
        queue = side.lib.Queue(side.name("q"))(side.channel)
        try:
            queue.declare()
            for n in (1, 2):
                side.lib.Producer(side.channel).publish({"n": n}, routing_key=side.name("q"))
            queue.get(no_ack=False).requeue()
            message = queue.get(no_ack=False)
            first[lib] = message.payload["n"]
            message.ack()
        finally:
            queue.delete()
            side.close()
    assert first == {"kombu": 2, "kombu_like": 1}


def test_memory_delivers_expired_messages_as_kombu_does() -> None:
    # Kombu's memory transport ignores per-message expiration: a message published with one
    # already past (a Celery task whose ``expires`` has passed) is still delivered
    seen = {}
    for lib, side in {lib: Side(lib, "memory://", unique_prefix()) for lib in LIBRARIES}.items():
        side.connect()
        queue = side.lib.Queue(side.name("q"))(side.channel)
        try:
            queue.declare()
            for n, expiration in ((1, 0), (2, 0.001)):
                side.lib.Producer(side.channel).publish({"n": n}, routing_key=side.name("q"), expiration=expiration)
            time.sleep(0.01)  # past the second message's expiration too
            got = [queue.get(no_ack=True) for _ in range(3)]
            seen[lib] = [None if m is None else (m.payload, m.properties.get("expiration")) for m in got]
        finally:
            queue.delete()
            side.close()
    assert seen["kombu"] == seen["kombu_like"] == [({"n": 1}, "0"), ({"n": 2}, "1"), None]


def test_memory_keeps_auto_delete_and_exclusive_queues_as_kombu_does() -> None:
    # Kombu's memory transport deletes neither an auto_delete queue whose last consumer was
    # cancelled nor an exclusive queue whose channel closed: both go on collecting messages
    seen = {}
    for lib, side in {lib: Side(lib, "memory://", unique_prefix()) for lib in LIBRARIES}.items():
        side.connect()
        names = (side.name("auto"), side.name("excl"))
        try:
            channel = side.conn.channel()
            auto = side.lib.Queue(names[0], auto_delete=True)
            excl = side.lib.Queue(names[1], exclusive=True)
            consumer = side.lib.Consumer(channel, [auto, excl], callbacks=[lambda body, message: None])
            consumer.consume()
            consumer.cancel()
            channel.close()
            for n, name in enumerate(names):
                side.lib.Producer(side.channel).publish({"n": n}, routing_key=name)
            got = [side.lib.Queue(name)(side.channel).get(no_ack=True) for name in names]
            seen[lib] = [None if m is None else m.payload for m in got]
        finally:
            for name in names:
                side.lib.Queue(name)(side.channel).delete()
            side.close()
    assert seen["kombu"] == seen["kombu_like"] == [{"n": 0}, {"n": 1}]


@pytest.mark.redis
def test_redis_routes_through_an_exchange_another_connection_declared(redis_url: str) -> None:
    # Deliberate departure ("Exchanges keep their type on Redis"): Kombu's Redis transport
    # routes a publish to a topic exchange that its connection did not declare as direct, so
    # the pattern binding does not match and the message is dropped
    seen = {}
    for lib, side in {lib: Side(lib, redis_url, unique_prefix()) for lib in LIBRARIES}.items():
        side.connect()
        exchange = side.lib.Exchange(side.name("x"), type="topic")
        queue = side.lib.Queue(side.name("q"), exchange, routing_key="a.#")(side.channel)
        try:
            queue.declare()
            side.close()
            side.connect()
            side.lib.Producer(side.channel).publish({"n": 1}, exchange=side.name("x"), routing_key="a.b")
            message = side.lib.Queue(side.name("q"))(side.channel).get(no_ack=True)
            seen[lib] = None if message is None else message.payload
        finally:
            side.lib.Queue(side.name("q"))(side.channel).delete()
            side.lib.Exchange(side.name("x"))(side.channel).delete()
            side.close()
    assert seen == {"kombu": None, "kombu_like": {"n": 1}}


@pytest.mark.parametrize(
    "transport", ["memory", pytest.param("redis", marks=pytest.mark.redis), pytest.param("sqs", marks=pytest.mark.sqs)]
)
def test_requeue_gives_the_message_back_to_its_own_queue(transport: str, request: pytest.FixtureRequest) -> None:
    # Deliberate departure ("A message given back returns to its own queue only"): Kombu's
    # virtual transports route it through its exchange again, so a second queue bound with
    # the same key gets a copy (memory, Redis), or the give-back fails on SQS, where the
    # receipt handle belongs to the first queue
    options: dict[str, Any] = {}
    if transport == "memory":
        url = "memory://"
    elif transport == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = f"sqs://testing:testing@{request.getfixturevalue('sqs_endpoint').split('://', 1)[1]}"
        options = dict(SQS_OPTIONS)
    seen = {}
    for lib, side in {lib: Side(lib, url, unique_prefix(), options) for lib in LIBRARIES}.items():
        side.connect()
        exchange = side.lib.Exchange(side.name("x"), type="direct")
        queues = [side.lib.Queue(side.name(short), exchange, routing_key="a")(side.channel) for short in ("q1", "q2")]
        try:
            for queue in queues:
                queue.declare()
            side.lib.Producer(side.channel).publish({"n": 1}, exchange=side.name("x"), routing_key="a")
            message = queues[0].get(no_ack=False)
            outcome = side.run(lambda s, message=message: message.requeue())
            if outcome.kind == "raised":
                message.ack()  # Kombu kept it as unacknowledged; nothing to give back at close
            seen[lib] = (outcome, [queue.queue_declare(passive=True)[1] for queue in queues])
        finally:
            for queue in queues:
                side.run(lambda s, queue=queue: queue.delete())
            side.close()
    assert seen["kombu_like"] == (Outcome("ok", None), [1, 1])
    if transport == "sqs":
        assert seen["kombu"][0] == Outcome("raised", "ChannelError")  # ReceiptHandleIsInvalid
    else:
        assert seen["kombu"] == (Outcome("ok", None), [1, 2])


@pytest.mark.sqs
def test_sqs_routes_by_bindings_another_connection_declared(sqs_endpoint: str) -> None:
    # Deliberate departure ("Bindings on SQS are shared by a process's connections"): Kombu's
    # SQS transport keeps bindings per connection, so a publish from a connection that did
    # not declare the binding is routed nowhere and dropped
    url = f"sqs://testing:testing@{sqs_endpoint.split('://', 1)[1]}"
    seen = {}
    for lib, side in {lib: Side(lib, url, unique_prefix(), dict(SQS_OPTIONS)) for lib in LIBRARIES}.items():
        side.connect()
        exchange = side.lib.Exchange(side.name("x"), type="direct")
        queue = side.lib.Queue(side.name("q"), exchange, routing_key="a")
        try:
            queue(side.channel).declare()
            with side.lib.Connection(url, transport_options=dict(SQS_OPTIONS)) as other:
                side.lib.Producer(other.default_channel).publish({"n": 1}, exchange=side.name("x"), routing_key="a")
            message = queue(side.channel).get(no_ack=True)
            seen[lib] = None if message is None else message.payload
        finally:
            side.run(lambda s, queue=queue: queue(s.channel).delete())
            side.close()
    assert seen == {"kombu": None, "kombu_like": {"n": 1}}


@pytest.mark.sqs
def test_sqs_requeue_of_a_purged_message_is_not_an_error(sqs_endpoint: str) -> None:
    # Deliberate departure ("Giving back a message SQS no longer has is not an error"):
    # PurgeQueue removes messages in flight too; Kombu's requeue of one then raises
    # ReceiptHandleIsInvalid and keeps it as unacknowledged
    url = f"sqs://testing:testing@{sqs_endpoint.split('://', 1)[1]}"
    seen = {}
    for lib, side in {lib: Side(lib, url, unique_prefix(), dict(SQS_OPTIONS)) for lib in LIBRARIES}.items():
        side.connect()
        queue = side.lib.Queue(side.name("q"))(side.channel)
        try:
            queue.declare()
            side.lib.Producer(side.channel).publish({"n": 1}, routing_key=side.name("q"))
            message = queue.get(no_ack=False)
            queue.purge()
            outcome = side.run(lambda s, message=message: message.requeue())
            if outcome.kind == "raised":
                message.ack()  # Kombu kept it as unacknowledged; nothing to give back at close
            seen[lib] = (outcome, queue.get(no_ack=True))
        finally:
            side.run(lambda s, queue=queue: queue.delete())
            side.close()
    assert seen == {"kombu": (Outcome("raised", "ChannelError"), None), "kombu_like": (Outcome("ok", None), None)}
