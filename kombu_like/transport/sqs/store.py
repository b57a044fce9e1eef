"""The SQS queue store: queues are SQS queues, acks are deletes by receipt handle.

Cost is counted in requests, because SQS bills by request:

* one ``ReceiveMessage`` takes up to ten messages (as many as the consumers' prefetch
  windows have room for) and long-polls instead of asking again and again;
* acknowledgements are deleted ten at a time by ``DeleteMessageBatch`` (see :mod:`.acks`);
* ``put_many`` (``Producer.batch()``) sends ten messages per ``SendMessageBatch``;
* queue URLs and attributes are looked up once per connection and cached.

A message taken from a queue is *in flight* in SQS until it is deleted or its visibility
timeout runs out; requeueing (``reject(requeue=True)``, a closed channel's unacknowledged
messages) sets that timeout to zero so the message is visible again at once.

Driven by an event loop, a worker thread receives for the loop (see :mod:`.receiver`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ...exceptions import BatchPublishError, KombuError, MessageTooLarge, NotFound, PreconditionFailed
from ..base import Capabilities
from ..virtual import Delivery, QueueStore
from .acks import AckBuffer, DeleteResult
from .client import Clients, Settings
from .codec import MAX_BATCH, Outgoing, chunks, decode, encode, is_fifo, preview, sqs_queue_name
from .exceptions import UndefinedQueueException
from .receiver import Receiver
from .shared import SharedState

__all__ = ["CAPABILITIES", "Receipt", "SQSStore"]

logger = logging.getLogger(__name__)

CAPABILITIES = Capabilities(
    # Exchanges and bindings live in the client process (as with Kombu), so only direct
    # routing is advertised: a fanout or topic exchange would reach only the queues this
    # process bound, which is not what broadcasting frameworks expect of "fanout".
    exchange_types=frozenset({"direct"}),
    priority=False,
    ttl=False,
    native_acks=True,
    fanout=False,
    batch_publish=True,
    extra=MappingProxyType(
        {
            "bindings": "process",
            "visibility_timeout": True,
            "delay": True,
            "fifo": True,
            "dead_letter": "redrive policy",
        }
    ),
)

#: seconds a queue's redrive policy is trusted before it is read again
REDRIVE_TTL = 300.0
#: attempts for batch entries SQS failed on its side (botocore retries whole requests)
BATCH_ENTRY_ATTEMPTS = 3
#: receive-handle error codes meaning "this message is gone or its handle expired"
INVALID_HANDLE_CODES = frozenset(
    {"ReceiptHandleIsInvalid", "InvalidParameterValue", "AWS.SimpleQueueService.ReceiptHandleIsInvalid"}
)
#: message ids released without counting as a redelivery, remembered at most
RELEASED_MEMORY = 10_000
#: shortest pause, in seconds, between two short polls of an empty queue
MIN_POLL_PAUSE = 0.05
#: tries of a ReceiveMessage whose connection drops, when the caller has a deadline
RECEIVE_ATTEMPTS = 4


def _dropped(exc: BaseException) -> bool:
    """True for a connection that closed or could not be made (not for a timeout)."""
    from botocore import exceptions as boto

    return isinstance(exc, boto.ConnectionClosedError | boto.EndpointConnectionError) and not isinstance(
        exc, boto.ConnectTimeoutError
    )


Translate = Callable[[BaseException, "str | None"], BaseException]


@dataclass(frozen=True, slots=True)
class Receipt:
    """How to acknowledge or release one received message."""

    url: str
    handle: str
    message_id: str
    receive_count: int
    redelivered: bool


@dataclass(slots=True)
class _Attributes:
    ready: int
    max_size: int | None
    redrive: bool
    read_at: float


class SQSStore(QueueStore):
    """Queue store over SQS (or an SQS-compatible server)."""

    capabilities = CAPABILITIES
    body_encoding = "base64"

    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        acks: AckBuffer,
        shared: SharedState,
        translate: Translate,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.clients = clients
        self.acks = acks
        self.shared = shared
        self.bindings = shared.bindings
        self._translate = translate
        #: AMQP queue name -> queue URL
        self._urls: dict[str, str] = {}
        self._attributes: dict[str, _Attributes] = {}
        #: message id -> (receive count, redelivered) of messages given back unseen
        self._released: OrderedDict[str, tuple[int, bool]] = OrderedDict()
        self._released_lock = threading.Lock()
        self._rotation = 0
        self._closed = False
        #: the last acknowledgements go out with one short attempt each
        self._closing = False
        #: receives for the event loop this store is driven by, if any
        self._receiver: Receiver | None = None
        acks.attach(self._delete_batch)

    # -- plumbing ------------------------------------------------------------------------
    def sqs_name(self, queue: str) -> str:
        """The SQS queue name of AMQP queue ``queue``."""
        return sqs_queue_name(queue, self.settings.queue_name_prefix)

    def _client(self, queue: str | None, quick: bool = False) -> Any:
        """The boto3 client for requests about ``queue`` (``None``: not about one queue).

        Requests raise botocore's errors as they are: the virtual layer's seam translates
        them (see :meth:`on_driver_error` and the transport's ``translate_error``).
        """
        if queue is not None:
            return self.clients.for_queue(self.sqs_name(queue), quick)
        return self.clients.default(quick)

    def _is(self, exc: BaseException, kind: type[KombuError], queue: str | None) -> bool:
        """True when the transport translates driver error ``exc`` into ``kind``."""
        return isinstance(self._translate(exc, queue), kind)

    def on_driver_error(self, exc: BaseException, queue: str | None = None) -> None:
        """A queue SQS says does not exist is forgotten, so its URL is looked up again."""
        if queue is not None and self._is(exc, NotFound, queue):
            self._forget(queue)

    def _forget(self, queue: str) -> None:
        self._urls.pop(queue, None)
        self._attributes.pop(queue, None)

    def _url(self, queue: str, create: bool = False) -> str | None:
        """The URL of ``queue``; None when it does not exist and ``create`` is false."""
        url = self._urls.get(queue)
        if url is not None:
            return url
        name = self.sqs_name(queue)
        predefined = self.settings.predefined_queues
        if predefined:
            entry = predefined.get(name) or predefined.get(queue)
            if entry is None:
                known = ", ".join(sorted(predefined)) or "none"
                raise UndefinedQueueException(
                    f"SQS queue {name!r} (for queue {queue!r}) is not in transport_options"
                    f"['predefined_queues'] (defined: {known}); with predefined queues, queues "
                    f"are never created or listed"
                )
            url = str(entry["url"])
        else:
            try:
                url = self._client(queue).get_queue_url(QueueName=name)["QueueUrl"]
            except Exception as exc:
                if not self._is(exc, NotFound, queue):
                    raise
                if not create:
                    return None
                url = self._create(queue, name)
        self._urls[queue] = url
        return url

    def _create(self, queue: str, name: str) -> str:
        attributes: dict[str, str] = {"VisibilityTimeout": str(self.settings.visibility_timeout)}
        if is_fifo(name):
            attributes["FifoQueue"] = "true"
        attributes.update({k: str(v) for k, v in self.settings.creation_attributes.items()})
        params: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
        if self.settings.queue_tags:
            params["tags"] = {k: str(v) for k, v in self.settings.queue_tags.items()}
        try:
            return str(self._client(queue).create_queue(**params)["QueueUrl"])
        except Exception as exc:
            if not self._is(exc, PreconditionFailed, queue):
                raise
            # created meanwhile by someone else with other attributes: use it as it is
            return str(self._client(queue).get_queue_url(QueueName=name)["QueueUrl"])

    def _read_attributes(self, queue: str, url: str) -> _Attributes:
        answer = self._client(queue).get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "MaximumMessageSize", "RedrivePolicy"],
        )
        values = answer.get("Attributes") or {}
        max_size = values.get("MaximumMessageSize")
        attributes = _Attributes(
            ready=int(values.get("ApproximateNumberOfMessages") or 0),
            max_size=int(max_size) if max_size else None,
            redrive=bool(values.get("RedrivePolicy")),
            read_at=time.monotonic(),
        )
        self._attributes[queue] = attributes
        return attributes

    def _limit(self, queue: str) -> int:
        limit = self.settings.max_message_size
        known = self._attributes.get(queue)
        if known is not None and known.max_size:
            limit = min(limit, known.max_size)
        return limit

    def _encode(self, queue: str, payload: dict[str, Any]) -> Outgoing:
        outgoing = encode(queue, payload, self.settings.base64_encoding)
        limit = self._limit(queue)
        if outgoing.size > limit:
            body = payload.get("body")
            raise MessageTooLarge(
                f"message for SQS queue {self.sqs_name(queue)!r} (queue {queue!r}, content type "
                f"{payload.get('content-type')!r}) is {outgoing.size:,} bytes once encoded, over the "
                f"queue's limit of {limit:,} bytes, so nothing was sent; body starts "
                f"{preview(body) if isinstance(body, str | bytes) else b''!r}. Keep large payloads "
                f"elsewhere (S3, a database) and send a reference"
                + (", or set sqs_base64_encoding=False to save a third" if self.settings.base64_encoding else "")
            )
        return outgoing

    # -- queues ---------------------------------------------------------------------
    def declare_queue(self, queue: str, arguments: Mapping[str, Any] | None = None) -> None:
        self._url(queue, create=not self.settings.predefined_queues)

    def queue_exists(self, queue: str) -> bool:
        try:
            return self._url(queue) is not None
        except NotFound:
            return False

    def size(self, queue: str) -> int:
        url = self._url(queue)
        if url is None:
            return 0
        return self._read_attributes(queue, url).ready

    def purge(self, queue: str) -> int:
        url = self._url(queue)
        if url is None:
            return 0
        ready = self._read_attributes(queue, url).ready
        # always, as Kombu does: PurgeQueue also removes the messages in flight, which must
        # not depend on whether any were ready
        self._client(queue).purge_queue(QueueUrl=url)
        return ready

    def delete_queue(self, queue: str) -> None:
        if self.settings.predefined_queues:
            logger.info("not deleting predefined SQS queue %r: predefined queues are never deleted", queue)
            return
        url = self._url(queue)
        if url is None:
            return
        try:
            self._client(queue).delete_queue(QueueUrl=url)
        except Exception as exc:
            if not self._is(exc, NotFound, queue):
                raise
        self._forget(queue)
        self.acks.discard_queue(url)

    def list_queues(self) -> list[str]:
        if self.settings.predefined_queues:
            return sorted(self.settings.predefined_queues)
        names: list[str] = []
        params: dict[str, Any] = {"QueueNamePrefix": self.settings.queue_name_prefix, "MaxResults": 1000}
        while True:
            answer = self._client(None).list_queues(**params)
            names += [url.rsplit("/", 1)[-1] for url in answer.get("QueueUrls") or ()]
            token = answer.get("NextToken")
            if not token:
                return names
            params["NextToken"] = token

    # -- publishing -------------------------------------------------------------------
    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> None:
        outgoing = self._encode(queue, payload)
        url = self._url(queue, create=True)
        self._client(queue).send_message(QueueUrl=url, **outgoing.params)
        self.shared.notify(queue)

    def put_many(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> None:
        # every message is encoded and checked before the first request goes out
        by_queue: dict[str, list[Outgoing]] = {}
        for queue, payload, _priority in items:
            by_queue.setdefault(queue, []).append(self._encode(queue, payload))
        problems: list[str] = []
        for queue, messages in by_queue.items():
            url = self._url(queue, create=True)
            assert url is not None
            for chunk in chunks(messages, self._limit(queue)):
                problems += self._send_batch(queue, url, chunk)
            self.shared.notify(queue)
        if problems:
            total = sum(len(messages) for messages in by_queue.values())
            raise BatchPublishError(
                f"{len(problems)} of {total} messages were not sent to SQS (the others were): "
                + "; ".join(problems[:5])
                + ("; ..." if len(problems) > 5 else "")
            )

    def _send_batch(self, queue: str, url: str, chunk: list[Outgoing]) -> list[str]:
        """Send ``chunk`` in one request; retry entries SQS failed on its side."""
        entries = {str(index): message.params for index, message in enumerate(chunk)}
        problems: list[str] = []
        for attempt in range(1, BATCH_ENTRY_ATTEMPTS + 1):
            answer = self._client(queue).send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": entry_id, **params} for entry_id, params in entries.items()],
            )
            retry: dict[str, dict[str, Any]] = {}
            for failed in answer.get("Failed") or ():
                entry_id = failed.get("Id", "")
                reason = f"{failed.get('Code')}: {failed.get('Message')}"
                if failed.get("SenderFault") or attempt == BATCH_ENTRY_ATTEMPTS or entry_id not in entries:
                    problems.append(f"message {entry_id} of a batch to SQS queue {self.sqs_name(queue)!r}: {reason}")
                else:
                    retry[entry_id] = entries[entry_id]
            if not retry:
                break
            entries = retry
            # SQS failed these on its side; give it a moment before asking again
            time.sleep(0.05 * 2**attempt)
        return problems

    # -- consuming --------------------------------------------------------------------
    def get(self, queues: Sequence[str], timeout: float | None, max_count: int = 1) -> list[Delivery]:
        receiver = self._receiver
        if timeout == 0 and receiver is not None:
            # under the event loop: what the receive thread has got, never a request
            return receiver.take(queues, max_count)
        return self._get(queues, timeout, max_count)

    def get_one(self, queue: str) -> Delivery | None:
        """The head of ``queue`` for ``basic_get``: one the receive thread got for it and
        the loop did not take, else one short ``ReceiveMessage`` of that queue (as Kombu's
        ``basic_get``); the queues the receive thread serves stay as they are."""
        receiver = self._receiver
        if receiver is not None:
            claimed = receiver.claim(queue)
            if claimed is not None:
                return claimed
        taken = self._get([queue], 0, 1)
        return taken[0] if taken else None

    def _get(self, queues: Sequence[str], timeout: float | None, max_count: int) -> list[Delivery]:
        deadline = None if timeout is None else time.monotonic() + timeout
        count = max(1, min(int(max_count), MAX_BATCH))
        seen = self.shared.marks(queues)
        targets: list[tuple[str, str]] = []
        for queue in queues:
            url = self._url(queue)
            if url is None:
                raise NotFound(
                    f"cannot consume from SQS queue {self.sqs_name(queue)!r} (queue {queue!r}): it does not exist"
                )
            targets.append((queue, url))
        polled = False
        if len(targets) > 1:
            # one request per queue cannot wait on all of them: look at each once first
            for queue, url in targets:
                got = self._receive(queue, url, count, 0, deadline)
                if got:
                    return got
            polled = True
        remaining = None if deadline is None else deadline - time.monotonic()
        long_poll = self.settings.wait_time_seconds
        if long_poll and (remaining is None or remaining >= 1):
            seconds = long_poll if remaining is None else min(long_poll, int(remaining))
            queue, url = targets[0]
            if len(targets) > 1:
                self._rotation = (self._rotation + 1) % len(targets)
                queue, url = targets[self._rotation]
                seconds = max(1, seconds // len(targets))
            return self._receive(queue, url, count, seconds, deadline)
        if not polled:
            queue, url = targets[0]
            got = self._receive(queue, url, count, 0, deadline)
            if got:
                return got
        # SQS waits in whole seconds only: sit out the rest here, woken by a publish of ours
        # a floor on the pause between short polls, so polling_interval=0 cannot spin
        interval = max(self.settings.polling_interval, MIN_POLL_PAUSE)
        if long_poll:
            pause = remaining if remaining is not None else 0.0
        else:
            pause = interval if remaining is None else min(interval, remaining)
        if pause > 0 and self.shared.wait(queues, seen, pause):
            for queue, url in targets:
                got = self._receive(queue, url, count, 0, deadline)
                if got:
                    return got
        return []

    def _receive(self, queue: str, url: str, count: int, wait: int, deadline: float | None) -> list[Delivery]:
        """One ReceiveMessage, given up ``RECEIVE_READ_SLACK`` seconds after its wait.

        With a ``deadline`` (``drain_events(timeout=...)``) a read timeout is not tried again
        (four more waits would hold the caller far past its timeout); a connection that
        drops or cannot be made is, at once, as botocore would, while the deadline allows.
        """
        params: dict[str, Any] = {
            "QueueUrl": url,
            "MaxNumberOfMessages": count,
            "WaitTimeSeconds": wait,
            "MessageAttributeNames": ["All"],
            self.clients.receive_attributes_param(): list(self.settings.system_attributes),
        }
        if self.settings.receive_visibility_timeout is not None:
            params["VisibilityTimeout"] = self.settings.receive_visibility_timeout
        client = self.clients.receiving(self.sqs_name(queue), wait, deadline is not None)
        attempt = 1
        while True:
            try:
                messages = client.receive_message(**params).get("Messages")
                break
            except Exception as exc:
                if deadline is None or attempt >= RECEIVE_ATTEMPTS or not _dropped(exc):
                    raise
                pause = 0.05 * 2**attempt
                if time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
                attempt += 1
        if not messages:
            return []
        return [self._delivery(queue, url, message) for message in messages]

    def _delivery(self, queue: str, url: str, message: Mapping[str, Any]) -> Delivery:
        payload = decode(queue, message, url)
        try:
            receive_count = int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1))
        except (TypeError, ValueError):
            receive_count = 1
        message_id = str(message.get("MessageId", ""))
        redelivered = receive_count > 1
        if self._released:
            with self._released_lock:
                released = self._released.pop(message_id, None)
            if released is not None and receive_count == released[0] + 1:
                # given back unseen by this process: not a redelivery of its own
                redelivered = released[1]
        payload["properties"]["delivery_info"]["redelivered"] = redelivered
        receipt = Receipt(url, str(message["ReceiptHandle"]), message_id, receive_count, redelivered)
        return Delivery(queue, payload, receipt)

    @staticmethod
    def _by_url(deliveries: Sequence[Delivery]) -> dict[str, tuple[str, list[Receipt]]]:
        grouped: dict[str, tuple[str, list[Receipt]]] = {}
        for delivery in deliveries:
            receipt = delivery.receipt
            if isinstance(receipt, Receipt):
                grouped.setdefault(receipt.url, (delivery.queue, []))[1].append(receipt)
        return grouped

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        for url, (queue, receipts) in self._by_url(deliveries).items():
            self.acks.add(queue, url, [r.handle for r in receipts])

    def reject(self, deliveries: Sequence[Delivery]) -> None:
        """Delete rejected messages, unless their queue dead-letters by a redrive policy:
        then SQS moves them to the dead-letter queue after ``maxReceiveCount`` receives."""
        discard = []
        for delivery in deliveries:
            if self._dead_letters(delivery.queue):
                logger.info(
                    "SQS queue %r has a redrive policy: a rejected message stays for SQS to move "
                    "to its dead-letter queue once received maxReceiveCount times",
                    self.sqs_name(delivery.queue),
                )
            else:
                discard.append(delivery)
        if discard:
            self.ack(discard)

    def _dead_letters(self, queue: str) -> bool:
        known = self._attributes.get(queue)
        if known is not None and time.monotonic() - known.read_at < REDRIVE_TTL:
            return known.redrive
        try:
            url = self._url(queue)
            return url is not None and self._read_attributes(queue, url).redrive
        except Exception as exc:
            # deleting cannot be undone: when in doubt, leave the message to SQS
            logger.warning(
                "could not read the redrive policy of SQS queue %r (%s); the rejected message is left in the queue",
                queue,
                exc,
            )
            return True

    def requeue(self, deliveries: Sequence[Delivery], redelivered: bool = True) -> None:
        """Make the messages visible again at once (visibility timeout 0)."""
        self._make_visible(deliveries, redelivered, quick=False)

    def _make_visible(self, deliveries: Sequence[Delivery], redelivered: bool, quick: bool) -> None:
        for url, (queue, receipts) in self._by_url(deliveries).items():
            for start in range(0, len(receipts), MAX_BATCH):
                batch = receipts[start : start + MAX_BATCH]
                entries = [
                    {"Id": str(i), "ReceiptHandle": r.handle, "VisibilityTimeout": 0} for i, r in enumerate(batch)
                ]
                try:
                    answer = self._client(queue, quick).change_message_visibility_batch(QueueUrl=url, Entries=entries)
                except Exception as exc:
                    logger.warning(
                        "could not make %d message(s) of SQS queue %r visible again (%s); SQS delivers "
                        "them again once their visibility timeout expires",
                        len(batch),
                        queue,
                        exc,
                    )
                    continue
                for failed in answer.get("Failed") or ():
                    logger.warning(
                        "SQS queue %r: message not made visible again (%s: %s); SQS delivers it again "
                        "once its visibility timeout expires",
                        queue,
                        failed.get("Code"),
                        failed.get("Message"),
                    )
                if not redelivered:
                    with self._released_lock:
                        for receipt in batch:
                            self._released[receipt.message_id] = (receipt.receive_count, receipt.redelivered)
                        while len(self._released) > RELEASED_MEMORY:
                            self._released.popitem(last=False)
            self.shared.notify(queue)

    def _delete_batch(self, url: str, queue: str, handles: Sequence[str]) -> DeleteResult:
        """Delete up to ten messages by receipt handle (the ack buffer's sender)."""
        entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(handles)]
        try:
            answer = self._client(queue, self._closing).delete_message_batch(QueueUrl=url, Entries=entries)
        except Exception as exc:
            # called by the ack buffer, outside the virtual layer's seam: map here
            self.on_driver_error(exc, queue)
            translated = self._translate(exc, queue)
            if translated is exc:
                raise
            raise translated from exc
        result = DeleteResult()
        for failed in answer.get("Failed") or ():
            try:
                handle = handles[int(failed.get("Id", -1))]
            except (ValueError, IndexError):
                continue
            code = str(failed.get("Code", ""))
            if code in INVALID_HANDLE_CODES or failed.get("SenderFault"):
                result.dropped.append((handle, f"{code}: {failed.get('Message', '')}"))
            else:
                result.retry.append(handle)
        return result

    # -- driven by an event loop ---------------------------------------------------------
    def _loop_receiver(self) -> Receiver:
        receiver = self._receiver
        if receiver is None:
            settings = self.settings
            if settings.wait_time_seconds:
                # a little over the long poll, so the whole wait fits in the receive's deadline
                seconds = settings.wait_time_seconds + 0.5
            else:
                seconds = max(settings.polling_interval, MIN_POLL_PAUSE)
            receiver = self._receiver = Receiver(self._receive_for_loop, self._release_received, seconds)
        return receiver

    def _receive_for_loop(self, queues: Sequence[str], count: int, timeout: float) -> list[Delivery]:
        # the blocking take, bounded: one long poll (or a short poll and a pause), and a
        # receive client that botocore does not retry past the deadline
        return self._get(queues, timeout, count)

    def _release_received(self, deliveries: list[Delivery]) -> None:
        # one short attempt: it only spares the messages their visibility timeout, and must
        # not hold the receive thread (nor a close joining it) on an endpoint gone silent
        self._make_visible(deliveries, redelivered=False, quick=True)

    def event_fds(self) -> Sequence[Any]:
        # a closed or abandoned store starts no receive thread and opens no descriptor
        return () if self._closed else [self._loop_receiver().wakeup]

    def watch(self, queues: Sequence[str]) -> bool:
        return not self._closed and self._loop_receiver().watch()

    def on_readable(self, fd: int) -> bool:
        receiver = self._receiver
        return receiver is not None and receiver.wakeup.drain()

    def periodic(self) -> Sequence[tuple[float, Callable[[], None]]]:
        # the receive thread waits on SQS; acknowledgements are flushed by their own timer
        return ()

    def unwatch(self) -> None:
        """Stop the receive thread (waiting for its request in flight unless the store was
        abandoned) after it made what it received and nobody took visible again."""
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.stop(join=not self._closed)
            receiver.close()

    # -- lifecycle ------------------------------------------------------------------
    def abandon(self) -> None:
        """Stop using this store without a word to SQS (the connection is deemed broken).

        Only the messages the receive thread got and nobody took are made visible again,
        by the thread itself, once its request in flight returns."""
        self._closed = True
        if self._receiver is not None:
            self._receiver.stop(join=False)
        self.acks.detach()
        self.clients.close()

    def close(self) -> None:
        if self._closed:
            return
        self.unwatch()
        self._closed = True
        self._closing = True
        try:
            self.acks.close(timeout=10.0)
        finally:
            self.clients.close()
