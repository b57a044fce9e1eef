"""The delayed-delivery scripts of the Redis Streams transport, run on a real Redis."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis

from kombu_like.transport.redis_streams.delayed import (
    Delay,
    DelayedScripts,
    decode_member,
    delay_of,
    encode_member,
)

pytestmark = pytest.mark.redis

FIELD = "payload"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def queue_keys(client: redis.Redis) -> Iterator[dict[str, str]]:
    """A queue's delayed set and three level streams, all in its hash-tag slot."""
    tag = f"{{dly-{uuid.uuid4().hex}}}"
    keys = {"delayed": f"{tag}:delayed", "p0": f"{tag}", "p3": f"{tag}:p3", "p6": f"{tag}:p6", "sched": f"{tag}:sched"}
    yield keys
    client.delete(*keys.values())


def _envelope(n: int) -> str:
    return json.dumps({"body": str(n), "properties": {"delivery_tag": f"tag-{n}"}})


def _bodies(client: redis.Redis, stream: str) -> list[str]:
    return [json.loads(fields[FIELD.encode()])["body"] for _, fields in client.xrange(stream)]


def _server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _streams(keys: dict[str, str]) -> list[tuple[int, str]]:
    return [(0, keys["p0"]), (3, keys["p3"]), (6, keys["p6"])]


def test_moves_exactly_the_due_members_in_due_order(client: redis.Redis, queue_keys: dict[str, str]) -> None:
    scripts = DelayedScripts(client)
    now = _server_ms(client)
    # scheduled out of order: due ones 3 s, 2 s and 1 s ago, later ones in 1 min and 1 day
    dues = {5: now - 1000, 4: now - 2000, 3: now - 3000, 2: now + 60_000, 1: now + 86_400_000}
    items = [(Delay(False, due), encode_member(0, _envelope(n))) for n, due in dues.items()]
    scripts.schedule(queue_keys["delayed"], items)
    result = scripts.move_due(queue_keys["delayed"], _streams(queue_keys), FIELD)
    assert result.moved == 3 and not result.more
    assert _bodies(client, queue_keys["p0"]) == ["3", "4", "5"]
    assert result.next_due_ms == now + 60_000
    assert 0 < result.wait(longest=120) <= 60
    assert result.wait(longest=0.5) == 0.5  # never waits longer than the bound given
    assert client.zcard(queue_keys["delayed"]) == 2
    # nothing more is due: a second run moves nothing
    assert scripts.move_due(queue_keys["delayed"], _streams(queue_keys), FIELD).moved == 0


def test_a_run_moves_at_most_its_count_and_says_more_are_due(client: redis.Redis, queue_keys: dict[str, str]) -> None:
    scripts = DelayedScripts(client)
    now = _server_ms(client)
    scripts.schedule(
        queue_keys["delayed"], [(Delay(False, now - 1000 + n), encode_member(0, _envelope(n))) for n in range(25)]
    )
    first = scripts.move_due(queue_keys["delayed"], _streams(queue_keys), FIELD, count=10)
    assert (first.moved, first.more, first.wait()) == (10, True, 0.0)
    assert _bodies(client, queue_keys["p0"]) == [str(n) for n in range(10)]
    second = scripts.move_due(queue_keys["delayed"], _streams(queue_keys), FIELD, count=10)
    third = scripts.move_due(queue_keys["delayed"], _streams(queue_keys), FIELD, count=10)
    assert (second.moved, third.moved, third.more, third.next_due_ms) == (10, 5, False, None)
    assert _bodies(client, queue_keys["p0"]) == [str(n) for n in range(25)]


def test_members_go_to_their_priority_level_stream(client: redis.Redis, queue_keys: dict[str, str]) -> None:
    scripts = DelayedScripts(client)
    past = Delay(False, _server_ms(client) - 10)
    # level 9 is no stream of the queue (declared again with fewer levels): the highest below
    items = [(past, encode_member(level, _envelope(level))) for level in (0, 3, 6, 9)]
    # a member no producer of this transport wrote is not left waiting forever
    client.zadd(queue_keys["delayed"], {b"not a member": past.ms})
    scripts.schedule(queue_keys["delayed"], items)
    assert scripts.move_due(queue_keys["delayed"], _streams(queue_keys), FIELD).moved == 5
    assert _bodies(client, queue_keys["p3"]) == ["3"]
    assert _bodies(client, queue_keys["p6"]) == ["6", "9"]
    base = [fields[FIELD.encode()] for _, fields in client.xrange(queue_keys["p0"])]
    assert base == [_envelope(0).encode(), b"not a member"]


def test_equal_envelopes_are_two_members(client: redis.Redis, queue_keys: dict[str, str]) -> None:
    scripts = DelayedScripts(client)
    same = _envelope(7)
    scripts.schedule(queue_keys["delayed"], [(Delay(True, 60_000), encode_member(0, same)) for _ in range(2)])
    assert client.zcard(queue_keys["delayed"]) == 2
    for member in client.zrange(queue_keys["delayed"], 0, -1):
        assert decode_member(member) == (0, same.encode(), None)


def test_expiry_travels_with_the_member(client: redis.Redis, queue_keys: dict[str, str]) -> None:
    scripts = DelayedScripts(client)
    past = Delay(False, _server_ms(client) - 10)
    member = encode_member(3, _envelope(1), expires_ms=past.ms + 60_000)
    assert decode_member(member) == (3, _envelope(1).encode(), past.ms + 60_000)
    later = Delay(False, past.ms + 1)
    scripts.schedule(queue_keys["delayed"], [(past, member), (later, encode_member(3, _envelope(2)))])
    assert scripts.move_due(queue_keys["delayed"], _streams(queue_keys), FIELD).moved == 2
    entries = [fields for _, fields in client.xrange(queue_keys["p3"])]
    assert entries == [
        {FIELD.encode(): _envelope(1).encode(), b"exp": str(past.ms + 60_000).encode()},
        {FIELD.encode(): _envelope(2).encode()},
    ]


def test_relative_delay_counts_from_the_servers_clock(client: redis.Redis, queue_keys: dict[str, str]) -> None:
    scripts = DelayedScripts(client)
    before = _server_ms(client)
    pipe = client.pipeline(transaction=False)
    scripts.schedule(queue_keys["delayed"], [(Delay(True, 5000), encode_member(0, _envelope(1)))], pipeline=pipe)
    assert client.zcard(queue_keys["delayed"]) == 0  # the pipeline is its caller's to run
    pipe.execute()
    after = _server_ms(client)
    [(_, score)] = client.zrange(queue_keys["delayed"], 0, -1, withscores=True)
    assert before + 5000 <= score <= after + 5000


def test_schedules_many_members_in_batches(client: redis.Redis, queue_keys: dict[str, str]) -> None:
    scripts = DelayedScripts(client)
    pipe = client.pipeline(transaction=False)
    scripts.schedule(
        queue_keys["delayed"], ((Delay(True, 1000 + n), encode_member(0, _envelope(n))) for n in range(2500)), pipe
    )
    assert len(pipe.execute()) == 3
    assert client.zcard(queue_keys["delayed"]) == 2500


# -- which headers delay a message ----------------------------------------------------------
def test_x_delay_header() -> None:
    assert delay_of({"x-delay": 1500}) == Delay(True, 1500)
    assert delay_of({"x-delay": "250"}) == Delay(True, 250)
    assert delay_of({"x-delay": 0.2}) == Delay(True, 1)
    assert delay_of({"x-delay": 0}) is None
    assert delay_of({"x-delay": -5}) is None
    assert delay_of({}) is None and delay_of(None) is None


@pytest.mark.parametrize("bad", ["soon", True, [1], float("nan"), float("inf")])
def test_a_bad_x_delay_is_an_error_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match=r"'x-delay'.*queue 'q1'"):
        delay_of({"x-delay": bad}, queue="q1")


def test_eta_header() -> None:
    now = time.time()
    future = datetime.fromtimestamp(now + 30, timezone.utc).replace(microsecond=123400)
    due_ms = int(future.timestamp()) * 1000 + 124  # rounded up: never due early
    assert delay_of({"eta": future.isoformat()}, now=now) == Delay(False, due_ms)
    naive_utc = future.replace(tzinfo=None).isoformat()
    assert delay_of({"eta": naive_utc}, now=now) == Delay(False, due_ms)
    other_zone = future.astimezone(timezone(timedelta(hours=5))).isoformat()
    assert delay_of({"eta": other_zone}, now=now) == Delay(False, due_ms)
    assert delay_of({"eta": future.isoformat()}, now=now, eta_delivery=False) is None
    past = datetime.fromtimestamp(now - 1, timezone.utc).isoformat()
    assert delay_of({"eta": past}, now=now) is None
    assert delay_of({"eta": None}, now=now) is None  # Celery's tasks without an ETA
    # the explicit transport header wins
    assert delay_of({"eta": future.isoformat(), "x-delay": 100}, now=now) == Delay(True, 100)


def test_a_bad_eta_is_an_error_naming_it_and_the_option() -> None:
    with pytest.raises(ValueError, match=r"'eta'.*'tomorrow'.*queue 'q2'.*eta_delivery"):
        delay_of({"eta": "tomorrow"}, queue="q2")
    assert delay_of({"eta": "tomorrow"}, eta_delivery=False) is None


def test_a_queue_with_max_length_drops_its_oldest_undelivered_when_due_ones_arrive(
    client: redis.Redis, queue_keys: dict[str, str]
) -> None:
    scripts = DelayedScripts(client)
    for n in range(3):
        client.xadd(queue_keys["p0"], {FIELD: _envelope(100 + n)})
    client.xadd(queue_keys["p6"], {FIELD: _envelope(600)})
    past = _server_ms(client) - 10
    scripts.schedule(
        queue_keys["delayed"], [(Delay(False, past + n), encode_member(0, _envelope(n))) for n in range(3)]
    )
    result = scripts.move_due(queue_keys["delayed"], _streams(queue_keys), FIELD, max_length=5)
    assert result.moved == 3
    # 7 waiting, 5 allowed: the two oldest of the highest level first, as a publish drops them
    assert _bodies(client, queue_keys["p6"]) == []
    assert _bodies(client, queue_keys["p0"]) == ["101", "102", "0", "1", "2"]


def test_a_schedule_before_every_waiting_member_is_told_on_the_schedule_stream(
    client: redis.Redis, queue_keys: dict[str, str]
) -> None:
    # consumers wait on the schedule stream: an entry for each member due before all the
    # others (the first one too), none for one due later, and a move writes none
    scripts = DelayedScripts(client)
    sched = queue_keys["sched"]
    now = _server_ms(client)

    def schedule(*dues: int) -> None:
        items = [(Delay(False, due), encode_member(0, _envelope(due))) for due in dues]
        scripts.schedule(queue_keys["delayed"], items, schedule_key=sched)

    def told() -> list[int]:
        return [int(fields[b"due"]) for _, fields in client.xrange(sched)]

    schedule(now + 60_000)
    assert told() == [now + 60_000]
    schedule(now + 90_000, now + 120_000)  # due after the soonest waiting: nobody is told
    assert told() == [now + 60_000]
    schedule(now + 70_000, now - 10, now + 80_000)  # the soonest of a batch is told
    assert told() == [now + 60_000, now - 10]
    before = client.xrange(sched)
    result = scripts.move_due(queue_keys["delayed"], _streams(queue_keys), FIELD, schedule_key=sched)
    assert result.moved == 1
    assert client.xrange(sched) == before
    # the move read the stream's last id with the set: a later schedule entry is after it
    assert result.schedule_id == before[-1][0].decode()
    assert scripts.move_due(queue_keys["delayed"], _streams(queue_keys), FIELD).schedule_id is None
    client.delete(sched)
    assert scripts.move_due(queue_keys["delayed"], _streams(queue_keys), FIELD, schedule_key=sched).schedule_id == "0-0"


def test_the_schedule_stream_stays_short(client: redis.Redis, queue_keys: dict[str, str]) -> None:
    scripts = DelayedScripts(client)
    now = _server_ms(client)
    for n in range(1000):  # each due before the last: each is told
        member = encode_member(0, _envelope(n))
        scripts.schedule(
            queue_keys["delayed"], [(Delay(False, now + 100_000 - n), member)], schedule_key=queue_keys["sched"]
        )
    assert 100 <= client.xlen(queue_keys["sched"]) < 300
