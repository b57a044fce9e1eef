"""A consumer driven by the event loop on RabbitMQ, on Kombu and on kombu_like: the same
deliveries, in the same order, under the same prefetch and QoS changes, with the same
redelivery after a cut connection (a recoverable error out of the loop on both)."""

from __future__ import annotations

import importlib
import socket
import time
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from t.faultproxy import FaultProxy
from t.integration.test_amqp import broker_port

pytest.importorskip("kombu.asynchronous.hub")

pytestmark = pytest.mark.amqp

LIBRARIES = ["kombu", "kombu_like"]


def run_until(hub: Any, done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the hub did not get there in time"
        hub.run_once()


def scenario(lib: ModuleType, amqp_url: str) -> list[Any]:
    """Prefetch, a QoS change while running, acks, a cut and a reconnect, as Celery does them."""
    hub = importlib.import_module(f"{lib.__name__}.asynchronous").Hub()
    # a socket kept readable makes every round short on both hubs (neither waits in poll)
    busy, poke = socket.socketpair()
    poke.send(b"x")
    hub.add_reader(busy, lambda: None)
    trace: list[Any] = []
    name = f"hubdiff-{lib.__name__}-{uuid.uuid4().hex[:8]}"
    queue = lib.Queue(name, durable=False)
    received: list[Any] = []
    try:
        with FaultProxy("127.0.0.1", broker_port(amqp_url)) as proxy, lib.Connection(amqp_url) as direct:
            producer = lib.Producer(direct, routing_key=name)
            for i in range(6):
                producer.publish({"i": i}, declare=[queue])
            conn = lib.Connection(proxy.url_for(amqp_url))
            conn.register_with_event_loop(hub)
            trace.append(("evented", conn.transport.implements.asynchronous))
            consumer = lib.Consumer(conn, [queue], on_message=received.append)
            # a property Celery reads to choose channel-wide prefetch on RabbitMQ
            trace.append(("qos semantics match the spec", conn.qos_semantics_matches_spec))
            apply_global = not conn.qos_semantics_matches_spec
            consumer.qos(prefetch_count=2, apply_global=apply_global)
            consumer.consume()
            run_until(hub, lambda: len(received) == 2)
            ready = queue(direct.default_channel).queue_declare(passive=True).message_count
            trace.append(("prefetch 2", len(received), ready))
            consumer.qos(prefetch_count=4, apply_global=apply_global)
            run_until(hub, lambda: len(received) == 4)
            trace.append(("prefetch 4", len(received)))
            for message in received[:3]:
                message.ack()
            run_until(hub, lambda: len(received) == 6)
            trace.append(("delivered", [m.decode()["i"] for m in received]))

            proxy.cut()  # three taken and never acked
            try:
                run_until(hub, lambda: False)
            except conn.recoverable_connection_errors:
                trace.append("recoverable error from the loop")
            hub.reset()  # as Celery's asynloop does before reconnecting
            hub.add_reader(busy, lambda: None)
            conn.collect()

            again = lib.Connection(proxy.url_for(amqp_url))
            again.register_with_event_loop(hub)
            back: list[Any] = []
            lib.Consumer(again, [queue], on_message=back.append, no_ack=True).consume()
            run_until(hub, lambda: len(back) == 3)
            trace.append(("back", sorted((m.decode()["i"], m.delivery_info["redelivered"]) for m in back)))
            # the hub first: Kombu's reader, queued to run again, fails on a released connection
            hub.close()
            again.release()
            queue(direct.default_channel).delete()
    finally:
        hub.close()
        busy.close()
        poke.close()
    return trace


def test_hub_consumer_on_rabbitmq_behaves_as_kombus(amqp_url: str) -> None:
    theirs = scenario(importlib.import_module("kombu"), amqp_url)
    ours = scenario(importlib.import_module("kombu_like"), amqp_url)
    assert ours == theirs
    assert theirs[-1] == ("back", [(3, True), (4, True), (5, True)])
