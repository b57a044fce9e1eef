"""Reading a round's commands back and finding the key that routes each (redis:// on a
Redis Cluster of several masters)."""

from __future__ import annotations

from kombu_like.transport.redis.cluster import ClusterWire
from kombu_like.transport.redis.resp import pack_commands
from kombu_like.transport.redis.topology import key_of, split_commands


def test_split_commands_gives_back_what_was_packed() -> None:
    commands = [("LPUSH", "{q}", b"a\r\nb"), ("EVALSHA", "f" * 40, 2, "{q}:u", "{q}", "x"), ("PING",)]
    assert split_commands(pack_commands(commands)) == [
        [b"LPUSH", b"{q}", b"a\r\nb"],
        [b"EVALSHA", b"f" * 40, b"2", b"{q}:u", b"{q}", b"x"],
        [b"PING"],
    ]


def test_a_script_routes_by_its_first_key_and_keyless_commands_by_none() -> None:
    assert key_of([b"EVALSHA", b"sha", b"2", b"{q}:u", b"{q}"]) == b"{q}:u"
    assert key_of([b"EVALSHA", b"sha", b"0", b"arg"]) is None
    assert key_of([b"hget", b"_kombu_like.queues", b"q"]) == b"_kombu_like.queues"
    assert key_of([b"SCRIPT", b"LOAD", b"return 1"]) is None
    assert key_of([b"PUBLISH", b"/0.x", b"m"]) is None


def test_a_multi_exec_block_goes_whole_to_the_slot_of_its_first_key() -> None:
    commands = split_commands(pack_commands([("MULTI",), ("LLEN", "{a}"), ("DEL", "{a}"), ("EXEC",), ("LLEN", "{b}")]))
    units = ClusterWire._units(commands)
    assert [(unit.first, len(unit.commands)) for unit in units] == [(0, 4), (4, 1)]
    assert units[0].slot != units[1].slot
