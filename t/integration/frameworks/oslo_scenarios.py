"""oslo.messaging RPC over RabbitMQ, server and client in one driver process.

``KL_AMQP_URL`` is the broker; ``KL_OSLO_NAMESPACE`` keeps exchange and topic names apart
from other test runs.
"""

from __future__ import annotations

import os
import time
from typing import Any

import oslo_messaging
from oslo_config import cfg

NAMESPACE = os.environ.get("KL_OSLO_NAMESPACE", "kl")
URL = os.environ.get("KL_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//").replace("amqp://", "rabbit://", 1)

_state: dict[str, Any] = {}


class Calculator:
    target = oslo_messaging.Target(version="1.0")

    def __init__(self) -> None:
        self.casts: list[int] = []

    def add(self, ctxt: dict[str, Any], x: int, y: int) -> int:
        return x + y

    def whoami(self, ctxt: dict[str, Any]) -> dict[str, Any]:
        import kombu

        return {"kombu": kombu.__name__, "user": ctxt.get("user")}

    def remember(self, ctxt: dict[str, Any], value: int) -> None:
        self.casts.append(value)

    def remembered(self, ctxt: dict[str, Any]) -> list[int]:
        return list(self.casts)

    def fail(self, ctxt: dict[str, Any], message: str) -> None:
        raise ValueError(message)


def start_server() -> str:
    # the global configuration, as services use it (some options register only there)
    conf = cfg.CONF
    conf([], project="kl")
    transport = oslo_messaging.get_rpc_transport(conf, url=URL)
    target = oslo_messaging.Target(topic=f"{NAMESPACE}_calc", server="server1", exchange=f"{NAMESPACE}_x")
    server = oslo_messaging.get_rpc_server(transport, target, [Calculator()], executor="threading")
    server.start()
    client = oslo_messaging.get_rpc_client(
        transport, oslo_messaging.Target(topic=f"{NAMESPACE}_calc", exchange=f"{NAMESPACE}_x"), timeout=20
    )
    _state.update(conf=conf, transport=transport, server=server, client=client)
    return "started"


def call(method: str, ctxt: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    return _state["client"].call(ctxt or {}, method, **kwargs)


def cast(method: str, **kwargs: Any) -> None:
    _state["client"].cast({}, method, **kwargs)


def remembered_until(count: int, timeout: float) -> list[int]:
    """The values cast so far, once there are ``count`` (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        values = list(call("remembered"))
        if len(values) >= count or time.monotonic() > deadline:
            return values
        time.sleep(0.05)


def remote_failure(message: str) -> dict[str, str]:
    try:
        _state["client"].call({}, "fail", message=message)
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc).splitlines()[0]}
    return {}


def shutdown() -> None:
    server = _state.get("server")
    if server is not None:
        server.stop()
        server.wait()
    transport = _state.get("transport")
    if transport is not None:
        transport.cleanup()
