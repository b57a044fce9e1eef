"""memory:// is one broker per process, as in Kombu, with Kombu's class-level state.

The same scenario runs on Kombu 5.7 and on kombu_like and must observe the same things.
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any

import kombu
import pytest

import kombu_like
from kombu_like.transport import memory


def _scenario(lib: Any) -> dict[str, Any]:
    mem = importlib.import_module(f"{lib.__name__}.transport.memory")
    name = f"shared-{uuid.uuid4().hex[:8]}"
    exchange = lib.Exchange(f"ex-{name}", "direct")
    queue = lib.Queue(name, exchange, routing_key="k")
    seen: dict[str, Any] = {}
    with lib.Connection("memory://") as a, lib.Connection("memory://") as b:
        lib.Producer(a).publish({"n": 1}, exchange=exchange, routing_key="k", declare=[queue])
        lib.Producer(a).publish({"n": 2}, exchange=exchange, routing_key="k")
        seen["listed"] = name in mem.Channel.queues
        seen["size"] = mem.Channel.queues[name].qsize()
        seen["empty"] = mem.Channel.queues[name].empty()
        seen["other_connection_gets"] = queue(b.default_channel).get(no_ack=True).payload
        mem.Channel.queues.clear()
        seen["after_clear"] = (name in mem.Channel.queues, len(mem.Channel.queues))
        seen["events_type"] = type(mem.Channel.events).__name__
    with lib.Connection("memory://") as c:
        # the queue went with clear(); publishing to the exchange still finds its binding
        lib.Producer(c).publish({"n": 3}, exchange=exchange, routing_key="k", declare=[queue])
        seen["after_redeclare"] = queue(c.default_channel).get(no_ack=True).payload
    return seen


def test_process_wide_broker_matches_kombu() -> None:
    assert _scenario(kombu_like) == _scenario(kombu)


def test_queue_view_get_put(kombu_clean_memory: Any) -> None:
    from queue import Empty

    with kombu_like.Connection("memory://") as conn:
        kombu_like.Producer(conn).publish("a", routing_key="view", declare=[kombu_like.Queue("view")])
    view = memory.Channel.queues["view"]
    envelope = view.get(block=False)
    assert envelope["body"] == b"a"
    with pytest.raises(Empty):
        view.get(block=False)
    view.put(envelope)
    assert [e["body"] for e in view.queue] == [envelope["body"]]
    del memory.Channel.queues["view"]
    assert "view" not in memory.Channel.queues
    with pytest.raises(KeyError):
        memory.Channel.queues["view"]


def test_global_state_clear_forgets_exchanges_and_bindings(kombu_clean_memory: Any) -> None:
    with kombu_like.Connection("memory://") as conn:
        ex = kombu_like.Exchange("gs-ex", "direct")
        kombu_like.Queue("gs-q", ex, routing_key="k")(conn.default_channel).declare()
        assert kombu_clean_memory.bindings("gs-ex") == [("gs-q", "k")]
        memory.Transport.global_state.clear()
        assert kombu_clean_memory.bindings("gs-ex") == []


def test_a_virtual_host_is_a_broker_of_its_own(kombu_clean_memory: Any) -> None:
    with kombu_like.Connection("memory://") as shared, kombu_like.Connection("memory:///mine") as isolated:
        kombu_like.Producer(isolated).publish(1, routing_key="vh", declare=[kombu_like.Queue("vh")])
        assert "vh" not in memory.Channel.queues
        assert kombu_like.Queue("vh")(shared.default_channel).get(no_ack=True) is None
        assert kombu_like.Queue("vh")(isolated.default_channel).get(no_ack=True).payload == 1
    memory.forget_broker("/mine")


def _own_queues_scenario(lib: Any) -> list[Any]:
    """Two connections give their channels queues of their own (``channel.queues = {}``)."""
    mem = importlib.import_module(f"{lib.__name__}.transport.memory")
    name = f"own-{uuid.uuid4().hex[:8]}"
    exchange = lib.Exchange(name, "direct")
    queue = lib.Queue(name, exchange, routing_key=name)
    with lib.Connection("memory://") as x, lib.Connection("memory://") as y:
        x.default_channel.queues = {}
        y.default_channel.queues = {}
        queue(x.default_channel).declare()
        lib.Producer(x).publish("foo", exchange=name, routing_key=name)
        seen: list[Any] = [
            name in x.default_channel.queues,
            name in y.default_channel.queues,
            name in mem.Channel.queues,
        ]
        # the binding x declared is shared: y's publish routes to y's own queue of that name
        queue(y.default_channel).declare()
        lib.Producer(y).publish("bar", exchange=name, routing_key=name)
        seen += [
            queue(y.default_channel).get(no_ack=True).body,
            queue(y.default_channel).get(no_ack=True),
            queue(x.default_channel).get(no_ack=True).body,
            queue(x.default_channel).get(no_ack=True),
        ]
    return seen


def test_a_channel_given_its_own_queues_matches_kombu(kombu_clean_memory: Any) -> None:
    # as Celery's migrate tests do, to keep a source and a destination broker apart
    assert (
        _own_queues_scenario(kombu_like)
        == _own_queues_scenario(kombu)
        == [
            True,
            False,
            False,
            b"bar",
            None,
            b"foo",
            None,
        ]
    )
