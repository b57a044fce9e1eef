"""Redis conversations: operations of several round trips, written once for both I/O drivers.

A *conversation* is a generator that never does I/O itself: it yields the RESP bytes of
the commands it wants sent on one connection (a :class:`Round`, whose replies it receives
back in order, error replies as exception instances in their place; or a
:class:`Deferred` write, whose replies are read later) and decides what to do next from
what came back -- load a script again after ``NOSCRIPT``, give back the messages of a take
whose reply was lost, check the server's version.  One conversation serves both drivers:

* :func:`drive` runs it on a blocking :class:`~.wire.Wire`, each round one
  ``execute_packed`` (the blocking API, Kombu's Hub);
* :func:`adrive` runs it on an :class:`~.aio_wire.AsyncWire`, each round awaited on the
  asyncio loop (the asyncio API), with no thread.

A socket error raised by a round is thrown into the conversation at its ``yield``, so it
may handle it (note a lost take in the ledger) or let it out.  Conversations of one
round cost a generator each; the hot paths (a publish, a take's request and the handling
of its reply) are plain request builders and reply handlers instead, called by both
drivers the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .resp import pack_commands

if TYPE_CHECKING:
    from .aio_wire import AsyncWire

__all__ = [
    "Conversation",
    "Deferred",
    "Round",
    "adrive",
    "call",
    "defer",
    "drive",
    "exchange",
    "exchange_packed",
    "perform",
]

_T = TypeVar("_T")


class Round(NamedTuple):
    """Send ``size`` commands encoded in ``data``; the conversation receives their replies."""

    data: bytes
    size: int


class Deferred(NamedTuple):
    """Send ``size`` commands encoded in ``data`` now and read their replies later
    (acknowledgements); ``on_lost`` is called if the connection drops first."""

    data: bytes
    size: int
    on_lost: Callable[[], None]


Step = Round | Deferred
#: a conversation: yields steps, receives their replies, returns the operation's result
Conversation = Generator[Step, Any, _T]


def exchange_packed(data: bytes, count: int) -> Conversation[list[Any]]:
    """One round of ``count`` encoded commands; their replies."""
    return (yield Round(data, count))  # type: ignore[no-any-return]


def exchange(commands: Sequence[Sequence[Any]]) -> Conversation[list[Any]]:
    """One round of ``commands``; their replies (error replies in their place)."""
    return (yield Round(pack_commands(commands), len(commands)))  # type: ignore[no-any-return]


def call(*args: Any) -> Conversation[Any]:
    """One command; its reply, an error reply raised."""
    [reply] = yield from exchange([args])
    if isinstance(reply, Exception):
        raise reply
    return reply


def defer(commands: Sequence[Sequence[Any]], on_lost: Callable[[], None]) -> Conversation[None]:
    """Write ``commands`` now; their replies are read with a later round."""
    yield Deferred(pack_commands(commands), len(commands), on_lost)


def perform(wire: Any, step: Step) -> Any:
    """Do one step on a blocking ``wire`` (or a deferred one on an asyncio wire); the
    replies the conversation receives."""
    if type(step) is Round:
        return wire.execute_packed(step.data, step.size)
    wire.send_deferred_packed(step.data, step.size, step.on_lost)  # type: ignore[union-attr]
    return None


def drive(wire: Any, conversation: Conversation[_T]) -> _T:
    """Run ``conversation`` on the blocking ``wire``; its result.  (A conversation of
    deferred writes only, such as an acknowledgement, runs on an asyncio wire too.)"""
    try:
        step = next(conversation)
        while True:
            try:
                replies = perform(wire, step)
            except BaseException as exc:  # the conversation may handle it (keep what it owes)
                step = conversation.throw(exc)
                continue
            step = conversation.send(replies)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def adrive(wire: AsyncWire, conversation: Conversation[_T], connect: bool = True) -> _T:
    """Run ``conversation`` on ``wire``, each round awaited on the asyncio loop; the wire
    is connected first when it is not (``connect=False``: the wire's own handshake)."""
    try:
        step = next(conversation)
        while True:
            try:
                if connect and not wire.connected:  # as the blocking wire, which connects on send
                    await wire.connect()
                if type(step) is Round:
                    replies: Any = await wire.execute_packed(step.data, step.size)
                else:
                    wire.send_deferred_packed(step.data, step.size, step.on_lost)  # type: ignore[union-attr]
                    replies = None
            except BaseException as exc:  # a cancellation too: the conversation keeps what it owes
                step = conversation.throw(exc)
                continue
            step = conversation.send(replies)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
