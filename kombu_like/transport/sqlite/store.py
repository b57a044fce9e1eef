"""The queue store in one sqlite database file: messages, leases and their owners.

A delivered message is *leased*, not removed: acknowledging deletes it, while a lease
that outlives ``visibility_timeout``, a closed store, or a store whose process died on
this machine makes it deliverable again with ``redelivered`` set.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...exceptions import PreconditionFailed
from ..base import Capabilities
from ..virtual import Delivery, QueueStore
from .bindings import SqliteBindings
from .codec import PLAIN, QueueSpec, decode_delivery, encode_row
from .database import Database, dumps, is_busy
from .looping import LoopHooks
from .notifier import notifier_for
from .options import (
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_POLLING_INTERVAL,
    DEFAULT_VISIBILITY_TIMEOUT,
    OWNER_CHECK_INTERVAL,
    SYNCHRONOUS,
)

__all__ = ["EXPIRY_SWEEP_INTERVAL", "SqliteStore"]

logger = logging.getLogger("kombu_like.transport.sqlite")

#: how often expired (TTL) messages are swept out of the file
EXPIRY_SWEEP_INTERVAL = 5.0


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
        if sync not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.token = uuid.uuid4().hex
        self.host = socket.gethostname()
        #: when a take first found the file locked by another process (monotonic), while
        #: it stays locked: a drain with a short timeout gives up waiting at its deadline,
        #: and only a lock held past busy_timeout in all is an error
        self._locked_since: float | None = None
        self._leases = itertools.count(1)
        self._specs: dict[str, QueueSpec] = {}
        self.notifier = notifier_for(path)
        self._next_owner_check = 0.0
        self._next_expiry_sweep = 0.0
        self.db = Database(path, self.busy_timeout, sync)
        self.bindings: SqliteBindings = SqliteBindings(self.db)
        self.loop = LoopHooks(self)
        self._open()

    # -- connection ----------------------------------------------------------------------
    def _open(self) -> None:
        try:
            with self.db.transaction() as cur:
                self.db.create_schema(cur)
                cur.execute(
                    "INSERT INTO kl_owners VALUES (?, ?, ?, ?)",
                    (self.token, self.host, os.getpid(), time.time()),
                )
        except BaseException:
            self.db.close()
            raise
        self.reap_dead_owners()

    def close(self) -> None:
        """Give back this store's leases (marked redelivered) and close the file."""
        self.loop.unwatch()
        with self.db.lock:
            if not self.db.is_open:
                return
            try:
                with self.db.transaction() as cur:
                    self._release_owner(cur, self.token)
                    cur.execute("DELETE FROM kl_owners WHERE token = ?", (self.token,))
            finally:
                self.db.close()
        self.notifier.notify()

    @property
    def is_open(self) -> bool:
        return self.db.is_open

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
        with self.db.lock:
            rows = (
                self.db.conn()
                .execute("SELECT token, pid FROM kl_owners WHERE host = ? AND token != ?", (self.host, self.token))
                .fetchall()
            )
        dead = [token for token, pid in rows if pid != os.getpid() and not _pid_alive(pid)]
        if not dead:
            return 0
        released = 0
        with self.db.transaction() as cur:
            for token in dead:
                released += self._release_owner(cur, token)
                cur.execute("DELETE FROM kl_owners WHERE token = ?", (token,))
        if released:
            logger.info("%s: %d messages of dead consumers made deliverable again", self.path, released)
            self.notifier.notify()
        return released

    # -- queues ------------------------------------------------------------------------
    def declare_queue(self, queue: str, arguments: Mapping[str, Any] | None = None) -> None:
        args = {k: v for k, v in (arguments or {}).items() if v is not None}
        with self.db.transaction() as cur:
            row = cur.execute("SELECT arguments FROM kl_queues WHERE name = ?", (queue,)).fetchone()
            if row is None:
                cur.execute("INSERT INTO kl_queues VALUES (?, ?)", (queue, dumps(args)))
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
        self._specs[queue] = QueueSpec.from_arguments(existing)

    def queue_exists(self, queue: str) -> bool:
        with self.db.lock:
            row = (
                self.db.conn()
                .execute(
                    "SELECT 1 FROM kl_queues WHERE name = ?1 UNION ALL "
                    "SELECT 1 FROM kl_messages WHERE queue = ?1 LIMIT 1",
                    (queue,),
                )
                .fetchone()
            )
        return row is not None

    def _spec(self, queue: str) -> QueueSpec:
        spec = self._specs.get(queue)
        if spec is not None:
            return spec
        with self.db.lock:
            row = self.db.conn().execute("SELECT arguments FROM kl_queues WHERE name = ?", (queue,)).fetchone()
        if row is None:
            return PLAIN  # not declared (yet): not cached, a later declaration counts
        spec = self._specs[queue] = QueueSpec.from_arguments(json.loads(row[0]))
        return spec

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
        spec = self._spec(queue)
        row = encode_row(self.path, queue, spec, payload, priority, time.time())
        if spec.max_length is None:
            with self.db.lock:
                self.db.conn().execute(self._INSERT, row)
        else:
            with self.db.transaction() as cur:
                cur.execute(self._INSERT, row)
                self._trim(cur, queue)
        self.notifier.notify()

    def put_many(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> None:
        now = time.time()
        path, spec = self.path, self._spec
        rows = [encode_row(path, queue, spec(queue), payload, priority, now) for queue, payload, priority in items]
        with self.db.transaction() as cur:
            cur.executemany(self._INSERT, rows)
            for queue in {row[0] for row in rows}:
                self._trim(cur, queue)
        self.notifier.notify()

    def get(self, queues: Sequence[str], timeout: float | None, max_count: int = 1) -> list[Delivery]:
        if timeout == 0 and self.loop.wakeup is not None:
            return self.loop.take_now(queues, max_count)
        deadline = None if timeout is None else time.monotonic() + timeout
        notifier = self.notifier
        while True:
            seen = notifier.generation
            data_version = self.db.data_version()
            taken = self.take_by(queues, max_count, deadline)
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
                if self.db.data_version() != data_version:
                    break  # another process wrote to the file
                if lease_due is not None and time.time() >= lease_due:
                    break  # a lease lapsed: that message is deliverable again
                if time.monotonic() >= self._next_owner_check:
                    self._next_owner_check = time.monotonic() + OWNER_CHECK_INTERVAL
                    if self.reap_dead_owners():
                        break

    def take_by(
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
        with self.db.lock:
            db = self.db.conn()
            db.execute(f"PRAGMA busy_timeout = {int(max(remaining, 0.0) * 1000)}")
            try:
                taken = self._take(queues, max_count)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
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
        with self.db.transaction() as cur:
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
        return [decode_delivery(self.path, queue, lease, row) for row in rows], None

    # -- driven by an event loop (see .looping) ------------------------------------------
    def event_fds(self) -> Sequence[Any]:
        return self.loop.event_fds()

    def watch(self, queues: Sequence[str]) -> bool:
        return self.loop.watch(queues)

    def on_readable(self, fd: int) -> bool:
        return self.loop.on_readable(fd)

    def periodic(self) -> Sequence[tuple[float, Callable[[], None]]]:
        return self.loop.periodic()

    def unwatch(self) -> None:
        self.loop.unwatch()

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        receipts = [d.receipt for d in deliveries if d.receipt is not None]
        if not receipts:
            return
        with self.db.lock:
            db = self.db.conn()
            if len(receipts) == 1:
                db.execute("DELETE FROM kl_messages WHERE id = ? AND lease = ?", receipts[0])
                return
        with self.db.transaction() as cur:
            cur.executemany("DELETE FROM kl_messages WHERE id = ? AND lease = ?", receipts)

    def requeue(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> None:
        receipts = [(int(redelivered), *d.receipt) for d in deliveries if d.receipt is not None]
        if not receipts:
            return
        with self.db.transaction() as cur:
            # the row keeps its id, so it goes back to its place at the head of the queue
            cur.executemany(
                "UPDATE kl_messages SET lease = NULL, leased_until = NULL, "
                "redelivered = max(redelivered, ?) WHERE id = ? AND lease = ?",
                receipts,
            )
        self.notifier.notify()

    def purge(self, queue: str) -> int:
        now = time.time()
        with self.db.transaction() as cur:
            count = cur.execute(f"DELETE FROM kl_messages WHERE queue = ?1 AND {_READY}", (queue, now)).rowcount
            cur.execute("DELETE FROM kl_messages WHERE queue = ? AND lease IS NULL AND expires <= ?", (queue, now))
        return int(count)

    def size(self, queue: str) -> int:
        with self.db.lock:
            row = (
                self.db.conn()
                .execute(f"SELECT COUNT(*) FROM kl_messages WHERE queue = ?1 AND {_READY}", (queue, time.time()))
                .fetchone()
            )
        return int(row[0])

    def unacked_count(self, queue: str) -> int:
        """Messages of ``queue`` delivered and not yet acknowledged (leases still running)."""
        with self.db.lock:
            row = (
                self.db.conn()
                .execute(
                    "SELECT COUNT(*) FROM kl_messages WHERE queue = ? AND lease IS NOT NULL AND leased_until > ?",
                    (queue, time.time()),
                )
                .fetchone()
            )
        return int(row[0])

    def delete_queue(self, queue: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM kl_messages WHERE queue = ?", (queue,))
            cur.execute("DELETE FROM kl_queues WHERE name = ?", (queue,))
        self._specs.pop(queue, None)

    def list_queues(self) -> list[str]:
        with self.db.lock:
            rows = (
                self.db.conn()
                .execute("SELECT name FROM kl_queues UNION SELECT DISTINCT queue FROM kl_messages ORDER BY 1")
                .fetchall()
            )
        return [row[0] for row in rows]
