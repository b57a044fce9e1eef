"""Acknowledgements batched into ``DeleteMessageBatch`` requests.

SQS bills per request, and deleting messages one by one is most of what a consumer costs.
An acknowledged message's receipt handle is therefore kept here and deleted together with
others: as soon as ten are waiting for one queue (the most one request takes), after a
short timer otherwise, and when the connection closes.

A failed flush never loses track of what was acknowledged: handles whose request failed
go back into the buffer and are sent again after a growing pause.  Only handles SQS
rejects as invalid (the message is gone or its handle expired) are dropped, with a
warning; and when the connection closes with handles SQS still would not take, their
number is logged as an error (SQS then delivers those messages again after their
visibility timeout: at-least-once, never lost).

The buffer belongs to the transport, not to one store, so a reconnect carries it over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ...exceptions import NotFound
from .codec import MAX_BATCH

__all__ = ["AckBuffer", "DeleteResult", "Sender"]

logger = logging.getLogger(__name__)

#: longest pause between attempts to flush after failures, in seconds
MAX_BACKOFF = 30.0
#: an idle flusher thread exits after this many seconds (a new one starts when needed)
IDLE_EXIT = 30.0


@dataclass
class DeleteResult:
    """What became of one DeleteMessageBatch request."""

    #: handles SQS could not delete this time (to be sent again)
    retry: list[str] = field(default_factory=list)
    #: handles SQS will never take, with the reason (the message is gone anyway)
    dropped: list[tuple[str, str]] = field(default_factory=list)


#: deletes ``handles`` (at most ten) of the queue at ``url``; raises when the request failed
Sender = Callable[[str, str, Sequence[str]], DeleteResult]


class AckBuffer:
    """Receipt handles acknowledged but not deleted yet, per queue URL."""

    def __init__(self, interval: float, batch_size: int = MAX_BATCH) -> None:
        self.interval = interval
        self.batch_size = batch_size
        self._cond = threading.Condition(threading.Lock())
        #: queue URL -> receipt handles, oldest first (a dict keeps order, drops repeats)
        self._pending: dict[str, dict[str, None]] = {}
        #: queue URL -> AMQP queue name, for log lines
        self._names: dict[str, str] = {}
        #: queue URL -> when its oldest pending handle was added (monotonic)
        self._since: dict[str, float] = {}
        self._sender: Sender | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._in_flight = 0
        self._failures = 0
        self._retry_at = 0.0

    # -- feeding ---------------------------------------------------------------------
    def attach(self, sender: Sender) -> None:
        """Send through ``sender`` from now on (each new store attaches itself)."""
        with self._cond:
            self._sender = sender
            self._stopping = False
            self._failures = 0
            self._retry_at = 0.0
            if self._pending:
                self._start()

    def add(self, queue: str, url: str, handles: Sequence[str]) -> None:
        """Remember ``handles`` of the queue at ``url`` as acknowledged."""
        with self._cond:
            was_idle = not self._pending
            pending = self._pending.get(url)
            if pending is None:
                pending = self._pending[url] = {}
                self._names[url] = queue
                self._since[url] = time.monotonic()
            for handle in handles:
                pending[handle] = None
            if self._sender is not None and not self._stopping:
                self._start()
                # the flusher needs waking to start its timer, or because a batch is full;
                # in between its timer is already running
                if was_idle or len(pending) >= self.batch_size:
                    self._cond.notify_all()

    def discard_queue(self, url: str) -> None:
        """Forget the handles of a deleted queue (its messages are gone with it)."""
        with self._cond:
            self._pending.pop(url, None)
            self._since.pop(url, None)

    def pending(self) -> int:
        """How many acknowledged messages are not deleted yet."""
        with self._cond:
            return sum(len(handles) for handles in self._pending.values())

    # -- flushing --------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> int:
        """Delete everything acknowledged so far, from the calling thread.

        Waits up to ``timeout`` seconds for batches the flusher thread is sending, and
        returns how many acknowledged messages are still not deleted.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batches = self._take(full_only=False)
            if batches and not self._send(batches):
                break
            if not batches:
                with self._cond:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if not self._in_flight or (remaining is not None and remaining <= 0):
                        break
                    self._cond.wait(remaining)
        return self.pending()

    def detach(self) -> None:
        """Stop sending without flushing: what is pending waits for the next sender."""
        with self._cond:
            self._stopping = True
            self._sender = None
            self._cond.notify_all()

    def close(self, timeout: float) -> None:
        """Stop the flusher, delete what is left, and stop sending (until re-attached)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        left = self.flush(timeout)
        with self._cond:
            self._sender = None
        if left:
            logger.error(
                "%d acknowledged SQS message(s) could not be deleted (see the warnings above); "
                "SQS delivers them again once their visibility timeout expires",
                left,
            )

    def _start(self) -> None:
        # called with the lock held
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="kombu_like-sqs-acks", daemon=True)
            self._thread.start()

    def _take(self, full_only: bool) -> list[tuple[str, str, list[str]]]:
        """Remove and return batches to send: full ones only, or everything."""
        batches: list[tuple[str, str, list[str]]] = []
        with self._cond:
            for url in list(self._pending):
                handles = self._pending[url]
                while handles and (not full_only or len(handles) >= self.batch_size):
                    batch = []
                    for handle in handles:
                        batch.append(handle)
                        if len(batch) >= self.batch_size:
                            break
                    for handle in batch:
                        del handles[handle]
                    batches.append((url, self._names.get(url, url), batch))
                if not handles:
                    del self._pending[url]
                    self._since.pop(url, None)
            self._in_flight += len(batches)
        return batches

    def _restore(self, url: str, queue: str, handles: Sequence[str]) -> None:
        with self._cond:
            pending = self._pending.get(url)
            if pending is None:
                pending = self._pending[url] = {}
                self._names[url] = queue
                self._since[url] = time.monotonic()
            for handle in handles:
                pending[handle] = None

    def _send(self, batches: list[tuple[str, str, list[str]]]) -> bool:
        """Send ``batches``; put back what failed.  True when nothing failed."""
        ok = True
        sender = self._sender
        try:
            for index, (url, queue, handles) in enumerate(batches):
                if sender is None:
                    for url_, queue_, handles_ in batches[index:]:
                        self._restore(url_, queue_, handles_)
                    return False
                try:
                    result = sender(url, queue, handles)
                except NotFound:
                    logger.warning("SQS queue %r is gone; %d acknowledgement(s) for it are moot", queue, len(handles))
                    continue
                except Exception as exc:
                    ok = False
                    logger.warning(
                        "could not delete %d acknowledged message(s) from SQS queue %r (will retry): %s",
                        len(handles),
                        queue,
                        exc,
                    )
                    self._restore(url, queue, handles)
                    continue
                for handle, reason in result.dropped:
                    logger.warning(
                        "SQS queue %r: acknowledged message not deleted (%s); its receipt handle "
                        "%.20s... is no longer valid, so SQS may deliver it again",
                        queue,
                        reason,
                        handle,
                    )
                if result.retry:
                    ok = False
                    self._restore(url, queue, result.retry)
        finally:
            with self._cond:
                self._in_flight -= len(batches)
                if ok:
                    self._failures = 0
                    self._retry_at = 0.0
                else:
                    self._failures += 1
                    pause = min(self.interval * (2**self._failures), MAX_BACKOFF)
                    self._retry_at = time.monotonic() + max(pause, 0.1)
                self._cond.notify_all()
        return ok

    def _due(self, now: float) -> tuple[bool, float | None]:
        """(send now?, seconds to wait otherwise); called with the lock held."""
        if not self._pending:
            return False, None
        if now < self._retry_at:
            return False, self._retry_at - now
        if any(len(handles) >= self.batch_size for handles in self._pending.values()):
            return True, 0.0
        oldest = min(self._since.values(), default=now)
        wait = oldest + self.interval - now
        return wait <= 0, wait

    def _run(self) -> None:
        while True:
            with self._cond:
                idle_since = time.monotonic()
                while True:
                    if self._stopping or self._sender is None:
                        self._thread = None
                        return
                    now = time.monotonic()
                    send_now, wait = self._due(now)
                    if send_now:
                        break
                    if wait is None:
                        if now - idle_since >= IDLE_EXIT:
                            self._thread = None
                            return
                        wait = IDLE_EXIT
                    else:
                        idle_since = now
                    self._cond.wait(wait)
                timer_due = any(self._since.get(url, now) + self.interval <= now for url in self._pending)
            self._send(self._take(full_only=not timer_due))
