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
