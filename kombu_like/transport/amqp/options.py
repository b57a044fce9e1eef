"""Transport options of the AMQP transport, checked once when the transport is made."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..options import TransportOptions, option

__all__ = ["DEFAULT_CONFIRM_TIMEOUT", "DEFAULT_RPC_TIMEOUT", "DEFAULT_WRITE_TIMEOUT", "AMQPOptions"]

#: seconds a synchronous method (declare, bind, get, consume, qos, ...) waits for its reply
DEFAULT_RPC_TIMEOUT = 30.0
#: seconds a publisher confirm may take before the publish fails
DEFAULT_CONFIRM_TIMEOUT = 30.0
#: seconds a socket write may block (a broker that stopped reading: resource alarm, stall)
DEFAULT_WRITE_TIMEOUT = 30.0


@dataclass
class AMQPOptions(TransportOptions):
    """The ``transport_options`` of the AMQP transport."""

    transport_name: ClassVar[str] = "AMQP"

    confirm_publish: bool = option(
        False, "every publish waits for the broker's acknowledgement; a refusal raises ``MessageNacked``"
    )
    confirm_timeout: float | None = option(
        DEFAULT_CONFIRM_TIMEOUT, "seconds a publish waits for its confirm; then ``ConnectionTimeout`` (never a hang)"
    )
    track_confirms: bool = option(
        True,
        "channels run in confirm mode even without ``confirm_publish``: nothing waits, but a refused "
        "message is logged as an error, and a count or ``get`` after publishes on the same connection sees them",
    )
    rpc_timeout: float | None = option(
        DEFAULT_RPC_TIMEOUT, "seconds a synchronous method (declare, bind, purge, get, consume, qos ...) waits"
    )
    write_timeout: float | None = option(
        DEFAULT_WRITE_TIMEOUT, "seconds a socket write may block, e.g. on a broker with a resource alarm"
    )
    client_properties: Mapping[str, Any] | None = option(
        None, 'shown by the broker\'s management tools, e.g. ``{"connection_name": "billing-worker-3"}``'
    )
    on_blocked: Callable[..., Any] | None = option(
        None, "``callback(reason)`` when the broker blocks the connection (a memory or disk alarm)"
    )
    on_unblocked: Callable[..., Any] | None = option(None, "``callback()`` when it is unblocked")
    frame_max: int | None = option(None, "largest frame, in bytes (default: the broker's)")
    channel_max: int | None = option(None, "most channels per connection (default: the broker's)")
    socket_settings: Mapping[Any, Any] | None = option(None, "socket options passed to the driver")
    login_response: Any = option(None, "a prepared SASL response, passed to the driver")
    locale: str | None = option(None, "the AMQP locale, passed to the driver")
    authentication: Any = option(None, "SASL mechanisms, passed to the driver")
    on_tune_ok: Callable[..., Any] | None = option(None, "called with the tuned parameters, passed to the driver")
    # Kombu's py-amqp transport hands every key to the driver connection, so these
    # override the Connection arguments of the same name there; they do here too.
    read_timeout: float | None = option(
        None, "Kombu's name for the reply time limit: used as ``rpc_timeout`` when that is not given"
    )
    connect_timeout: float | None = option(
        None, "seconds to connect and log in; overrides ``Connection(connect_timeout=)``"
    )
    heartbeat: float | None = option(
        None, "heartbeat interval to negotiate, in seconds (0: none); overrides ``Connection(heartbeat=)``"
    )
    ssl: Any = option(
        None, "TLS as ``Connection(ssl=)`` takes it (True, a dict of ssl options, an SSLContext); overrides it"
    )
    login_method: str | None = option(
        None, "SASL mechanism (``PLAIN``, ``AMQPLAIN``, ``EXTERNAL`` ...); overrides ``Connection(login_method=)``"
    )

    def check(self) -> None:
        for name, default in (
            ("confirm_timeout", DEFAULT_CONFIRM_TIMEOUT),
            ("rpc_timeout", DEFAULT_RPC_TIMEOUT),
            ("write_timeout", DEFAULT_WRITE_TIMEOUT),
        ):
            value = getattr(self, name)
            if value is None or value == 0:
                setattr(self, name, default)  # as before: unset or 0 means the default
            elif value < 0:
                self.refuse(name, "a positive number of seconds")
        for name in ("read_timeout", "connect_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                self.refuse(name, "a positive number of seconds")
        if self.heartbeat is not None and self.heartbeat < 0:
            self.refuse("heartbeat", "a number of seconds (0: no heartbeats)")
