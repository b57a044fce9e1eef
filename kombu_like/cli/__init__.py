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

import socket
import sys
from collections.abc import Sequence
from typing import NoReturn

from .app import build_app
from .output import _describe, mask
from .output import message_record as message_record
from .session import DEFAULT_URL, ENV_URL, EXIT_ERROR, CLIError, ReaderGone
from .session import EXIT_TIMEOUT as EXIT_TIMEOUT
from .session import EXIT_USAGE as EXIT_USAGE

__all__ = ["DEFAULT_URL", "CLIError", "build_app", "main"]


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kombu-like`` with ``argv`` (default: the process arguments); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    url = _url_from(args)
    try:
        import click
    except ImportError:
        # click is a dependency; it is missing only from an environment assembled by hand
        _fail('the kombu-like command needs click: pip install "kombu_like[cli]" (or: pip install click)', None)
    from ..exceptions import KombuError

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
