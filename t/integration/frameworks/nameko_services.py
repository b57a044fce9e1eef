"""Two Nameko services the integration tests run with ``nameko run``.

Names carry ``KL_NAMEKO_PREFIX`` so concurrent test runs on one RabbitMQ never share
queues or exchanges.
"""

from __future__ import annotations

import os
from typing import Any

from nameko.events import EventDispatcher, event_handler
from nameko.rpc import RpcProxy, rpc

PREFIX = os.environ.get("KL_NAMEKO_PREFIX", "kl")
GREETER = f"{PREFIX}_greeter"
LISTENER = f"{PREFIX}_listener"

_seen: list[str] = []


class Greeter:
    name = GREETER
    dispatch = EventDispatcher()

    @rpc
    def hello(self, who: str) -> str:
        self.dispatch("greeted", {"who": who})
        return f"hello {who}"

    @rpc
    def fail(self, message: str) -> None:
        raise ValueError(message)

    @rpc
    def libraries(self) -> dict[str, str]:
        import kombu

        return {"kombu": kombu.__name__, "connection": kombu.Connection.__module__}


class Listener:
    name = LISTENER
    greeter = RpcProxy(GREETER)

    @event_handler(GREETER, "greeted")
    def on_greeted(self, payload: dict[str, Any]) -> None:
        _seen.append(payload["who"])

    @rpc
    def seen(self) -> list[str]:
        return list(_seen)

    @rpc
    def relay(self, who: str) -> str:
        return f"{self.greeter.hello(who)} (relayed)"
