"""Receiving from SQS for a connection driven by an event loop (Kombu's Hub).

boto3's client is blocking HTTP, so under the loop one worker thread per connection
receives (long-polling ``ReceiveMessage`` per ``wait_time_seconds``) and hands what it got
to the loop through a wake-up descriptor; the loop's takes never wait.

* **One request in flight** per connection, never more.
* **Never more than the consumers' room.**  Each take under the loop tells the receiver
  how many messages the consumers have prefetch room for; messages received and not yet
  taken, plus those asked for by the request in flight, never exceed that room.
* **Nothing stranded invisible.**  Messages received for a queue nobody takes from any
  more, or not taken within :data:`UNTAKEN_RELEASE` seconds (no consumer has room), are
  made visible again (``ChangeMessageVisibility`` 0) instead of waiting out their
  visibility timeout; so are those left when the loop lets go of the connection.
* **basic_get reads its own queue.**  It receives from that queue itself, after
  :meth:`Receiver.claim` gave it any message received for the queue and not taken yet;
  the queues received for stay those of the loop's takes.
* **No thread left behind.**  Letting go (closing the connection) stops the thread and
  joins it.  A long poll cannot be interrupted, so that join waits for the receive in
  flight: up to ``wait_time_seconds`` while SQS answers, plus
  :data:`~.client.RECEIVE_READ_SLACK` (the receive's read timeout) when the endpoint
  stops answering, and never more than :meth:`Receiver.join_bound`; what that receive
  brings back is made visible again before the thread ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ...asynchronous.wakeup import WakeupFd
from ..virtual import Delivery
from .client import RECEIVE_READ_SLACK
from .codec import MAX_BATCH

__all__ = ["Receiver", "UNTAKEN_RELEASE"]

logger = logging.getLogger(__name__)

#: seconds a received message may wait to be taken by the loop before it is made visible
#: again (the loop takes at once when a consumer has room: waiting longer means none has)
UNTAKEN_RELEASE = 5.0
#: seconds the receiver pauses after a failed receive before it tries again
ERROR_PAUSE = 1.0

#: ``fetch(queues, count, timeout)``: one bounded receive of up to ``count`` messages
Fetch = Callable[[Sequence[str], int, float], list[Delivery]]
#: ``release(deliveries)``: make received messages visible again, unseen, with one short
#: attempt (should it fail, the visibility timeout brings them back all the same)
Release = Callable[[list[Delivery]], None]


class Receiver:
    """The worker thread that receives for one SQS connection driven by an event loop."""

    def __init__(self, fetch: Fetch, release: Release, poll_seconds: float) -> None:
        self._fetch = fetch
        self._release = release
        #: how long one receive may wait for a message (long poll or pause between polls)
        self.poll_seconds = poll_seconds
        #: made readable when messages (or an error) are ready for the loop
        self.wakeup = WakeupFd()
        self._cond = threading.Condition(threading.Lock())
        self._queues: tuple[str, ...] = ()
        #: messages the consumers had room for at the last take, less what it handed out
        self._room = 0
        #: received, not taken yet: (when received, delivery)
        self._ready: deque[tuple[float, Delivery]] = deque()
        #: received for queues no longer taken from: to be made visible again
        self._unwanted: list[Delivery] = []
        self._error: BaseException | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the loop's side (never blocks on SQS) -------------------------------------------
    def take(self, queues: Sequence[str], room: int) -> list[Delivery]:
        """Up to ``room`` received messages of ``queues``; receive for them from now on.

        A failed receive is raised here, once, in the loop's thread.
        """
        wanted = tuple(queues)
        with self._cond:
            error, self._error = self._error, None
            if error is not None:
                raise error
            taken: list[Delivery] = []
            kept: deque[tuple[float, Delivery]] = deque()
            for entry in self._ready:
                delivery = entry[1]
                if delivery.queue not in wanted:
                    self._unwanted.append(delivery)
                elif len(taken) < room:
                    taken.append(delivery)
                else:
                    kept.append(entry)
            self._ready = kept
            self._queues = wanted
            self._room = max(room - len(taken), 0)
            self._cond.notify_all()
            return taken

    def claim(self, queue: str) -> Delivery | None:
        """The first message received for ``queue`` that the loop did not take (nor was
        about to make visible again), for a ``basic_get``; the queues received for and
        the consumers' room stay as they are, so the thread may receive one more for them.
        """
        with self._cond:
            for index, (_, delivery) in enumerate(self._ready):
                if delivery.queue == queue:
                    del self._ready[index]
                    self._cond.notify_all()  # the consumers' room has one more free
                    return delivery
            for index, delivery in enumerate(self._unwanted):
                if delivery.queue == queue:
                    return self._unwanted.pop(index)
            return None

    def watch(self) -> bool:
        """Start receiving (if not yet); True when messages are ready already."""
        with self._cond:
            if self._stopping:
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kombu_like-sqs-receive", daemon=True)
                self._thread.start()
            return bool(self._ready) or self._error is not None

    def stop(self, join: bool = True) -> None:
        """Stop receiving; the thread makes every message received and not taken visible
        again on its way out.

        With ``join`` wait for that (see the module's docstring for the bound).
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if join and thread is not None and thread is not threading.current_thread():
            thread.join(self.join_bound())
            if thread.is_alive():
                logger.warning(
                    "the SQS receive thread did not finish within its bound; the messages it "
                    "received are made visible again when its request returns"
                )

    def join_bound(self) -> float:
        """Seconds :meth:`stop` waits for the thread at most: one receive (its wait and its
        read timeout), the pause after a failed one, and time to make messages visible."""
        return self.poll_seconds + RECEIVE_READ_SLACK + ERROR_PAUSE + 5.0

    def close(self) -> None:
        """Stop receiving without waiting, and close the wake-up descriptor (the loop
        must have stopped watching it)."""
        self.stop(join=False)
        self.wakeup.close()

    # -- the worker thread ---------------------------------------------------------------
    def _next(self) -> tuple[tuple[str, ...], int, list[Delivery]] | None:
        """What to do next: (queues, how many to receive, what to make visible again);
        None when stopping.  Waits (with a timeout) while there is nothing to do."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                release = self._unwanted
                self._unwanted = []
                while self._ready and now - self._ready[0][0] >= UNTAKEN_RELEASE:
                    # nobody took it: no consumer has room; stop receiving until one has
                    release.append(self._ready.popleft()[1])
                    self._room = 0
                count = min(MAX_BATCH, self._room - len(self._ready))
                if release or (self._queues and count > 0 and self._error is None):
                    return self._queues, (0 if release else count), release
                wait = UNTAKEN_RELEASE
                if self._ready:
                    wait = max(self._ready[0][0] + UNTAKEN_RELEASE - now, 0.01)
                self._cond.wait(wait)
            return None

    def _run(self) -> None:
        try:
            self._receive_until_stopped()
        finally:
            with self._cond:
                left = [entry[1] for entry in self._ready] + self._unwanted
                self._ready.clear()
                self._unwanted = []
            if left:
                self._release_quietly(left)

    def _receive_until_stopped(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            queues, count, release = job
            if release:
                self._release_quietly(release)
                continue
            try:
                got = self._fetch(queues, count, self.poll_seconds)
            except BaseException as exc:
                with self._cond:
                    if self._stopping:
                        return
                    self._error = exc
                    self.wakeup.wake()
                    # a broken endpoint or a missing queue: do not ask again at once
                    self._cond.wait(ERROR_PAUSE)
                continue
            with self._cond:
                if self._stopping:
                    self._unwanted += got
                    return
                now = time.monotonic()
                for delivery in got:
                    if delivery.queue in self._queues:
                        self._ready.append((now, delivery))
                    else:  # its consumer went away while the request was in flight
                        self._unwanted.append(delivery)
                if self._ready:
                    self.wakeup.wake()

    def _release_quietly(self, deliveries: list[Delivery]) -> None:
        try:
            self._release(deliveries)
        except Exception as exc:
            logger.warning(
                "could not make %d received SQS message(s) visible again (%s); SQS delivers them "
                "again once their visibility timeout expires",
                len(deliveries),
                exc,
            )
