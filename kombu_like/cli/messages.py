"""``publish`` and ``consume``: messages in from stdin or an argument, out as JSON lines."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from .output import _jsonable, _preview, mask, message_record
from .session import EXIT_TIMEOUT, EXIT_USAGE, CLIError, ReaderGone, _check_queue, _pairs, _Session

if TYPE_CHECKING:
    import click

    from ..connection import Connection
    from ..message import Message


#: stdin lines published per round trip
PUBLISH_CHUNK = 500


def _body_value(text: str) -> Any:
    """BODY as JSON when it parses; text that does not look like JSON is sent as a string.

    Text that starts like a JSON object or array but does not parse is a mistake (a
    missing brace or quote), not a string to send.
    """
    try:
        return json.loads(text)
    except ValueError as exc:
        if text.lstrip()[:1] in ("{", "["):
            raise CLIError(
                f"BODY is not valid JSON ({getattr(exc, 'msg', exc)} at character "
                f"{getattr(exc, 'pos', '?')}): {_preview(text)}; use --raw to send it as text",
                EXIT_USAGE,
            ) from None
        return text


def _lines(stream: IO[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(stream, 1):
        if line.strip():
            yield number, line


def _read_documents(lines: Iterable[tuple[int, str]], raw: bool, on_chunk: Callable[[list[Any]], None]) -> int:
    """Parse numbered ``lines`` into chunks of bodies, hand each to ``on_chunk``; return the count.

    A line that is not JSON stops the run after the lines before it were published.
    """
    chunk: list[Any] = []
    total = 0
    for number, line in lines:
        text = line.rstrip("\r\n")
        if raw:
            chunk.append(text)
        else:
            try:
                chunk.append(json.loads(text))
            except ValueError as exc:
                if chunk:
                    on_chunk(chunk)
                    total += len(chunk)
                raise CLIError(
                    f"stdin line {number} is not a JSON document ({getattr(exc, 'msg', exc)}): "
                    f"{_preview(text)}; {total} message{'s' if total != 1 else ''} before it "
                    f"{'were' if total != 1 else 'was'} published (use --raw to send lines as text)"
                ) from None
        if len(chunk) >= PUBLISH_CHUNK:
            on_chunk(chunk)
            total += len(chunk)
            chunk = []
    if chunk:
        on_chunk(chunk)
        total += len(chunk)
    return total


def _accept_list(accept: Sequence[str]) -> list[str]:
    items = [part.strip() for value in accept for part in value.split(",") if part.strip()]
    return items or ["json", "text/plain", "application/data"]


def _stdin_size(stream: IO[str]) -> int | None:
    """Lines in ``stream`` when it is a regular file (so the bar can show a total)."""
    import os
    import stat

    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        position = os.lseek(fd, 0, os.SEEK_CUR)
        with open(fd, "rb", closefd=False) as raw:
            raw.seek(position)
            lines = sum(1 for line in raw if line.strip())
            raw.seek(position)
        return lines
    except (OSError, ValueError):
        return None


class _ConsumeState:
    def __init__(self, count: int | None) -> None:
        self.count = count
        self.printed = 0
        self.undecodable = 0
        #: messages kept unacknowledged until the command ends (undecodable, or --requeue)
        self.held: list[Message] = []
        self.consumer: Any = None

    @property
    def done(self) -> bool:
        return self.count is not None and self.printed >= self.count


def _queue_name(message: Message, state: _ConsumeState) -> str:
    consumer = state.consumer
    tag = (message.delivery_info or {}).get("consumer_tag")
    if consumer is not None and tag is not None:
        for name, active in consumer._active_tags.items():
            if active == tag:
                return str(name)
    return str((message.delivery_info or {}).get("routing_key") or "")


def _drain(conn: Connection, state: _ConsumeState, timeout: float | None) -> None:
    import time

    idle_since = time.monotonic()
    while not state.done:
        before = state.printed + state.undecodable
        remaining = None if timeout is None else timeout - (time.monotonic() - idle_since)
        if remaining is not None and remaining <= 0:
            return
        try:
            # waits are bounded so Ctrl-C, broker loss and a reader that went away
            # (``consume Q | head -2``) are noticed within a second
            conn.drain_events(timeout=1.0 if remaining is None else min(remaining, 1.0))
        except socket.timeout:
            if _stdout_reader_gone():
                raise ReaderGone("stdout's reader closed the pipe") from None
            continue
        if state.printed + state.undecodable != before:
            idle_since = time.monotonic()


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reading end was closed (nothing more can be printed)."""
    import select

    if not hasattr(select, "poll"):
        return False
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)  # POLLERR and POLLHUP are reported regardless
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # stdout is not a file descriptor
        return False


def register(app: click.Group, global_options: Callable[..., Any]) -> None:
    """Add ``publish`` and ``consume`` to ``app``."""
    import click

    from .. import Exchange, Producer, Queue
    from ..exceptions import NotFound

    @app.command()
    @global_options
    @click.argument("body", required=False)
    @click.option("-e", "--exchange", default="", help="Exchange to publish to (default: the default exchange).")
    @click.option(
        "--exchange-type",
        type=click.Choice(["direct", "topic", "fanout", "headers"]),
        help="Declare the exchange with this type (without it the exchange must exist).",
    )
    @click.option("-r", "--routing-key", default=None, help="Routing key (default: the --queue name).")
    @click.option("-q", "--queue", default=None, help="Declare this queue (bound to --exchange) first.")
    @click.option("--binding-key", default=None, help="Bind --queue with this key (default: the routing key).")
    @click.option(
        "--max-priority", type=click.IntRange(1, 255), default=None, help="Declare --queue with this maximum priority."
    )
    @click.option("-H", "--header", "headers", multiple=True, metavar="KEY=VALUE", help="Message header (repeatable).")
    @click.option("-s", "--serializer", default="json", show_default=True, help="Serializer for the body.")
    @click.option("-c", "--compression", default=None, help="Compression method (zlib, bzip2, lzma, zstd, brotli).")
    @click.option("-p", "--priority", type=click.IntRange(0, 255), default=0, help="Message priority.")
    @click.option(
        "--expiration",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Seconds after which the message expires.",
    )
    @click.option("--raw", is_flag=True, help="Send BODY / stdin lines as text instead of parsing JSON.")
    @click.option("--progress/--no-progress", default=None, help="Progress bar for stdin (default: on a terminal).")
    @click.pass_obj
    def publish(
        session: _Session,
        body: str | None,
        exchange: str,
        exchange_type: str | None,
        routing_key: str | None,
        queue: str | None,
        binding_key: str | None,
        max_priority: int | None,
        headers: tuple[str, ...],
        serializer: str,
        compression: str | None,
        priority: int,
        expiration: float | None,
        raw: bool,
        progress: bool | None,
    ) -> None:
        """Publish BODY, or one message per line of stdin.

        BODY is parsed as JSON when it is valid JSON and sent as a string otherwise --
        except that BODY starting with { or [ must parse; stdin lines must each be one
        JSON document (or text, with --raw).
        """
        header_values = _pairs(headers, "--header")
        value = body if raw or body is None or body == "-" else _body_value(body)
        stdin = sys.stdin
        if body is None and stdin.isatty():
            raise CLIError("give a BODY argument or pipe JSON lines on stdin", EXIT_USAGE)
        conn = session.connect()
        channel = conn.default_channel
        target = Exchange(exchange, type=exchange_type or "direct") if exchange else Exchange("")
        if exchange:
            try:
                target(channel).declare(passive=exchange_type is None)
            except NotFound:
                raise CLIError(
                    f"no such exchange {exchange!r} on {session.safe_url} (give --exchange-type to declare it)"
                ) from None
        key = routing_key if routing_key is not None else (queue or "")
        declare: list[Any] = []
        if queue:
            bind_key = key if binding_key is None else binding_key
            declared = Queue(queue, target if exchange else None, routing_key=bind_key, max_priority=max_priority)
            declared(channel).declare()
            declare.append(declared)
        producer = Producer(channel, exchange=target, routing_key=key, serializer=serializer, auto_declare=False)

        def send(value: Any) -> None:
            producer.publish(
                value,
                headers=dict(header_values),
                compression=compression,
                priority=priority,
                expiration=expiration,
                serializer=serializer,
            )

        where = f"exchange {exchange!r} with routing key {key!r}"
        if body is not None and body != "-":
            send(value)
            session.info(f"published 1 message to {where}")
            return

        show = (sys.stderr.isatty() and not session.quiet) if progress is None else progress

        def on_chunk(chunk: list[Any]) -> None:
            with producer.batch():
                for value in chunk:
                    send(value)

        with click.progressbar(
            _lines(stdin),
            length=_stdin_size(stdin) if show else None,
            label="publishing",
            file=sys.stderr,
            hidden=not show,
            show_pos=True,
            update_min_steps=50,
        ) as numbered:
            total = _read_documents(numbered, raw, on_chunk)
        session.info(f"published {total} message{'s' if total != 1 else ''} to {where}")

    @app.command()
    @global_options
    @click.argument("queues", nargs=-1, required=True)
    @click.option("-n", "--count", type=click.IntRange(min=1), default=None, help="Stop after this many messages.")
    @click.option(
        "-t",
        "--timeout",
        type=click.FloatRange(min=0),
        default=None,
        help="Stop when no message arrived for this many seconds.",
    )
    @click.option("--no-ack", is_flag=True, help="Acknowledge each message on arrival, before printing it.")
    @click.option("--requeue", is_flag=True, help="Put the messages back when done (peek).")
    @click.option(
        "-a",
        "--accept",
        multiple=True,
        help="Content type or serializer name to accept (repeatable; default: json, text and raw bytes).",
    )
    @click.option("--declare", is_flag=True, help="Create the queues if they do not exist.")
    @click.pass_obj
    def consume(
        session: _Session,
        queues: tuple[str, ...],
        count: int | None,
        timeout: float | None,
        no_ack: bool,
        requeue: bool,
        accept: tuple[str, ...],
        declare: bool,
    ) -> int:
        """Print messages of QUEUES as JSON lines (body, headers, properties)."""
        from ..mixins import decode_error_reason, raw_body

        if no_ack and requeue:
            raise CLIError("--no-ack and --requeue cannot be used together", EXIT_USAGE)
        if count is not None and count < 1:
            raise CLIError("--count must be at least 1", EXIT_USAGE)
        accepted = _accept_list(accept)
        conn = session.connect()
        channel = conn.default_channel
        bound = []
        for name in queues:
            queue = Queue(name)(channel)
            if declare:
                queue.declare()
            else:
                _check_queue(channel, name, session)
            bound.append(queue)
        state = _ConsumeState(count)
        window = min(count, 100) if count else 100

        def hold(message: Message) -> None:
            # a message kept unacknowledged until the end must not use up the prefetch window
            state.held.append(message)
            channel.basic_qos(0, window + len(state.held), False)

        def undecodable(message: Message, exc: BaseException) -> None:
            if state.done:
                return  # beyond --count: left unacknowledged, back to its queue on close
            state.undecodable += 1
            click.echo(
                mask(
                    f"kombu-like: cannot decode a message on queue {_queue_name(message, state)!r} "
                    f"(content type {message.content_type!r}): {decode_error_reason(message, exc)}; "
                    f"raw bytes {_preview(raw_body(message))}; it stays in the queue",
                    session.url,
                ),
                err=True,
            )
            hold(message)

        def on_message(message: Message) -> None:
            if state.done:
                return  # beyond --count: left unacknowledged, back to its queue on close
            queue = _queue_name(message, state)
            try:
                body = message.decode()
            except Exception as exc:
                undecodable(message, exc)
                return
            if no_ack:
                message.ack()
            line = json.dumps(message_record(message, body, queue), default=_jsonable, ensure_ascii=False)
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except BrokenPipeError:
                # not an OSError from here on: click would turn one into exit status 1
                raise ReaderGone("stdout's reader closed the pipe") from None
            state.printed += 1
            if state.done and state.consumer is not None:
                state.consumer.cancel()  # before the last ack, so no further message is sent
            # printed first, acknowledged after: a crash in between prints twice, loses nothing
            if requeue:
                hold(message)  # put back at the end: requeued now, it would come straight back
            elif not no_ack:
                message.ack()

        from ..messaging import Consumer

        # --no-ack acknowledges on arrival instead of consuming without acks, so that the
        # broker never sends more than --count and nothing beyond it is lost
        consumer = Consumer(
            channel,
            bound,
            on_message=on_message,
            on_decode_error=undecodable,
            accept=accepted,
            prefetch_count=window,
            auto_declare=False,
        )
        try:
            with consumer:
                state.consumer = consumer
                _drain(conn, state, timeout)
        finally:
            # last first: stores that requeue at the head then keep the original order
            for message in reversed(state.held):
                if not message.acknowledged:
                    try:
                        message.requeue()
                    except Exception:  # closing the connection returns it all the same
                        pass
        if state.undecodable:
            many = state.undecodable != 1
            raise CLIError(
                f"{state.undecodable} message{'s' if many else ''} could not be decoded and "
                f"{'were' if many else 'was'} left in the queue (see --accept)"
            )
        if count is not None and state.printed < count:
            raise CLIError(f"timed out after {timeout} s with {state.printed} of {count} messages", EXIT_TIMEOUT)
        return 0
