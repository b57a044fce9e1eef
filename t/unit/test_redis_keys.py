"""The Redis transport's key layouts: Kombu's names, and the cluster layout's hash tags."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from kombu_like.transport.redis.keys import KeyLayout
from kombu_like.transport.redis.options import RedisOptions


def test_kombu_layout_keeps_kombus_names() -> None:
    keys = KeyLayout(prefix="p:")
    assert keys.list_keys("q") == ["p:q", "p:q\x06\x163", "p:q\x06\x166", "p:q\x06\x169"]
    assert (keys.unacked_of("q"), keys.unacked_index_of("q")) == ("p:unacked", "p:unacked_index")
    assert keys.deadletter("q") == "p:_kombu_like.deadletter.q"
    assert (keys.table("x"), keys.permanent("x")) == ("p:_kombu.binding.x", "p:_kombu.binding_permanent.x")
    assert keys.deadlines("x") == "p:_kombu.binding_deadlines"
    assert keys.is_bookkeeping(b"p:unacked") and keys.is_bookkeeping(b"p:unacked_index")
    assert not keys.is_bookkeeping(b"p:q")


@pytest.mark.parametrize("queue", ["q", "tasks.default", "a}b", "with{brace", "ünï"])
def test_cluster_layout_puts_every_key_of_a_queue_in_one_slot(queue: str) -> None:
    keys = KeyLayout(prefix="app:", cluster=True)
    names = [
        *keys.list_keys(queue),
        keys.unacked_of(queue),
        keys.unacked_index_of(queue),
        keys.deadletter(queue),
    ]
    assert all(name.startswith("app:") for name in names)
    assert len({key_slot(name.encode()) for name in names}) == 1, names
    assert len(set(names)) == len(names)
    assert keys.is_bookkeeping(keys.unacked_of(queue).encode())
    assert keys.is_bookkeeping(keys.unacked_index_of(queue).encode())
    assert not any(keys.is_bookkeeping(name.encode()) for name in keys.list_keys(queue))


def test_cluster_layout_refuses_a_queue_without_a_name() -> None:
    # "{}" is no hash tag: the queue's keys would land in different slots
    with pytest.raises(ValueError, match="a queue needs a name"):
        KeyLayout(cluster=True).list_key("")


def test_cluster_layout_spreads_queues_and_keeps_an_exchanges_binding_keys_together() -> None:
    keys = KeyLayout(cluster=True)
    assert len({key_slot(keys.list_key(f"q{i}").encode()) for i in range(50)}) > 40
    names = [keys.table("ex"), keys.permanent("ex"), keys.deadlines("ex")]
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert keys.table("ex") == "_kombu.binding.{ex}"


def test_cluster_layout_is_an_option_checked_with_the_prefix() -> None:
    assert RedisOptions.from_transport_options({}).key_layout == "kombu"
    assert RedisOptions.from_transport_options({"key_layout": "cluster"}).key_layout == "cluster"
    with pytest.raises(ValueError, match="key_layout must be one of kombu, cluster"):
        RedisOptions.from_transport_options({"key_layout": "clustered"})
    with pytest.raises(ValueError, match="global_keyprefix must not contain"):
        RedisOptions.from_transport_options({"key_layout": "cluster", "global_keyprefix": "{app}:"})
    # Kombu's layout takes any prefix, braces included, as Kombu does
    assert RedisOptions.from_transport_options({"global_keyprefix": "{app}:"}).global_keyprefix == "{app}:"
