"""``queues``, ``size``, ``purge`` and ``delete``: look at and manage a broker's queues."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .output import _table
from .session import CLIError, _check_queue, _Session

if TYPE_CHECKING:
    import click


def register(app: click.Group, global_options: Callable[..., Any]) -> None:
    """Add ``queues``, ``size``, ``purge``, ``delete`` to ``app``."""
    import click

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

    def confirmed(session: _Session, queue: str, force: bool, question: Callable[[int], str], refused: str) -> Any:
        """Connect and check that QUEUE exists; on a terminal without -f, ask ``question(ready)``
        (``ready``: the queue's message count) first.  Returns the channel to act on."""
        channel = session.connect().default_channel
        ready = _check_queue(channel, queue, session).message_count
        if not force and sys.stdin.isatty() and not click.confirm(question(ready), default=False, err=True):
            raise CLIError(refused)
        return channel

    @app.command()
    @global_options
    @click.argument("queue")
    @force_option
    @click.pass_obj
    def purge(session: _Session, queue: str, force: bool) -> None:
        """Delete every ready message of QUEUE (asks first on a terminal, unless -f)."""
        channel = confirmed(
            session,
            queue,
            force,
            lambda ready: (
                f"Purge {ready} message{'s' if ready != 1 else ''} from queue {queue!r} on {session.safe_url}?"
            ),
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
        from ..exceptions import PreconditionFailed

        channel = confirmed(
            session,
            queue,
            force,
            lambda ready: (
                f"Delete queue {queue!r} and its {ready} message{'s' if ready != 1 else ''} on {session.safe_url}?"
            ),
            f"queue {queue!r} was not deleted",
        )
        try:
            removed = channel.queue_delete(queue, if_unused=if_unused, if_empty=if_empty)
        except PreconditionFailed as exc:
            raise CLIError(f"queue {queue!r} was not deleted: {exc}") from None
        session.info(f"deleted queue {queue!r} ({removed or 0} message{'s' if removed != 1 else ''})", err=False)
