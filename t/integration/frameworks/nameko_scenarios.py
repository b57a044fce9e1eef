"""What a Nameko client does (standalone RPC proxy, event dispatcher, publisher), run in a
driver process; configured from ``KL_AMQP_URI``, ``KL_NAMEKO_PREFIX`` and
``KL_NAMEKO_RPC_EXCHANGE``."""

from __future__ import annotations

import os
import time
from typing import Any

from nameko.amqp.publish import Publisher, UndeliverableMessage
from nameko.exceptions import RemoteError, UnknownService
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy

PREFIX = os.environ.get("KL_NAMEKO_PREFIX", "kl")
CONFIG = {
    "AMQP_URI": os.environ.get("KL_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/"),
    "rpc_exchange": os.environ.get("KL_NAMEKO_RPC_EXCHANGE", "nameko-rpc"),
}
GREETER = f"{PREFIX}_greeter"
LISTENER = f"{PREFIX}_listener"
TIMEOUT = 20


def _proxy() -> ClusterRpcProxy:
    return ClusterRpcProxy(CONFIG, timeout=TIMEOUT)


def wait_until_serving(timeout: float) -> int:
    """Call both services until they answer (their queues exist once they consume)."""
    deadline = time.monotonic() + timeout
    attempts = 0
    with _proxy() as proxy:
        for service in (GREETER, LISTENER):
            while True:
                attempts += 1
                try:
                    getattr(proxy, service).seen() if service == LISTENER else getattr(proxy, service).libraries()
                    break
                except UnknownService:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
    return attempts


def libraries() -> dict[str, Any]:
    import kombu

    with _proxy() as proxy:
        return {"client": kombu.__name__, "service": getattr(proxy, GREETER).libraries()}


def call(service: str, method: str, *args: Any) -> Any:
    with _proxy() as proxy:
        return getattr(getattr(proxy, f"{PREFIX}_{service}"), method)(*args)


def call_async(names: list[str]) -> list[str]:
    with _proxy() as proxy:
        replies = [getattr(proxy, GREETER).hello.call_async(name) for name in names]
        return [reply.result() for reply in replies]


def remote_failure(message: str) -> dict[str, Any]:
    with _proxy() as proxy:
        try:
            getattr(proxy, GREETER).fail(message)
        except RemoteError as exc:
            return {"exc_type": exc.exc_type, "value": exc.value}
    return {}


def dispatch_event(who: str) -> None:
    event_dispatcher(CONFIG)(GREETER, "greeted", {"who": who})


def seen_until(names: list[str], timeout: float) -> list[str]:
    """What the listener saw, once it saw every one of ``names`` (or the time is up)."""
    deadline = time.monotonic() + timeout
    with _proxy() as proxy:
        while True:
            seen = list(getattr(proxy, LISTENER).seen())
            if set(names) <= set(seen) or time.monotonic() > deadline:
                return seen
            time.sleep(0.1)


def publish_unroutable(mandatory: bool, use_confirms: bool = True) -> str:
    from kombu import Exchange

    exchange = Exchange(f"{PREFIX}_nowhere", type="topic", auto_delete=True)
    publisher = Publisher(CONFIG["AMQP_URI"], exchange=exchange, declare=[exchange], use_confirms=use_confirms)
    try:
        publisher.publish({"to": "nobody"}, routing_key="no.queue.bound", mandatory=mandatory)
    except UndeliverableMessage:
        return "UndeliverableMessage"
    return "published"


def shutdown() -> None:
    return None


# -- Nameko's publisher, run the same way on Kombu and on kombu_like -------------------------
def _scratch(tag: str) -> tuple[Any, Any]:
    """A throw-away topic exchange and a queue bound to it with routing key ``k``."""
    from kombu import Exchange, Queue

    name = f"{PREFIX}-{tag}-{os.urandom(3).hex()}"
    exchange = Exchange(name, type="topic", auto_delete=True)
    return exchange, Queue(name, exchange, routing_key="k", auto_delete=True)


def _take(queue: Any) -> dict[str, Any] | None:
    from kombu import Connection

    with Connection(CONFIG["AMQP_URI"]) as conn:
        message = queue(conn.default_channel).get(no_ack=True, accept=["json", "pickle"])
        if message is None:
            return None
        return {
            "payload": message.payload,
            "content_type": message.content_type,
            "user_id": message.properties.get("user_id"),
            "delivery_mode": message.properties.get("delivery_mode"),
            "priority": message.properties.get("priority"),
            "headers": dict(message.headers),
        }


def _error(exc: BaseException) -> dict[str, Any]:
    from kombu import Connection

    conn = Connection(CONFIG["AMQP_URI"])
    return {
        "error": type(exc).__name__,
        "channel_error": isinstance(exc, conn.channel_errors),
        "connection_error": isinstance(exc, conn.connection_errors),
    }


def publisher_per_call_options() -> dict[str, Any]:
    """Per-call retry / retry_policy / serializer / user_id / headers of Nameko's Publisher."""
    exchange, queue = _scratch("opts")
    publisher = Publisher(CONFIG["AMQP_URI"], exchange=exchange, declare=[queue])
    out: dict[str, Any] = {}
    publisher.publish(
        {"n": 1},
        routing_key="k",
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.1},
        serializer="pickle",
        user_id="guest",
        headers={"h": 1},
        priority=3,
    )
    out["options"] = _take(queue)
    publisher.publish({"n": 2}, routing_key="k", retry=False, serializer="json", delivery_mode=1)
    out["no_retry"] = _take(queue)
    try:  # RabbitMQ checks user_id against the authenticated user
        publisher.publish({"n": 3}, routing_key="k", retry=False, user_id="somebody-else")
        out["foreign_user_id"] = "published"
    except Exception as exc:
        out["foreign_user_id"] = _error(exc)
    publisher.publish({"n": 4}, routing_key="k")  # the pool recovers from the closed channel
    out["after_error"] = _take(queue)
    return out


def publisher_confirms(use_confirms: bool) -> list[Any]:
    """Two publishes into a queue that holds one and refuses more: confirms see the refusal."""
    from kombu import Queue

    exchange, _ = _scratch("confirms")
    full = Queue(
        exchange.name,
        exchange,
        routing_key="k",
        auto_delete=True,
        max_length=1,
        queue_arguments={"x-overflow": "reject-publish"},
    )
    publisher = Publisher(CONFIG["AMQP_URI"], exchange=exchange, declare=[full], use_confirms=use_confirms, retry=False)
    outcomes: list[Any] = []
    for n in range(2):
        try:
            publisher.publish({"n": n}, routing_key="k")
            outcomes.append("published")
        except Exception as exc:
            outcomes.append(_error(exc))
    return outcomes


def publish_to_missing_exchange(mandatory: bool) -> dict[str, Any]:
    """Nameko's Publisher aimed at an exchange nobody declared (confirms on)."""
    from kombu import Exchange

    missing = Exchange(f"{PREFIX}-missing-{os.urandom(3).hex()}", type="topic")
    publisher = Publisher(CONFIG["AMQP_URI"], exchange=missing, use_confirms=True, retry=False)
    out: dict[str, Any] = {}
    for attempt in ("first", "second"):
        try:
            publisher.publish({"to": "nowhere"}, routing_key="k", mandatory=mandatory)
            out[attempt] = "published"
        except UndeliverableMessage:
            out[attempt] = "UndeliverableMessage"
        except Exception as exc:
            out[attempt] = _error(exc)
    exchange, queue = _scratch("after-missing")
    Publisher(CONFIG["AMQP_URI"], exchange=exchange, declare=[queue]).publish({"ok": True}, routing_key="k")
    out["then"] = (_take(queue) or {}).get("payload")
    return out


def call_with_config(extra: dict[str, Any], service: str, method: str, *args: Any) -> Any:
    """An RPC call from a proxy configured with ``extra`` (``{"HEARTBEAT": None}``)."""
    with ClusterRpcProxy({**CONFIG, **extra}, timeout=TIMEOUT) as proxy:
        return getattr(getattr(proxy, f"{PREFIX}_{service}"), method)(*args)


def queue_exists(name: str) -> bool:
    from kombu import Connection

    with Connection(CONFIG["AMQP_URI"]) as conn:
        try:
            conn.default_channel.queue_declare(queue=name, passive=True)
        except conn.channel_errors:
            return False
    return True


def volatile_events(timeout: float) -> dict[str, Any]:
    """Wait for the volatile service, send it an event, report what it saw and its queue."""
    from .nameko_volatile import QUEUE, SOURCE, VOLATILE

    deadline = time.monotonic() + timeout
    with ClusterRpcProxy({**CONFIG, "HEARTBEAT": None}, timeout=TIMEOUT) as proxy:
        service = getattr(proxy, VOLATILE)
        while True:
            try:
                heartbeat = service.heartbeat()
                break
            except UnknownService:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        event_dispatcher(CONFIG)(SOURCE, "ping", {"n": 1})
        seen = service.seen()
        while not seen and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = service.seen()
    return {"heartbeat": heartbeat, "seen": seen, "queue": QUEUE, "queue_exists": queue_exists(QUEUE)}
