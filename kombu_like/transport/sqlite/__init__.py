"""Broker-less durable transport on the standard library's :mod:`sqlite3`: ``sqlite://``.

URLs follow SQLAlchemy's convention::

    sqlite://                    kombu_like.db in the working directory
    sqlite:///queues.db          a path relative to the working directory (three slashes)
    sqlite:////var/lib/app.db    an absolute path (four slashes)

Several processes on one machine publish to and consume from the same file: the database
runs in WAL mode (readers never block the writer), every write is a short transaction,
and a process that finds the file locked waits up to ``busy_timeout`` seconds.

Delivery is at-least-once.  A delivered message is *leased*, not removed: acknowledging
deletes it, while a lease that outlives ``visibility_timeout``, a closed channel or
connection, or a consumer process that died on this machine makes it deliverable again
with ``redelivered`` set.  Exchanges and bindings are stored in the file too, so a
publisher in one process routes to queues bound in another.

Transport options (also accepted as URL query parameters, ``sqlite:///q.db?busy_timeout=30``)
are the fields of :class:`SqliteOptions`.
"""

from __future__ import annotations

import sqlite3

from ...exceptions import (
    AccessRefused,
    ChannelError,
    ConnectionError,
    ConnectionTimeout,
    InconsistencyError,
    KombuError,
    OperationalError,
)
from ..virtual import VirtualTransport

# every name of the module this package replaced stays importable from here
from .bindings import SqliteBindings as SqliteBindings
from .codec import PREVIEW_BYTES as PREVIEW_BYTES
from .database import SCHEMA_VERSION as SCHEMA_VERSION
from .database import is_busy
from .looping import MIN_LOOP_POLL as MIN_LOOP_POLL
from .options import DEFAULT_BUSY_TIMEOUT as DEFAULT_BUSY_TIMEOUT
from .options import DEFAULT_PATH, SqliteOptions, database_path
from .options import DEFAULT_POLLING_INTERVAL as DEFAULT_POLLING_INTERVAL
from .options import DEFAULT_VISIBILITY_TIMEOUT as DEFAULT_VISIBILITY_TIMEOUT
from .options import OWNER_CHECK_INTERVAL as OWNER_CHECK_INTERVAL
from .store import EXPIRY_SWEEP_INTERVAL as EXPIRY_SWEEP_INTERVAL
from .store import SqliteStore

__all__ = ["DEFAULT_PATH", "SqliteOptions", "SqliteStore", "Transport", "database_path"]


class Transport(VirtualTransport):
    """The ``sqlite://`` transport: durable queues in a local database file."""

    driver_type = "sqlite"
    driver_name = "sqlite3"
    Store = SqliteStore
    Options = SqliteOptions

    connection_errors: tuple[type[BaseException], ...] = (ConnectionError, ConnectionTimeout)
    channel_errors: tuple[type[BaseException], ...] = (ChannelError,)
    # a locked file (ConnectionTimeout) frees up, a closed store reopens; a missing
    # directory or a corrupt file (plain OperationalError) will not, so it is not retried
    recoverable_connection_errors: tuple[type[BaseException], ...] = (ConnectionError, ConnectionTimeout)
    recoverable_channel_errors: tuple[type[BaseException], ...] = ()

    @property
    def path(self) -> str:
        """Absolute path of the database file this transport uses."""
        return database_path(self.client.virtual_host)

    def create_store(self) -> SqliteStore:
        hostname = self.client.hostname
        if hostname and hostname != "localhost":
            raise ValueError(
                f"sqlite URLs name a file, not a host ({hostname!r}): write sqlite:///{hostname} "
                f"for a file in the working directory or sqlite:////abs/path.db for an absolute path"
            )
        options = self.options
        return SqliteStore(
            self.path,
            visibility_timeout=options.visibility_timeout,
            polling_interval=DEFAULT_POLLING_INTERVAL if options.polling_interval is None else options.polling_interval,
            busy_timeout=options.busy_timeout,
            synchronous=options.synchronous,
        )

    @property
    def options(self) -> SqliteOptions:
        """The transport options, checked (:class:`ValueError` names a bad one)."""
        options = self.check_options()
        assert isinstance(options, SqliteOptions)
        return options

    def translate_error(self, exc: BaseException) -> BaseException:
        """Map :mod:`sqlite3` errors onto the library's exception tree, naming the file."""
        if isinstance(exc, KombuError) or not isinstance(exc, sqlite3.Error):
            return super().translate_error(exc)
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc)
        where = f"sqlite database {self.path!r}"
        if isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
            return ConnectionError(f"{where}: {text}")
        if is_busy(exc):
            return ConnectionTimeout(
                f"{where} stayed locked by another process for more than its busy_timeout "
                f"({self.options.busy_timeout} s): {text}"
            )
        if name == "SQLITE_CANTOPEN" or "unable to open" in text:
            return OperationalError(f"cannot open {where}: {text} (does its directory exist and is it writable?)")
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            return AccessRefused(f"{where} is read-only: {text}")
        if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in text or "malformed" in text:
            return OperationalError(f"{where} is not a usable database file: {text}")
        if name == "SQLITE_FULL" or "full" in text:
            return OperationalError(f"{where}: the disk is full: {text}")
        if "no such table" in text:
            return InconsistencyError(f"{where} lost its kombu_like tables ({text}); reconnect to recreate them")
        if isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError):
            return ConnectionError(f"{where}: {text}")
        return ChannelError(f"{where}: {text}")

    def driver_version(self) -> str:
        return sqlite3.sqlite_version
