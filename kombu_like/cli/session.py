"""The global options, the connection every command opens from them, and the command's errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..utils.url import maybe_sanitize_url
from .output import _describe, mask

if TYPE_CHECKING:
    from ..connection import Connection


#: broker used when neither ``--url`` nor ``$KOMBU_LIKE_URL`` names one
DEFAULT_URL = "sqlite://"

ENV_URL = "KOMBU_LIKE_URL"

EXIT_ERROR = 1

EXIT_USAGE = 2

EXIT_TIMEOUT = 3

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class CLIError(Exception):
    """An expected failure: printed as one line, exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class ReaderGone(Exception):
    """stdout's reader closed the pipe (``consume Q | head -2``): stop quietly, exit 0."""


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(values: Sequence[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"{what} must look like key=value, not {item!r}", EXIT_USAGE)
        out[key] = value
    return out


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
        from ..connection import Connection

        options = dict(self.options)
        # bound every later reconnect too, so no command hangs on a broker that is gone
        options.setdefault("max_retries", self.retries)
        options.setdefault("interval_start", 0.2)
        options.setdefault("interval_step", 0.5)
        options.setdefault("interval_max", 2.0)
        options.setdefault("connect_retries_timeout", 30.0)
        conn = Connection(self.url, transport_options=options)
        self._conn = conn
        from ..exceptions import KombuError

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
    from ..exceptions import NotFound

    try:
        return channel.queue_declare(queue=name, passive=True)
    except NotFound:
        raise _no_such("queue", name, session) from None
