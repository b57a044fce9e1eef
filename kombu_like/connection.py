"""Connection: URL -> transport, connect/close, channels, ensure/autoretry, failover.

What its URLs and options mean (failover strategies, a URL's query string, checked numbers)
is read in :mod:`kombu_like.connection_params`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import quote

from .connection_params import (
    FailoverStrategy,
    _retry_number,
    _sanitized,
    _seconds,
    _split_url_options,
    read_hostname,
)
from .connection_params import failover_strategies as failover_strategies
from .connection_params import resolve_aliases as resolve_aliases
from .exceptions import (
    ConnectionClosed,
    KombuError,
    OperationalError,
)
from .retry import NEVER_RETRIED, RetryPolicy
from .transport import check_transport_name, resolve_transport
from .transport.base import Channel, Transport
from .utils.url import as_url, parse_url, scrub_credentials

if TYPE_CHECKING:
    from .messaging import Consumer, Producer
    from .simple import SimpleBuffer, SimpleQueue

__all__ = ["BrokerConnection", "Connection", "maybe_channel", "is_connection"]

logger = logging.getLogger(__name__)

_R = TypeVar("_R")


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
    Several URLs (``"amqp://a;amqp://b"``, a list, or ``alternates=[...]``) give failover,
    tried in the order ``failover_strategy`` says (``"round-robin"``, ``"shuffle"`` or a
    function yielding URLs).  Nothing touches the network until the connection is first
    used or :meth:`connect` is called.
    """

    port: int | None = None
    virtual_host = "/"
    connect_timeout: float = 5
    uri_prefix: str | None = None
    declared_entities: set[Any]
    cycle: Iterator[str] | None = None
    hostname: str | None = None
    userid: str | None = None
    password: Any = None
    login_method: str | None = None
    ssl: Any = None

    failover_strategies = failover_strategies
    resolve_aliases = resolve_aliases

    def __init__(
        self,
        hostname: str | Sequence[str] | None = "localhost",
        userid: str | None = None,
        password: Any = None,
        virtual_host: str | None = None,
        port: int | None = None,
        insist: bool = False,
        ssl: Any = False,
        transport: str | type[Transport] | None = None,
        connect_timeout: float = 5,
        transport_options: Mapping[str, Any] | None = None,
        login_method: str | None = None,
        uri_prefix: str | None = None,
        heartbeat: float | None = 0,
        failover_strategy: str | FailoverStrategy | None = "round-robin",
        alternates: Sequence[str] | None = None,
        credential_provider: Any = None,
        **kwargs: Any,
    ) -> None:
        params: dict[str, Any] = {
            "hostname": hostname,
            "userid": userid,
            "password": password,
            "virtual_host": virtual_host,
            "port": port,
            "insist": insist,
            "ssl": ssl,
            "transport": transport,
            "connect_timeout": connect_timeout,
            "login_method": login_method,
            "heartbeat": heartbeat,
            "credential_provider": credential_provider,
        }
        self.transport_options: dict[str, Any] = dict(transport_options or {})
        given = read_hostname(hostname, transport, alternates)
        params.update(given.params)
        alt, url_options = given.alternates, given.url_options
        if given.uri_prefix is not None:
            self.uri_prefix = given.uri_prefix
        self._initial_params = params
        self._first_url = given.first_url
        self._init_params(**params)
        # every alternate is checked now, not when failover reaches it
        for alt_url in alt:
            if isinstance(alt_url, str) and "://" in alt_url:
                check_transport_name(alt_url.split("://", 1)[0])
        self.alt = alt
        for key, value in url_options.items():
            self.transport_options.setdefault(key, value)
        self._extra_kwargs = dict(kwargs)
        self._failover_strategy: str | FailoverStrategy = failover_strategy or "round-robin"
        strategy: Any = self._failover_strategy
        if isinstance(strategy, str):
            # as in Kombu, a name that is not a known strategy is kept as given (Celery
            # passes its setting through untouched); it only matters once there is a URL
            # to fail over to
            strategy = self.failover_strategies.get(strategy, strategy)
            if self.alt and isinstance(strategy, str):
                known = ", ".join(sorted(self.failover_strategies))
                raise TypeError(
                    f"unknown failover strategy {strategy!r} (known: {known}; or pass a function yielding URLs)"
                )
        self.failover_strategy: FailoverStrategy = strategy
        if self.alt:
            self.cycle = self.failover_strategy(self.alt)
            next(self.cycle)  # the first URL is the one in use
        if uri_prefix:
            self.uri_prefix = uri_prefix
        self.declared_entities = set()
        self._connection: Any = None
        self._default_channel: Any = None
        self._transport: Transport | None = None
        #: None: never connected; True: closed by the program; False: connected
        self._closed: bool | None = None
        self._lock = threading.RLock()

    def _init_params(
        self,
        hostname: str | None,
        userid: str | None,
        password: Any,
        virtual_host: str | None,
        port: int | None,
        insist: bool,
        ssl: Any,
        transport: Any,
        connect_timeout: float,
        login_method: str | None,
        heartbeat: float | None,
        credential_provider: Any = None,
    ) -> None:
        self.hostname = hostname
        self.userid = userid
        self.password = password
        self.login_method = login_method
        # as in Kombu, a part missing from a URL switched to keeps its current value
        self.virtual_host = virtual_host or self.virtual_host
        self.port = int(port) if port else self.port
        self.insist = insist
        self.connect_timeout = _seconds("connect_timeout", connect_timeout) if connect_timeout else connect_timeout
        # amqps:// always speaks TLS; Kombu's SSL transport sets ssl=True the same way
        self.ssl = True if transport == "amqps" and not ssl else ssl
        self.transport_cls: str | type[Transport] = transport or "amqp"
        # heartbeat=None is accepted and kept, as in Kombu
        self.heartbeat: float | None = heartbeat and _seconds("heartbeat", heartbeat)
        self.credential_provider = credential_provider
        self._transport = None

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
        """The transport's connection object, connecting if needed; None once closed."""
        if self._closed:
            return None
        if not self.connected:
            return self._ensure_connection(**self._connect_once_opts(), reraise_as_library_errors=False)
        return self._connection

    @property
    def connected(self) -> bool:
        """True while the connection is established."""
        return not self._closed and self._connection is not None and self.transport.verify_connection(self._connection)

    def _establish_connection(self) -> Any:
        logger.debug("establishing connection to %s", self.as_uri())
        return self.transport.establish_connection()

    def _connection_factory(self) -> Any:
        # Kombu's name for the one call that opens the broker connection; test suites
        # written for Kombu replace it to simulate brokers that refuse connections
        # a new broker connection may face a broker that lost what we declared before
        self.declared_entities.clear()
        self._default_channel = None
        self._connection = self._establish_connection()
        self._closed = False
        return self._connection

    def _connect_once_opts(self) -> dict[str, Any]:
        # one attempt per URL, without sleeping in between; with alternates= the first
        # URL is not among the alternates (Kombu's layout)
        urls = len(self.alt) + (0 if self._first_url in self.alt else 1)
        return {"max_retries": max(urls - 1, 0), "interval_start": 0, "interval_step": 0, "interval_max": 0}

    def connect(self) -> Connection:
        """Connect now: one attempt per URL (the failover URLs in turn), no sleeping.

        Raises the library's error naming each URL tried (password masked) when none
        answers.  Returns the connection itself.
        """
        self._ensure_connection(**self._connect_once_opts())
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
            failures: list[tuple[str, BaseException]] = []

            def attempt() -> Any:
                url = self.as_uri()
                try:
                    return self._connection_factory()
                except BaseException as exc:
                    failures.append((url, exc))
                    raise

            def on_retry(exc: BaseException, sleeps: Iterator[float], retries: int) -> float:
                # as in Kombu: sleep only once every URL was tried; errback(exc, interval)
                # sees the URL that failed, then the next one is selected
                interval = next(sleeps) if self.completes_cycle(retries) else 0.0
                try:
                    if errback is not None:
                        errback(exc, interval)
                    else:
                        logger.debug("connecting to %s failed (%s); retrying in %.1fs", self.as_uri(), exc, interval)
                finally:
                    self.maybe_switch_next()
                return interval

            errors = self.recoverable_connection_errors
            policy = RetryPolicy(max_retries, interval_start, interval_step, interval_max, timeout)
            try:
                return policy.call(attempt, errors, on_retry=on_retry, callback=callback)
            except NEVER_RETRIED:
                raise
            except errors as exc:
                if not reraise_as_library_errors and not isinstance(exc, KombuError):
                    raise
                raise OperationalError(_gave_up_message(failures)) from exc

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
        """Connect, retrying on connection errors with growing sleeps (Kombu's signature).

        ``errback(exc, interval)`` is called after each failed attempt that will be
        retried (``max_retries`` times at most); ``max_retries`` is the number of retries
        after the first attempt (``None`` = no limit); ``timeout`` bounds the whole call in
        seconds; ``callback()`` is called about once a second while waiting.  With several
        URLs each failure moves to the next one, and the sleep comes only after every URL
        was tried.  Errors that retrying cannot cure
        (:class:`~kombu_like.exceptions.IrrecoverableConnectionError`,
        :class:`~kombu_like.exceptions.AccessRefused`) are raised at once.  When it gives
        up it raises :class:`~kombu_like.exceptions.OperationalError` naming each URL that
        failed (password masked) and the number of attempts.
        """
        self._ensure_connection(
            errback,
            max_retries,
            interval_start,
            interval_step,
            interval_max,
            callback,
            reraise_as_library_errors,
            timeout,
        )
        return self

    # -- failover --------------------------------------------------------------------
    def switch(self, conn_str: str) -> None:
        """Point this connection at another URL or host name (closing it; no reconnect).

        The settings given to the constructor stay, and the URL's parts replace them.
        """
        self._close()
        self.declared_entities.clear()
        self._closed = False
        url_options: dict[str, Any] = {}
        if "://" in conn_str:
            conn_params = parse_url(conn_str)
            url_options = _split_url_options(conn_params)
            check_transport_name(conn_params["transport"])
        else:
            conn_params = {"hostname": conn_str}
        self._init_params(**dict(self._initial_params, **conn_params))
        for key, value in url_options.items():
            self.transport_options.setdefault(key, value)

    def maybe_switch_next(self) -> None:
        """Move to the next URL the failover strategy gives, if there are several."""
        if self.cycle is not None:
            self.switch(next(self.cycle))

    def failover_next(self) -> None:
        self.maybe_switch_next()

    # -- channels and events -----------------------------------------------------
    def _open_connection(self, action: str) -> Any:
        connection = self.connection
        if connection is None:
            raise ConnectionClosed(
                f"{action} on a closed connection ({self.as_uri()}): it was closed with "
                f"close()/release(); call connect() or ensure_connection() to open it again"
            )
        return connection

    def channel(self) -> Channel:
        """Open a new channel (connecting first if needed)."""
        channel: Channel = self.transport.create_channel(self._open_connection("channel()"))
        return channel

    def _extract_failover_opts(self) -> dict[str, Any]:
        """How :attr:`default_channel` retries connecting (Kombu's rules).

        The budget is ``connect_timeout`` seconds in all (``transport_options``
        ``connect_retries_timeout`` overrides it), with ``max_retries``,
        ``interval_start``, ``interval_step``, ``interval_max``, ``errback`` and
        ``callback`` also read from ``transport_options``.
        """
        options = self.transport_options
        opts: dict[str, Any] = {"timeout": self.connect_timeout}
        for key in ("max_retries", "interval_start", "interval_step", "interval_max", "errback", "callback"):
            if key in options:
                opts[key] = options[key]
        if "connect_retries_timeout" in options:
            opts["timeout"] = _retry_number("connect_retries_timeout", options["connect_retries_timeout"])
        for key in ("max_retries", "interval_start", "interval_step", "interval_max"):
            if key in opts:
                opts[key] = _retry_number(key, opts[key])
        return opts

    @property
    def default_channel(self) -> Channel:
        """A channel opened (and kept) by the connection, connecting with retries first.

        Connecting retries as Kombu does: sleeps of 2, 4, 6 ... seconds until
        ``connect_timeout`` (5 s by default) has passed, then
        :class:`~kombu_like.exceptions.OperationalError`; see
        :meth:`_extract_failover_opts` for the options that change this.
        """
        self._ensure_connection(**self._extract_failover_opts())
        channel: Channel | None = self._default_channel
        if channel is None or not getattr(channel, "is_open", True):
            with self._lock:  # threads sharing the connection share one default channel
                channel = self._default_channel
                if channel is None or not getattr(channel, "is_open", True):
                    channel = self._default_channel = self.channel()
        return channel

    def drain_events(self, **kwargs: Any) -> Any:
        """Wait for an event and deliver it to its consumer.

        Each call delivers what Kombu's transport delivers in one call: one message on
        ``amqp://``, ``redis://``, ``memory://`` and ``sqlite://`` (a message taken from
        the broker together with others waits for the next call), a whole receive on
        ``sqs://``.
        ``timeout`` (seconds) bounds the wait; :class:`socket.timeout` (the builtin
        ``TimeoutError``) is raised when nothing arrived.  On a connection closed with
        :meth:`close` it raises :class:`~kombu_like.exceptions.ConnectionClosed`.
        """
        transport, connection = self._transport, self._connection
        if transport is not None and connection is not None and not self._closed:
            # called once per message: the checks of the connection property, inline, and
            # the common call without forwarding a dict of keyword arguments
            if transport.verify_connection(connection):
                if len(kwargs) == 1 and "timeout" in kwargs:
                    return transport.drain_events(connection, timeout=kwargs["timeout"])
                return transport.drain_events(connection, **kwargs)
        return self.transport.drain_events(self._open_connection("drain_events()"), **kwargs)

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
        return self.transport.heartbeat_check(self._open_connection("heartbeat_check()"), rate=rate)

    def get_heartbeat_interval(self) -> float:
        return self.transport.get_heartbeat_interval(self._open_connection("get_heartbeat_interval()"))

    @property
    def supports_heartbeats(self) -> bool:
        return self.transport.capabilities.heartbeats

    @property
    def is_evented(self) -> bool:
        return self.transport.capabilities.asynchronous

    def register_with_event_loop(self, loop: Any) -> None:
        self.transport.register_with_event_loop(self._open_connection("register_with_event_loop()"), loop)

    @property
    def qos_semantics_matches_spec(self) -> bool:
        """False where the broker applies a per-consumer prefetch only to consumers made
        after it (RabbitMQ 3.3 and later): a change for running consumers must then be made
        channel-wide (``apply_global=True``).  A property, as on Kombu: Celery reads it so."""
        return self.transport.qos_semantics_matches_spec(self._open_connection("qos_semantics_matches_spec"))

    # -- closing --------------------------------------------------------------------
    def _close(self) -> None:
        self.declared_entities.clear()
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
        """Forget a broken connection without talking to the broker (as after a fork)."""
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
        """Close the connection and its default channel (pooled ones go back to the pool)."""
        self._close()

    close = release

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # -- retrying user operations --------------------------------------------
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
        timeout: float | None = None,
    ) -> Callable[..., _R]:
        """Wrap ``fun`` so connection errors reconnect and retry (Kombu's signature).

        On a recoverable connection error the connection is re-established (with the
        given intervals), ``obj.revive(channel)`` re-binds the producer/consumer to the new
        default channel, ``on_revive(channel)`` is called, and ``fun`` runs again;
        ``errback(exc, 0)`` is called for each.  Recoverable channel errors and
        ``retry_errors`` are retried at once.  Other errors, and errors that retrying
        cannot cure, surface at once.  After ``max_retries`` retries the last error is
        raised as :class:`~kombu_like.exceptions.OperationalError`.  If the connection is
        not open yet, it is opened first under the same ``max_retries`` and intervals,
        within ``connect_timeout``.  ``timeout`` (an addition to Kombu's signature)
        bounds the whole call in seconds.
        """
        extra = tuple(retry_errors or ())
        # nothing arriving in time is not a lost connection, even where bare socket
        # errors count as connection errors (socket.timeout is an OSError)
        give_up = NEVER_RETRIED + (() if socket.timeout in extra else (socket.timeout,))
        policy = RetryPolicy(max_retries, interval_start, interval_step, interval_max, timeout)

        def _ensured(*args: Any, **kwargs: Any) -> _R:
            conn_errors = self.recoverable_connection_errors
            chan_errors = self.recoverable_channel_errors
            revive = [False]
            reconnecting = [False]
            attempts = [0]

            def attempt() -> _R:
                attempts[0] += 1
                if revive[0]:
                    # inside the attempt: a connection lost again while reviving is
                    # retried like any other loss, not raised to the caller
                    channel = self.default_channel
                    obj.revive(channel)
                    if on_revive:
                        on_revive(channel)
                    revive[0] = False
                return fun(*args, **kwargs)

            def on_retry(exc: BaseException, sleeps: Iterator[float], retries: int) -> float:
                if isinstance(exc, extra):
                    logger.debug("ensure: retrying after %r", exc)
                    if errback:
                        errback(exc, 0)
                elif isinstance(exc, conn_errors):
                    logger.debug("ensure: connection error %r; reconnecting", exc)
                    self.maybe_switch_next()
                    self.collect()
                    if errback:
                        errback(exc, 0)
                    remaining = None if max_retries is None else max(max_retries - retries, 1)
                    reconnecting[0] = True
                    self._ensure_connection(
                        errback,
                        remaining,
                        interval_start,
                        interval_step,
                        interval_max,
                        timeout=timeout,
                    )
                    reconnecting[0] = False
                    revive[0] = True
                else:
                    logger.debug("ensure: channel error %r; retrying", exc)
                    if errback:
                        errback(exc, 0)
                return 0.0

            if not self.connected and not self._closed:
                # connect under this call's policy, not the default channel's
                opts = self._extract_failover_opts()
                opts.update(
                    errback=errback,
                    max_retries=max_retries,
                    interval_start=interval_start,
                    interval_step=interval_step,
                    interval_max=interval_max,
                )
                self._ensure_connection(**opts)
            try:
                return policy.call(attempt, extra + conn_errors + chan_errors, on_retry=on_retry, give_up=give_up)
            except give_up:
                raise
            except conn_errors + chan_errors as exc:
                if reconnecting[0]:
                    raise  # reconnecting gave up: its error names the URLs tried
                raise OperationalError(_failed_message(fun, exc, self, attempts[0])) from exc

        _ensured.__name__ = f"{getattr(fun, '__name__', 'fun')}(ensured)"
        _ensured.__doc__ = fun.__doc__
        _ensured.__module__ = getattr(fun, "__module__", None) or __name__
        return _ensured

    def autoretry(
        self, fun: Callable[..., _R], channel: Any = None, **ensure_options: Any
    ) -> Callable[..., tuple[_R, Any]]:
        """Make ``fun(*args, channel=channel)`` retry on connection loss, on a fresh channel.

        As in Kombu, the wrapper returns ``(retval, channel)``: the channel last used, which
        is a new one after a reconnect.  The retry options also apply to opening the
        connection the first time.
        """
        channels = [channel]

        class Revival:
            __name__ = getattr(fun, "__name__", "fun")
            __module__ = getattr(fun, "__module__", None) or __name__
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
    def _info(self, resolve: bool = True) -> list[tuple[str, Any]]:
        transport_cls = self.transport_cls
        if resolve and isinstance(transport_cls, str):
            transport_cls = self.resolve_aliases.get(transport_cls, transport_cls)
        defaults = self._default_params()
        hostname = self.hostname or defaults.get("hostname")
        if self.uri_prefix:
            hostname = f"{self.uri_prefix}+{hostname}"
        return [
            ("hostname", hostname),
            ("userid", self.userid or defaults.get("userid")),
            ("password", self.password or defaults.get("password")),
            ("virtual_host", self.virtual_host or defaults.get("virtual_host")),
            ("port", self.port or defaults.get("port")),
            ("insist", self.insist),
            ("ssl", self.ssl),
            ("transport", transport_cls),
            ("connect_timeout", self.connect_timeout),
            ("transport_options", self.transport_options),
            ("login_method", self.login_method or defaults.get("login_method")),
            ("uri_prefix", self.uri_prefix),
            ("heartbeat", self.heartbeat),
            ("failover_strategy", self._failover_strategy),
            ("alternates", self.alt),
            ("credential_provider", self.credential_provider),
        ]

    def _default_params(self) -> dict[str, Any]:
        try:
            return dict(self.transport.default_connection_params)
        except ImportError:  # an optional driver is missing; the URL is still printable
            return {}

    def info(self) -> dict[str, Any]:
        """Connection settings as a dict, the transport's defaults filled in (as in Kombu).

        The password is included, as in Kombu: do not log it.
        """
        return dict(self._info())

    def as_uri(self, include_password: bool = False, mask: str = "**", getfields: Any = None) -> str:
        """This connection's URL, as Kombu prints it; the password is ``mask`` unless asked for.

        ``amqp://guest:**@localhost:5672//``: the transport's defaults are filled in, and
        the password is masked even where there is none, so that a URL in a log never
        tells whether a password is set.
        """
        hostname = self.hostname or "localhost"
        if self.uri_prefix:
            uri = f"{self.uri_prefix}+{hostname}"
            return uri if include_password else _sanitized(uri, mask)
        fields = self.info()
        password = fields["password"]
        if not include_password:
            password = mask
        elif callable(password):
            password = password()
        transport = fields["transport"]
        if not isinstance(transport, str):
            transport = getattr(transport, "scheme", None) or "custom"
        return as_url(
            transport,
            hostname,
            fields["port"],
            fields["userid"],
            password,
            quote(fields["virtual_host"] or ""),
            sanitize=not include_password,
            mask=mask,
        )

    @property
    def host(self) -> str:
        """``hostname:port``."""
        return f"{self.hostname}:{self.port}"

    def clone(self, **kwargs: Any) -> Connection:
        """A new, unconnected Connection with the same settings (overridden by kwargs)."""
        params = dict(self._info(resolve=False))
        params.update(self._extra_kwargs)
        params.update(kwargs)
        return type(self)(**params)

    def __copy__(self) -> Connection:
        return self.clone()

    def __reduce__(self) -> Any:
        return (_rebuild_connection, (dict(self._info(resolve=False)), dict(self._extra_kwargs)))

    def __repr__(self) -> str:
        return f"<Connection: {self.as_uri()} at {id(self):#x}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Connection):
            return self.as_uri(include_password=True) == other.as_uri(include_password=True)
        return NotImplemented

    def __hash__(self) -> int:
        return id(self)

    # -- factories ---------------------------------------------------------------
    def Producer(self, channel: Any = None, *args: Any, **kwargs: Any) -> Producer:  # noqa: N802
        """A :class:`~kombu_like.Producer` on ``channel`` (default: this connection)."""
        from .messaging import Producer

        return Producer(channel or self, *args, **kwargs)

    def Consumer(self, queues: Any = None, channel: Any = None, *args: Any, **kwargs: Any) -> Consumer:  # noqa: N802
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
    ) -> SimpleQueue:
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
    ) -> SimpleBuffer:
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


def _rebuild_connection(params: dict[str, Any], extra: dict[str, Any]) -> Connection:
    return Connection(**params, **extra)


def _gave_up_message(failures: list[tuple[str, BaseException]]) -> str:
    """Which URLs failed and how (the URLs are already masked)."""
    attempts = len(failures)
    last: dict[str, BaseException] = {}
    for url, exc in failures:
        last.pop(url, None)
        last[url] = exc
    counted = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
    if len(last) == 1:
        url, exc = next(iter(last.items()))
        return f"could not connect to {url} {counted}: {_describe(exc)}"
    tried = "; ".join(f"{url}: {_describe(exc)}" for url, exc in last.items())
    return f"could not connect to any of {len(last)} URLs {counted}: {tried}"


def _describe(exc: BaseException) -> str:
    text = scrub_credentials(str(exc))
    return text if isinstance(exc, KombuError) else f"{type(exc).__name__}: {text}"


def _failed_message(fun: Any, exc: BaseException, conn: Connection, attempts: int) -> str:
    name = getattr(fun, "__name__", "operation")
    counted = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    return f"{name} failed after {counted} on {conn.as_uri()}: {_describe(exc)}"


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
