"""The store's hot path -- publish, take, acknowledge -- built once, run by one of two
executors.

The commands (``XADD``, the ``PUT_LIMITED`` and ``TAKE`` scripts, ``XACK`` + ``XDEL``) are
built here as plain values (:data:`Command` tuples and :class:`ScriptCall`); an executor
runs them:

* :class:`WireExecutor` on a single server (Sentinel's master too): the Redis transport's
  RESP :class:`~kombu_like.transport.redis.wire.Wire`, with ``EVALSHA`` and its
  ``NOSCRIPT`` fallback, and acknowledgements written behind -- their replies read with a
  later command (an error reply is logged then), resent when the connection drops before
  they were read (``XACK`` and ``XDEL`` do nothing the second time);
* :class:`PipelineExecutor` where redis-py must route each key to its node (Redis
  Cluster): a pipeline per call, acknowledgements written at once.

Either way an acknowledgement lost in a cut costs a redelivery once the lease lapses, never
a message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from redis import exceptions as rexc

from ..redis.command import MAX_DEFERRED_REPLIES, evalsha_command, reloading_conversation, start_tracking
from ..redis.compat import own_connection_kwargs
from ..redis.conversation import drive, exchange
from ..redis.scripts import Script, make_script
from ..redis.wire import Wire
from . import scripts
from .keys import GROUP
from .options import StreamsOptions

__all__ = [
    "HOT_SCRIPTS",
    "Command",
    "PipelineExecutor",
    "ScriptCall",
    "WireExecutor",
    "ack_commands",
    "append_command",
    "resp2_connections",
    "take_call",
]

logger = logging.getLogger("kombu_like.transport.redis_streams")

#: one Redis command: its name and arguments
Command = tuple[Any, ...]


class ScriptCall(NamedTuple):
    """One run of a Lua script of the transport."""

    script: Script
    keys: Sequence[Any]
    args: Sequence[Any]


Step = Command | ScriptCall

#: the scripts of the hot path, loaded when a wire connects
HOT_SCRIPTS: Mapping[str, Script] = {
    name: make_script(name, getattr(scripts, name)) for name in ("TAKE", "PUT_LIMITED")
}


# -- the commands, for both executors ---------------------------------------------------
def append_command(stream: str, fields: Sequence[Any], max_length: int | None, level_streams: Sequence[str]) -> Step:
    """Add the entry ``fields`` to ``stream``; in a queue with ``max_length``, the oldest
    waiting entries of its ``level_streams`` beyond it are dropped in the same step."""
    if max_length is None:
        return ("XADD", stream, "*", *fields)
    return ScriptCall(HOT_SCRIPTS["PUT_LIMITED"], [stream, *level_streams], [GROUP, max_length, *fields])


def take_call(streams: Sequence[str], consumer: str, count: int, now_ms: int) -> ScriptCall:
    """Take up to ``count`` new entries of ``streams`` (highest level first) for ``consumer``."""
    return ScriptCall(HOT_SCRIPTS["TAKE"], streams, [GROUP, consumer, count, now_ms])


def ack_commands(grouped: Mapping[str, Sequence[str]]) -> list[Command]:
    """Settle the entries ``grouped`` by stream: out of the group's pending list, and out of
    the stream (which must not grow forever)."""
    commands: list[Command] = []
    for stream, ids in grouped.items():
        commands.append(("XACK", stream, GROUP, *ids))
        commands.append(("XDEL", stream, *ids))
    return commands


def resp2_connections(pool: Any) -> Callable[[], Any]:
    """A factory of new connections made like ``pool``'s (server, TLS, credentials,
    Sentinel's master) but speaking RESP2: the binding cache's invalidations come as
    pub/sub messages there."""
    connection_class = pool.connection_class
    kwargs = own_connection_kwargs(pool, protocol=2)

    def make() -> Any:
        return connection_class(**kwargs)

    return make


# -- the executors ---------------------------------------------------------------------
class PipelineExecutor:
    """Runs the hot path on a redis-py client (a cluster client routes each key to its node).

    ``registered`` are the client's registered scripts, by name.
    """

    def __init__(self, client: Any, registered: Mapping[str, Any]) -> None:
        self.client = client
        self.registered = registered

    def add(self, pipe: Any, step: Step) -> None:
        """Queue ``step`` on the redis-py pipeline ``pipe``."""
        if isinstance(step, ScriptCall):
            self.registered[step.script.name](keys=step.keys, args=step.args, client=pipe)
        else:
            pipe.execute_command(*step)

    def run(self, steps: Sequence[Step]) -> list[Any]:
        """Run ``steps`` in one pipeline; their replies, error replies in their place."""
        pipe = self.client.pipeline(transaction=False)
        for step in steps:
            self.add(pipe, step)
        return list(pipe.execute(raise_on_error=False))

    def script(self, call: ScriptCall) -> Any:
        """Run one script; its reply (an error reply raised)."""
        return self.registered[call.script.name](keys=call.keys, args=call.args)

    def ack(self, commands: Sequence[Command]) -> None:
        """Run acknowledgement ``commands`` now (an error reply raised)."""
        for reply in self.run(commands):
            if isinstance(reply, Exception):
                raise reply

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        """The fields of hash ``key``."""
        return dict(self.client.hgetall(key))

    def settle(self) -> None:
        """Nothing is written behind here."""

    def close(self) -> None:
        """The client is closed by the store."""


class WireExecutor:
    """Runs the hot path on one RESP connection of its own.

    **Locking.**  Every method takes the lock for as long as it uses the wire or the
    acknowledgements it owes; one call is one unit (its commands go out and its replies
    come back with no other thread's in between).  ``factory`` returns a new, unconnected
    redis-py connection (the store's pool makes it: TLS, AUTH, Sentinel's master).
    """

    def __init__(self, factory: Callable[[], Any], options: StreamsOptions) -> None:
        self._lock = threading.RLock()
        self.wire = Wire(
            factory,
            "streams command",
            options.socket_timeout,
            options.health_check_interval,
            self._on_connect,
            reply_spin=options.reply_spin,
        )
        #: acknowledgements whose fate is unknown (their connection dropped): resent first
        self._owed: list[Command] = []

    def _on_connect(self, wire: Wire) -> None:
        # loaded once per server session, so EVALSHA does not miss on the hot path
        replies = drive(wire, exchange([("SCRIPT", "LOAD", s.source) for s in HOT_SCRIPTS.values()]))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    def run(self, steps: Sequence[Step]) -> list[Any]:
        """Run ``steps`` in one round trip; their replies, error replies in their place."""
        commands = [evalsha_command(*step) if isinstance(step, ScriptCall) else step for step in steps]
        run_scripts = [step.script if isinstance(step, ScriptCall) else None for step in steps]
        with self._lock:
            if self._owed:
                self._resend_owed()
            return drive(self.wire, reloading_conversation(commands, run_scripts))

    def run_packed(self, data: bytes, count: int) -> list[Any]:
        """Run ``count`` commands already encoded in ``data`` (none of them a script) in
        one round trip; their replies, error replies in their place."""
        with self._lock:
            if self._owed:
                self._resend_owed()
            return self.wire.execute_packed(data, count)

    @property
    def generation(self) -> int:
        """Changes whenever the socket is replaced (client tracking then starts again)."""
        return self.wire.generation

    def track(self, redirect: Any, prefixes: Sequence[str]) -> int:
        """Turn on broadcast client tracking of ``prefixes``, invalidations sent to client
        ``redirect``; the :attr:`generation` it holds for (raising an error reply)."""
        with self._lock:
            if self._owed:
                self._resend_owed()
            return start_tracking(self.wire, redirect, prefixes)

    def script(self, call: ScriptCall) -> Any:
        """Run one script; its reply (an error reply raised)."""
        [reply] = self.run([call])
        if isinstance(reply, Exception):
            raise reply
        return reply

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        """The fields of hash ``key``."""
        [reply] = self.run([("HGETALL", key)])
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, dict):  # a RESP3 map
            return reply
        return dict(zip(reply[::2], reply[1::2], strict=True))

    def ack(self, commands: Sequence[Command]) -> None:
        """Write acknowledgement ``commands`` now; their replies are read with a later
        command.  Commands that cannot be written stay owed, sent before the next one."""
        with self._lock:
            if self._owed:
                commands = [*self._owed, *commands]
                self._owed.clear()
            try:
                self.wire.send_deferred(commands, lambda: self._owe(commands))
            except (rexc.ConnectionError, rexc.TimeoutError):
                self._owe(commands)
                logger.warning("could not send %d acknowledgement command(s) to Redis; will retry", len(commands))
                return
            if self.wire.deferred_replies > MAX_DEFERRED_REPLIES:
                self.wire.read_deferred()

    def _owe(self, commands: Sequence[Command]) -> None:
        self._owed.extend(commands)

    def _resend_owed(self) -> None:
        owed = self._owed[:]
        self._owed.clear()
        try:
            self.wire.send_deferred(owed, lambda: self._owe(owed))
        except BaseException:
            self._owe(owed)
            raise

    def settle(self) -> None:
        """Send what is owed and read every reply written behind (error replies logged)."""
        with self._lock:
            if self._owed:
                self._resend_owed()
            if self.wire.deferred_replies:
                self.wire.read_deferred()

    @property
    def owed(self) -> int:
        """How many acknowledgement commands are owed (not known to be written)."""
        return len(self._owed)

    def close(self) -> None:
        """Settle what was written behind, then close the connection; an acknowledgement
        that cannot be settled only means its message comes back once its lease lapses."""
        try:
            try:
                self.settle()
            except (rexc.ConnectionError, rexc.TimeoutError):
                # the connection was cut: what it lost is owed, sent once more on a new one
                self.settle()
        except Exception as exc:
            logger.warning(
                "could not confirm %d acknowledgement command(s) before closing (%s); their messages "
                "come back once their leases lapse",
                len(self._owed) or self.wire.deferred_replies,
                exc,
            )
        finally:
            with self._lock:
                self.wire.disconnect()
                self._owed.clear()  # including what the disconnect reported lost
