"""Connection: URL -> transport, connect/close, channels, ensure/autoretry, failover."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import count
from types import TracebackType
from typing import Any, TypeVar, overload
from urllib.parse import quote

from .exceptions import (
    ConnectionError,
    KombuError,
    OperationalError,
)
from .retry import retry_over_time
from .transport import resolve_transport
from .transport.base import Transport
from .utils.url import as_url, parse_url

__all__ = ["BrokerConnection", "Connection", "maybe_channel", "is_connection"]

logger = logging.getLogger(__name__)

_R = TypeVar("_R")

#: how long ``default_channel`` keeps retrying to connect before it gives up (seconds)
DEFAULT_CONNECT_RETRIES_TIMEOUT = 60.0


def _round_robin(items: Sequence[str]) -> Iterator[str]:
    while True:
        yield from items


def _shuffle(items: Sequence[str]) -> Iterator[str]:
    last = None
    while True:
        choice = random.choice(items)
        if len(items) > 1 and choice == last:
            continue
        last = choice
        yield choice


failover_strategies: dict[str, Callable[[Sequence[str]], Iterator[str]]] = {
    "round-robin": _round_robin,
    "shuffle": _shuffle,
}



_Errors = tuple[type[BaseException], ...]


class _TransportErrors:
    """A connection's error tuple: its transport's, unless a tuple was assigned to it.

    As in Kombu, a program (or a test simulating a broker failure) may assign its own
    tuple to one connection.
    """

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.key = f"_{name}_override"

    @overload
    def __get__(self, conn: None, owner: type | None = None) -> _TransportErrors: ...
    @overload
    def __get__(self, conn: Connection, owner: type | None = None) -> _Errors: ...
    def __get__(self, conn: Connection | None, owner: type | None = None) -> _TransportErrors | _Errors:
        if conn is None:
            return self
        override = conn.__dict__.get(self.key)
        return override if override is not None else getattr(conn.transport, self.name)  # type: ignore[no-any-return]

    def __set__(self, conn: Connection, value: _Errors) -> None:
        conn.__dict__[self.key] = tuple(value)

class Connection:
    """A connection to a broker.

    ``Connection("amqp://guest:guest@localhost:5672//")`` or keyword arguments
    (``hostname``, ``userid``, ``password``, ``virtual_host``, ``port``, ``transport``).
    Several URLs (``"amqp://a;amqp://b"``, a list, or ``alternates=[...]``) give failover.
    Nothing touches the network until the connection is first used or :meth:`connect`
    is called.
    """

    port: int | None = None
    virtual_host = "/"
    connect_timeout: float = 5
    uri_prefix: str | None = None
    declared_entities: set[Any]
    cycle: Any = None

    def __init__(
        self,
        hostname: str | Sequence[str] | None = "localhost",
        userid: str | None = None,
        password: str | None = None,
        virtual_host: str | None = None,
        port: int | None = None,
        insist: bool = False,
        ssl: Any = False,
        transport: str | type[Transport] | None = None,
        connect_timeout: float = 5,
        transport_options: Mapping[str, Any] | None = None,
        login_method: str | None = None,
        uri_prefix: str | None = None,
        heartbeat: float = 0,
        failover_strategy: str | Callable[[Sequence[str]], Iterator[str]] = "round-robin",
        alternates: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        alt: list[str] = list(alternates or [])
        if isinstance(hostname, list | tuple):
            alt = list(hostname) + alt
            hostname = alt[0]
        elif isinstance(hostname, str) and ";" in hostname:
            alt = hostname.split(";") + alt
            hostname = alt[0]
        self.alt = alt
        self._init_params = dict(
            hostname=hostname,
            userid=userid,
            password=password,
            virtual_host=virtual_host,
            port=port,
            insist=insist,
            ssl=ssl,
            transport=transport,
            connect_timeout=connect_timeout,
            login_method=login_method,
            heartbeat=heartbeat,
        )
        self._extra_kwargs = dict(kwargs)
        self.transport_options: dict[str, Any] = dict(transport_options or {})
        self.failover_strategy: Callable[[Sequence[str]], Iterator[str]] = (
            failover_strategies[failover_strategy]
            if isinstance(failover_strategy, str)
            else failover_strategy
        )
        self._failover_name = failover_strategy
        self.cycle = self.failover_strategy(self.alt) if self.alt else None
        if self.cycle is not None:
            next(self.cycle)  # the first URL is the one we start with
        self.declared_entities = set()
        self._connection: Any = None
        self._default_channel: Any = None
        self._transport: Transport | None = None
        self._closed: bool | None = None
        self._lock = threading.RLock()
        self._init_from(hostname, userid, password, virtual_host, port, insist, ssl, transport,
                        connect_timeout, login_method, heartbeat, uri_prefix)

    def _init_from(
        self,
        hostname: Any,
        userid: str | None,
        password: str | None,
        virtual_host: str | None,
        port: int | None,
        insist: bool,
        ssl: Any,
        transport: Any,
        connect_timeout: float,
        login_method: str | None,
        heartbeat: float,
        uri_prefix: str | None = None,
    ) -> None:
        if hostname and "+" in hostname.split("://")[0] and "://" in hostname:
            uri_prefix, hostname = hostname.split("+", 1)
        if hostname and "://" in hostname:
            if not transport or isinstance(transport, str):
                scheme = hostname.split("://", 1)[0]
                parsed = parse_url(hostname)
                transport = parsed.pop("transport") if scheme else transport
                hostname = parsed.pop("hostname")
                userid = parsed.pop("userid") or userid
                password = parsed.pop("password") or password
                virtual_host = parsed.pop("virtual_host") or virtual_host
                port = parsed.pop("port") or port
                if "ssl" in parsed:
                    ssl = parsed.pop("ssl")
                # query options (?foo=bar) become transport options, as in Kombu
                for key, value in parsed.items():
                    self.transport_options.setdefault(key, _coerce_option(value))
        self.hostname = hostname or ("localhost" if transport not in ("memory",) else "localhost")
        self.userid = userid
        self.password = password
        self.login_method = login_method
        self.virtual_host = virtual_host or self.virtual_host
        self.port = port or self.port
        self.insist = insist
        self.connect_timeout = connect_timeout
        self.ssl = ssl
        self.transport_cls = transport or "amqp"
        self.heartbeat: float = float(heartbeat or 0)
        self.uri_prefix = uri_prefix

    # -- transport and connection ---------------------------------------------------------
    def get_transport_cls(self) -> type[Transport]:
        """The transport class for this connection's URL scheme."""
        return resolve_transport(self.transport_cls)

    def create_transport(self) -> Transport:
        return self.get_transport_cls()(client=self)

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = self.create_transport()
        return self._transport

    @property
    def connection(self) -> Any:
        """The transport's connection object, connecting (once) if needed."""
        if not self._closed:
            if not self.connected:
                return self._ensure_connection(max_retries=0, reraise_as_library_errors=False)
            return self._connection
        return None

    @property
    def connected(self) -> bool:
        """True while the connection is established."""
        return self._connection is not None and self.transport.verify_connection(self._connection)

    def _establish_connection(self) -> Any:
        logger.debug("establishing connection to %s", self.as_uri())
        # a new broker connection may face a broker that lost what we declared before
        self.declared_entities.clear()
        self._default_channel = None
        self._connection = self._connection_factory()
        self._closed = False
        return self._connection

    def _connection_factory(self) -> Any:
        # Kombu's name for the one call that opens the broker connection; test suites
        # written for Kombu replace it to simulate brokers that refuse connections
        return self.transport.establish_connection()

    def connect(self) -> Connection:
        """Connect now (one attempt); raise the library's connection error if it fails."""
        self._closed = False
        self._ensure_connection(max_retries=0, reraise_as_library_errors=True)
        return self

    def _ensure_connection(
        self,
        errback: Callable[[BaseException, float], Any] | None = None,
        max_retries: int | None = None,
        interval_start: float = 2,
        interval_step: float = 2,
        interval_max: float = 30,
        callback: Callable[[], Any] | None = None,
        reraise_as_library_errors: bool = True,
        timeout: float | None = None,
    ) -> Any:
        if self.connected:
            return self._connection
        with self._lock:
            if self.connected:
                return self._connection
            tries = count(1)
            attempts = {"n": 0}

            def attempt() -> Any:
                attempts["n"] = next(tries)
                try:
                    return self._establish_connection()
                except self.recoverable_connection_errors:
                    # try the next URL the next time round
                    self.maybe_switch_next()
                    raise

            def on_error(exc: BaseException, interval: float) -> Any:
                if errback is not None:
                    return errback(exc, interval)
                logger.debug("connect to %s failed (%s); retrying in %.1fs", self.as_uri(), exc, interval)
                return None

            try:
                return retry_over_time(
                    attempt,
                    self.recoverable_connection_errors,
                    errback=on_error,
                    max_retries=max_retries,
                    interval_start=interval_start,
                    interval_step=interval_step,
                    interval_max=interval_max,
                    callback=callback,
                    timeout=timeout,
                )
            except self.recoverable_connection_errors as exc:
                if not reraise_as_library_errors:
                    raise
                raise OperationalError(
                    f"could not connect to {self.as_uri()} after {attempts['n']} "
                    f"attempt{'s' if attempts['n'] != 1 else ''}: {exc}"
                ) from exc

    def ensure_connection(
        self,
        errback: Callable[[BaseException, float], Any] | None = None,
        max_retries: int | None = None,
        interval_start: float = 2,
        interval_step: float = 2,
        interval_max: float = 30,
        callback: Callable[[], Any] | None = None,
        reraise_as_library_errors: bool = True,
        timeout: float | None = None,
    ) -> Connection:
        """Connect, retrying on connection errors with growing sleeps.

        ``errback(exc, interval)`` is called before each sleep; ``max_retries`` is the
        number of retries after the first attempt (``None`` = no limit); ``timeout`` bounds
        the whole attempt in seconds.  When
        it gives up it raises :class:`~kombu_like.exceptions.OperationalError` naming the
        broker (password masked) and the number of attempts.
        """
        self._closed = False
        self._ensure_connection(
            errback, max_retries, interval_start, interval_step, interval_max, callback,
            reraise_as_library_errors, timeout,
        )
        return self

    # -- failover --------------------------------------------------------------------
    def switch(self, conn_str: str) -> None:
        """Point this connection at another URL (closing the current connection)."""
        self._close()
        self.declared_entities.clear()
        self._closed = False
        transport = self.transport_cls
        self._transport = None
        self._init_from(conn_str, None, None, None, None, self.insist, self.ssl,
                        None if "://" in conn_str else transport, self.connect_timeout,
                        self.login_method, self.heartbeat or 0)

    def maybe_switch_next(self) -> None:
        """Move to the next failover URL, if there are several."""
        if self.cycle is not None:
            self.switch(next(self.cycle))

    def failover_next(self) -> None:
        self.maybe_switch_next()

    # -- channels and events -----------------------------------------------------
    def channel(self) -> Any:
        """Open a new channel."""
        chan = self.transport.create_channel(self.connection)
        return chan

    @property
    def default_channel(self) -> Any:
        """A channel opened (and kept) by the connection, connecting with retries first.

        Retries follow ``transport_options`` ``max_retries``, ``interval_start``,
        ``interval_step``, ``interval_max`` as in Kombu, and stop after
        ``connect_retries_timeout`` seconds (default :data:`DEFAULT_CONNECT_RETRIES_TIMEOUT`)
        so that no call waits forever for a broker that is gone.
        """
        options = self.transport_options
        self._ensure_connection(
            max_retries=options.get("max_retries"),
            interval_start=options.get("interval_start", 2),
            interval_step=options.get("interval_step", 2),
            interval_max=options.get("interval_max", 30),
            timeout=options.get("connect_retries_timeout", DEFAULT_CONNECT_RETRIES_TIMEOUT),
        )
        if self._default_channel is None or not getattr(self._default_channel, "is_open", True):
            self._default_channel = self.channel()
        return self._default_channel

    def drain_events(self, **kwargs: Any) -> Any:
        """Wait for one batch of events and deliver it to consumers.

        ``timeout`` (seconds) bounds the wait; :class:`socket.timeout` (the builtin
        ``TimeoutError``) is raised when nothing arrived.
        """
        return self.transport.drain_events(self.connection, **kwargs)

    def revive(self, new_channel: Any) -> None:
        """After a reconnect: drop the old default channel unless it is ``new_channel``.

        Lets a Connection itself be the object that :meth:`ensure` revives.
        """
        old = self._default_channel
        if old is not None and new_channel is not old:
            self.maybe_close_channel(old)
            self._default_channel = None

    def maybe_close_channel(self, channel: Any) -> None:
        try:
            channel.close()
        except self._errors_on_close(OSError, AttributeError):
            pass

    def _errors_on_close(
        self, *extra: type[BaseException], channel_errors: bool = True
    ) -> tuple[type[BaseException], ...]:
        errors = self.connection_errors + (self.channel_errors if channel_errors else ())
        return errors + extra

    def heartbeat_check(self, rate: int = 2) -> Any:
        """Check/send heartbeats (call at ``heartbeat / rate`` second intervals)."""
        return self.transport.heartbeat_check(self.connection, rate=rate)

    def get_heartbeat_interval(self) -> float:
        return self.transport.get_heartbeat_interval(self.connection)

    @property
    def supports_heartbeats(self) -> bool:
        return self.transport.capabilities.heartbeats

    @property
    def is_evented(self) -> bool:
        return self.transport.capabilities.asynchronous

    def register_with_event_loop(self, loop: Any) -> None:
        self.transport.register_with_event_loop(self.connection, loop)

    def qos_semantics_matches_spec(self) -> bool:
        return self.transport.qos_semantics_matches_spec(self.connection)

    # -- closing --------------------------------------------------------------------
    def _close(self) -> None:
        if self._transport is not None:
            if self._default_channel is not None:
                self.maybe_close_channel(self._default_channel)
            if self._connection is not None:
                try:
                    self._transport.close_connection(self._connection)
                except self._errors_on_close(OSError, channel_errors=False):
                    pass
        self._connection = None
        self._default_channel = None
        self._closed = True

    def collect(self, socket_timeout: float | None = None) -> None:
        """Forget a broken connection without talking to the broker."""
        connection, self._connection = self._connection, None
        self._default_channel = None
        if connection is not None and self._transport is not None:
            collect = getattr(self._transport, "collect_connection", None)
            try:
                if collect is not None:
                    collect(connection)
                else:
                    self._transport.close_connection(connection)
            except Exception:  # the connection is already broken; nothing to report
                logger.debug("error collecting broken connection", exc_info=True)
        self.declared_entities.clear()

    def release(self) -> None:
        """Close the connection (pooled connections go back to their pool)."""
        self._close()

    close = release

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # -- the retry loop for user operations --------------------------------------------
    def ensure(
        self,
        obj: Any,
        fun: Callable[..., _R],
        errback: Callable[[BaseException, float], Any] | None = None,
        max_retries: int | None = None,
        interval_start: float = 1,
        interval_step: float = 1,
        interval_max: float = 1,
        on_revive: Callable[[Any], Any] | None = None,
        retry_errors: tuple[type[BaseException], ...] | None = None,
    ) -> Callable[..., _R]:
        """Wrap ``fun`` so connection errors reconnect and retry.

        On a recoverable connection error the connection is re-established (with the
        given intervals), ``obj.revive(channel)`` re-binds the producer/consumer to the new
        default channel, ``on_revive(channel)`` is called, and ``fun`` runs again.  Channel
        errors are retried on the same connection.  Other errors surface at once.  After
        ``max_retries`` the last error is raised.
        """
        retry_errors = retry_errors or ()

        def _ensured(*args: Any, **kwargs: Any) -> _R:
            conn_errors = self.recoverable_connection_errors
            chan_errors = self.recoverable_channel_errors
            retries = 0
            revive = False
            while True:
                try:
                    if revive:
                        # inside the try: a connection lost again while reviving is
                        # retried like any other loss, not raised to the caller
                        channel = self.default_channel
                        obj.revive(channel)
                        if on_revive:
                            on_revive(channel)
                        revive = False
                    return fun(*args, **kwargs)
                except retry_errors as exc:
                    if max_retries is not None and retries >= max_retries:
                        raise
                    logger.debug("ensure: retrying after %r", exc)
                    if errback:
                        errback(exc, 0)
                except socket.timeout:
                    # nothing arrived in time: not a lost connection, even where bare
                    # socket errors count as connection errors (they are OSErrors too)
                    raise
                except conn_errors as exc:
                    if max_retries is not None and retries >= max_retries:
                        raise OperationalError(
                            f"{getattr(fun, '__name__', 'operation')} failed after "
                            f"{retries + 1} attempts on {self.as_uri()}: {exc}"
                        ) from exc
                    logger.debug("ensure: connection error %r; reconnecting", exc)
                    self.collect()
                    if errback:
                        errback(exc, 0)
                    remaining = None if max_retries is None else max(max_retries - retries, 1)
                    self._ensure_connection(
                        errback, remaining, interval_start, interval_step, interval_max,
                        reraise_as_library_errors=False,
                    )
                    revive = True
                except chan_errors as exc:
                    if max_retries is not None and retries >= max_retries:
                        raise
                    logger.debug("ensure: channel error %r; retrying", exc)
                    if errback:
                        errback(exc, 0)
                retries += 1

        _ensured.__name__ = f"{getattr(fun, '__name__', 'fun')}(ensured)"
        _ensured.__doc__ = fun.__doc__
        return _ensured

    def autoretry(
        self, fun: Callable[..., _R], channel: Any = None, **ensure_options: Any
    ) -> Callable[..., tuple[_R, Any]]:
        """Make ``fun(*args, channel=channel)`` retry on connection loss, on a fresh channel.

        As in Kombu, the wrapper returns ``(retval, channel)``: the channel last used, which
        is a new one after a reconnect.
        """
        channels = [channel]

        class Revival:
            __name__ = getattr(fun, "__name__", "fun")
            __doc__ = fun.__doc__

            def revive(inner_self, channel: Any) -> None:  # noqa: N805
                channels[0] = channel

            def __call__(inner_self, *args: Any, **kwargs: Any) -> tuple[_R, Any]:  # noqa: N805
                if channels[0] is None:
                    inner_self.revive(self.default_channel)
                return fun(*args, channel=channels[0], **kwargs), channels[0]

        revive = Revival()
        return self.ensure(revive, revive, **ensure_options)

    # -- errors ----------------------------------------------------------------------
    connection_errors = _TransportErrors("Errors meaning the connection was lost.")
    channel_errors = _TransportErrors("Errors meaning the channel was lost.")
    recoverable_connection_errors = _TransportErrors("Errors after which reconnecting and retrying may succeed.")
    recoverable_channel_errors = _TransportErrors("Errors after which a new channel may succeed.")

    @contextmanager
    def _reraise_as_library_errors(self) -> Iterator[None]:
        try:
            yield
        except (ConnectionError, KombuError):
            raise
        except self.recoverable_connection_errors as exc:
            raise OperationalError(str(exc)) from exc

    # -- description ---------------------------------------------------------------
    def _info(self) -> list[tuple[str, Any]]:
        transport_cls = self.transport_cls
        port = self.port or self.transport.default_port
        return [
            ("hostname", self.hostname),
            ("userid", self.userid),
            ("password", self.password),
            ("virtual_host", self.virtual_host),
            ("port", port),
            ("insist", self.insist),
            ("ssl", self.ssl),
            ("transport", transport_cls if isinstance(transport_cls, str) else transport_cls.__name__),
            ("connect_timeout", self.connect_timeout),
            ("transport_options", self.transport_options),
            ("login_method", self.login_method),
            ("uri_prefix", self.uri_prefix),
            ("heartbeat", self.heartbeat),
            ("failover_strategy", self._failover_name),
            ("alternates", self.alt),
        ]

    def info(self) -> dict[str, Any]:
        """Connection settings as a dict (the password included, as in Kombu)."""
        return dict(self._info())

    def as_uri(self, include_password: bool = False, mask: str = "**", getfields: Any = None) -> str:
        """This connection's URL; the password is replaced by ``mask`` unless asked for.

        The default virtual host prints as Kombu prints it: ``amqp://guest:**@localhost:5672//``.
        """
        scheme = self.transport_cls if isinstance(self.transport_cls, str) else "custom"
        if scheme == "pyamqp":
            scheme = "amqp"  # Kombu prints the alias by its protocol name
        hostname = self.hostname or "localhost"
        port = self.port or self._default_port()
        uri = as_url(scheme, hostname, port, self.userid, self.password, None,
                     sanitize=not include_password, mask=mask)
        vhost = self.virtual_host or ""
        uri += "/" + quote(vhost, safe="/") if vhost else ""
        if self.uri_prefix:
            uri = f"{self.uri_prefix}+{uri}"
        return uri

    def _default_port(self) -> int | None:
        try:
            return self.transport.default_port
        except ImportError:  # an optional driver is missing; the URL is still printable
            return None

    @property
    def host(self) -> str:
        """``hostname:port``."""
        return f"{self.hostname}:{self.port or self._default_port()}"

    def clone(self, **kwargs: Any) -> Connection:
        """A new, unconnected Connection with the same settings (overridden by kwargs)."""
        params = dict(self._init_params)
        params.update(self._extra_kwargs)
        params.update(
            transport_options=dict(self.transport_options),
            failover_strategy=self._failover_name,
            uri_prefix=self.uri_prefix,
        )
        if self.alt:
            params["hostname"] = list(self.alt)
            params.pop("transport", None)
        else:
            # keyword form, so that every override (host, password, vhost, port) applies
            params.update(
                hostname=self.hostname,
                userid=self.userid,
                password=self.password,
                virtual_host=self.virtual_host,
                port=self.port,
                transport=self.transport_cls,
                ssl=self.ssl,
            )
        params.update(kwargs)
        return type(self)(**params)

    def _current_url(self) -> str:
        return self.as_uri(include_password=True)

    def __copy__(self) -> Connection:
        return self.clone()

    def __reduce__(self) -> Any:
        return (_rebuild_connection, (self._current_url(), dict(self.transport_options)))

    def __repr__(self) -> str:
        return f"<Connection: {self.as_uri()} at {id(self):#x}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Connection):
            return self.as_uri(include_password=True) == other.as_uri(include_password=True)
        return NotImplemented

    def __hash__(self) -> int:
        return id(self)

    # -- factories ---------------------------------------------------------------
    def Producer(self, channel: Any = None, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        """A :class:`~kombu_like.Producer` on ``channel`` (default: this connection)."""
        from .messaging import Producer

        return Producer(channel or self, *args, **kwargs)

    def Consumer(self, queues: Any = None, channel: Any = None, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        """A :class:`~kombu_like.Consumer` for ``queues`` on ``channel`` (default: a new one)."""
        from .messaging import Consumer

        return Consumer(channel or self, queues, *args, **kwargs)

    def SimpleQueue(  # noqa: N802
        self,
        name: Any,
        no_ack: bool | None = None,
        queue_opts: Mapping[str, Any] | None = None,
        queue_args: Mapping[str, Any] | None = None,
        exchange_opts: Mapping[str, Any] | None = None,
        channel: Any = None,
        **kwargs: Any,
    ) -> Any:
        """A persistent, Queue.Queue-like queue (see :mod:`kombu_like.simple`)."""
        from .simple import SimpleQueue

        return SimpleQueue(channel or self, name, no_ack, queue_opts, queue_args, exchange_opts, **kwargs)

    def SimpleBuffer(  # noqa: N802
        self,
        name: Any,
        no_ack: bool | None = None,
        queue_opts: Mapping[str, Any] | None = None,
        queue_args: Mapping[str, Any] | None = None,
        exchange_opts: Mapping[str, Any] | None = None,
        channel: Any = None,
        **kwargs: Any,
    ) -> Any:
        """A transient, no-ack SimpleQueue (see :mod:`kombu_like.simple`)."""
        from .simple import SimpleBuffer

        return SimpleBuffer(channel or self, name, no_ack, queue_opts, queue_args, exchange_opts, **kwargs)

    def Pool(self, limit: int | None = None, **kwargs: Any) -> Any:  # noqa: N802
        """A pool of connections like this one."""
        from .pools import ConnectionPool

        return ConnectionPool(self, limit=limit, **kwargs)

    def ChannelPool(self, limit: int | None = None, **kwargs: Any) -> Any:  # noqa: N802
        """A pool of channels on this connection."""
        from .pools import ChannelPool

        return ChannelPool(self, limit=limit, **kwargs)

    def get_manager(self, *args: Any, **kwargs: Any) -> Any:
        return self.transport.get_manager(*args, **kwargs)

    @property
    def manager(self) -> Any:
        return self.transport.get_manager()

    def completes_cycle(self, retries: int) -> bool:
        """True when ``retries`` has tried every failover URL once."""
        return not (retries + 1) % len(self.alt) if self.alt else True

    @property
    def supports_exchange_type(self) -> Callable[[str], bool]:
        return lambda exchange_type: exchange_type in self.transport.capabilities.exchange_types


BrokerConnection = Connection


def _rebuild_connection(url: str, transport_options: dict[str, Any]) -> Connection:
    return Connection(url, transport_options=transport_options)


def _coerce_option(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def is_connection(obj: Any) -> bool:
    return isinstance(obj, Connection)


def maybe_channel(channel: Any) -> Any:
    """A channel, given a channel or a Connection (its default channel)."""
    if is_connection(channel):
        return channel.default_channel
    return channel


def default_url_from_env() -> str | None:
    return os.environ.get("KOMBU_LIKE_URL")



def __getattr__(name: str) -> Any:
    # Kombu defines its pools in this module; ours live in kombu_like.pools, which imports
    # this one, so they are looked up on first use
    if name in ("ConnectionPool", "ChannelPool", "Resource"):
        from . import pools

        return getattr(pools, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
