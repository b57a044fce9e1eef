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

import itertools
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..asynchronous.wakeup import WakeupFd
from ..exceptions import (
    AccessRefused,
    ChannelError,
    ConnectionError,
    ConnectionTimeout,
    EncodeError,
    InconsistencyError,
    KombuError,
    OperationalError,
    PreconditionFailed,
)
from .base import Capabilities
from .options import TransportOptions, option
from .virtual import Delivery, QueueStore, VirtualTransport
from .virtual.routing import Binding, ExchangeInfo

__all__ = ["DEFAULT_PATH", "SqliteOptions", "SqliteStore", "Transport", "database_path"]

logger = logging.getLogger(__name__)

#: the file ``sqlite://`` (no path) uses, in the working directory
DEFAULT_PATH = "kombu_like.db"
#: bumped when the tables change shape; a file from a newer release is refused
SCHEMA_VERSION = 1

DEFAULT_VISIBILITY_TIMEOUT = 3600.0
DEFAULT_POLLING_INTERVAL = 0.05
DEFAULT_BUSY_TIMEOUT = 10.0
#: how often an idle consumer looks for leases held by processes that died
OWNER_CHECK_INTERVAL = 2.0
#: how often expired (TTL) messages are swept out of the file
EXPIRY_SWEEP_INTERVAL = 5.0
#: bytes of an unreadable row quoted in errors
PREVIEW_BYTES = 80
#: shortest period, in seconds, of the event loop's look at the file for other processes'
#: writes (``polling_interval=0`` must not turn the loop's timer into a spin)
MIN_LOOP_POLL = 0.01

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kl_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kl_queues (
    name TEXT PRIMARY KEY,
    arguments TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kl_messages (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    expires REAL,
    lease TEXT,
    leased_until REAL,
    redelivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS kl_messages_order ON kl_messages (queue, priority DESC, id);
CREATE INDEX IF NOT EXISTS kl_messages_lease ON kl_messages (lease) WHERE lease IS NOT NULL;
CREATE INDEX IF NOT EXISTS kl_messages_expires ON kl_messages (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS kl_exchanges (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    durable INTEGER NOT NULL,
    auto_delete INTEGER NOT NULL,
    arguments TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kl_bindings (
    exchange TEXT NOT NULL,
    queue TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    arguments TEXT NOT NULL,
    UNIQUE (exchange, queue, routing_key, arguments)
);
CREATE TABLE IF NOT EXISTS kl_owners (
    token TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL
) WITHOUT ROWID;
"""

_TAKE = (
    "UPDATE kl_messages SET lease = ?1, leased_until = ?2, "
    # a row whose earlier lease lapsed was delivered before: that is a redelivery
    "redelivered = CASE WHEN lease IS NULL THEN redelivered ELSE 1 END "
    "WHERE id IN (SELECT id FROM kl_messages WHERE queue = ?3 "
    "AND (lease IS NULL OR leased_until <= ?4) AND (expires IS NULL OR expires > ?4) "
    "ORDER BY priority DESC, id LIMIT ?5) "
    "RETURNING id, priority, payload, redelivered"
)
_READY = "(lease IS NULL OR leased_until <= ?2) AND (expires IS NULL OR expires > ?2)"

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


@dataclass
class SqliteOptions(TransportOptions):
    """The ``transport_options`` of the sqlite transport."""

    transport_name: ClassVar[str] = "sqlite"

    visibility_timeout: float = option(
        DEFAULT_VISIBILITY_TIMEOUT, "seconds a delivered, unacknowledged message stays leased to its consumer"
    )
    polling_interval: float | None = option(
        DEFAULT_POLLING_INTERVAL,
        "how often, in seconds, a waiting consumer looks for messages written by *other* processes; "
        "publishers in the same process wake it at once (``None``: the default, as in Kombu)",
    )
    busy_timeout: float = option(
        DEFAULT_BUSY_TIMEOUT, "seconds to wait for another process's write lock before giving up"
    )
    synchronous: str = option(
        "NORMAL", "SQLite's ``synchronous`` pragma (OFF, NORMAL, FULL, EXTRA): FULL also survives power loss, at a cost"
    )

    def check(self) -> None:
        for name in ("visibility_timeout", "busy_timeout"):
            if getattr(self, name) <= 0:
                self.refuse(name, "a positive number of seconds")
        if self.polling_interval is None:
            # Kombu's virtual transports read polling_interval=None as "the default"
            self.polling_interval = DEFAULT_POLLING_INTERVAL
        if self.polling_interval < 0:
            self.refuse("polling_interval", "a number of seconds, not negative")
        self.synchronous = self.synchronous.upper()
        if self.synchronous not in _SYNCHRONOUS:
            self.refuse("synchronous", "one of " + ", ".join(_SYNCHRONOUS))


def _is_busy(exc: sqlite3.Error) -> bool:
    """True when ``exc`` says another connection holds the lock (SQLITE_BUSY/LOCKED)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    return name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in text or "busy" in text


def database_path(virtual_host: str | None) -> str:
    """The file a ``sqlite://`` URL's path names, made absolute.

    ``None`` or ``"/"`` (no path in the URL) is :data:`DEFAULT_PATH` in the working
    directory; ``"queues.db"`` is relative to it and ``"/var/lib/q.db"`` is absolute.
    """
    path = virtual_host if virtual_host and virtual_host != "/" else DEFAULT_PATH
    return os.path.abspath(os.path.expanduser(path))


def _pid_alive(pid: int) -> bool:
    """True unless ``pid`` is certainly gone (never guess "dead": leases would be stolen)."""
    if os.name != "posix":
        return True  # no harmless liveness probe; leases then lapse by visibility_timeout
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class _Notifier:
    """Wakes consumers of one database file in this process when a message is stored.

    Blocked takes wait on a condition; consumers driven by an event loop register a
    :class:`WakeupFd`, made readable by the same notification.  Other processes cannot
    signal us; for them a waiting consumer re-checks the file every ``polling_interval``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self.generation = 0
        self._waiters = 0
        self._wakeups: set[WakeupFd] = set()

    def notify(self) -> None:
        with self._cond:
            self.generation += 1
            if self._waiters:
                self._cond.notify_all()
            for wakeup in self._wakeups:
                wakeup.wake()

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait until something was stored after generation ``seen``; True if it was."""
        with self._cond:
            if self.generation != seen:
                return True
            self._waiters += 1
            try:
                self._cond.wait(timeout)
            finally:
                self._waiters -= 1
            return self.generation != seen

    def subscribe(self, wakeup: WakeupFd, seen: int) -> bool:
        """Wake ``wakeup`` on every store from now on; True when something was stored
        after generation ``seen`` already (before the subscription could see it)."""
        with self._cond:
            self._wakeups.add(wakeup)
            return self.generation != seen

    def unsubscribe(self, wakeup: WakeupFd) -> None:
        with self._cond:
            self._wakeups.discard(wakeup)


_notifiers_lock = threading.Lock()
# one per database file: every store of this process on that file shares it, which is
# what lets a publisher wake a consumer on another Connection without polling
_notifiers: weakref.WeakValueDictionary[str, _Notifier] = weakref.WeakValueDictionary()


def _notifier_for(path: str) -> _Notifier:
    with _notifiers_lock:
        notifier = _notifiers.get(path)
        if notifier is None:
            notifier = _notifiers[path] = _Notifier()
        return notifier


@dataclass(frozen=True, slots=True)
class _QueueSpec:
    """The queue arguments that change how messages are stored."""

    max_priority: int = 0
    ttl: float | None = None
    max_length: int | None = None

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any] | None) -> _QueueSpec:
        arguments = arguments or {}
        ttl = arguments.get("x-message-ttl")
        length = arguments.get("x-max-length")
        return cls(
            int(arguments.get("x-max-priority") or 0),
            float(ttl) / 1000.0 if ttl is not None else None,
            int(length) if length is not None else None,
        )


_PLAIN = _QueueSpec()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


class SqliteBindings:
    """Exchanges and bindings kept in the database file, so every process sees them.

    A version counter in the file changes with every declaration, binding and deletion;
    the snapshot kept here is re-read only when that counter moved.
    """

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._seen: int | None = None
        self._exchanges: dict[str, ExchangeInfo] = {}
        self._bindings: dict[str, list[Binding]] = {}

    @property
    def version(self) -> int:
        return self._store._read_version()

    def _fresh(self) -> None:
        version = self._store._read_version()
        if version != self._seen:
            self._exchanges, self._bindings = self._store._load_routing()
            self._seen = version

    def declare_exchange(self, info: ExchangeInfo) -> None:
        self._store._declare_exchange(info)

    def exchange(self, name: str) -> ExchangeInfo | None:
        self._fresh()
        return self._exchanges.get(name)

    def delete_exchange(self, name: str) -> None:
        self._store._delete_exchange(name)

    def bind(self, exchange: str, binding: Binding) -> None:
        self._store._bind(exchange, binding)

    def unbind(self, exchange: str, binding: Binding) -> None:
        self._store._unbind(exchange, binding)

    def unbind_queue(self, queue: str) -> None:
        self._store._unbind_queue(queue)

    def get_bindings(self, exchange: str) -> list[Binding]:
        self._fresh()
        return list(self._bindings.get(exchange, ()))

    def all_bindings(self) -> list[tuple[str, Binding]]:
        self._fresh()
        return [(ex, b) for ex, items in self._bindings.items() for b in items]


class SqliteStore(QueueStore):
    """Queue store in one sqlite database file, shared by threads and processes.

    One sqlite connection per store, used under a lock; a blocked :meth:`get` holds no
    lock while it waits.
    """

    capabilities = Capabilities(priority=True, ttl=True, batch_publish=True)
    body_encoding = "base64"

    def __init__(
        self,
        path: str,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        polling_interval: float = DEFAULT_POLLING_INTERVAL,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        synchronous: str = "NORMAL",
    ) -> None:
        self.path = path
        self.visibility_timeout = float(visibility_timeout)
        self.polling_interval = max(float(polling_interval), 0.001)
        self.busy_timeout = float(busy_timeout)
        sync = str(synchronous).upper()
        if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.token = uuid.uuid4().hex
        self.host = socket.gethostname()
        self._lock = threading.RLock()
        #: when a take first found the file locked by another process (monotonic), while
        #: it stays locked: a drain with a short timeout gives up waiting at its deadline,
        #: and only a lock held past busy_timeout in all is an error
        self._locked_since: float | None = None
        self._leases = itertools.count(1)
        self._specs: dict[str, _QueueSpec] = {}
        self._notifier = _notifier_for(path)
        self._next_owner_check = 0.0
        self._next_expiry_sweep = 0.0
        self._db: sqlite3.Connection | None = None
        self.bindings: SqliteBindings = SqliteBindings(self)
        #: driven by an event loop: the descriptor our own process's stores make readable
        self._wakeup: WakeupFd | None = None
        #: what the last empty take under the loop saw: (queues, notifier generation,
        #: the file's data_version, when a lease on those queues lapses)
        self._idle: tuple[frozenset[str], int, int, float | None] | None = None
        #: the notifier generation the last take under the loop started from
        self._seen = 0
        self._open(sync)

    # -- connection ----------------------------------------------------------------------
    def _open(self, synchronous: str) -> None:
        db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            self._db = db
            with self._transaction() as cur:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    cur.execute(statement)
                row = cur.execute("SELECT value FROM kl_meta WHERE key = 'schema'").fetchone()
                if row is None:
                    cur.execute("INSERT INTO kl_meta VALUES ('schema', ?), ('bindings', 0)", (SCHEMA_VERSION,))
                elif row[0] > SCHEMA_VERSION:
                    raise OperationalError(
                        f"sqlite database {self.path!r} was written by a newer kombu_like "
                        f"(schema {row[0]}, this release reads {SCHEMA_VERSION}); upgrade kombu_like"
                    )
                cur.execute(
                    "INSERT INTO kl_owners VALUES (?, ?, ?, ?)",
                    (self.token, self.host, os.getpid(), time.time()),
                )
        except BaseException:
            self._db = None
            db.close()
            raise
        self.reap_dead_owners()

    def _conn(self) -> sqlite3.Connection:
        db = self._db
        if db is None:
            raise ConnectionError(f"the sqlite store for {self.path!r} is closed")
        return db

    class _Txn:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the store lock (``ROLLBACK`` on error)."""

        __slots__ = ("store", "db")

        def __init__(self, store: SqliteStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            try:
                self.db = self.store._conn()
                # IMMEDIATE takes the write lock now, so two processes never both read a
                # row as free and then both lease it
                self.db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._lock.release()
                raise
            return self.db

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            try:
                if exc_type is None:
                    try:
                        self.db.execute("COMMIT")
                    except BaseException:
                        self._rollback()  # never leave the connection inside a transaction
                        raise
                else:
                    self._rollback()
            finally:
                self.store._lock.release()

        def _rollback(self) -> None:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the transaction is already gone; the first error is the one to report

    def _transaction(self) -> SqliteStore._Txn:
        return self._Txn(self)

    def close(self) -> None:
        """Give back this store's leases (marked redelivered) and close the file."""
        self.unwatch()
        with self._lock:
            db = self._db
            if db is None:
                return
            try:
                with self._transaction() as cur:
                    self._release_owner(cur, self.token)
                    cur.execute("DELETE FROM kl_owners WHERE token = ?", (self.token,))
            finally:
                self._db = None
                db.close()
        self._notifier.notify()

    @property
    def is_open(self) -> bool:
        return self._db is not None

    # -- owners and leases -------------------------------------------------------------
    @staticmethod
    def _release_owner(cur: sqlite3.Connection, token: str) -> int:
        # leases are "<token>.<n>": the range scan stays on the lease index
        return cur.execute(
            "UPDATE kl_messages SET lease = NULL, leased_until = NULL, redelivered = 1 WHERE lease >= ? AND lease < ?",
            (token + ".", token + "/"),
        ).rowcount

    def reap_dead_owners(self) -> int:
        """Give back the leases of consumers on this machine whose process has died.

        Returns how many messages became deliverable again.
        """
        with self._lock:
            rows = (
                self._conn()
                .execute("SELECT token, pid FROM kl_owners WHERE host = ? AND token != ?", (self.host, self.token))
                .fetchall()
            )
        dead = [token for token, pid in rows if pid != os.getpid() and not _pid_alive(pid)]
        if not dead:
            return 0
        released = 0
        with self._transaction() as cur:
            for token in dead:
                released += self._release_owner(cur, token)
                cur.execute("DELETE FROM kl_owners WHERE token = ?", (token,))
        if released:
            logger.info("%s: %d messages of dead consumers made deliverable again", self.path, released)
            self._notifier.notify()
        return released

    # -- queues ------------------------------------------------------------------------
    def declare_queue(self, queue: str, arguments: Mapping[str, Any] | None = None) -> None:
        args = {k: v for k, v in (arguments or {}).items() if v is not None}
        with self._transaction() as cur:
            row = cur.execute("SELECT arguments FROM kl_queues WHERE name = ?", (queue,)).fetchone()
            if row is None:
                cur.execute("INSERT INTO kl_queues VALUES (?, ?)", (queue, _dumps(args)))
                existing = args
            else:
                existing = json.loads(row[0])
                wanted = args.get("x-max-priority")
                current = existing.get("x-max-priority")
                if wanted and int(wanted) != int(current or 0):
                    raise PreconditionFailed(
                        f"PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue "
                        f"{queue!r}: received {wanted} but current is {current or 0}"
                    )
        self._specs[queue] = _QueueSpec.from_arguments(existing)

    def queue_exists(self, queue: str) -> bool:
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT 1 FROM kl_queues WHERE name = ?1 UNION ALL "
                    "SELECT 1 FROM kl_messages WHERE queue = ?1 LIMIT 1",
                    (queue,),
                )
                .fetchone()
            )
        return row is not None

    def _spec(self, queue: str) -> _QueueSpec:
        spec = self._specs.get(queue)
        if spec is not None:
            return spec
        with self._lock:
            row = self._conn().execute("SELECT arguments FROM kl_queues WHERE name = ?", (queue,)).fetchone()
        if row is None:
            return _PLAIN  # not declared (yet): not cached, a later declaration counts
        spec = self._specs[queue] = _QueueSpec.from_arguments(json.loads(row[0]))
        return spec

    def _row(self, queue: str, payload: dict[str, Any], priority: int, now: float) -> tuple[Any, ...]:
        spec = self._spec(queue)
        limits = []
        expiration = payload["properties"].get("expiration")
        if expiration is not None:
            try:
                limits.append(float(expiration) / 1000.0)
            except (TypeError, ValueError):
                pass  # as on RabbitMQ's side, an unreadable expiration means none
        if spec.ttl is not None:
            limits.append(spec.ttl)
        level = max(0, min(int(priority or 0), spec.max_priority)) if spec.max_priority else 0
        try:
            text = json.dumps(payload, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise EncodeError(
                f"cannot store a message for queue {queue!r} in {self.path!r}: its headers and "
                f"properties must be JSON-serializable ({exc})"
            ) from exc
        return (queue, level, text, now + min(limits) if limits else None)

    def _trim(self, cur: sqlite3.Connection, queue: str) -> None:
        limit = self._spec(queue).max_length
        if limit is None:
            return
        # x-max-length drops from the head, as RabbitMQ does
        cur.execute(
            "DELETE FROM kl_messages WHERE id IN (SELECT id FROM kl_messages WHERE queue = ?1 "
            "AND lease IS NULL ORDER BY priority DESC, id LIMIT max(0, (SELECT COUNT(*) FROM "
            "kl_messages WHERE queue = ?1 AND lease IS NULL) - ?2))",
            (queue, limit),
        )

    _INSERT = "INSERT INTO kl_messages (queue, priority, payload, expires) VALUES (?, ?, ?, ?)"

    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> None:
        row = self._row(queue, payload, priority, time.time())
        if self._spec(queue).max_length is None:
            with self._lock:
                self._conn().execute(self._INSERT, row)
        else:
            with self._transaction() as cur:
                cur.execute(self._INSERT, row)
                self._trim(cur, queue)
        self._notifier.notify()

    def put_many(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> None:
        now = time.time()
        rows = [self._row(queue, payload, priority, now) for queue, payload, priority in items]
        with self._transaction() as cur:
            cur.executemany(self._INSERT, rows)
            for queue in {row[0] for row in rows}:
                self._trim(cur, queue)
        self._notifier.notify()

    def get(self, queues: Sequence[str], timeout: float | None, max_count: int = 1) -> list[Delivery]:
        if timeout == 0 and self._wakeup is not None:
            return self._take_now(queues, max_count)
        deadline = None if timeout is None else time.monotonic() + timeout
        notifier = self._notifier
        while True:
            seen = notifier.generation
            data_version = self._data_version()
            taken = self._take_by(queues, max_count, deadline)
            if taken is None:
                return []  # the file stayed locked by another process until the deadline
            deliveries, lease_due = taken
            if deliveries:
                return deliveries
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                wait = self.polling_interval if remaining is None else min(remaining, self.polling_interval)
                if notifier.wait(seen, wait):
                    break  # stored by this process
                if self._data_version() != data_version:
                    break  # another process wrote to the file
                if lease_due is not None and time.time() >= lease_due:
                    break  # a lease lapsed: that message is deliverable again
                if time.monotonic() >= self._next_owner_check:
                    self._next_owner_check = time.monotonic() + OWNER_CHECK_INTERVAL
                    if self.reap_dead_owners():
                        break

    def _take_now(self, queues: Sequence[str], max_count: int) -> list[Delivery]:
        """A take under the event loop: never waits, and opens no write transaction when
        nothing can have changed since the last take found the queues empty (nothing
        stored by this process, nothing committed by another, no lease lapsed)."""
        generation = self._seen = self._notifier.generation
        data_version = self._data_version()
        idle = self._idle
        key = frozenset(queues)  # the loop rotates the order of several queues
        if (
            idle is not None
            and idle[:3] == (key, generation, data_version)
            and (idle[3] is None or time.time() < idle[3])
        ):
            return []
        taken = self._take_by(queues, max_count, time.monotonic())
        if taken is None:
            self._idle = None  # locked by another process: look again at the next poll
            return []
        deliveries, lease_due = taken
        self._idle = None if deliveries else (key, generation, data_version, lease_due)
        return deliveries

    def _take_by(
        self, queues: Sequence[str], max_count: int, deadline: float | None
    ) -> tuple[list[Delivery], float | None] | None:
        """:meth:`_take`, waiting for another process's write lock no longer than the caller's
        ``deadline`` (``drain_events(timeout=1)`` returns after a second, not after
        ``busy_timeout``); ``None`` when the lock was not had by then.  A lock held past
        ``busy_timeout`` over several such calls raises as a single long wait would."""
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is None or remaining >= self.busy_timeout:
            taken = self._take(queues, max_count)
            self._locked_since = None
            return taken
        started = time.monotonic()
        with self._lock:
            db = self._conn()
            db.execute(f"PRAGMA busy_timeout = {int(max(remaining, 0.0) * 1000)}")
            try:
                taken = self._take(queues, max_count)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if self._locked_since is None:
                    self._locked_since = started
                if time.monotonic() - self._locked_since >= self.busy_timeout:
                    raise
                return None
            finally:
                db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        self._locked_since = None
        return taken

    def _data_version(self) -> int:
        # changes whenever another connection commits to the file; our own writes notify
        with self._lock:
            return int(self._conn().execute("PRAGMA data_version").fetchone()[0])

    def _take(self, queues: Sequence[str], max_count: int) -> tuple[list[Delivery], float | None]:
        """Lease up to ``max_count`` ready messages of the first queue that has any.

        Returns the deliveries, and when there were none, the time the earliest current
        lease on these queues lapses (``None``: no leases).
        """
        if not queues:
            return [], None
        now = time.time()
        lease = f"{self.token}.{next(self._leases)}"
        rows: list[Any] = []
        queue = ""
        with self._transaction() as cur:
            if now >= self._next_expiry_sweep:
                self._next_expiry_sweep = now + EXPIRY_SWEEP_INTERVAL
                cur.execute(
                    "DELETE FROM kl_messages WHERE expires IS NOT NULL AND expires <= ? AND lease IS NULL", (now,)
                )
            for queue in queues:
                rows = cur.execute(_TAKE, (lease, now + self.visibility_timeout, queue, now, max_count)).fetchall()
                if rows:
                    break
            if not rows:
                marks = ",".join("?" * len(queues))
                due = cur.execute(
                    f"SELECT MIN(leased_until) FROM kl_messages WHERE lease IS NOT NULL AND queue IN ({marks})",
                    tuple(queues),
                ).fetchone()[0]
                return [], due
        # RETURNING gives rows in no particular order
        rows.sort(key=lambda r: (-r[1], r[0]))
        return [self._delivery(queue, lease, row) for row in rows], None

    def _delivery(self, queue: str, lease: str, row: tuple[Any, ...]) -> Delivery:
        rowid, _priority, text, redelivered = row
        try:
            payload = json.loads(text)
            props = payload["properties"]
            if redelivered:
                info = props.setdefault("delivery_info", {})
                info["redelivered"] = True
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            payload = self._unreadable(queue, rowid, text, exc)
        return Delivery(queue, payload, (rowid, lease))

    def _unreadable(self, queue: str, rowid: int, text: Any, exc: BaseException) -> dict[str, Any]:
        raw = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
        problem = (
            f"message {rowid} of queue {queue!r} in {self.path!r} is not a valid envelope "
            f"({type(exc).__name__}: {exc}); raw bytes: {raw[:PREVIEW_BYTES]!r}"
        )
        # the consumer reports it, with this text, in its one line per bad message
        logger.debug("%s", problem)
        # delivered as opaque bytes so the consumer sees it (and may reject it) instead of
        # it vanishing or blocking the queue
        return {
            "body": raw,
            "content-type": "application/x-kombu-like-unreadable",
            "content-encoding": "binary",
            "headers": {"x-kombu-like-error": problem},
            "properties": {
                "body_encoding": None,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "delivery_tag": f"sqlite-{rowid}",
                "priority": 0,
            },
        }

    # -- driven by an event loop ----------------------------------------------------------
    # Puts and requeues of this process signal a wake-up descriptor; another process cannot,
    # so the loop's timer looks at the file's change counter every polling_interval.
    def event_fds(self) -> Sequence[Any]:
        if self._wakeup is None or self._wakeup.closed:
            self._wakeup = WakeupFd()
        return [self._wakeup]

    def watch(self, queues: Sequence[str]) -> bool:
        # stored by this process since the take started: take again at once; another
        # process's write (or a file found locked) waits for the next poll
        return self._notifier.subscribe(self.event_fds()[0], self._seen)

    def on_readable(self, fd: int) -> bool:
        return self._wakeup is not None and self._wakeup.drain()

    def periodic(self) -> Sequence[tuple[float, Callable[[], None]]]:
        # after each of these the loop takes again; the take costs one read of the file's
        # change counter when nothing changed
        return (
            (max(self.polling_interval, MIN_LOOP_POLL), self._poll),
            (OWNER_CHECK_INTERVAL, self._reap),
        )

    def _reap(self) -> None:
        # a dead consumer's messages given back notify, which wakes this loop too
        self.reap_dead_owners()

    def _poll(self) -> None:
        """Wake the loop when another process committed to the file or a lease lapsed
        since the last empty take (the loop takes after this in any case; the take then
        skips its transaction when nothing changed)."""
        idle = self._idle
        if self._wakeup is None or idle is None:
            return
        if self._data_version() != idle[2] or (idle[3] is not None and time.time() >= idle[3]):
            self._wakeup.wake()

    def unwatch(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        self._idle = None
        if wakeup is not None:
            self._notifier.unsubscribe(wakeup)
            wakeup.close()

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        receipts = [d.receipt for d in deliveries if d.receipt is not None]
        if not receipts:
            return
        with self._lock:
            db = self._conn()
            if len(receipts) == 1:
                db.execute("DELETE FROM kl_messages WHERE id = ? AND lease = ?", receipts[0])
                return
        with self._transaction() as cur:
            cur.executemany("DELETE FROM kl_messages WHERE id = ? AND lease = ?", receipts)

    def requeue(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> None:
        receipts = [(int(redelivered), *d.receipt) for d in deliveries if d.receipt is not None]
        if not receipts:
            return
        with self._transaction() as cur:
            # the row keeps its id, so it goes back to its place at the head of the queue
            cur.executemany(
                "UPDATE kl_messages SET lease = NULL, leased_until = NULL, "
                "redelivered = max(redelivered, ?) WHERE id = ? AND lease = ?",
                receipts,
            )
        self._notifier.notify()

    def purge(self, queue: str) -> int:
        now = time.time()
        with self._transaction() as cur:
            count = cur.execute(f"DELETE FROM kl_messages WHERE queue = ?1 AND {_READY}", (queue, now)).rowcount
            cur.execute("DELETE FROM kl_messages WHERE queue = ? AND lease IS NULL AND expires <= ?", (queue, now))
        return int(count)

    def size(self, queue: str) -> int:
        with self._lock:
            row = (
                self._conn()
                .execute(f"SELECT COUNT(*) FROM kl_messages WHERE queue = ?1 AND {_READY}", (queue, time.time()))
                .fetchone()
            )
        return int(row[0])

    def unacked_count(self, queue: str) -> int:
        """Messages of ``queue`` delivered and not yet acknowledged (leases still running)."""
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT COUNT(*) FROM kl_messages WHERE queue = ? AND lease IS NOT NULL AND leased_until > ?",
                    (queue, time.time()),
                )
                .fetchone()
            )
        return int(row[0])

    def delete_queue(self, queue: str) -> None:
        with self._transaction() as cur:
            cur.execute("DELETE FROM kl_messages WHERE queue = ?", (queue,))
            cur.execute("DELETE FROM kl_queues WHERE name = ?", (queue,))
        self._specs.pop(queue, None)

    def list_queues(self) -> list[str]:
        with self._lock:
            rows = (
                self._conn()
                .execute("SELECT name FROM kl_queues UNION SELECT DISTINCT queue FROM kl_messages ORDER BY 1")
                .fetchall()
            )
        return [row[0] for row in rows]

    # -- exchanges and bindings (through SqliteBindings) --------------------------------
    def _read_version(self) -> int:
        with self._lock:
            row = self._conn().execute("SELECT value FROM kl_meta WHERE key = 'bindings'").fetchone()
        if row is None:
            raise InconsistencyError(f"sqlite database {self.path!r} lost its kombu_like tables")
        return int(row[0])

    @staticmethod
    def _bump(cur: sqlite3.Connection) -> None:
        cur.execute("UPDATE kl_meta SET value = value + 1 WHERE key = 'bindings'")

    def _load_routing(self) -> tuple[dict[str, ExchangeInfo], dict[str, list[Binding]]]:
        with self._lock:
            db = self._conn()
            exchange_rows = db.execute(
                "SELECT name, type, durable, auto_delete, arguments FROM kl_exchanges"
            ).fetchall()
            binding_rows = db.execute(
                "SELECT exchange, queue, routing_key, arguments FROM kl_bindings ORDER BY rowid"
            ).fetchall()
        exchanges = {
            name: ExchangeInfo(name, type_, bool(durable), bool(auto_delete), json.loads(arguments) or None)
            for name, type_, durable, auto_delete, arguments in exchange_rows
        }
        bindings: dict[str, list[Binding]] = {}
        for exchange, queue, routing_key, arguments in binding_rows:
            bindings.setdefault(exchange, []).append(Binding(queue, routing_key, json.loads(arguments) or None))
        return exchanges, bindings

    def _declare_exchange(self, info: ExchangeInfo) -> None:
        with self._transaction() as cur:
            changed = cur.execute(
                "INSERT OR IGNORE INTO kl_exchanges VALUES (?, ?, ?, ?, ?)",
                (info.name, info.type, int(info.durable), int(info.auto_delete), _dumps(dict(info.arguments or {}))),
            ).rowcount
            if changed:
                self._bump(cur)

    def _delete_exchange(self, name: str) -> None:
        with self._transaction() as cur:
            cur.execute("DELETE FROM kl_exchanges WHERE name = ?", (name,))
            cur.execute("DELETE FROM kl_bindings WHERE exchange = ?", (name,))
            self._bump(cur)

    def _bind(self, exchange: str, binding: Binding) -> None:
        with self._transaction() as cur:
            changed = cur.execute(
                "INSERT OR IGNORE INTO kl_bindings VALUES (?, ?, ?, ?)",
                (exchange, binding.queue, binding.routing_key, _dumps(dict(binding.arguments or {}))),
            ).rowcount
            if changed:
                self._bump(cur)

    def _unbind(self, exchange: str, binding: Binding) -> None:
        with self._transaction() as cur:
            changed = cur.execute(
                "DELETE FROM kl_bindings WHERE exchange = ? AND queue = ? AND routing_key = ? AND arguments = ?",
                (exchange, binding.queue, binding.routing_key, _dumps(dict(binding.arguments or {}))),
            ).rowcount
            if changed:
                self._bump(cur)

    def _unbind_queue(self, queue: str) -> None:
        with self._transaction() as cur:
            if cur.execute("DELETE FROM kl_bindings WHERE queue = ?", (queue,)).rowcount:
                self._bump(cur)


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
        if _is_busy(exc):
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
