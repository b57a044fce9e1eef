"""A Redis Cluster's slot map, and where each command of a round runs.

:class:`ClusterTopology` reads the slot map (``CLUSTER SLOTS``) from any node that
answers and connects to the nodes; :func:`split_commands` reads a round's commands back
from its RESP bytes, :func:`key_of` names the key that routes each, :func:`redirection`
reads a ``MOVED``/``ASK``/``TRYAGAIN`` reply.  :mod:`.cluster` routes on them.  The
startup nodes and the translation of redis-py's cluster errors serve the Redis Streams
transport too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis import exceptions as rexc

if TYPE_CHECKING:
    from .cluster import ClusterWire

__all__ = [
    "SLOTS",
    "Address",
    "ClusterTopology",
    "cluster_error",
    "key_of",
    "redirection",
    "split_commands",
    "startup_nodes",
]

Address = tuple[str, int]

#: how many hash slots a Redis Cluster has
SLOTS = 16384

_REDIRECTS = (b"MOVED", b"ASK", b"TRYAGAIN")
#: commands whose first argument is no key
_KEYLESS = frozenset(
    {b"PING", b"INFO", b"SCRIPT", b"CLUSTER", b"CLIENT", b"HELLO", b"PUBLISH", b"MULTI", b"EXEC", b"ECHO", b"ASKING"}
)
_SCRIPT_CALLS = frozenset({b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO", b"FCALL"})


# -- shared with the Redis Streams transport ---------------------------------------------
def cluster_error(exc: BaseException, where: str, scrub: Callable[[str], str]) -> BaseException | None:
    """The library's error for a Redis Cluster error of redis-py, or None (not one).

    What a failover or a resharding causes (a node gone, slots moving or uncovered, the
    cluster down for a moment) is a recoverable connection error: the retry policy
    reconnects, and the new client reads the new slot map.  A server that is no cluster
    node at all cannot become one by retrying.
    """
    from ...exceptions import AccessRefused, ChannelError, ConnectionError, IrrecoverableConnectionError

    text = scrub(str(exc))
    if isinstance(exc, rexc.AskError | rexc.TryAgainError | rexc.ClusterError | rexc.SlotNotCoveredError):
        # MovedError is an AskError; ClusterDownError and MasterDownError ClusterErrors
        return ConnectionError(f"Redis Cluster at {where} is changing its slot map (a failover?): {text}")
    # redis-py 8 names an unreachable cluster (older ones raise RedisClusterException)
    if isinstance(exc, getattr(rexc, "RedisClusterUnreachableError", ())):
        return ConnectionError(f"no node of the Redis Cluster at {where} answers: {text}")
    if isinstance(exc, rexc.RedisClusterException):
        refused = (rexc.AuthenticationError, getattr(rexc, "AuthorizationError", rexc.AuthenticationError))
        if isinstance(exc.__cause__, refused):
            return AccessRefused(f"the Redis Cluster at {where} refused the credentials: {text}")
        if "Cluster mode is not enabled" in text:
            return IrrecoverableConnectionError(
                f"Redis at {where} is not a Redis Cluster node, but the cluster option is on: "
                f"turn it off for a single Redis server"
            )
        if "cannot be connected" in text or "could not agree" in text or "not covered" in text:
            return ConnectionError(f"Redis Cluster at {where} cannot be used now: {text}")
        return ChannelError(f"Redis Cluster client error for {where}: {text}")
    return None


def startup_nodes(urls: Sequence[str], hostname: str | None, port: int | None, default_port: int) -> list[Address]:
    """``(host, port)`` of every URL given (``;``-separated URLs or ``alternates``), else of
    the connection's own host: where a cluster client first asks for the slot map."""
    from ...utils.url import url_to_parts

    found: list[Address] = []
    for url in urls:
        parts = url_to_parts(url)
        if parts.hostname:
            node = (parts.hostname, int(parts.port or default_port))
            if node not in found:
                found.append(node)
    if not found:
        found.append((hostname or "127.0.0.1", int(port or default_port)))
    return found


# -- reading commands back from a round ----------------------------------------------------
def split_commands(data: bytes) -> list[list[bytes]]:
    """The commands (each its arguments) RESP-encoded in ``data``."""
    commands: list[list[bytes]] = []
    pos, size = 0, len(data)
    while pos < size:
        end = data.index(b"\r\n", pos)
        count = int(data[pos + 1 : end])
        pos = end + 2
        args: list[bytes] = []
        for _ in range(count):
            end = data.index(b"\r\n", pos)
            length = int(data[pos + 1 : end])
            pos = end + 2
            args.append(data[pos : pos + length])
            pos += length + 2
        commands.append(args)
    return commands


def key_of(args: Sequence[bytes]) -> bytes | None:
    """The key that decides where ``args`` runs (its first), None for a keyless command."""
    name = args[0].upper()
    if name in _SCRIPT_CALLS:
        return args[3] if len(args) > 3 and int(args[2]) > 0 else None
    if name in _KEYLESS or len(args) < 2:
        return None
    return args[1]


def redirection(reply: Any) -> tuple[bytes, list[str]] | None:
    """``(kind, words)`` of a MOVED/ASK/TRYAGAIN error reply, else None."""
    if not isinstance(reply, rexc.ResponseError):
        return None
    words = str(reply).split()
    if not words or words[0].encode() not in _REDIRECTS:
        return None
    return words[0].encode(), words


def _node_address(entry: Sequence[Any], asked: Address) -> Address:
    """The address of a node of a ``CLUSTER SLOTS`` entry (no host: the node asked)."""
    host = entry[0].decode() if isinstance(entry[0], bytes) else str(entry[0])
    return host or asked[0], int(entry[1])


def address_of(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host, int(port)


class ClusterTopology:
    """The slot map of one Redis Cluster, and how to connect to its nodes.

    ``connect_to(address)`` returns a new, unconnected redis-py connection to one node
    (the URL's credentials, TLS and timeouts).  Called with no argument the topology is a
    connection factory itself, for connections any node serves (pub/sub).
    """

    @property
    def wire_class(self) -> type[ClusterWire]:
        """The wire the command and take connections use on this cluster."""
        from .cluster import ClusterWire

        return ClusterWire

    def __init__(self, startup: Sequence[Address], connect_to: Callable[[Address], Any]) -> None:
        self.startup = list(startup)
        self.connect_to = connect_to
        self.owners: list[Address | None] = []
        self.masters: list[Address] = []
        #: the map is to be read again before it is used (never emptied meanwhile: the
        #: command and take connections read it from their own threads)
        self.stale = True
        #: every node the slot maps named (masters and replicas): asked first next time,
        #: so the map is found while the URL's host is down
        self.known: list[Address] = []

    def __call__(self) -> Any:
        if self.stale:
            self.refresh()
        return self.connect_to(self.masters[0])

    def forget(self) -> None:
        """The slot map is to be read again before its next use."""
        self.stale = True

    def refresh(self) -> None:
        """Read the slot map from the first node that answers: the nodes known, then
        the startup nodes."""
        problems: list[str] = []
        for address in dict.fromkeys([*self.masters, *self.known, *self.startup]):
            try:
                slots = self._ask(address)
            except rexc.ResponseError as exc:
                from ...exceptions import IrrecoverableConnectionError

                raise IrrecoverableConnectionError(
                    f"Redis at {address[0]}:{address[1]} cannot tell its cluster's slot map ({exc}): with the "
                    "cluster option the URL's hosts must be Redis Cluster nodes; turn it off for a single server"
                ) from exc
            except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
                problems.append(f"{address[0]}:{address[1]}: {exc}")
                continue
            self._load(slots, address)
            return
        raise rexc.ConnectionError(f"no node of the Redis Cluster answers ({'; '.join(problems)})")

    def _ask(self, address: Address) -> Any:
        connection = self.connect_to(address)
        try:
            connection.connect()
            connection.send_command("CLUSTER", "SLOTS")
            return connection.read_response()
        finally:
            connection.disconnect()

    def _load(self, slots: Any, asked: Address) -> None:
        owners: list[Address | None] = [None] * SLOTS
        masters: list[Address] = []
        for start, end, master, *replicas in slots or ():
            address = _node_address(master, asked)
            if address not in masters:
                masters.append(address)
            owners[int(start) : int(end) + 1] = [address] * (int(end) - int(start) + 1)
            for node in (address, *(_node_address(replica, asked) for replica in replicas)):
                if node not in self.known:
                    self.known.append(node)
        if not masters:
            raise rexc.ConnectionError(f"the Redis Cluster node {asked[0]}:{asked[1]} serves no slot yet")
        self.owners = owners
        self.masters = masters
        self.stale = False

    def owner(self, slot: int) -> Address:
        """The master serving ``slot`` (the first master while the slot is uncovered:
        it answers with the redirection or the error that says so)."""
        if self.stale:
            self.refresh()
        return self.owners[slot] or self.masters[0]

    def moved(self, slot: int, address: Address) -> None:
        """Note that ``slot`` is served by ``address`` now (a MOVED reply said so)."""
        if self.owners:
            self.owners[slot] = address
        if address not in self.masters:
            self.masters.append(address)
