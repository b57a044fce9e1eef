"""EventPublisher / EventSubscriber on memory://: group and broadcast subscriptions."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kombu_like import Connection
from kombu_like.events import Event, EventPublisher, EventSubscriber
from kombu_like.transport.memory import Broker


@pytest.fixture
def options() -> dict[str, Any]:
    return {"broker": Broker()}


@pytest.fixture
def publisher(options: dict[str, Any]) -> Iterator[EventPublisher]:
    connection = Connection("memory://", transport_options=options)
    yield EventPublisher(connection, source="shop")
    connection.release()


def subscriber(options: dict[str, Any], service: str, **kwargs: Any) -> EventSubscriber:
    return EventSubscriber(Connection("memory://", transport_options=options), service=service, **kwargs)


class Running:
    """Subscribers running in threads while the block runs."""

    def __init__(self, *subscribers: EventSubscriber) -> None:
        self.subscribers = subscribers
        self.threads = [
            threading.Thread(target=s.run, kwargs={"safety_interval": 0.1}, daemon=True) for s in subscribers
        ]

    def __enter__(self) -> Running:
        for item in self.subscribers:
            item.declare()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for item in self.subscribers:
            item.should_stop = True
        for thread in self.threads:
            thread.join(10)
            assert not thread.is_alive()


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_group_subscription_delivers_each_event_once(options: dict[str, Any], publisher: EventPublisher) -> None:
    seen: list[tuple[str, Any]] = []
    instances = []
    for tag in ("a", "b"):
        instance = subscriber(options, "billing")
        instance.subscribe("order.*", lambda event, tag=tag: seen.append((tag, event.payload)), name="orders")
        instances.append(instance)
    with Running(*instances):
        for n in range(20):
            publisher.publish("order.created", n)
        wait_for(lambda: len(seen) == 20)
        time.sleep(0.1)  # room for a wrong duplicate to show up
    assert sorted(payload for _, payload in seen) == list(range(20))


def test_broadcast_subscription_reaches_every_instance(options: dict[str, Any], publisher: EventPublisher) -> None:
    seen: dict[str, list[Any]] = {"a": [], "b": []}
    instances = []
    for tag in ("a", "b"):
        instance = subscriber(options, "cache")
        instance.subscribe(
            "config.#", lambda event, tag=tag: seen[tag].append(event.payload), broadcast=True, name="reload"
        )
        instances.append(instance)
    assert instances[0].subscriptions[0].queue.name != instances[1].subscriptions[0].queue.name
    with Running(*instances):
        publisher.publish("config.changed", {"key": "x"})
        publisher.publish("config.db.changed", {"key": "y"})
        wait_for(lambda: len(seen["a"]) == 2 and len(seen["b"]) == 2)
    assert seen["a"] == seen["b"] == [{"key": "x"}, {"key": "y"}]


def test_every_service_gets_its_copy_and_patterns_filter(options: dict[str, Any], publisher: EventPublisher) -> None:
    billing: list[str] = []
    shipping: list[str] = []
    audit: list[str] = []
    first = subscriber(options, "billing")
    first.subscribe("order.*", lambda event: billing.append(event.type))
    second = subscriber(options, "shipping")
    second.subscribe("order.created", lambda event: shipping.append(event.type))
    second.subscribe("#", lambda event: audit.append(event.type), name="audit")
    with Running(first, second):
        for event_type in ("order.created", "order.paid", "order.created.eu", "user.created"):
            publisher.publish(event_type, {})
        wait_for(lambda: len(audit) == 4 and len(billing) == 2 and len(shipping) == 1)
    assert billing == ["order.created", "order.paid"]
    assert shipping == ["order.created"]
    assert audit == ["order.created", "order.paid", "order.created.eu", "user.created"]


def test_event_fields(options: dict[str, Any], publisher: EventPublisher) -> None:
    events: list[Event] = []
    instance = subscriber(options, "inspect")

    @instance.handler("user.*")
    def on_user(event: Event) -> None:
        events.append(event)

    with Running(instance):
        event_id = publisher.publish("user.signed_up", {"id": 9}, headers={"tenant": "t1"})
        wait_for(lambda: len(events) == 1)
    event = events[0]
    assert event.id == event_id
    assert event.type == "user.signed_up"
    assert event.payload == {"id": 9}
    assert event.headers["tenant"] == "t1" and event.headers["x-event-source"] == "shop"
    assert event.timestamp is not None and abs(event.timestamp - time.time()) < 60
    assert event.message.acknowledged


def test_failing_handler_rejects_and_keeps_running(
    options: dict[str, Any], publisher: EventPublisher, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[Any] = []
    instance = subscriber(options, "fragile")

    def handle(event: Event) -> None:
        if event.payload == "bad":
            raise RuntimeError("cannot handle")
        handled.append(event.payload)

    subscription = instance.subscribe("job.*", handle, name="jobs")
    with caplog.at_level(logging.ERROR, logger="kombu_like.events"), Running(instance):
        publisher.publish("job.run", "bad")
        publisher.publish("job.run", "good")
        wait_for(lambda: handled == ["good"])
    assert "rejecting it" in caplog.text and "job.run" in caplog.text
    with Connection("memory://", transport_options=options) as conn:
        assert subscription.queue(conn.default_channel).queue_declare(passive=True).message_count == 0


def test_requeue_on_error_redelivers(options: dict[str, Any], publisher: EventPublisher) -> None:
    attempts: list[bool] = []
    instance = subscriber(options, "retrying", requeue_on_error=True)

    def handle(event: Event) -> None:
        attempts.append(event.message.redelivered)
        if len(attempts) == 1:
            raise RuntimeError("try again")

    instance.subscribe("retry.me", handle)
    with Running(instance):
        publisher.publish("retry.me", 1)
        wait_for(lambda: len(attempts) == 2)
    assert attempts == [False, True]


def test_declared_group_queue_keeps_events_until_a_subscriber_runs(
    options: dict[str, Any], publisher: EventPublisher
) -> None:
    got: list[Any] = []
    instance = subscriber(options, "late")
    instance.subscribe("early.bird", lambda event: got.append(event.payload))
    instance.declare()
    publisher.publish("early.bird", "kept")
    list(instance.consume(limit=1, timeout=5))
    assert got == ["kept"]


def test_misuse_is_reported(options: dict[str, Any], publisher: EventPublisher) -> None:
    with pytest.raises(ValueError, match="service name"):
        subscriber(options, "")
    with pytest.raises(ValueError, match="needs a type"):
        publisher.publish("", {})
    empty = subscriber(options, "empty")
    with pytest.raises(ValueError, match="no subscriptions"):
        list(empty.consume(limit=1, timeout=1))
    twice = subscriber(options, "twice")
    twice.subscribe("a.*", print, name="same")
    with pytest.raises(ValueError, match="already subscribed"):
        twice.subscribe("b.*", print, name="same")
