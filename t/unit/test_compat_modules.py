"""Kombu-path helper modules frameworks import: utils.*, log, clocks, matcher, abstract."""

from __future__ import annotations

import logging
import pickle
import threading
from pathlib import Path
from typing import Any

import pytest

from kombu_like import Exchange, Queue
from kombu_like.abstract import MaybeChannelBound, Object
from kombu_like.clocks import LamportClock, timetuple
from kombu_like.log import LOG_LEVELS, Log, get_logger, get_loglevel
from kombu_like.matcher import MatcherNotInstalled, match, register, unregister
from kombu_like.transport.native_delayed_delivery import calculate_routing_key, level_name
from kombu_like.utils import cached_property as cached_property_from_package
from kombu_like.utils import symbol_by_name as symbol_by_name_from_package
from kombu_like.utils import uuid as uuid_from_package
from kombu_like.utils.collections import EqualityDict, HashedSeq
from kombu_like.utils.compat import fileno, maybe_fileno, nested
from kombu_like.utils.div import emergency_dump_state
from kombu_like.utils.encoding import bytes_to_str, ensure_bytes, safe_repr, safe_str, str_to_bytes
from kombu_like.utils.functional import (
    LRUCache,
    dictfilter,
    is_list,
    lazy,
    maybe_evaluate,
    maybe_list,
    memoize,
    reprcall,
    retry_over_time,
)
from kombu_like.utils.imports import symbol_by_name
from kombu_like.utils.limits import TokenBucket
from kombu_like.utils.objects import cached_property
from kombu_like.utils.scheduling import FairCycle, cycle_by_name, round_robin_cycle
from kombu_like.utils.text import version_string_as_tuple
from kombu_like.utils.time import maybe_s_to_ms
from kombu_like.utils.url import _parse_url, url_to_parts


# -- objects --------------------------------------------------------------------------
class Thing:
    computed = 0

    @cached_property
    def value(self) -> int:
        type(self).computed += 1
        return 42

    def _stored(self, value: int) -> int:
        return value * 2

    def _dropped(self, value: int) -> None:
        self.dropped = value

    @cached_property
    def settable(self) -> int:
        return 1

    settable = settable.setter(_stored).deleter(_dropped)


def test_cached_property_computes_once_and_can_be_reset() -> None:
    Thing.computed = 0
    thing = Thing()
    assert thing.value == 42 and thing.value == 42
    assert Thing.computed == 1
    del thing.value
    assert thing.value == 42
    assert Thing.computed == 2
    assert cached_property_from_package is cached_property


def test_cached_property_setter_and_deleter() -> None:
    thing = Thing()
    thing.settable = 5
    assert thing.settable == 10
    del thing.settable
    assert thing.dropped == 10
    assert thing.settable == 1


def test_cached_property_is_computed_once_across_threads() -> None:
    Thing.computed = 0
    thing = Thing()
    threads = [threading.Thread(target=lambda: thing.value) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert Thing.computed == 1


# -- encoding -------------------------------------------------------------------------
class Unprintable:
    def __repr__(self) -> str:
        raise ValueError("no repr")

    def __str__(self) -> str:
        raise ValueError("no str")


def test_encoding_helpers() -> None:
    assert str_to_bytes("é") == "é".encode() and str_to_bytes(b"x") == b"x"
    assert bytes_to_str(b"\xff") == "\ufffd"
    assert ensure_bytes("a") == b"a"
    assert safe_str(b"abc") == "abc"
    assert "Unrepresentable" in safe_repr(Unprintable())
    assert "Unrepresentable" in safe_str(Unprintable())


# -- functional -----------------------------------------------------------------------
def test_lru_cache_evicts_least_recently_used() -> None:
    cache = LRUCache(limit=2)
    cache["a"] = 1
    cache["b"] = 2
    assert cache["a"] == 1  # a is now the most recent
    cache["c"] = 3
    assert set(cache.keys()) == {"a", "c"}
    cache["a"] = 10  # overwriting does not evict
    assert dict(cache.items()) == {"a": 10, "c": 3}
    cache["n"] = "1"
    assert cache.incr("n", 2) == 3
    clone = pickle.loads(pickle.dumps(cache))
    assert dict(clone.items()) == dict(cache.items())


def test_memoize_counts_hits_and_misses() -> None:
    calls: list[int] = []

    @memoize(maxsize=10)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert square(3) == 9 and square(3) == 9 and square(4) == 16
    assert calls == [3, 4]
    assert (square.hits, square.misses) == (1, 2)  # type: ignore[attr-defined]
    square.clear()  # type: ignore[attr-defined]
    assert square(3) == 9 and calls == [3, 4, 3]


def test_lazy_values() -> None:
    counter = iter(range(10))
    value = lazy(lambda: next(counter))
    assert value() == 0 and value.evaluate() == 1  # re-evaluated every time
    assert maybe_evaluate(lazy(lambda: "x")) == "x" and maybe_evaluate(5) == 5
    assert pickle.loads(pickle.dumps(lazy(str, 5)))() == "5"


def test_list_helpers() -> None:
    assert is_list([1]) and is_list((1,)) and not is_list("ab") and not is_list({"a": 1})
    assert maybe_list(1) == [1] and maybe_list([1]) == [1] and maybe_list(None) is None
    assert dictfilter({"a": 1, "b": None}, c=None, e=2) == {"a": 1, "e": 2}
    assert reprcall("f", (1, "a"), {"k": 2}) == "f(1, 'a', k=2)"


def test_retry_over_time_with_kombu_errback_convention() -> None:
    attempts: list[int] = []
    seen: list[tuple[str, int]] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionResetError("not yet")
        return "done"

    def errback(exc: BaseException, intervals: Any, retries: int) -> float:
        seen.append((str(exc), retries))
        next(intervals)
        return 0

    assert retry_over_time(flaky, ConnectionResetError, errback=errback) == "done"
    assert seen == [("not yet", 0), ("not yet", 1)]


def test_retry_over_time_gives_up_after_max_retries() -> None:
    def broken() -> None:
        raise TimeoutError("down")

    with pytest.raises(TimeoutError, match="down"):
        retry_over_time(broken, (TimeoutError,), max_retries=2, interval_start=0, interval_step=0)


# -- imports, compat, collections, scheduling, div -------------------------------------------
def test_symbol_by_name() -> None:
    assert symbol_by_name("kombu_like.entity:Queue") is Queue
    assert symbol_by_name("kombu_like.entity.Exchange") is Exchange
    assert symbol_by_name("q", aliases={"q": "kombu_like.entity.Queue"}) is Queue
    assert symbol_by_name(Queue) is Queue
    assert symbol_by_name("kombu_like.nothing.here", default="fallback") == "fallback"
    with pytest.raises(ImportError):
        symbol_by_name("kombu_like.nothing.here")
    assert symbol_by_name_from_package is symbol_by_name
    assert len(uuid_from_package()) == 36


def test_fileno_helpers(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w") as fh:
        assert fileno(fh) == fh.fileno() and fileno(7) == 7
    assert maybe_fileno(object()) is None
    with pytest.raises(ValueError):
        fileno(None)
    with nested(open(tmp_path / "a", "w"), open(tmp_path / "b", "w")) as (a, b):
        assert not a.closed and not b.closed
    assert a.closed and b.closed


def test_collections() -> None:
    assert hash(HashedSeq(1, 2)) == hash((1, 2)) and HashedSeq(1, 2) == [1, 2]
    d = EqualityDict()
    d["k"] = 1
    assert d["k"] == 1
    with pytest.raises(KeyError):
        d["missing"]


def test_fair_cycle_tries_every_resource_once() -> None:
    class Empty(Exception):
        pass

    def get(resource: str, callback: Any) -> str:
        if resource != "c":
            raise Empty()
        return resource

    cycle = FairCycle(get, ["a", "b", "c"], Empty)
    assert cycle.get(None) == "c"
    with pytest.raises(Empty):
        FairCycle(get, ["a", "b"], Empty).get(None)
    rr = cycle_by_name("round_robin")(["x", "y", "z"])
    assert isinstance(rr, round_robin_cycle)
    rr.rotate("x")
    assert rr.consume(3) == ["y", "z", "x"]


def test_emergency_dump_state_writes_what_it_can(tmp_path: Path) -> None:
    path = emergency_dump_state({"messages": [1, 2]})
    try:
        with open(path, "rb") as fh:
            assert pickle.load(fh) == {"messages": [1, 2]}
    finally:
        Path(path).unlink()
    path = emergency_dump_state({"lock": threading.Lock()})  # cannot be pickled
    try:
        assert "lock" in Path(path).read_text()
    finally:
        Path(path).unlink()


# -- limits, clocks, matcher, text, time, url -----------------------------------------------
def test_token_bucket() -> None:
    bucket = TokenBucket(fill_rate=1, capacity=2)
    assert bucket.can_consume(2)
    assert not bucket.can_consume(1)
    assert 0 < bucket.expected_time(1) <= 1
    bucket.add("task")
    assert bucket.pop() == "task"
    with pytest.raises(IndexError):
        bucket.pop()


def test_lamport_clock_and_timetuple() -> None:
    clock = LamportClock()
    assert clock.forward() == 1
    assert clock.adjust(10) == 11
    assert clock.adjust(3) == 12
    assert str(clock) == "12"
    assert timetuple(1, 5.0, "b") < timetuple(2, 1.0, "a")  # logical clock wins
    assert timetuple(1, 5.0, "a") < timetuple(1, 1.0, "b")  # equal clocks: by id
    assert timetuple(None, 1.0, "b") < timetuple(None, 2.0, "a")  # no clocks: by time
    assert clock.sort_heap([(3, "b"), (3, "a"), (4, "c")]) == (3, "a")


def test_matcher_registry() -> None:
    assert match("worker1@host", "worker*@host")
    assert not match("worker1@host", "other*")
    assert match("worker1@host", r"worker\d@.*", "pcre")
    with pytest.raises(MatcherNotInstalled):
        match("a", "a", "nope")
    register("exact", lambda data, pattern: data == pattern)
    try:
        assert match("a", "a", "exact") and not match("a", "b", "exact")
    finally:
        unregister("exact")


def test_text_time_and_url_helpers() -> None:
    version = version_string_as_tuple("5.7.0rc1-2")
    assert tuple(version) == (5, 7, 0, "rc1", "2")
    assert tuple(version_string_as_tuple("5.7")) == (5, 7, 0, "", "")
    assert maybe_s_to_ms(1.5) == 1500 and maybe_s_to_ms(None) is None
    assert _parse_url("redis://u:p@h:1/2") == url_to_parts("redis://u:p@h:1/2")


def test_log_helpers() -> None:
    assert LOG_LEVELS["INFO"] == logging.INFO and LOG_LEVELS[logging.INFO] == "INFO"
    assert get_loglevel("DEBUG") == logging.DEBUG and get_loglevel(5) == 5
    logger = get_logger("kombu_like.tests.fresh-logger")
    assert logger.handlers
    log = Log("component", logger=logging.getLogger("kombu_like.tests.log"))
    assert log.annotate("x") == "component - x"


def test_abstract_object_is_the_entity_base() -> None:
    assert Object is MaybeChannelBound
    assert isinstance(Queue("q"), Object) and isinstance(Exchange("e"), Object)
    assert Queue("q").as_dict()["name"] == "q"


@pytest.mark.interop
def test_delayed_delivery_routing_keys_match_kombu() -> None:
    from kombu.transport import native_delayed_delivery as kombu_delayed

    for countdown in (1, 7, 3600, 2**28 - 1):
        assert calculate_routing_key(countdown, "tasks") == kombu_delayed.calculate_routing_key(countdown, "tasks")
    again = calculate_routing_key(5, calculate_routing_key(9, "tasks"))
    assert again == kombu_delayed.calculate_routing_key(5, kombu_delayed.calculate_routing_key(9, "tasks"))
    assert level_name(3, "app") == kombu_delayed.level_name(3, "app")
    with pytest.raises(ValueError):
        calculate_routing_key(0, "tasks")


# -- compatibility names on core objects (frameworks and their test suites use them) ----------
def test_connection_error_tuples_can_be_assigned_per_connection() -> None:
    from kombu_like import Connection

    first, second = Connection("memory://"), Connection("memory://")
    default = first.recoverable_channel_errors
    first.recoverable_channel_errors = (IOError,)
    first.recoverable_connection_errors = ()
    assert first.recoverable_channel_errors == (IOError,)
    assert first.recoverable_connection_errors == ()
    assert second.recoverable_channel_errors == default  # other connections keep theirs


def test_autoretry_returns_result_and_channel() -> None:
    from kombu_like import Connection

    with Connection("memory://") as conn:
        result, channel = conn.autoretry(lambda x, channel=None: (x, channel))(7)
        assert result == (7, channel) and channel is conn.default_channel


def test_channel_errors_carry_py_amqp_attribute_names() -> None:
    from kombu_like.exceptions import ChannelError, ConnectionError, NotFound

    assert NotFound("gone").code == 404
    assert ChannelError("x", reply_code=406).code == 406
    assert ChannelError("x").method_name is None
    assert ConnectionError("down").code is None


def test_queue_as_dict_is_serializable_like_kombus() -> None:
    import json

    as_dict = Queue("q", Exchange("x"), "k").as_dict(recurse=True)
    assert as_dict["bindings"] == [] and as_dict["exchange"]["name"] == "x"
    json.dumps(as_dict)


def test_memory_channel_names_and_queue_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from kombu_like import Connection
    from kombu_like.transport import memory

    def no_uuid4() -> None:
        raise AssertionError("opening a channel must not consume uuid.uuid4")

    with Connection("memory://") as conn:
        monkeypatch.setattr(uuid, "uuid4", no_uuid4)
        channel = conn.channel()
        monkeypatch.undo()
        assert isinstance(channel, memory.Channel)
        channel._new_queue("compat-hook-queue")
        assert channel.queue_declare("compat-hook-queue", passive=True).message_count == 0
