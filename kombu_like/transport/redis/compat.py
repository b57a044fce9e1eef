"""Every use of redis-py beyond its documented API, in one place.

redis-py opens the transport's connections (TCP or TLS, AUTH, SELECT, CLIENT SETNAME,
Sentinel discovery); from then on :mod:`.wire` drives the socket itself.  Taking that
socket, and finishing redis-py's handshake from a ``redis_connect_func``, reach past the
public API, so the redis-py versions they were checked against are stated here and
checked when a transport is made (``pyproject.toml`` states the same bounds).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis import exceptions as rexc
from redis.crc import key_slot as _key_slot

from ...exceptions import VersionMismatch

__all__ = [
    "SUPPORTED",
    "check_version",
    "dedicated_node_connection",
    "finish_handshake",
    "handshake_bounded",
    "key_slot",
    "own_connection_kwargs",
    "reload_slots",
    "socket_of",
]

#: redis-py versions whose internals this module was checked against: [lowest, first unsupported)
SUPPORTED = ((4, 5, 2), (9, 0, 0))


def _parse(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def check_version(version: str) -> None:
    """Refuse a redis-py whose internals this module was not checked against."""
    found = _parse(version)
    low, high = SUPPORTED
    if not low <= found < high:
        raise VersionMismatch(
            f"the Redis transport supports redis-py {'.'.join(map(str, low))} up to (not including) "
            f'{".".join(map(str, high))}, found {version}: pip install "kombu_like[redis]"'
        )


def socket_of(connection: Any) -> socket.socket:
    """The socket of a connected redis-py connection (its ``_sock``)."""
    sock = getattr(connection, "_sock", None)
    if sock is None:
        raise rexc.ConnectionError("redis-py reported the connection open but holds no socket")
    return sock  # type: ignore[no-any-return]


#: what a redis-py 7/8 pool adds to the arguments of the connections it makes, for its own
#: bookkeeping (maintenance notifications: the pool's handler, its config, the addresses
#: it may move connections back to); a connection made outside the pool must not get them
_POOL_BOOKKEEPING = (
    "maint_notifications_pool_handler",
    "maint_notifications_config",
    "orig_host_address",
    "orig_socket_timeout",
    "orig_socket_connect_timeout",
)


def own_connection_kwargs(pool: Any, **changes: Any) -> dict[str, Any]:
    """The arguments ``pool`` makes its connections with (server, TLS, credentials,
    Sentinel's master), with ``changes``, for connections of one's own outside the pool.

    Without the pool's bookkeeping: its maintenance-notifications config, made for the
    pool's protocol, is refused by a connection of another protocol (RESP2 without
    hiredis: "Maintenance notifications are only supported with hiredis and RESP3")."""
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k not in _POOL_BOOKKEEPING}
    kwargs.update(changes)
    return kwargs


def finish_handshake(connection: Any) -> None:
    """Run redis-py's own handshake (AUTH, SELECT, CLIENT SETNAME, ...) from a
    ``redis_connect_func``, which replaces it."""
    handshake = getattr(connection, "on_connect_check_health", None)
    if handshake is not None:  # redis-py 5.3 and later
        handshake(check_health=True)
    else:
        connection.on_connect()


@contextmanager
def handshake_bounded(connection: Any) -> Iterator[float | None]:
    """Within the block, redis-py's handshake replies (AUTH, SELECT, CLIENT SETNAME, a
    Sentinel master's ROLE, TLS) are awaited no longer than its ``socket_connect_timeout``.

    redis-py reads them with ``socket_timeout``: a server that accepts the connection and
    never answers would hold a connect for that long instead.  Yields the connect
    timeout (None: there is none).
    """
    limit = getattr(connection, "socket_connect_timeout", None)
    normal = getattr(connection, "socket_timeout", None)
    if not limit or (normal is not None and normal <= limit):
        yield limit
        return
    connection.socket_timeout = limit
    try:
        yield limit
    finally:
        connection.socket_timeout = normal
        sock = getattr(connection, "_sock", None)
        if sock is not None:
            sock.settimeout(normal)


# -- Redis Cluster (redis.cluster.RedisCluster) ------------------------------------------


def reload_slots(cluster: Any) -> None:
    """Make a cluster client read the slot map again now (after ``MOVED`` met outside its
    own command path, such as on a node's own pipeline)."""
    cluster.nodes_manager.initialize()


def dedicated_node_connection(cluster: Any, node: Any) -> Any:
    """A new connection to cluster ``node``, made with the settings of that node's pool
    (credentials, TLS, timeouts) but not part of the pool: the caller owns it (a blocking
    ``XREAD`` must not hold a pooled connection) and disconnects it."""
    pool = cluster.get_redis_connection(node).connection_pool
    return pool.make_connection()


def key_slot(key: bytes) -> int:
    """The Redis Cluster hash slot of ``key`` (its hash tag's, when it has one)."""
    return int(_key_slot(key))
