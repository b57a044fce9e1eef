"""The asyncio driver of redis:// (rediss://, Sentinel): the blocking transport's code,
its I/O on a thread of its own.

Every Redis round trip of a connection -- publishes, takes, acks, declarations, the
visibility-timeout sweep -- is made by the blocking transport's own code (the same
:class:`~.store.RedisStore`, :class:`~.wire.Wire`, scripts, routing and restore), run
by one I/O thread per connection.  That thread runs a
:class:`~kombu_like.asynchronous.hub.Hub` with the connection registered on it, exactly
as the blocking API's event-loop mode does (:mod:`.looping`): client tracking wakes it
when a watched list changes, and its timers run the maintenance (visibility timeout,
expiring queues, health checks).  The asyncio loop's thread never waits on a socket:

* a round trip (declare, bind, purge, ``basic_get``, ``qos``, cancel, close ...) is a job
  for the I/O thread whose result the caller awaits;
* a publish is handed over and returns, as on AMQP without confirms: the publishes queued
  meanwhile go out as one pipeline, and a failure is raised by the next publish on the
  channel and by the connection's next wait.  ``mandatory`` publishes, and every publish
  with ``transport_options={"confirm_publish": True}``, await Redis's reply instead;
  the queue of publishes not written yet is bounded (``backlog``);
* acks, rejects and requeues are handed over and return;
* deliveries come back to the loop's thread in one call per take.

The driver is :mod:`kombu_like.aio.threaded`'s, shared with the other virtual transports
whose store calls block (sqlite://, sqs://).  Jobs run in the order they were made, each
whole: a cancelled caller stops waiting, it never cuts a command in half; a job whose
caller was cancelled before it started does not run.  Messages delivered and not acked
when a channel closes go back to their queues (the blocking channel's close, run on the
I/O thread).

Why a thread and not the store's commands carved into requests and reply handlers: the
store's operations are conversations of several round trips (scripts falling back on
``NOSCRIPT``, reconnects that settle a ledger of acks and takes, tracking armed after a
take, Sentinel discovery); running them unchanged keeps one implementation of each, and
one thread per connection keeps the loop free.
"""

from __future__ import annotations

from typing import ClassVar

from ...aio.threaded import MAX_UNSENT, IOThread, ThreadedDriver, threaded_channel_class

__all__ = ["MAX_UNSENT", "IOThread", "RedisDriver", "async_redis_channel_class"]

#: the Redis transport's channel class for the asyncio API
async_redis_channel_class = threaded_channel_class


class RedisDriver(ThreadedDriver):
    """Connects redis:// for an asyncio :class:`~kombu_like.aio.connection.Connection`."""

    driver_types: ClassVar[frozenset[str]] = frozenset({"redis"})
