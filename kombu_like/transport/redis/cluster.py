"""Redis Cluster of several masters for the list transport: the slot map, and a wire
that routes each command to the master of its key's slot.

The cluster key layout (:mod:`.keys`) puts every key one script or command names in one
slot, so a round of commands (:mod:`.conversation`) can be split command by command:
:class:`ClusterWire` reads the commands back from the round's RESP bytes, sends each to
the master serving its key's slot (a ``MULTI`` ... ``EXEC`` block goes whole with its
first key), one write per master, and gives the replies back in the round's order.  It
offers what the transport uses of :class:`~.wire.Wire`, so the command connection, the
take connection (client tracking on each master) and their conversations run on it
unchanged; a plain wire on a single server pays nothing for it.

* ``MOVED``: the slot's new owner is noted and the command sent there;
* ``ASK`` (a slot being migrated): ``ASKING`` and the command go to the target, once;
* ``TRYAGAIN`` (a multi-key command while the slot's keys are half moved): sent again
  shortly, a bounded number of times;
* a socket error on any master drops every master's connection and the slot map, and is
  raised as the connection error it is: the connection's retry policy reconnects, and
  the reconnect reads the slot map again, from any node that answers (after a failover,
  the promoted replica serves the slots).

Waiting for messages watches the take connections of every master at once: their
sockets sit in one ``epoll`` object whose descriptor is the wire's own, so the blocking
take's ``poll()`` and Kombu's Hub watch one descriptor whatever the number of masters.

Acknowledgements are written without waiting for their replies, as on one server, each
to its master; a redirection read later sends the command again, to the slot's master
then.  Pub/sub needs no routing (``PUBLISH`` reaches every node).
"""

from __future__ import annotations

import logging
import select
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from redis import exceptions as rexc

from .compat import key_slot
from .resp import is_push, pack_commands
from .topology import Address, ClusterTopology, address_of, key_of, redirection, split_commands
from .wire import DEADLINE_GRACE, Wire

__all__ = ["ClusterWire"]

logger = logging.getLogger("kombu_like.transport.redis")

#: redirections (MOVED, ASK) one command may follow before its reply is the redirection
MAX_REDIRECTS = 5
#: a TRYAGAIN is retried this often, this many seconds apart (a slot's keys being moved)
TRYAGAIN_ATTEMPTS = 40
TRYAGAIN_PAUSE = 0.05


class _NodeWire(Wire):
    """The connection of one :class:`ClusterWire` to one master."""

    def __init__(self, owner: ClusterWire, address: Address, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        self.address = address
        self.registered: int | None = None
        #: the commands of each deferred write, in order: a redirected one is sent again
        self.deferred_commands: deque[list[list[bytes]]] = deque()

    def send_deferred_commands(self, commands: list[list[bytes]], on_lost: Callable[[], None]) -> None:
        self.send_deferred_packed(pack_commands(commands), len(commands), on_lost)
        self.deferred_commands.append(commands)

    def deferred_read(self, replies: list[Any], on_lost: Callable[[], None]) -> None:
        commands = self.deferred_commands.popleft()
        for command, reply in zip(commands, replies, strict=True):
            if redirection(reply) is not None:
                # the slot moved since: not run here, it goes to the slot's new master
                logger.debug("Redis Cluster %s: a deferred command met %s; sending it again", self.name, reply)
                self.owner.redo.append((command, on_lost))
            elif isinstance(reply, Exception):
                logger.error("Redis rejected a deferred command on the %s connection: %s", self.name, reply)

    def disconnect(self) -> None:
        self.owner.unregister(self)
        self.deferred_commands.clear()
        super().disconnect()


class _Once:
    """Calls ``callback`` the first time it is called (a deferred write split across
    masters is reported lost once)."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback

    def __call__(self) -> None:
        callback, self.callback = self.callback, None
        if callback is not None:
            callback()


class _Unit:
    """Commands that go to one node together: one command, or a MULTI ... EXEC block."""

    __slots__ = ("ask", "first", "commands", "slot", "ran_on")

    def __init__(self, first: int, commands: list[list[bytes]]) -> None:
        self.first = first
        self.commands = commands
        key = next((k for k in map(key_of, commands) if k is not None), None)
        self.slot = None if key is None else key_slot(key)
        self.ask: Address | None = None
        #: the master the unit last went to
        self.ran_on: Address | None = None


class ClusterWire:
    """A wire over every master of a Redis Cluster (see the module's docstring); built
    with :class:`~.wire.Wire`'s arguments, ``topology`` in place of the factory."""

    def __init__(
        self,
        topology: ClusterTopology,
        name: str,
        socket_timeout: float | None,
        health_check_interval: float = 0,
        on_connect: Callable[[Wire], None] | None = None,
        reply_spin: float = 0.0,
        parser: str = "auto",
    ) -> None:
        self.topology = topology
        self.name = name
        self.socket_timeout = socket_timeout
        self.on_connect = on_connect
        self._settings = (socket_timeout, health_check_interval, reply_spin, parser)
        self.nodes: dict[Address, _NodeWire] = {}
        #: push messages of every master's connection (one list, shared with them)
        self.pushes: list[Any] = []
        self.generation = 0
        #: no one client id: a command naming one (CLIENT UNBLOCK) would reach one master
        self.client_id: int | None = None
        self._deadline: float | None = None
        self._poller = select.epoll()
        #: masters whose reply to a command written with :meth:`send` is still to be read
        self._awaiting: list[_NodeWire] = []
        #: deferred commands a master redirected (and their loss callbacks), to send again
        self.redo: list[tuple[list[bytes], Callable[[], None]]] = []
        self._connected = False

    # -- connection --------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def sock(self) -> Any:
        """What an event loop watches: the poller of every master's socket."""
        return self._poller if self._connected else None

    def fileno(self) -> int:
        return self._poller.fileno()

    def connect(self) -> None:
        """Read the slot map (when not known) and connect to every master."""
        if self._connected:
            return
        if self.topology.stale:
            self.topology.refresh()
        self._connect_masters()
        self._connected = True

    def connect_every_master(self) -> None:
        """Connect to every master of the slot map, those the map gained since too."""
        self.connect()
        self._connect_masters()

    def _connect_masters(self) -> None:
        try:
            for address in list(self.topology.masters):
                self._node(address).connect()
        except BaseException:
            self.disconnect()
            raise

    @property
    def client_ids(self) -> dict[Address, int | None]:
        """The client id of each master's connection."""
        return {address: node.client_id for address, node in self.nodes.items() if node.connected}

    def track_each(self, redirects: dict[Address, int | None], prefixes: Sequence[str]) -> int:
        """Broadcast client tracking of ``prefixes`` on each master's connection, its
        invalidations sent to that master's client in ``redirects``; the generation it
        holds for (raising an error reply)."""
        from .command import start_tracking

        self.connect()
        try:
            for address, client_id in redirects.items():
                start_tracking(self._node(address), client_id, prefixes)
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.InvalidResponse):
            self._failed()
            raise
        return self.generation

    def disconnect(self) -> None:
        """Drop every master's connection and the slot map."""
        self._connected = False
        nodes, self.nodes = self.nodes, {}
        self._awaiting.clear()
        for node in nodes.values():
            node.disconnect()  # reports the deferred writes whose replies were not read
        redo, self.redo = self.redo, []
        for _, on_lost in redo:
            on_lost()
        self.pushes.clear()
        self.topology.forget()

    def _node(self, address: Address) -> _NodeWire:
        node = self.nodes.get(address)
        if node is None:
            timeout, health, spin, parser = self._settings
            topology = self.topology
            node = _NodeWire(
                self,
                address,
                lambda: topology.connect_to(address),
                f"{self.name} ({address[0]}:{address[1]})",
                timeout,
                health,
                self._node_connected,
                reply_spin=spin,
                parser=parser,
            )
            node.pushes = self.pushes
            node.deadline = self._deadline
            self.nodes[address] = node
        return node

    def _node_connected(self, wire: Wire) -> None:
        if self.on_connect is not None:
            self.on_connect(wire)
        assert isinstance(wire, _NodeWire)
        fd = wire.fileno()
        try:
            self._poller.register(fd, select.EPOLLIN | select.EPOLLPRI)
        except FileExistsError:
            self._poller.modify(fd, select.EPOLLIN | select.EPOLLPRI)
        wire.registered = fd
        self.generation += 1

    def unregister(self, node: _NodeWire) -> None:
        fd, node.registered = node.registered, None
        if fd is not None:
            try:
                self._poller.unregister(fd)
            except (OSError, ValueError):  # closed already: the kernel forgot it
                pass

    def _failed(self) -> None:
        """After a socket error on any master: start again from a fresh slot map."""
        logger.debug("a Redis Cluster %s connection failed; dropping every master's", self.name)
        self.disconnect()

    @property
    def deadline(self) -> float | None:
        return self._deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self._deadline = value
        for node in self.nodes.values():
            node.deadline = value

    def bounded(self, timeout: float | None | bool) -> float | None | bool:
        """As :meth:`.wire.Wire.bounded`: ``timeout`` cut to the deadline."""
        if self._deadline is None:
            return timeout
        left = max(self._deadline + DEADLINE_GRACE - time.monotonic(), 0.001)
        current = self.socket_timeout if timeout is False else timeout
        if current is not None and current is not True and current <= left:
            return timeout
        return left

    @property
    def last_io(self) -> float:
        """When the least recently heard master last sent bytes."""
        return min((node.last_io for node in self.nodes.values() if node.connected), default=time.monotonic())

    @property
    def deferred_replies(self) -> int:
        return sum(node.deferred_replies for node in self.nodes.values())

    def read_deferred(self) -> None:
        """Read every master's deferred replies; send the redirected commands again."""
        try:
            for node in list(self.nodes.values()):
                if node.deferred_replies:
                    node.read_deferred()
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.InvalidResponse):
            self._failed()
            raise
        self._redo()

    def _redo(self) -> None:
        """Run the deferred commands a master redirected, on the slot's master now."""
        if not self.redo:
            return
        redo, self.redo = self.redo, []
        commands = [command for command, _ in redo]
        try:
            replies = self.execute_packed(pack_commands(commands), len(commands))
        except BaseException:
            for _, on_lost in redo:  # each _Once: reported once
                on_lost()
            raise
        for reply in replies:
            if isinstance(reply, Exception):
                logger.error("Redis rejected a deferred command on the %s connection: %s", self.name, reply)

    def readable(self) -> bool:
        return any(node.readable() for node in self.nodes.values())

    def has_buffered(self) -> bool:
        return any(node.connected and node.has_buffered() for node in self.nodes.values())

    # -- routing -----------------------------------------------------------------------
    def _route(self, unit: _Unit) -> _NodeWire:
        if unit.ask is not None:
            return self._node(unit.ask)
        if unit.slot is None:
            # keyless: any master (the least recently heard, so a PING checks each in turn)
            connected = [node for node in self.nodes.values() if node.connected]
            if connected:
                return min(connected, key=lambda node: node.last_io)
            return self._node(self.topology.owner(0) if self.topology.stale else self.topology.masters[0])
        return self._node(self.topology.owner(unit.slot))

    @staticmethod
    def _units(commands: list[list[bytes]]) -> list[_Unit]:
        units: list[_Unit] = []
        block: list[list[bytes]] | None = None
        start = 0
        for i, args in enumerate(commands):
            name = args[0].upper()
            if block is not None:
                block.append(args)
                if name == b"EXEC":
                    units.append(_Unit(start, block))
                    block = None
            elif name == b"MULTI":
                block, start = [args], i
            else:
                units.append(_Unit(i, [args]))
        if block is not None:
            units.append(_Unit(start, block))
        return units

    def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        return self.execute_packed(pack_commands(commands), len(commands))

    def call(self, *args: Any) -> Any:
        [reply] = self.execute([args])
        if isinstance(reply, Exception):
            raise reply
        return reply

    def execute_counts(self, data: bytes, count: int) -> list[Any] | None:
        replies = self.execute_packed(data, count)
        return None if all(type(reply) is int for reply in replies) else replies

    def execute_packed(self, data: bytes, count: int) -> list[Any]:
        """Run the ``count`` commands encoded in ``data``, each on the master of its slot;
        their replies in order (error replies in their place).

        A ``WAIT`` that ends them (a publish confirmed by replicas) counts the replicas of
        one master's connection: it goes to every master that took one of the commands
        before it, and its reply is the fewest replicas any of them counted."""
        self.connect()
        commands = split_commands(data)
        if commands and commands[0][0].upper() == b"SCRIPT":
            everywhere = self._everywhere(commands)
            self._redo()
            return everywhere
        if len(commands) > 1 and commands[-1][0].upper() == b"WAIT":
            wait = commands.pop()
            written: set[Address] = set()
            replies = self._execute(commands, written)
            return [*replies, self._wait_on(written, wait)]
        return self._execute(commands, None)

    def _execute(self, commands: list[list[bytes]], written: set[Address] | None) -> list[Any]:
        """Run ``commands`` (see :meth:`execute_packed`); the masters that answered them
        are added to ``written``."""
        replies: list[Any] = [None] * len(commands)
        pending = self._units(commands)
        redirects = tryagain = 0
        while pending:
            retry: list[_Unit] = []
            waiting = False
            for unit, got in self._run(pending):
                found = next((r for r in map(redirection, got) if r is not None), None)
                if found is None:
                    replies[unit.first : unit.first + len(got)] = got
                    if written is not None and unit.ran_on is not None:
                        written.add(unit.ran_on)
                    continue
                kind, words = found
                logger.debug("Redis Cluster %s connection: %s", self.name, " ".join(words))
                if kind == b"MOVED" and redirects < MAX_REDIRECTS:
                    self.topology.moved(int(words[1]), address_of(words[2]))
                    unit.ask = None
                elif kind == b"ASK" and len(unit.commands) == 1 and redirects < MAX_REDIRECTS:
                    unit.ask = address_of(words[2])
                elif kind != b"MOVED" and tryagain < TRYAGAIN_ATTEMPTS:
                    # TRYAGAIN, or ASK for a MULTI block: the slot's keys are being moved
                    unit.ask = None
                    waiting = True
                else:
                    replies[unit.first : unit.first + len(got)] = got
                    continue
                retry.append(unit)
            if waiting:
                tryagain += 1
                time.sleep(TRYAGAIN_PAUSE)
            elif retry:
                redirects += 1
            pending = retry
        self._redo()
        return replies

    def _run(self, units: list[_Unit]) -> list[tuple[_Unit, list[Any]]]:
        """Write ``units`` to their masters (one write per master), then read their replies."""
        by_node: dict[Address, tuple[_NodeWire, list[_Unit]]] = {}
        for unit in units:
            node = self._route(unit)
            unit.ran_on = node.address
            by_node.setdefault(node.address, (node, []))[1].append(unit)
        try:
            for node, node_units in by_node.values():
                if node.health_check_interval:
                    # an idle connection that died silently is found before it is trusted
                    # with commands whose fate could not be told afterwards
                    node._maybe_check_health()
                payload: list[list[bytes]] = []
                for unit in node_units:
                    if unit.ask is not None:
                        payload.append([b"ASKING"])
                    payload += unit.commands
                node.send_packed(pack_commands(payload))
            results: list[tuple[_Unit, list[Any]]] = []
            for node, node_units in by_node.values():
                if node.deferred_replies:  # written before these commands: read first
                    node.read_deferred()
                for unit in node_units:
                    if unit.ask is not None:
                        node.read()  # ASKING's OK
                    results.append((unit, [node.read() for _ in unit.commands]))
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.InvalidResponse):
            self._failed()
            raise
        return results

    def _wait_on(self, masters: set[Address], wait: list[bytes]) -> Any:
        """``WAIT`` on each of ``masters`` at once (on any master when none); the fewest
        replicas counted, or the first error reply."""
        nodes = [self._node(address) for address in masters]
        if not nodes:
            nodes = [self._route(_Unit(0, [wait]))]
        data = pack_commands([wait])
        try:
            for node in nodes:
                node.send_packed(data)
            answers = [node.read() for node in nodes]
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.InvalidResponse):
            self._failed()
            raise
        errors = [answer for answer in answers if isinstance(answer, Exception)]
        return errors[0] if errors else min(int(answer) for answer in answers)

    @property
    def server(self) -> str:
        """For messages: the masters the commands went to."""
        return "the Redis Cluster masters that took it"

    def _everywhere(self, commands: list[list[bytes]]) -> list[Any]:
        """``SCRIPT LOAD`` (or flush) on every master; the first master's replies."""
        data = pack_commands(commands)
        first: list[Any] | None = None
        try:
            for node in list(self.nodes.values()):
                replies = node.execute_packed(data, len(commands))
                if first is None:
                    first = replies
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.InvalidResponse):
            self._failed()
            raise
        assert first is not None
        return first

    # -- writing now, reading later (a PING, a blocking pop) ----------------------------
    def send(self, commands: Sequence[Sequence[Any]]) -> None:
        self.send_packed(pack_commands(commands))

    def send_packed(self, data: bytes) -> None:
        """Write commands whose replies :meth:`read` returns later, each to its master."""
        self.connect()
        try:
            for unit in self._units(split_commands(data)):
                node = self._route(unit)
                node.send_packed(pack_commands(unit.commands))
                self._awaiting += [node] * len(unit.commands)
        except (rexc.ConnectionError, rexc.TimeoutError):
            self._failed()
            raise

    def send_deferred_packed(self, data: bytes, count: int, on_lost: Callable[[], None]) -> None:
        """Write commands whose replies are read later, each to its master; ``on_lost``
        is called (once) if a master's connection drops before its replies were read.
        A redirection read then sends the command again, to the slot's master now."""
        self.connect()
        once = _Once(on_lost)
        by_node: dict[Address, tuple[_NodeWire, list[list[bytes]]]] = {}
        for unit in self._units(split_commands(data)):
            node = self._route(unit)
            by_node.setdefault(node.address, (node, []))[1].extend(unit.commands)
        try:
            for node, commands in by_node.values():
                node.send_deferred_commands(commands, once)
        except (rexc.ConnectionError, rexc.TimeoutError):
            self._failed()
            raise

    def send_deferred(self, commands: Sequence[Sequence[Any]], on_lost: Callable[[], None]) -> None:
        self.send_deferred_packed(pack_commands(commands), len(commands), on_lost)

    # -- reading -------------------------------------------------------------------------
    def read(self, timeout: float | None | bool = False, pushes_too: bool = False) -> Any:
        """The next reply of a command written with :meth:`send` (or, ``pushes_too``, the
        first message of any master, a push or a reply)."""
        if not self._connected:
            raise rexc.ConnectionError(f"the Redis Cluster {self.name} connection is closed")
        # what no command asked for (a push, a pub/sub message) comes from any master
        node = self._ready_node(timeout) if pushes_too or not self._awaiting else None
        if node is None:
            if not self._awaiting:
                raise rexc.TimeoutError(f"timed out reading from the Redis Cluster {self.name} connection")
            node = self._awaiting[0]
        try:
            message = node.read(timeout, pushes_too)
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.InvalidResponse):
            self._failed()
            raise
        if not is_push(message) and node in self._awaiting:
            self._awaiting.remove(node)
        return message

    def read_message(self, timeout: float | None | bool = False) -> Any:
        return self.read(timeout, pushes_too=True)

    def _ready_node(self, timeout: float | None | bool) -> _NodeWire | None:
        """A master with a message to read: one with bytes buffered or readable now, else
        the first to become readable within ``timeout`` (None when a reply is awaited:
        that master is read)."""
        nodes = [node for node in self.nodes.values() if node.connected]
        for node in nodes:
            if node.has_buffered():
                return node
        for node in nodes:
            if node.readable():
                return node
        if self._awaiting:
            return None
        wait = self.socket_timeout if timeout is False else timeout
        events = self._poller.poll(-1 if wait is None or wait is True else max(float(wait), 0.0))
        ready = {fd for fd, _ in events}
        for node in nodes:
            if node.registered in ready:
                return node
        return None
