"""AMQP 0-9-1 transport on the ``amqp`` package: ``amqp://``, ``pyamqp://`` and ``amqps://``.

RabbitMQ does the routing, acknowledgements and redelivery; this module maps the channel
interface of :mod:`kombu_like.transport.base` onto AMQP methods.  Two things are done here
rather than in the driver:

* frames are read from a buffer filled with whatever the socket holds, so a burst of
  deliveries costs one system call instead of three per frame, and ``drain_events`` waits
  on the socket with one deadline (sending heartbeats while it waits);
* publishing writes the ``basic.publish`` frames directly, publisher confirms are tracked
  per channel by sequence number (one wait for a whole batch), and every synchronous
  method has a time limit.

Driver exceptions become :mod:`kombu_like.exceptions` classes in one place,
:meth:`Transport.translate_error`, applied by the channel's ``_seam`` wrapper around every
channel method and by the transport's own connection methods.

Threads may share a connection (publishing, and one thread draining while others
publish): :mod:`.connection` describes how reads and writes are shared out.

The rooms: :mod:`.compat` (every private part of the ``amqp`` package the transport uses,
with the driver versions it supports), :mod:`.framing` (frames on the socket),
:mod:`.connection` (the driver connection), :mod:`.confirms`, :mod:`.channel`, and the
transport here.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

try:
    import amqp
    from amqp import exceptions as amqp_errors
except ImportError as exc:  # pragma: no cover - amqp is a core dependency
    raise ImportError(
        'the amqp:// transport needs the "amqp" package (a dependency of kombu_like): '
        'pip install "kombu_like" or pip install "amqp>=5.1.1"'
    ) from exc

from ...exceptions import (
    AccessRefused,
    ChannelError,
    ConnectionError,
    ConnectionTimeout,
    ConsumerCancelled,
    IrrecoverableConnectionError,
    KombuError,
    MessageNacked,
    MessageReturned,
    NotFound,
    OperationalError,
    PreconditionFailed,
    ResourceLocked,
    is_irrecoverable_tls_error,
)
from ...utils.url import maybe_sanitize_url
from .. import base
from ..base import Capabilities
from . import compat
from .channel import Channel
from .connection import AMQPConnection
from .evloop import LoopReader
from .framing import DRIVER_ERRORS
from .options import DEFAULT_CONFIRM_TIMEOUT, DEFAULT_RPC_TIMEOUT, DEFAULT_WRITE_TIMEOUT, AMQPOptions

if TYPE_CHECKING:
    from ...connection import Connection as ClientConnection

__all__ = [
    "DEFAULT_CONFIRM_TIMEOUT",
    "DEFAULT_RPC_TIMEOUT",
    "DEFAULT_WRITE_TIMEOUT",
    "AMQPConnection",
    "AMQPOptions",
    "Channel",
    "NotAllowed",
    "SSLTransport",
    "Transport",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 5672
DEFAULT_SSL_PORT = 5671
#: seconds ``close()`` waits for the broker to confirm; after that the socket is dropped
CLOSE_TIMEOUT = 3.0

#: errors that closing a connection swallows: the goal is reached either way
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (*DRIVER_ERRORS, KombuError)
_CHANNEL_ERROR_BY_CODE: Mapping[int, type[ChannelError]] = MappingProxyType(
    {403: AccessRefused, 404: NotFound, 405: ResourceLocked, 406: PreconditionFailed, 312: MessageReturned}
)


class NotAllowed(IrrecoverableConnectionError, amqp_errors.NotAllowed):  # type: ignore[misc]
    """The broker does not allow the connection (AMQP 530 NOT_ALLOWED), for example to a
    virtual host that does not exist; retrying cannot help.

    Kombu's py-amqp transport raises ``amqp.exceptions.NotAllowed`` here, so code written
    for it catches this; within this library it is an
    :class:`~kombu_like.exceptions.IrrecoverableConnectionError`.
    """

    reply_code = 530


class Transport(base.Transport):
    """``amqp://`` / ``pyamqp://``: RabbitMQ (or another AMQP 0-9-1 broker) over py-amqp.

    Transport options (``Connection(..., transport_options={...})`` or URL query):
    ``confirm_publish`` (wait for the broker's ack of every publish), ``confirm_timeout``,
    ``track_confirms`` (confirm mode without waiting, on by default),
    ``rpc_timeout`` (reply time limit of synchronous methods), ``write_timeout``,
    ``client_properties``, ``on_blocked(reason)`` / ``on_unblocked()``, ``frame_max``,
    ``channel_max``, ``socket_settings``, ``login_response``, ``locale``; as on Kombu,
    ``connect_timeout``, ``heartbeat``, ``ssl`` and ``login_method`` override the
    Connection arguments of the same name, and ``read_timeout`` is ``rpc_timeout``.
    """

    driver_type = "amqp"
    driver_name = "py-amqp"
    default_port: int | None = DEFAULT_PORT
    default_ssl_port = DEFAULT_SSL_PORT
    capabilities = Capabilities(
        priority=True,
        ttl=True,
        native_acks=True,
        fanout=True,
        batch_publish=True,
        asynchronous=True,
        heartbeats=True,
        exchange_bindings=True,
        extra=MappingProxyType(
            {
                "publisher_confirms": True,
                "direct_reply_to": True,
                "dead_lettering": True,
                "queue_types": ("classic", "quorum", "stream"),
            }
        ),
    )

    # Driver errors are translated into the library's tree, but code written for Kombu
    # also raises (or injects) py-amqp's classes and bare socket errors and expects the
    # retry loop to treat them as Kombu's py-amqp transport does.
    connection_errors: tuple[type[BaseException], ...] = (
        ConnectionError,
        OperationalError,
        amqp_errors.ConnectionError,
        OSError,
    )
    channel_errors: tuple[type[BaseException], ...] = (ChannelError, amqp_errors.ChannelError)
    # a broker-cancelled consumer recovers the way Kombu's does: reconnect, redeclare, consume
    recoverable_connection_errors: tuple[type[BaseException], ...] = (
        ConnectionError,
        OperationalError,
        ConsumerCancelled,
        amqp_errors.RecoverableConnectionError,
        OSError,
    )
    recoverable_channel_errors: tuple[type[BaseException], ...] = (
        MessageNacked,
        amqp_errors.RecoverableChannelError,
    )

    #: options handed to the driver connection unchanged
    _DRIVER_OPTIONS = (
        "frame_max",
        "channel_max",
        "socket_settings",
        "login_response",
        "locale",
        "authentication",
        "on_tune_ok",
    )

    def __init__(self, client: ClientConnection, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = dict(client.transport_options or {})
        self.transport_options = options
        #: the options, converted and checked (ValueError names a bad one)
        self.options = AMQPOptions.from_transport_options(options)
        self.confirm_publish = self.options.confirm_publish
        # confirm mode without waiting: counts and gets see earlier publishes, nacks are logged
        self.track_confirms = self.options.track_confirms
        self.confirm_timeout = float(self.options.confirm_timeout or DEFAULT_CONFIRM_TIMEOUT)
        rpc_timeout = self.options.rpc_timeout
        if "rpc_timeout" not in options and self.options.read_timeout is not None:
            rpc_timeout = self.options.read_timeout  # Kombu's key for the same limit
        self.rpc_timeout = float(rpc_timeout or DEFAULT_RPC_TIMEOUT)
        self.write_timeout = float(self.options.write_timeout or DEFAULT_WRITE_TIMEOUT)

    # -- connection lifecycle ---------------------------------------------------------
    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {
            "userid": "guest",
            "password": "guest",
            "port": self.default_ssl_port if self._wants_ssl() else self.default_port,
            "hostname": "localhost",
            "login_method": "PLAIN",
        }

    def _ssl_setting(self) -> Any:
        """``Connection(ssl=)``, unless the ``ssl`` transport option overrides it."""
        if self.options.ssl is not None:
            return self.options.ssl
        return self.client.ssl

    @property
    def connect_timeout(self) -> float:
        """Seconds to connect and log in: the transport option, else the connection's."""
        return float(self.options.connect_timeout or self.client.connect_timeout or 5)

    def _wants_ssl(self) -> bool:
        return bool(self._ssl_setting())

    def _ssl_options(self, hostname: str) -> tuple[Any, ssl.SSLContext | None, str | None]:
        """``(ssl option for the driver, SSLContext, server_hostname)`` from the ``ssl``
        setting."""
        value = self._ssl_setting()
        if not value:
            return False, None, None
        if isinstance(value, ssl.SSLContext):
            return True, value, hostname
        if isinstance(value, Mapping):
            options = {(key[4:] if key.startswith("ssl_") else key): item for key, item in value.items()}
            if "server_hostname" in options and options["server_hostname"] is None:
                options["server_hostname"] = hostname  # Kombu: None means the URL's host
            if isinstance(options.get("context"), ssl.SSLContext):
                return True, options["context"], options.get("server_hostname") or hostname
            check = options.pop("check_hostname", None)
            if check and not options.get("server_hostname"):
                options["server_hostname"] = hostname
            elif check is False:
                options["server_hostname"] = None
            return options or True, None, None
        return True, None, None

    def _connection_options(self) -> dict[str, Any]:
        client = self.client
        defaults = self.default_connection_params
        hostname = client.hostname or defaults["hostname"]
        if hostname == "localhost":
            hostname = "127.0.0.1"  # skip the IPv6 attempt most brokers do not listen on
        port = client.port or defaults["port"]
        host = f"[{hostname}]:{port}" if ":" in hostname else f"{hostname}:{port}"
        password = client.password
        if callable(password):  # credentials that are refreshed on every connect
            password = password()
        ssl_option, context, server_hostname = self._ssl_options(hostname)
        options = self.options
        properties = {
            "product": "kombu_like",
            "product_version": _library_version(),
            "platform": f"Python {sys.version.split()[0]}",
            **dict(options.client_properties or {}),
        }
        heartbeat = options.heartbeat if options.heartbeat is not None else (client.heartbeat or 0)
        connect_timeout = self.connect_timeout
        params: dict[str, Any] = {
            "host": host,
            "userid": client.userid or defaults["userid"],
            "password": password if password is not None else defaults["password"],
            "login_method": options.login_method or client.login_method or defaults["login_method"],
            "virtual_host": client.virtual_host or "/",
            "ssl": ssl_option,
            "ssl_context": context,
            "server_hostname": server_hostname,
            "connect_timeout": connect_timeout,
            "heartbeat": int(round(heartbeat)) if heartbeat else 0,
            "client_properties": properties,
            "read_timeout": self.rpc_timeout,
            "write_timeout": self.write_timeout,
            "on_blocked": options.on_blocked,
            "on_unblocked": options.on_unblocked,
            "client": client,
        }
        for name in self._DRIVER_OPTIONS:
            if getattr(options, name) is not None:
                params[name] = getattr(options, name)
        return params

    def establish_connection(self) -> AMQPConnection:
        """Connect and log in within ``connect_timeout``; return the driver connection."""
        connection = AMQPConnection(**self._connection_options())
        try:
            connection.connect()
        except BaseException as exc:
            connection.collect()
            if isinstance(exc, DRIVER_ERRORS):
                raise self.translate_error(exc) from exc
            raise
        return connection

    def close_connection(self, connection: AMQPConnection) -> None:
        """Say goodbye to the broker (waiting at most :data:`CLOSE_TIMEOUT`), then drop the socket."""
        connection.client = None
        self._leave_event_loop(connection)
        try:
            if connection.is_open:
                with connection.reply_timeout(CLOSE_TIMEOUT):
                    connection.close()
        except _CLOSE_ERRORS as exc:
            logger.debug("closing connection to %s: %r", self._uri(), exc)
        finally:
            if compat.driver_transport(connection) is not None:
                connection.collect()

    def collect_connection(self, connection: AMQPConnection) -> None:
        """Forget a broken connection without talking to the broker."""
        connection.client = None
        self._leave_event_loop(connection)
        if compat.driver_transport(connection) is not None or connection.channels is not None:
            connection.collect()

    def create_channel(self, connection: AMQPConnection) -> Channel:
        try:
            with connection.channel_lock:  # one free channel id each
                return Channel(connection, self)
        except DRIVER_ERRORS as exc:
            raise self.translate_error(exc) from exc

    def drain_events(self, connection: AMQPConnection, timeout: float | None = None, **kwargs: Any) -> None:
        """Deliver one message (or handle what else arrived), waiting up to ``timeout``
        seconds for something; deliveries read with it wait for the next calls."""
        try:
            connection.drain(timeout)
        except socket.timeout:
            raise
        except DRIVER_ERRORS as exc:
            if isinstance(exc, OSError) and connection.is_open:
                raise  # raised by a consumer callback, not by the broker connection
            raise self.translate_error(exc) from exc

    # -- event loop ---------------------------------------------------------------------
    def register_with_event_loop(self, connection: AMQPConnection, loop: Any) -> None:
        """Have ``loop`` (a :class:`~kombu_like.asynchronous.Hub`) read the connection's
        socket and deliver messages to consumers when it is readable, and send heartbeats
        from its timer; a lost connection raises a recoverable
        :class:`~kombu_like.exceptions.ConnectionError` from the loop.  Registering again
        replaces the earlier registration; closing the connection removes it."""
        try:
            reader = LoopReader(self, connection, loop)
        except DRIVER_ERRORS as exc:
            raise self.translate_error(exc) from exc
        self._leave_event_loop(connection)
        connection.loop_reader = reader
        reader.start()

    def unregister_from_event_loop(self, connection: AMQPConnection, loop: Any) -> None:
        """Undo :meth:`register_with_event_loop`: ``loop`` no longer reads the socket or
        sends heartbeats (``drain_events`` does again)."""
        reader = connection.loop_reader
        if reader is not None and reader.loop is loop:
            reader.close()

    def on_readable(self, connection: AMQPConnection, loop: Any) -> None:
        """Handle what arrived on the socket without waiting (Kombu's reader callback)."""
        reader = connection.loop_reader
        if reader is None or reader.loop is not loop:
            self.register_with_event_loop(connection, loop)
            reader = connection.loop_reader
        assert reader is not None
        reader.on_readable()

    @staticmethod
    def _leave_event_loop(connection: AMQPConnection) -> None:
        reader = connection.loop_reader
        if reader is not None:
            reader.close()

    def verify_connection(self, connection: AMQPConnection) -> bool:
        return connection.is_open

    def heartbeat_check(self, connection: AMQPConnection, rate: int = 2) -> None:
        """Send a heartbeat when one is due; raise :class:`ConnectionError` when the broker
        missed two of its own."""
        try:
            connection.heartbeat_tick(rate=rate)
        except DRIVER_ERRORS as exc:
            raise self.translate_error(exc) from exc

    def get_heartbeat_interval(self, connection: AMQPConnection) -> float:
        return float(connection.heartbeat or 0)

    def qos_semantics_matches_spec(self, connection: AMQPConnection) -> bool:
        # RabbitMQ 3.3+ applies prefetch per consumer unless global is set
        props = connection.server_properties or {}
        if props.get("product") != "RabbitMQ":
            return True
        version = str(props.get("version") or "")
        try:
            major, minor = (int(part) for part in version.split(".")[:2])
        except ValueError:
            return True
        return (major, minor) < (3, 3)

    def driver_version(self) -> str:
        return str(amqp.__version__)

    # -- errors --------------------------------------------------------------------
    def _uri(self) -> str:
        return str(maybe_sanitize_url(self.client.as_uri()))

    def translate_error(self, exc: BaseException) -> BaseException:
        """Map an ``amqp``/socket exception onto :mod:`kombu_like.exceptions` (see the
        transport documentation for what each one means)."""
        if isinstance(exc, KombuError):
            return exc
        if isinstance(exc, socket.timeout):
            return ConnectionTimeout(
                f"no answer from the broker at {self._uri()} in time (connect_timeout="
                f"{self.connect_timeout:g} s, rpc_timeout={self.rpc_timeout:g} s): {exc or 'timed out'}"
            )
        if isinstance(exc, BlockingIOError):
            return ConnectionTimeout(
                f"the broker at {self._uri()} stopped reading for {self.write_timeout:g} s (write_timeout); "
                f"it may be blocked by a resource alarm"
            )
        if isinstance(exc, amqp_errors.MessageNacked):
            return MessageNacked("the broker refused the message (basic.nack)")
        if isinstance(exc, amqp_errors.ConsumerCancelled):
            return ConsumerCancelled(f"the broker cancelled a consumer: {exc}")
        if isinstance(exc, amqp_errors.AMQPError):
            code = int(exc.reply_code or 0)
            text = str(exc)
            if isinstance(exc, amqp_errors.ChannelError):
                return _CHANNEL_ERROR_BY_CODE.get(code, ChannelError)(text, reply_code=code or None)
            if code == 403:
                # wrong credentials: retrying cannot help
                return AccessRefused(f"{text} ({self._uri()})", reply_code=code)
            if code == 530:
                # an unknown virtual host, say: as irrecoverable as Kombu's py-amqp makes it
                return NotAllowed(
                    f"{exc.reply_text} ({self._uri()})",
                    exc.method_sig,
                    exc.method_name,
                    code,
                )
            error = ConnectionError(f"{text} ({self._uri()})")
            error.reply_code = code or None
            return error
        if is_irrecoverable_tls_error(exc):
            # retrying cannot help: say what to check instead
            hint = (
                "check the CA certificates and the server name given in ssl="
                if isinstance(exc, ssl.SSLCertVerificationError)
                else "is this port speaking TLS? amqps:// needs the broker's TLS port, 5671 by "
                "default; amqp:// is for the plain one"
            )
            return IrrecoverableConnectionError(f"TLS with {self._uri()} cannot work: {exc} ({hint})")
        if isinstance(exc, ssl.SSLError):
            return ConnectionError(f"TLS error with {self._uri()}: {exc}")
        if isinstance(exc, OSError):
            return ConnectionError(f"{type(exc).__name__}: {exc} ({self._uri()})")
        return exc

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__}: {self._uri()}>"


class SSLTransport(Transport):
    """``amqps://``: AMQP over TLS (``ssl=True``, a dict of ssl options, or an SSLContext)."""

    default_port = DEFAULT_SSL_PORT

    def _wants_ssl(self) -> bool:
        return True

    def _ssl_options(self, hostname: str) -> tuple[Any, ssl.SSLContext | None, str | None]:
        if not self._ssl_setting():
            return True, None, None
        return super()._ssl_options(hostname)


def _library_version() -> str:
    from ... import __version__

    return __version__
