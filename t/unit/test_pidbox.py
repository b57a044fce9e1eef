"""pidbox Mailbox/Node on memory://: broadcast commands, collect replies with a timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import kombu_like.clocks
from kombu_like import Connection, Consumer
from kombu_like.pidbox import LamportClock, Mailbox, Node, match
from kombu_like.transport.memory import Broker


class NodeThread:
    """A node listening on its own connection in a thread, like a worker process."""

    def __init__(
        self,
        mailbox: Mailbox,
        options: dict[str, Any],
        hostname: str,
        handlers: dict[str, Callable[..., Any]],
        paused: bool = False,
    ) -> None:
        self.connection = Connection("memory://", transport_options=options)
        self.node: Node = mailbox(self.connection).Node(hostname, state={"calls": []}, handlers=dict(handlers))
        self.stop = threading.Event()
        self.paused = threading.Event()
        if paused:
            self.paused.set()
        self.node.listen()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.paused.is_set():
                self.stop.wait(0.01)
                continue
            try:
                self.connection.drain_events(timeout=0.05)
            except socket.timeout:
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.connection.release()


def ping(state: dict[str, Any]) -> str:
    state["calls"].append("ping")
    return "pong"


def echo(state: dict[str, Any], value: Any = None) -> Any:
    state["calls"].append(("echo", value))
    return value


def boom(state: dict[str, Any]) -> None:
    raise ValueError("kaput")


HANDLERS = {"ping": ping, "echo": echo, "boom": boom}


@pytest.fixture
def options() -> dict[str, Any]:
    return {"broker": Broker()}


@pytest.fixture
def client(options: dict[str, Any]) -> Iterator[Connection]:
    connection = Connection("memory://", transport_options=options)
    yield connection
    connection.release()


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox("testapp")


@pytest.fixture
def nodes(mailbox: Mailbox, options: dict[str, Any]) -> Iterator[list[NodeThread]]:
    started = [NodeThread(mailbox, options, f"worker{n}@host", HANDLERS) for n in range(3)]
    yield started
    for node in started:
        node.close()


def _by_node(replies: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for reply in replies:
        out.update(reply)
    return out


def test_multi_call_collects_every_node(mailbox: Mailbox, client: Connection, nodes: list[NodeThread]) -> None:
    replies = mailbox(client).multi_call("ping", timeout=0.5)
    assert _by_node(replies) == {f"worker{n}@host": "pong" for n in range(3)}
    assert all(node.node.state["calls"] == ["ping"] for node in nodes)


def test_multi_call_returns_once_limit_replies_came(
    mailbox: Mailbox, client: Connection, options: dict[str, Any]
) -> None:
    live = [NodeThread(mailbox, options, f"live{n}@host", HANDLERS) for n in range(2)]
    deaf = NodeThread(mailbox, options, "deaf@host", HANDLERS, paused=True)
    try:
        # without the limit this would wait out the 60 s timeout for the deaf node
        replies = mailbox(client).multi_call("echo", {"value": 7}, timeout=60, limit=2)
        assert _by_node(replies) == {"live0@host": 7, "live1@host": 7}
    finally:
        for node in (*live, deaf):
            node.close()


def test_call_reaches_only_the_destination(mailbox: Mailbox, client: Connection, nodes: list[NodeThread]) -> None:
    replies = mailbox(client).call(["worker1@host"], "echo", {"value": "hi"}, timeout=2)
    assert replies == [{"worker1@host": "hi"}]
    assert nodes[1].node.state["calls"] == [("echo", "hi")]
    assert nodes[0].node.state["calls"] == [] and nodes[2].node.state["calls"] == []


def test_pattern_matching(mailbox: Mailbox, client: Connection, nodes: list[NodeThread]) -> None:
    bound = mailbox(client)
    glob = bound._broadcast("ping", reply=True, timeout=0.3, pattern="worker[02]@*", matcher="glob")
    assert sorted(_by_node(glob or [])) == ["worker0@host", "worker2@host"]
    pcre = bound._broadcast("ping", reply=True, timeout=0.3, pattern=r"worker1@", matcher="pcre")
    assert sorted(_by_node(pcre or [])) == ["worker1@host"]


def test_handler_error_comes_back(mailbox: Mailbox, client: Connection, nodes: list[NodeThread]) -> None:
    replies = mailbox(client).call(["worker0@host"], "boom", timeout=2)
    assert replies == [{"worker0@host": {"error": "ValueError('kaput')"}}]
    unknown = mailbox(client).call(["worker0@host"], "no_such_command", timeout=2)
    assert "no handler for command 'no_such_command'" in unknown[0]["worker0@host"]["error"]


def test_cast_and_abcast_do_not_wait(mailbox: Mailbox, client: Connection, nodes: list[NodeThread]) -> None:
    bound = mailbox(client)
    assert bound.cast(["worker2@host"], "echo", {"value": 1}) is None
    assert bound.abcast("echo", {"value": 2}) is None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sum(len(n.node.state["calls"]) for n in nodes) < 4:
        time.sleep(0.01)
    assert nodes[2].node.state["calls"] == [("echo", 1), ("echo", 2)]
    assert nodes[0].node.state["calls"] == [("echo", 2)]
    assert nodes[1].node.state["calls"] == [("echo", 2)]


def test_timeout_returns_what_came(mailbox: Mailbox, client: Connection, options: dict[str, Any]) -> None:
    alive = NodeThread(mailbox, options, "alive@host", HANDLERS)
    deaf = NodeThread(mailbox, options, "deaf@host", HANDLERS, paused=True)
    try:
        replies = mailbox(client).call(["alive@host", "deaf@host"], "ping", timeout=0.3)
        assert replies == [{"alive@host": "pong"}]
    finally:
        alive.close()
        deaf.close()


def test_default_timeout_bounds_calls(client: Connection, options: dict[str, Any]) -> None:
    mailbox = Mailbox("testapp", default_timeout=0.2)
    deaf = NodeThread(mailbox, options, "deaf@host", HANDLERS, paused=True)
    try:
        assert mailbox(client).call(["deaf@host"], "ping") == []
    finally:
        deaf.close()


def test_late_replies_and_expired_commands_are_dropped(
    mailbox: Mailbox, client: Connection, options: dict[str, Any]
) -> None:
    slow = NodeThread(mailbox, options, "slow@host", HANDLERS, paused=True)
    bound = mailbox(client)
    try:
        # the node is busy: the command waits in its queue past its deadline
        assert bound.call(["slow@host"], "echo", {"value": "first"}, timeout=0.2) == []
        time.sleep(0.05)  # wall clock past the command's "expires" header for sure
        slow.paused.clear()
        # the expired command is never run; the next one is answered, and only it
        assert bound.call(["slow@host"], "echo", {"value": "second"}, timeout=5) == [{"slow@host": "second"}]
        assert slow.node.state["calls"] == [("echo", "second")]
    finally:
        slow.close()


def test_late_reply_of_previous_call_is_not_returned(
    mailbox: Mailbox, client: Connection, options: dict[str, Any]
) -> None:
    release = threading.Event()

    def slow_echo(state: dict[str, Any], value: Any = None) -> Any:
        release.wait(5)
        return value

    node = NodeThread(mailbox, options, "sleepy@host", {"echo": slow_echo})
    bound = mailbox(client)
    try:
        # the node is inside the handler when the caller stops waiting
        assert bound.call(["sleepy@host"], "echo", {"value": "late"}, timeout=0.2) == []
        release.set()
        assert bound.call(["sleepy@host"], "echo", {"value": "fresh"}, timeout=5) == [{"sleepy@host": "fresh"}]
    finally:
        release.set()
        node.close()


def test_wire_format_is_kombus(mailbox: Mailbox, client: Connection, options: dict[str, Any]) -> None:
    raw: list[Any] = []
    listener = Connection("memory://", transport_options=options)
    node_queue = mailbox.get_queue("raw@host")
    consumer = Consumer(listener, [node_queue], callbacks=[lambda body, message: raw.append((body, message))])
    consumer.consume()
    bound = mailbox(client)
    bound.call(["raw@host"], "echo", {"value": 1}, timeout=0.2)
    listener.drain_events(timeout=5)
    body, message = raw[0]
    assert node_queue.name == "raw@host.testapp.pidbox"
    assert message.delivery_info["exchange"] == "testapp.pidbox"
    assert body["method"] == "echo" and body["arguments"] == {"value": 1}
    assert body["destination"] == ["raw@host"] and body["pattern"] is None and body["matcher"] is None
    assert body["reply_to"] == {"exchange": "reply.testapp.pidbox", "routing_key": bound.oid}
    assert isinstance(body["ticket"], str)
    assert message.headers["clock"] >= 1 and message.headers["expires"] > time.time() - 60
    consumer.cancel()
    listener.release()


def test_destination_must_be_a_sequence(mailbox: Mailbox, client: Connection) -> None:
    with pytest.raises(ValueError, match="list/tuple"):
        mailbox(client)._broadcast("ping", destination="worker0@host")  # type: ignore[arg-type]


def test_exclusive_and_durable_conflict() -> None:
    with pytest.raises(ValueError, match="cannot both be True"):
        Mailbox("x", queue_durable=True, queue_exclusive=True)
    durable = Mailbox("x", queue_durable=True, queue_exclusive=False)
    queue = durable.get_queue("n")
    assert queue.durable and not queue.auto_delete and not queue.exclusive
    default = Mailbox("x").get_queue("n")
    assert default.exclusive and default.auto_delete and not default.durable
    reply = Mailbox("x").get_reply_queue()
    assert reply.expires == 10.0 and reply.exchange.name == "reply.x.pidbox"


def test_node_handler_decorator_and_dispatch(mailbox: Mailbox) -> None:
    node = mailbox.Node("direct@host", state={"calls": []})

    @node.handler
    def hello(state: dict[str, Any], name: str = "") -> str:
        return f"hello {name}"

    assert node.handlers["hello"] is hello
    assert node.dispatch("hello", {"name": "you"}) == "hello you"
    assert node.handle_message({"method": "hello", "arguments": {}, "destination": ["other@host"]}) is None


def test_match_and_clock() -> None:
    assert match("worker1@host", "worker*")
    assert not match("worker1@host", "other*", "glob")
    assert match("worker1@host", r"worker\d", "pcre")
    with pytest.raises(KeyError, match="No matcher"):
        match("x", "x", "nope")
    clock = LamportClock()
    assert clock.forward() == 1
    assert clock.adjust(10) == 11
    assert clock.forward() == 12
    # as in Kombu, the mailbox's clock is the clocks module's (one type whichever path)
    assert LamportClock is kombu_like.clocks.LamportClock
    assert isinstance(Mailbox("clocked").clock, kombu_like.clocks.LamportClock)


def test_commands_through_a_producer_pool(client: Connection, options: dict[str, Any]) -> None:
    from kombu_like.pools import ProducerPool

    connections = client.Pool(limit=1)
    pool = ProducerPool(connections, limit=1)
    mailbox = Mailbox("pooled", producer_pool=lambda: pool)
    node = NodeThread(mailbox, options, "pooled@host", HANDLERS)
    try:
        assert mailbox(client).call(["pooled@host"], "echo", {"value": "via pool"}, timeout=5) == [
            {"pooled@host": "via pool"}
        ]
        assert mailbox.producer_pool is pool
        assert pool.in_use == 0 and pool.idle == 1
    finally:
        node.close()
        connections.force_close_all()
