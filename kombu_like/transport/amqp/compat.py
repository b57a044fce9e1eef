"""Every use of the ``amqp`` package's private parts, in one place, for the versions checked.

The transport subclasses py-amqp's connection and socket transports and reaches into a
few of their private attributes: the socket write, the transport hooks, the method
tables, the frame writer and the property decoder, and some channel bookkeeping.  Those
are not py-amqp's public API and may change in any release, so they are used only through
this module, which refuses a driver version it was not written for
(:data:`SUPPORTED_VERSIONS`, the same bounds as ``pyproject.toml``).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

import amqp
from amqp import spec
from amqp.method_framing import frame_writer as _driver_frame_writer
from amqp.serialization import decode_properties_basic as _decode_properties_basic
from amqp.serialization import dumps as _dumps
from amqp.serialization import loads as _loads
from amqp.transport import SSLTransport as _DriverSSLTransport
from amqp.transport import TCPTransport as _DriverTCPTransport

__all__ = [
    "SUPPORTED_VERSIONS",
    "DriverSSLTransport",
    "DriverTCPTransport",
    "check_version",
    "connection_methods",
    "dumps",
    "inbound_args",
    "loads",
    "login_response",
    "negotiate_capabilities",
    "decode_properties",
    "deliver",
    "dispatch_while_closing",
    "driver_transport",
    "dumps_table",
    "frame_writer",
    "is_confirm_selected",
    "mark_confirm_selected",
    "raw_write",
    "set_method_handler",
    "waits_for",
    "wrap_revive",
]

#: the ``amqp`` versions this module was written against: at least, below
SUPPORTED_VERSIONS = ((5, 1, 1), (6, 0, 0))


def _parse(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def check_version(version: str) -> None:
    """Raise :class:`ImportError` naming the supported range unless ``version`` is in it."""
    low, high = SUPPORTED_VERSIONS
    if not low <= _parse(version) < high:
        wanted = f"amqp>={'.'.join(map(str, low))},<{'.'.join(map(str, high[:2]))}"
        raise ImportError(
            f'the amqp:// transport supports {wanted}, but amqp {version} is installed: pip install "{wanted}"'
        )


check_version(amqp.__version__)


# -- socket transports ----------------------------------------------------------------------
class DriverTCPTransport(_DriverTCPTransport):  # type: ignore[misc]
    """py-amqp's TCP transport; :meth:`after_setup` runs once the socket is connected."""

    def _setup_transport(self) -> None:
        super()._setup_transport()
        self.after_setup()

    def after_setup(self) -> None:
        """Called when the socket is ready (the driver's hook is private)."""


class DriverSSLTransport(_DriverSSLTransport):  # type: ignore[misc]
    """py-amqp's TLS transport, which also takes a ready :class:`ssl.SSLContext`
    (:attr:`ssl_context`, :attr:`server_hostname`)."""

    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None

    def _wrap_socket(self, sock: socket.socket, context: Any = None, **sslopts: Any) -> Any:
        if self.ssl_context is not None:
            return self.ssl_context.wrap_socket(
                sock, server_hostname=self.server_hostname, do_handshake_on_connect=False
            )
        return super()._wrap_socket(sock, context, **sslopts)

    def _setup_transport(self) -> None:
        super()._setup_transport()
        self.after_setup()

    def after_setup(self) -> None:
        """Called when the TLS session is ready (the driver's hook is private)."""


# -- wire helpers -------------------------------------------------------------------------
def decode_properties(payload: bytes, offset: int) -> dict[str, Any]:
    """The basic properties of a content header frame, decoded from ``offset``."""
    return _decode_properties_basic(payload, offset)[0]  # type: ignore[no-any-return]


def dumps_table(value: Any) -> bytes:
    """An AMQP field table, as the driver encodes it."""
    return _dumps("F", (value,))  # type: ignore[no-any-return]


def frame_writer(connection: Any, transport: Any) -> Callable[..., Any]:
    """The driver's frame writer for ``connection`` on ``transport``."""
    return _driver_frame_writer(connection, transport)  # type: ignore[no-any-return]


def raw_write(transport: Any, data: Any) -> None:
    """Write ``data`` to the driver transport's socket (no locking, no buffering)."""
    transport._write(data)


def dumps(argsig: str, values: Any) -> bytes:
    """Method arguments encoded as the driver encodes them (``argsig`` in its notation)."""
    return _dumps(argsig, values)  # type: ignore[no-any-return]


def loads(argsig: str, payload: bytes, offset: int) -> list[Any]:
    """Method arguments decoded from ``payload`` at ``offset``, as the driver decodes them."""
    return _loads(argsig, payload, offset)[0]  # type: ignore[no-any-return]


_INBOUND = {**amqp.Connection._METHODS, **amqp.Channel._METHODS}


def inbound_args(method_sig: tuple[int, int]) -> str | None:
    """The argument signature of a method a broker sends, from the driver's tables."""
    method = _INBOUND.get(method_sig)
    return None if method is None else method.args


def negotiate_capabilities() -> dict[str, bool]:
    """The capabilities the driver asks the broker for (when the broker offers them)."""
    return dict(amqp.Connection.negotiate_capabilities)


def login_response(login_method: str, userid: str, password: str) -> tuple[str, bytes]:
    """``(mechanism, response)`` for ``connection.start-ok``, by the driver's SASL classes."""
    from amqp import sasl

    mechanism = sasl.AMQPLAIN if login_method == "AMQPLAIN" else sasl.PLAIN
    return mechanism.mechanism.decode(), mechanism(userid, password).start(None)


# -- connection ---------------------------------------------------------------------------
def connection_methods(extra: dict[Any, Any]) -> dict[Any, Any]:
    """The driver connection's method table with ``extra`` entries replacing its own."""
    return {**amqp.Connection._METHODS, **extra}


def driver_transport(connection: Any) -> Any:
    """The connection's socket transport, or None once closed (never reconnects)."""
    return connection._transport


# -- channels -----------------------------------------------------------------------------
def set_method_handler(raw: Any, method_sig: tuple[int, int], handler: Callable[..., Any]) -> None:
    """Route incoming ``method_sig`` on the driver channel ``raw`` to ``handler``."""
    raw._callbacks[method_sig] = handler


def wrap_revive(raw: Any, before: Callable[[], None]) -> None:
    """Call ``before()`` each time the driver reopens ``raw`` after a channel error."""
    driver_revive = raw._do_revive

    def revive() -> None:
        before()
        driver_revive()

    raw._do_revive = revive


def is_confirm_selected(raw: Any) -> bool:
    return bool(raw._confirm_selected)


def mark_confirm_selected(raw: Any) -> None:
    raw._confirm_selected = True


def deliver(raw: Any, args: tuple[Any, ...], message: Any) -> None:
    """Hand a complete ``basic.deliver`` to the channel's consumer callback."""
    raw._on_basic_deliver(*args, message)


#: replies the driver also hands to a standing handler: the handler alone does not make
#: the caller's wait succeed, so only a registered wait counts for them
_REPLIES_WITH_HANDLERS = frozenset({spec.Channel.OpenOk, spec.Channel.CloseOk, spec.Basic.CancelOk})


def waits_for(raw: Any, method_sig: tuple[int, int]) -> bool:
    """True when something on ``raw`` handles ``method_sig`` now: a waiting call, or a
    standing handler (for a reply that only a waiting call completes, only the former)."""
    if method_sig in raw._pending:
        return True
    return method_sig in raw._callbacks and method_sig not in _REPLIES_WITH_HANDLERS


#: methods a closing channel still receives: confirms and returns of earlier publishes
_CLOSING_DELIVERABLE = frozenset({spec.Basic.Ack, spec.Basic.Nack, spec.Basic.Return})


def dispatch_while_closing(raw: Any, method_sig: tuple[int, int], payload: bytes, content: Any) -> bool:
    """Dispatch a confirm or a return that arrived after ``channel.close`` was sent (the
    driver would log and drop it); False when ``method_sig`` is not one of those."""
    if method_sig not in _CLOSING_DELIVERABLE:
        return False
    method = raw._METHODS[method_sig]
    args: list[Any] = []
    if method.args:
        args, _ = _loads(method.args, payload, 4)
    if method.content:
        args.append(content)
    handler = raw._callbacks.get(method_sig)
    if handler is not None:
        handler(*args)
    return True
