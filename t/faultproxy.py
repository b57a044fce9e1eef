"""A TCP proxy for fault-injection tests.

It sits between a client and a real broker on loopback and, on command, cuts every open
connection, stalls them (accepts bytes but forwards nothing), or refuses new connections.
One thread runs a selector loop; commands are applied by that thread, so no socket is
touched from two threads.
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["FaultProxy"]


class _Pipe:
    __slots__ = ("client", "upstream", "pending", "ended")

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        # bytes waiting to be written, per destination socket
        self.pending: dict[socket.socket, bytearray] = {client: bytearray(), upstream: bytearray()}
        # one side closed while the proxy was stalled (the other side has not been told)
        self.ended = False


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target``; break things on command.

    Use as a context manager; ``url_for(url)`` rewrites a broker URL to go through it.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._pipes: set[_Pipe] = set()
        self._commands: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._running = False
        self._thread: threading.Thread | None = None
        self.stalled = False
        self.holding_replies = False
        self.refusing = False
        self.cuts = 0
        self.accepted = 0

    # -- commands (thread-safe) -----------------------------------------------------------
    def _submit(self, command: Callable[[], None], wait: bool = True) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                command()
            finally:
                done.set()

        with self._lock:
            self._commands.append(run)
        self._wake_w.send(b"x")
        if wait and not done.wait(10):
            raise TimeoutError("fault proxy did not apply the command within 10 s")

    def cut(self) -> None:
        """Close every open connection (both sides), as a network failure would."""

        def do() -> None:
            for pipe in list(self._pipes):
                self._close_pipe(pipe, abort=True)
            self.cuts += 1

        self._submit(do)

    def stall(self, on: bool = True) -> None:
        """Stop (or resume) forwarding bytes; connections stay open.

        While stalled, not even a close gets through: a side that closes its end is told
        nothing until the stall ends, when the pipe is closed.
        """

        def do() -> None:
            self.stalled = on
            if not on:
                for pipe in [p for p in self._pipes if p.ended]:
                    self._close_pipe(pipe)

        self._submit(do)

    def hold_replies(self, on: bool = True) -> None:
        """Forward what clients send, but hold (or again forward) what the broker answers:
        a command runs on the broker and its client never sees the reply (until a cut
        drops it)."""

        def do() -> None:
            self.holding_replies = on

        self._submit(do)

    def refuse(self, on: bool = True) -> None:
        """Close (or again accept) new connections as soon as they arrive."""

        def do() -> None:
            self.refusing = on

        self._submit(do)

    def held_for_clients(self) -> int:
        """Bytes from the broker held back (while stalled) for the clients."""
        held: list[int] = []
        self._submit(lambda: held.append(sum(len(p.pending[p.client]) for p in self._pipes)))
        return held[0]

    def let_through(self, size: int) -> int:
        """While stalled, forward at most ``size`` held bytes to each client; returns how
        many went (what a client's socket took at once)."""
        sent: list[int] = []

        def do() -> None:
            total = 0
            for pipe in list(self._pipes):
                buf = pipe.pending[pipe.client]
                try:
                    count = pipe.client.send(bytes(buf[:size]))
                except (BlockingIOError, OSError):
                    count = 0
                del buf[:count]
                total += count
            sent.append(total)

        self._submit(do)
        return sent[0]

    @property
    def open_connections(self) -> int:
        return len(self._pipes)

    def url_for(self, url: str) -> str:
        """Rewrite ``scheme://[auth@]host:port/rest`` to point at this proxy."""
        scheme, _, rest = url.partition("://")
        netloc, slash, tail = rest.partition("/")
        auth, at, _hostport = netloc.rpartition("@")
        return f"{scheme}://{auth}{at}127.0.0.1:{self.port}{slash}{tail}"

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._selector.register(self._listener, selectors.EVENT_READ, ("accept", None))
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self._running:
            return

        def do() -> None:
            self._running = False

        self._submit(do, wait=False)
        if self._thread is not None:
            self._thread.join(10)
        for pipe in list(self._pipes):
            self._close_pipe(pipe, abort=True)
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        self._selector.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the loop ------------------------------------------------------------------
    def _loop(self) -> None:
        while self._running:
            for key, _events in self._selector.select(timeout=0.5):
                kind, pipe = key.data
                if kind == "accept":
                    self._accept()
                elif kind == "wake":
                    self._run_commands()
                else:
                    self._on_readable(key.fileobj, pipe)  # type: ignore[arg-type]
            if not self.stalled:
                self._flush_all()

    def _run_commands(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            commands, self._commands = self._commands, []
        for command in commands:
            command()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self.refusing:
            _abort(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _abort(client)
            return
        self.accepted += 1
        client.setblocking(False)
        upstream.setblocking(False)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(client, upstream)
        self._pipes.add(pipe)
        self._selector.register(client, selectors.EVENT_READ, ("data", pipe))
        self._selector.register(upstream, selectors.EVENT_READ, ("data", pipe))

    def _on_readable(self, sock: socket.socket, pipe: _Pipe) -> None:
        if pipe not in self._pipes:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if self.stalled:
                # a black hole: the other side must not learn of the close either
                self._selector.unregister(sock)
                pipe.ended = True
                return
            self._close_pipe(pipe)
            return
        dest = pipe.upstream if sock is pipe.client else pipe.client
        pipe.pending[dest] += data
        if not self.stalled:
            self._flush(pipe)

    def _flush_all(self) -> None:
        for pipe in list(self._pipes):
            self._flush(pipe)

    def _flush(self, pipe: _Pipe) -> None:
        for dest, buf in pipe.pending.items():
            if self.holding_replies and dest is pipe.client:
                continue
            while buf:
                try:
                    sent = dest.send(buf)
                except BlockingIOError:
                    break
                except OSError:
                    self._close_pipe(pipe)
                    return
                del buf[:sent]

    def _close_pipe(self, pipe: _Pipe, abort: bool = False) -> None:
        if pipe not in self._pipes:
            return
        self._pipes.discard(pipe)
        for sock in (pipe.client, pipe.upstream):
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            if abort:
                _abort(sock)
            else:
                sock.close()


def _abort(sock: socket.socket) -> None:
    """Close with RST instead of FIN, like a dropped connection."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    sock.close()
