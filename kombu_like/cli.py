"""The ``kombu-like`` command: publish, consume and manage queues from the shell.

::

    kombu-like publish '{"name": "x.mp4"}' --queue video
    seq 3 | kombu-like publish --queue numbers          # one JSON document per line
    kombu-like consume video --count 1 --timeout 5      # JSON lines on stdout
    kombu-like queues
    kombu-like --url amqp://guest:guest@localhost// size video
    kombu-like size video --url amqp://guest:guest@localhost//   # global options go anywhere

The broker comes from ``--url``, else ``$KOMBU_LIKE_URL``, else an sqlite file in the
working directory (``sqlite://``), so every command works without a broker.  Expected
failures (a bad URL, a broker that stays down, an unknown serializer, a missing queue)
print one line on stderr, with passwords masked, and exit non-zero.  A reader that stops
reading (``consume Q | head -2``) ends the command quietly; what was not printed stays
in the queue.

Exit codes: 0 success, 1 error, 2 wrong usage, 3 ``consume --count`` timed out first.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import socket
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn

from .utils.url import maybe_sanitize_url, url_to_parts

if TYPE_CHECKING:
    import click

    from .connection import Connection
    from .message import Message

__all__ = ["DEFAULT_URL", "CLIError", "build_app", "main"]

#: broker used when neither ``--url`` nor ``$KOMBU_LIKE_URL`` names one
DEFAULT_URL = "sqlite://"
ENV_URL = "KOMBU_LIKE_URL"

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3

#: stdin lines published per round trip
PUBLISH_CHUNK = 500
#: bytes of an undecodable body quoted in errors
PREVIEW_BYTES = 60

_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^\s/@:]*:)([^\s/@]+)(@)")


class CLIError(Exception):
    """An expected failure: printed as one line, exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# -- helpers shared by the commands ---------------------------------------------------------
def _passwords(url: str) -> list[str]:
    found = []
    for part in url.split(";"):
        try:
            password = url_to_parts(part).password
        except ValueError:
            continue
        if password:
            found.append(password)
    return found


def mask(text: str, url: str | None) -> str:
    """``text`` with every password of ``url`` (and of any URL in it) replaced by ``**``."""
    text = _URL_PASSWORD.sub(r"\1**\3", text)
    for password in _passwords(url or ""):
        text = text.replace(password, "**")
    return text


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


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


def _pairs(values: Sequence[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"{what} must look like key=value, not {item!r}", EXIT_USAGE)
        out[key] = value
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _preview(raw: Any) -> str:
    data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace")
    more = "..." if len(data) > PREVIEW_BYTES else ""
    return f"{data[:PREVIEW_BYTES]!r}{more}"


def message_record(message: Message, body: Any, queue: str) -> dict[str, Any]:
    """What ``consume`` prints for one message (one JSON document per line)."""
    properties = {k: v for k, v in (message.properties or {}).items() if k not in ("delivery_info",)}
    info = message.delivery_info or {}
    record: dict[str, Any] = {
        "queue": queue,
        "body": body,
        "headers": message.headers or {},
        "properties": properties,
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "delivery_info": {
            "exchange": info.get("exchange"),
            "routing_key": info.get("routing_key"),
            "redelivered": bool(info.get("redelivered")),
        },
    }
    if isinstance(body, bytes | bytearray):
        try:
            record["body"] = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            record["body"] = base64.b64encode(bytes(body)).decode("ascii")
            record["body_encoding"] = "base64"
    return record


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class _Session:
    """The global options, and the connection every command opens from them."""

    def __init__(
        self, url: str, options: dict[str, Any], retries: int, quiet: bool = False, log_level: str | None = None
    ) -> None:
        self.url = url
        self.options = options
        self.retries = retries
        self.quiet = quiet
        self.log_level = log_level
        self._conn: Connection | None = None
        self._log_handler: Any = None
        self.configure_logging()

    def configure_logging(self) -> None:
        """Log records of ``--log-level`` and above to stderr (errors only with ``--quiet``)."""
        import logging

        root = logging.getLogger()
        if self._log_handler is None:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("kombu-like: %(levelname)s: %(name)s: %(message)s"))
            root.addHandler(handler)
            self._log_handler = handler
            import warnings

            # the library's warnings (a Redis priority queue's order, ...) as one log line
            # each, under --log-level/--quiet, instead of a source line from inside the library
            def show(
                message: Any,
                category: type[Warning],
                filename: str,
                lineno: int,
                file: Any = None,
                line: str | None = None,
            ) -> None:
                logging.getLogger("kombu_like").warning("%s: %s", category.__name__, message)

            warnings.showwarning = show
        level = self.log_level or ("error" if self.quiet else "warning")
        self._log_handler.setLevel(level.upper())
        root.setLevel(level.upper())

    def info(self, text: str, err: bool = True) -> None:
        """Print an informational line (what was done), unless ``--quiet``."""
        if not self.quiet:
            import click

            click.echo(text, err=err)

    @property
    def safe_url(self) -> str:
        return mask(str(maybe_sanitize_url(self.url)), self.url)

    def connect(self) -> Connection:
        from .connection import Connection

        options = dict(self.options)
        # bound every later reconnect too, so no command hangs on a broker that is gone
        options.setdefault("max_retries", self.retries)
        options.setdefault("interval_start", 0.2)
        options.setdefault("interval_step", 0.5)
        options.setdefault("interval_max", 2.0)
        options.setdefault("connect_retries_timeout", 30.0)
        conn = Connection(self.url, transport_options=options)
        self._conn = conn
        from .exceptions import KombuError

        try:
            conn.ensure_connection(
                max_retries=self.retries, interval_start=0.2, interval_step=0.5, interval_max=2.0, timeout=30.0
            )
        except (KombuError, OSError) as exc:
            text = _describe(exc)
            if self.safe_url not in text:
                text = f"cannot connect to {self.safe_url}: {text}"
            raise CLIError(text) from exc
        return conn

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.release()
            except Exception:  # closing after a failure must not hide the failure
                pass
        if self._log_handler is not None:
            import logging

            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler = None


def _no_such(kind: str, name: str, session: _Session) -> CLIError:
    return CLIError(f"no such {kind} {name!r} on {session.safe_url}")


def _check_queue(channel: Any, name: str, session: _Session) -> Any:
    from .exceptions import NotFound

    try:
        return channel.queue_declare(queue=name, passive=True)
    except NotFound:
        raise _no_such("queue", name, session) from None


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


# -- the click application ----------------------------------------------------------------
def build_app() -> click.Group:
    """Build the ``kombu-like`` click group (needs the ``cli`` extra)."""
    import click

    from . import Exchange, Producer, Queue
    from .exceptions import NotFound

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option(
        "--url",
        envvar=ENV_URL,
        default=DEFAULT_URL,
        show_default=True,
        metavar="URL",
        help=f"Broker URL (also ${ENV_URL}); the default is kombu_like.db in the working directory.",
    )
    @click.option(
        "-o",
        "--transport-option",
        "transport_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Transport option (repeatable); values are read as JSON when they parse.",
    )
    @click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=3,
        show_default=True,
        help="Connection retries before giving up.",
    )
    @click.option("-q", "--quiet", is_flag=True, help="Print only data and errors (no progress or summaries).")
    @click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default=None,
        help="Log records of this level and above to stderr (default: warning; error with --quiet).",
    )
    @click.version_option(package_name="kombu_like", prog_name="kombu-like")
    @click.pass_context
    def app(
        ctx: click.Context,
        url: str,
        transport_options: tuple[str, ...],
        retries: int,
        quiet: bool,
        log_level: str | None,
    ) -> None:
        """Publish, consume and manage queues on any kombu_like broker.

        The global options (--url, -o, --retries, --quiet, --log-level) may also be given
        after the command; there they win over the ones before it.
        """
        options = {k: _option_value(v) for k, v in _pairs(transport_options, "--transport-option").items()}
        session = _Session(url, options, retries, quiet, log_level.lower() if log_level else None)
        ctx.obj = session
        ctx.call_on_close(session.close)

    def _later(apply: Callable[[_Session, Any], None]) -> Callable[[click.Context, click.Parameter, Any], None]:
        def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
            if value is None or value == () or value is False:
                return  # not given after the command: the value before it stands
            session = ctx.find_object(_Session)
            if session is not None:
                apply(session, value)

        return callback

    def _set_options(session: _Session, values: tuple[str, ...]) -> None:
        session.options.update({k: _option_value(v) for k, v in _pairs(values, "--transport-option").items()})

    def _set_quiet(session: _Session, value: bool) -> None:
        session.quiet = True
        session.configure_logging()

    def _set_log_level(session: _Session, value: str) -> None:
        session.log_level = value.lower()
        session.configure_logging()

    def global_options(command: Callable[..., Any]) -> Callable[..., Any]:
        """Accept the group's options after the command name too (``kombu-like size q --url ...``)."""
        later = [
            click.option(
                "--url",
                metavar="URL",
                default=None,
                expose_value=False,
                help="Broker URL.",
                callback=_later(lambda session, value: setattr(session, "url", value)),
            ),
            click.option(
                "-o",
                "--transport-option",
                multiple=True,
                metavar="KEY=VALUE",
                expose_value=False,
                help="Transport option (repeatable).",
                callback=_later(_set_options),
            ),
            click.option(
                "--retries",
                type=click.IntRange(min=0),
                default=None,
                expose_value=False,
                help="Connection retries before giving up.",
                callback=_later(lambda session, value: setattr(session, "retries", value)),
            ),
            click.option(
                "--quiet",
                is_flag=True,
                default=False,
                expose_value=False,
                help="Print only data and errors.",
                callback=_later(_set_quiet),
            ),
            click.option(
                "--log-level",
                type=click.Choice(LOG_LEVELS, case_sensitive=False),
                default=None,
                expose_value=False,
                help="Log level on stderr.",
                callback=_later(_set_log_level),
            ),
        ]
        for option in reversed(later):
            command = option(command)
        return command

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
        from .mixins import decode_error_reason, raw_body

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

        from .messaging import Consumer

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

    @app.command()
    @global_options
    @click.option("--json", "as_json", is_flag=True, help="One JSON document per queue instead of a table.")
    @click.pass_obj
    def queues(session: _Session, as_json: bool) -> None:
        """List queues with their ready and unacknowledged message counts."""
        conn = session.connect()
        channel = conn.default_channel
        store = getattr(channel, "store", None)
        # through the seam, so a driver error is reported as the library's exception
        seam = getattr(channel, "seam", None)
        call = seam.call if seam is not None else (lambda method, queue=None: method())
        try:
            names = call(store.list_queues) if store is not None else None
        except NotImplementedError:
            names = None
        if store is None or names is None:
            raise CLIError(
                f"the {conn.transport.driver_type} transport cannot list queues; ask the broker "
                f"(for RabbitMQ: rabbitmqctl list_queues), or use 'kombu-like size QUEUE'"
            )
        rows = []
        for name in names:
            unacked = getattr(store, "unacked_count", None)
            rows.append(
                {
                    "name": name,
                    "ready": call(functools.partial(store.size, name), name),
                    "unacked": call(functools.partial(unacked, name), name) if unacked is not None else None,
                }
            )
        if as_json:
            for row in rows:
                click.echo(json.dumps(row))
            return
        click.echo(_table(rows))

    @app.command()
    @global_options
    @click.argument("queue")
    @click.pass_obj
    def size(session: _Session, queue: str) -> None:
        """Print the number of ready messages in QUEUE."""
        conn = session.connect()
        ok = _check_queue(conn.default_channel, queue, session)
        click.echo(str(ok.message_count))

    force_option = click.option(
        "-f", "--force", is_flag=True, help="Do not ask for confirmation (asked only on a terminal)."
    )

    def confirm(session: _Session, force: bool, question: str, refused: str) -> None:
        if force or not sys.stdin.isatty():
            return
        if not click.confirm(question, default=False, err=True):
            raise CLIError(refused)

    @app.command()
    @global_options
    @click.argument("queue")
    @force_option
    @click.pass_obj
    def purge(session: _Session, queue: str, force: bool) -> None:
        """Delete every ready message of QUEUE (asks first on a terminal, unless -f)."""
        conn = session.connect()
        channel = conn.default_channel
        ok = _check_queue(channel, queue, session)
        ready = ok.message_count
        confirm(
            session,
            force,
            f"Purge {ready} message{'s' if ready != 1 else ''} from queue {queue!r} on {session.safe_url}?",
            f"queue {queue!r} was not purged",
        )
        removed = channel.queue_purge(queue)
        session.info(f"purged {removed or 0} message{'s' if removed != 1 else ''} from {queue!r}", err=False)

    @app.command()
    @global_options
    @click.argument("queue")
    @click.option("--if-empty", is_flag=True, help="Only if the queue has no messages.")
    @click.option("--if-unused", is_flag=True, help="Only if the queue has no consumers.")
    @force_option
    @click.pass_obj
    def delete(session: _Session, queue: str, if_empty: bool, if_unused: bool, force: bool) -> None:
        """Delete QUEUE and its messages (asks first on a terminal, unless -f)."""
        from .exceptions import PreconditionFailed

        conn = session.connect()
        channel = conn.default_channel
        ok = _check_queue(channel, queue, session)
        ready = ok.message_count
        confirm(
            session,
            force,
            f"Delete queue {queue!r} and its {ready} message{'s' if ready != 1 else ''} on {session.safe_url}?",
            f"queue {queue!r} was not deleted",
        )
        try:
            removed = channel.queue_delete(queue, if_unused=if_unused, if_empty=if_empty)
        except PreconditionFailed as exc:
            raise CLIError(f"queue {queue!r} was not deleted: {exc}") from None
        session.info(f"deleted queue {queue!r} ({removed or 0} message{'s' if removed != 1 else ''})", err=False)

    @app.command()
    @global_options
    @click.argument("bench_url", metavar="[URL]", required=False)
    @click.option("-n", "--messages", type=click.IntRange(min=1), default=10000, show_default=True)
    @click.option("--roundtrips", type=click.IntRange(min=1), default=1000, show_default=True)
    @click.option("--prefetch", type=click.IntRange(min=1), default=200, show_default=True)
    @click.option("--vs", type=click.Choice(["kombu"]), default=None, help="Also run Kombu on the same URL.")
    @click.option("--no-batch", is_flag=True, help="Skip the Producer.batch() run.")
    @click.option("--raw", is_flag=True, help="Also run the plain amqp client (amqp:// URLs).")
    @click.option(
        "--rounds",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Run the libraries in turn this many times and keep each one's best figures.",
    )
    @click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
    @click.pass_obj
    def bench(
        session: _Session,
        bench_url: str | None,
        messages: int,
        roundtrips: int,
        prefetch: int,
        vs: str | None,
        no_batch: bool,
        raw: bool,
        rounds: int,
        progress: bool | None,
    ) -> None:
        """Benchmark the broker at URL (default: --url) with kombu_like, and Kombu beside it.

        Prints messages per second, CPU seconds per 10,000 messages and round-trip
        latency for each library, side by side with the ratio.
        """
        import importlib

        from .bench import format_table, run_bench, run_raw_amqp

        url = bench_url or session.url
        safe_url = mask(str(maybe_sanitize_url(url)), url)
        if raw and url.split("://")[0] not in ("amqp", "pyamqp"):
            raise CLIError("--raw needs an amqp:// URL", EXIT_USAGE)
        libraries = ["kombu_like"]
        if vs:
            try:
                importlib.import_module(vs)
                libraries.append(vs)
            except ImportError:
                click.echo(f"kombu-like: {vs} is not installed; running kombu_like alone", err=True)
        phases = 3 if no_batch else 4
        show = (sys.stderr.isatty() and not session.quiet) if progress is None else progress
        best: dict[str, Any] = {}
        failures: list[str] = []
        with click.progressbar(
            length=phases * len(libraries) * rounds,
            label="bench",
            file=sys.stderr,
            hidden=not show,
            item_show_func=lambda item: item,
        ) as bar:
            for round_number in range(1, rounds + 1):
                label = f" (round {round_number} of {rounds})" if rounds > 1 else ""
                for library in list(libraries):
                    if not show:
                        session.info(f"running {library} on {safe_url}{label} ...")

                    def step(phase: str, library: str = library, label: str = label) -> None:
                        bar.update(1, f"{library}{label}: {phase}")

                    try:
                        result = run_bench(
                            library,
                            url,
                            messages=messages,
                            roundtrips=roundtrips,
                            prefetch=prefetch,
                            batch=not no_batch,
                            transport_options=dict(session.options),
                            progress=step,
                        )
                    except Exception as exc:
                        if library == "kombu_like":
                            raise
                        # Kombu may not know this URL (it has no sqlite://): keep our figures
                        problem = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                        failures.append(mask(f"{library} could not run on {safe_url}: {problem}", url))
                        libraries.remove(library)
                        continue
                    best[library] = best[library].best_of(result) if library in best else result
        results = [best[library] for library in libraries]
        if raw:
            session.info(f"running the plain amqp client on {safe_url} ...")
            results.append(run_raw_amqp(url, messages, roundtrips, prefetch))
        for failure in failures:
            click.echo(f"kombu-like: {failure}", err=True)
        click.echo(format_table(results))

    @app.command()
    @global_options
    @click.pass_obj
    def demo(session: _Session) -> int:
        """Publish three messages and consume them again, printing what went through."""
        from .demo import run

        # connected (within --retries) before anything says so
        return run(session.connect())

    return app


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


class ReaderGone(Exception):
    """stdout's reader closed the pipe (``consume Q | head -2``): stop quietly, exit 0."""


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


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("queue", "ready", "unacked")
    cells = [header] + [
        (str(r["name"]), str(r["ready"]), "-" if r["unacked"] is None else str(r["unacked"])) for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in cells
    )


def _fail(message: str, url: str | None, code: int = EXIT_ERROR) -> NoReturn:
    print(f"kombu-like: error: {mask(message, url)}", file=sys.stderr)
    raise SystemExit(code)


def _url_from(argv: Sequence[str]) -> str | None:
    import os

    for i, arg in enumerate(argv):
        if arg == "--url" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--url="):
            return arg.split("=", 1)[1]
    return os.environ.get(ENV_URL)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, socket.timeout):
        return f"timed out: {exc}" if str(exc) else "timed out"
    text = str(exc) or type(exc).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kombu-like`` with ``argv`` (default: the process arguments); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    url = _url_from(args)
    try:
        import click
    except ImportError:
        # click is a dependency; it is missing only from an environment assembled by hand
        _fail('the kombu-like command needs click: pip install "kombu_like[cli]" (or: pip install click)', None)
    from .exceptions import KombuError

    app = build_app()
    try:
        result = app.main(args=args, prog_name="kombu-like", standalone_mode=False)
    except CLIError as exc:
        _fail(str(exc), url, exc.code)
    except click.exceptions.Abort:
        _fail("aborted", url, 130)
    except (ReaderGone, BrokenPipeError):
        # ``consume Q | head -2``: the reader has what it wanted; unprinted messages were
        # not acknowledged and stay in the queue
        _reader_went_away()
        return 0
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (KombuError, OSError, socket.timeout, ValueError, KeyError, ImportError) as exc:
        if _caused_by_broken_pipe(exc):  # raised in a callback, passed on by the library
            _reader_went_away()
            return 0
        _fail(_describe(exc), url)
    except KeyboardInterrupt:
        _fail("interrupted", url, 130)
    return result if isinstance(result, int) else 0


def _caused_by_broken_pipe(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, BrokenPipeError | ReaderGone):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _reader_went_away() -> None:
    """stdout's reader closed the pipe: point stdout at /dev/null so the final flush is quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file descriptor (embedded use)
        pass


if __name__ == "__main__":
    sys.exit(main())
