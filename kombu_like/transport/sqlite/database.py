"""The database file: its tables, and one sqlite connection to it used under a lock.

Every write is a short ``BEGIN IMMEDIATE`` transaction (:meth:`Database.transaction`);
the file runs in WAL mode, so readers never block the writer.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from ...exceptions import ConnectionError, OperationalError

__all__ = ["SCHEMA_VERSION", "Database", "Transaction", "dumps", "is_busy"]

#: bumped when the tables change shape; a file from a newer release is refused
SCHEMA_VERSION = 1

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


def dumps(value: Any) -> str:
    """``value`` as the file stores arguments: canonical JSON (equal arguments, equal text)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def is_busy(exc: sqlite3.Error) -> bool:
    """True when ``exc`` says another connection holds the lock (SQLITE_BUSY/LOCKED)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    return name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in text or "busy" in text


class Database:
    """One sqlite connection to the file at ``path``, shared by threads under :attr:`lock`."""

    def __init__(self, path: str, busy_timeout: float, synchronous: str) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        #: held around every use of the connection; a transaction holds it throughout
        self.lock = threading.RLock()
        db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
        except BaseException:
            db.close()
            raise
        self._db: sqlite3.Connection | None = db

    def create_schema(self, cur: sqlite3.Connection) -> None:
        """Create the tables the file lacks (in the caller's transaction ``cur``); refuse
        a file written by a newer release."""
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

    def conn(self) -> sqlite3.Connection:
        """The connection (use it under :attr:`lock`); :class:`ConnectionError` once closed."""
        db = self._db
        if db is None:
            raise ConnectionError(f"the sqlite store for {self.path!r} is closed")
        return db

    def transaction(self) -> Transaction:
        return Transaction(self)

    def data_version(self) -> int:
        # changes whenever another connection commits to the file; our own writes notify
        with self.lock:
            return int(self.conn().execute("PRAGMA data_version").fetchone()[0])

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        with self.lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()


class Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the database lock (``ROLLBACK`` on error)."""

    __slots__ = ("database", "db")

    def __init__(self, database: Database) -> None:
        self.database = database

    def __enter__(self) -> sqlite3.Connection:
        self.database.lock.acquire()
        try:
            self.db = self.database.conn()
            # IMMEDIATE takes the write lock now, so two processes never both read a
            # row as free and then both lease it
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.database.lock.release()
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
            self.database.lock.release()

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the transaction is already gone; the first error is the one to report
