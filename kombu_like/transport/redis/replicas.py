"""Publishes confirmed by replicas (``wait_replicas``), for both Redis transports.

A publish is followed by ``WAIT <replicas> <timeout ms>`` on the connection that wrote it
(``WAIT`` counts the replicas that have every write of *that* connection).  Fewer replicas
than asked within the timeout raise :class:`~kombu_like.exceptions.MessageNacked`: the
message was written, and a consumer may get it, but a failover before the replicas catch
up could lose it, so the publish is not confirmed.
"""

from __future__ import annotations

from typing import Any

from ...exceptions import MessageNacked

__all__ = ["WAIT_HELP", "WAIT_TIMEOUT_HELP", "check_replicated", "wait_command", "wait_packed"]

WAIT_HELP = (
    "Replicas a publish waits for (``WAIT`` on the master that took it) before it returns; "
    "fewer within ``wait_timeout``: :class:`~kombu_like.exceptions.MessageNacked`, the publish "
    "is not confirmed (0: does not wait)"
)
WAIT_TIMEOUT_HELP = "Seconds a publish waits for ``wait_replicas`` replicas"


def wait_command(replicas: int, timeout: float) -> tuple[Any, ...]:
    """The ``WAIT`` that follows a confirmed publish."""
    return ("WAIT", int(replicas), max(int(timeout * 1000), 1))


def wait_packed(replicas: int, timeout: float) -> bytes:
    """:func:`wait_command`, RESP-encoded."""
    # imported here: the options import this module, and must not need the driver (a
    # missing redis-py is reported when the transport loads, naming the extra to install)
    from .resp import pack_commands

    return pack_commands([wait_command(replicas, timeout)])


def check_replicated(reply: Any, replicas: int, timeout: float, what: str, where: str) -> None:
    """Raise :class:`MessageNacked` (naming ``what`` and the server ``where``) unless the
    ``WAIT`` ``reply`` counts ``replicas``; an error reply is raised as it is."""
    if isinstance(reply, Exception):
        raise reply
    confirmed = int(reply)
    if confirmed < replicas:
        raise MessageNacked(
            f"{what}: written to Redis at {where}, but {confirmed} of the {replicas} replicas asked for "
            f"(wait_replicas) confirmed it within {timeout:g} s (wait_timeout); the publish is not "
            f"confirmed: a failover before the replicas catch up would lose it"
        )
