"""Redis Cluster for the Redis Streams transport: the client, where each queue lives,
and publishes confirmed by replicas.

With the ``cluster`` option the URL's hosts are startup nodes (one is enough; several
let a connection start while one of them is down) and redis-py's cluster client
(:class:`redis.cluster.RedisCluster`) carries every command: it follows ``MOVED`` and
``ASK``, keeps a connection pool per node and reloads the slot map after a failover.
Every key of a queue shares the queue's hash tag, so every command and script of the
transport names keys of one slot: takes go queue by queue, a wait for messages is split
by slot (:mod:`.cluster_watch`), and so is a confirmed batch (:func:`by_slot`).  Its
pipelines recover from masters that lost the scripts (:class:`ScriptedCluster`).

A publish confirmed by replicas (``wait_replicas``) is written and followed by
``WAIT`` on the same connection of the node that took it (``WAIT`` counts the replicas
that have that connection's writes), single node or cluster alike
(:func:`write_confirmed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..redis.replicas import check_replicated, wait_command
from ..redis.topology import cluster_error, startup_nodes
from .keys import queue_of_tag

__all__ = [
    "ScriptedCluster",
    "ScriptedPipeline",
    "cluster_error",
    "put_confirmed",
    "by_slot",
    "cluster_client",
    "node_client_for",
    "startup_nodes",
    "write_confirmed",
]

_K = TypeVar("_K")

#: attempts at a confirmed write whose slot moved meanwhile (a failover, a resharding)
MOVED_ATTEMPTS = 3


def cluster_client(nodes: Sequence[tuple[str, int]], connection_kwargs: dict[str, Any]) -> Any:
    """A :class:`redis.cluster.RedisCluster` over ``nodes`` with the connection settings of a
    single-node client (credentials, TLS, timeouts, client name).

    ``connection_kwargs`` are what :class:`redis.Connection` takes (``host``, ``port`` and
    ``db`` are dropped: a cluster has database 0 only, checked by the caller).
    redis-py's own command retries are off: a command that meets a dead node raises at
    once, the client reloads the slot map on its next command, and the connection's
    retry policy (``ensure``, ``retry=True``) decides when to try again.
    """
    from redis.backoff import NoBackoff
    from redis.cluster import ClusterNode, RedisCluster
    from redis.retry import Retry

    kwargs = dict(connection_kwargs)
    for name in ("host", "port", "db", "retry"):
        kwargs.pop(name, None)
    connection_class = kwargs.pop("connection_class", None)
    if connection_class is not None and getattr(connection_class, "__name__", "") == "SSLConnection":
        kwargs["ssl"] = True
    client: Any = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        retry=Retry(NoBackoff(), 0),
        # a cluster with a master down still serves the other masters' queues
        require_full_coverage=False,
        **kwargs,
    )
    return ScriptedCluster(client)


class ScriptedCluster:
    """A :class:`redis.cluster.RedisCluster` whose pipelines run the transport's scripts
    on masters that do not know them yet.

    redis-py's cluster pipeline sends ``EVALSHA`` and leaves a ``NOSCRIPT`` reply to the
    caller: a master promoted in a failover, or restarted, has an empty script cache.
    Here such commands are sent again, alone, after ``SCRIPT LOAD`` on every master; the
    other commands of the pipeline ran once.  Everything else is the cluster client's.
    """

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        #: sha1 -> source of every script registered through this client
        self.sources: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    def register_script(self, source: str) -> Any:
        script = self.cluster.register_script(source)
        self.sources[script.sha] = source
        return script

    def pipeline(self, transaction: bool | None = None) -> ScriptedPipeline:
        return ScriptedPipeline(self, self.cluster.pipeline(transaction=transaction))


class ScriptedPipeline:
    """A cluster pipeline that recovers ``NOSCRIPT`` replies (see :class:`ScriptedCluster`)."""

    def __init__(self, owner: ScriptedCluster, pipe: Any) -> None:
        self.owner = owner
        self.pipe = pipe
        #: position in the pipeline -> the EVALSHA's arguments
        self.evals: dict[int, tuple[Any, ...]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)

    def __len__(self) -> int:
        return len(self.pipe)

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> ScriptedPipeline:
        # a Script called with this pipeline as its client comes here (it is no redis-py
        # pipeline to it, so it leaves the loading to us)
        self.evals[len(self.pipe)] = (sha, numkeys, *args)
        self.pipe.evalsha(sha, numkeys, *args)
        return self

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        from redis.exceptions import NoScriptError

        evals, self.evals = self.evals, {}
        replies = list(self.pipe.execute(raise_on_error=False))
        missing = [i for i, args in evals.items() if isinstance(replies[i], NoScriptError)]
        if missing:
            cluster = self.owner.cluster
            for sha in {evals[i][0] for i in missing}:
                cluster.script_load(self.owner.sources[sha])  # on every master
            for i in missing:
                try:
                    replies[i] = cluster.evalsha(*evals[i])
                except Exception as exc:  # reported as the pipeline reports its errors
                    replies[i] = exc
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies


def by_slot(client: Any, items: Iterable[_K], key_of: Callable[[_K], str]) -> list[list[_K]]:
    """``items`` in groups whose keys share a slot (order kept within each group), so each
    group can go into one multi-key command."""
    groups: dict[int, list[_K]] = {}
    for item in items:
        groups.setdefault(int(client.keyslot(key_of(item))), []).append(item)
    return list(groups.values())


def node_client_for(client: Any, key: str) -> Any:
    """The plain :class:`redis.Redis` of the master that serves ``key``'s slot now."""
    return client.get_redis_connection(client.get_node_from_key(key))


def write_confirmed(
    client: Any,
    key: str,
    write: Callable[[Any], None],
    replicas: int,
    timeout: float,
    *,
    cluster: bool,
    what: str,
) -> list[Any]:
    """Run ``write(pipeline)`` on the master of ``key`` and ``WAIT`` for ``replicas`` of its
    replicas, on the same connection; return the replies of the write's commands.

    Every command ``write`` queues must name keys of ``key``'s slot.  Raises
    :class:`~kombu_like.exceptions.MessageNacked` (naming ``what``) when fewer replicas confirm within
    ``timeout`` seconds.  In a cluster, a write that meets ``MOVED`` (its slot has a new
    master) wrote nothing; the slot map is reloaded and the write sent to the new master.
    """
    from redis.exceptions import AskError

    from ..redis.compat import reload_slots

    attempts = MOVED_ATTEMPTS if cluster else 1
    for attempt in range(attempts):
        node = node_client_for(client, key) if cluster else client
        pipe = node.pipeline(transaction=False)
        write(pipe)
        pipe.execute_command(*wait_command(replicas, timeout))
        try:
            replies = pipe.execute()
        except AskError:  # MovedError is one too
            if attempt + 1 >= attempts:
                raise
            reload_slots(client)
            continue
        check_replicated(replies[-1], replicas, timeout, what, _where(node))
        return list(replies[:-1])
    raise AssertionError("unreachable")  # pragma: no cover


def put_confirmed(
    client: Any,
    items: Sequence[_K],
    tag_of: Callable[[_K], str],
    write: Callable[[Any, list[_K]], None],
    replicas: int,
    timeout: float,
    *,
    cluster: bool,
) -> None:
    """Store ``items`` (``write(pipeline, items of one slot)``) and have each write confirmed by
    ``replicas`` replicas: one pipeline and one ``WAIT`` per slot in a cluster (each on the
    master of that slot), one of each on a single server."""
    groups = by_slot(client, items, tag_of) if cluster else [list(items)]
    for group in groups:
        queues = sorted({queue_of_tag(tag_of(item)) for item in group})
        what = f"a publish of {len(group)} message(s) to queue(s) {', '.join(map(repr, queues))}"

        def write_group(pipe: Any, group: list[_K] = group) -> None:
            write(pipe, group)

        write_confirmed(client, tag_of(group[0]), write_group, replicas, timeout, cluster=cluster, what=what)


def _where(node: Any) -> str:
    kwargs = getattr(getattr(node, "connection_pool", None), "connection_kwargs", {}) or {}
    host, port = kwargs.get("host"), kwargs.get("port")
    return f"{host}:{port}" if host else "the master"
