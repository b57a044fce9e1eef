"""Delayed delivery: messages that wait in a queue's sorted set until they are due.

A message published with the ``x-delay`` header (milliseconds, RabbitMQ's delayed-message
convention) or, with the ``eta_delivery`` option on, Celery's ``eta`` header (an ISO-8601
time) in the future is not added to its queue's stream: it waits in the queue's delayed
sorted set (``P{q}:delayed``), scored by the time it is due in milliseconds since the
epoch.  :data:`MOVE_DUE` moves due members into the queue's streams; a consumer runs it
for the queues it consumes, so delayed messages survive restarts of every process (they
live in Redis, never in a consumer's memory) and are delivered by whichever consumer of
the queue runs first.  A schedule that puts a message before every other one waiting
also adds an entry to the queue's schedule stream (``P{q}:sched``), on which consumers
wait with their queues' streams: that is how a consumer hears of it (:mod:`.due`).

Clock: the Redis server's (``TIME``), for both sides.  ``x-delay`` is counted from the
moment the server schedules the message, and a message is due when the server's clock
passes its score, so producers' and consumers' clocks never meet.  An ``eta`` is a wall
clock time the producer chose; it is compared with the server's clock (as a Celery
worker would compare it with its own), so the Redis host's clock should be kept in sync
(NTP) like any machine that runs Celery.  Only the choice "delay this message or not" is
made on the publisher's clock (an ``eta`` it sees as past goes straight to the stream;
one the server sees as past is moved at the next run of the script).

A member is ``<level>:<token>:<expires>:<envelope>``: the priority level stream it goes
to, a token (the publisher's clock in ns, then random bits: members due in the same
millisecond move in the order one publisher scheduled them, and two equal envelopes are
two members), when it expires (ms since the epoch, empty without a time to live) and the
serialized envelope; it becomes an entry with the fields ``payload`` and ``exp`` (see
:mod:`.scripts`).
Every key one script call touches belongs to one queue and carries its ``{q}`` hash tag,
so it runs on one cluster slot; key names come from the caller (``keys.py`` owns them).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from .keys import GROUP
from .scripts import _PRELUDE

__all__ = [
    "DELAY_HEADER",
    "ETA_HEADER",
    "MOVE_BATCH",
    "MOVE_DUE",
    "PURGE_DELAYED",
    "SCHEDULE",
    "SCHEDULE_BATCH",
    "SCHEDULE_KEPT",
    "Delay",
    "DelayedScripts",
    "MoveResult",
    "decode_member",
    "delay_of",
    "encode_member",
    "maybe_delayed",
]

#: header naming a delay in milliseconds (RabbitMQ's delayed-message exchange convention)
DELAY_HEADER = "x-delay"
#: Celery's header naming when a task is to run (ISO-8601; a time without offset is UTC)
ETA_HEADER = "eta"
#: most members one run of :data:`MOVE_DUE` moves (keeps each run short on the server)
MOVE_BATCH = 500
#: most members one run of :data:`SCHEDULE` adds
SCHEDULE_BATCH = 1000
#: entries a queue's schedule stream keeps at least (``XADD ... MAXLEN ~``): a consumer
#: that reads this many at once may have missed older ones, and looks at the set itself
SCHEDULE_KEPT = 100

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Delay(NamedTuple):
    """When a delayed message is due: ``ms`` after the server schedules it
    (``relative``, from ``x-delay``) or at ``ms`` since the epoch (from ``eta``)."""

    relative: bool
    ms: int


def _delay_ms(value: Any, queue: str | None) -> int | None:
    where = f" (queue {queue!r})" if queue else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, bytes)):
        raise ValueError(f"header {DELAY_HEADER!r} must be a number of milliseconds, not {value!r}{where}")
    try:
        ms = float(value)
    except ValueError:
        raise ValueError(f"header {DELAY_HEADER!r} must be a number of milliseconds, not {value!r}{where}") from None
    if not math.isfinite(ms):
        raise ValueError(f"header {DELAY_HEADER!r} must be a finite number of milliseconds, not {value!r}{where}")
    # no delay, or a negative one, is no delay (as on RabbitMQ's delayed-message exchange)
    return math.ceil(ms) if ms > 0 else None


def _eta_ms(value: Any, queue: str | None) -> int:
    where = f" (queue {queue!r})" if queue else ""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"header {ETA_HEADER!r} must be an ISO-8601 time, not {value!r}{where} "
                "(the transport option eta_delivery=False leaves it to the consumer)"
            ) from None
    else:
        raise ValueError(
            f"header {ETA_HEADER!r} must be an ISO-8601 time, not {value!r}{where} "
            "(the transport option eta_delivery=False leaves it to the consumer)"
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)  # Celery's enable_utc default
    # exact integer arithmetic: a float timestamp could round a due time a millisecond early
    micros = (when - _EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1000)


def delay_of(
    headers: Mapping[str, Any] | None,
    *,
    eta_delivery: bool = True,
    now: float | None = None,
    queue: str | None = None,
) -> Delay | None:
    """How a message with ``headers`` is delayed, or ``None`` when it is due now.

    ``x-delay`` wins over ``eta`` when a message carries both (it is the explicit request
    to the transport).  ``eta`` counts only with ``eta_delivery``; an ``eta`` at or before
    ``now`` (seconds since the epoch, the publisher's clock; default: the time now) is
    due.  A header that is not what it must be raises :class:`ValueError` naming it,
    its value and ``queue``.
    """
    if not headers:
        return None
    delay = headers.get(DELAY_HEADER)
    if delay is not None:
        ms = _delay_ms(delay, queue)
        return Delay(True, ms) if ms is not None else None
    if eta_delivery:
        eta = headers.get(ETA_HEADER)
        if eta is not None:  # Celery sends "eta": null for tasks without one
            due = _eta_ms(eta, queue)
            if due > (time.time() if now is None else now) * 1000:
                return Delay(False, due)
    return None


def maybe_delayed(headers: Mapping[str, Any] | None) -> bool:
    """False when a message with ``headers`` is certainly due now (it names no delay and
    no ETA): the publish fast path's check; :func:`delay_of` tells the rest."""
    if not headers:
        return False
    return DELAY_HEADER in headers or headers.get(ETA_HEADER) is not None


def encode_member(level: int, envelope: str | bytes, expires_ms: int | None = None) -> bytes:
    """The delayed-set member for ``envelope`` going to priority ``level``'s stream,
    expiring at ``expires_ms`` (ms since the epoch) when it has a time to live."""
    body = envelope.encode() if isinstance(envelope, str) else envelope
    expires = b"" if expires_ms is None else b"%d" % expires_ms
    # the clock first: members due in the same millisecond sort (and move) in the order
    # one publisher scheduled them; the random part keeps equal envelopes apart
    token = b"%016x%s" % (time.time_ns(), os.urandom(4).hex().encode())
    return b"%d:%s:%s:%s" % (level, token, expires, body)


def decode_member(member: str | bytes) -> tuple[int, bytes, int | None]:
    """``(level, envelope, expires_ms)`` of a member written by :func:`encode_member`."""
    raw = member.encode() if isinstance(member, str) else member
    level, _token, expires, body = raw.split(b":", 3)
    return int(level), body, int(expires) if expires else None


class MoveResult(NamedTuple):
    """What one run of :data:`MOVE_DUE` did for one queue."""

    #: members moved into the queue's streams
    moved: int
    #: when the earliest member left is due (server ms since the epoch), ``None``: none left
    next_due_ms: int | None
    #: the server's clock when the script ran (ms since the epoch)
    now_ms: int
    #: True when the run stopped at its count with due members left
    more: bool
    #: the last entry id of the queue's schedule stream when the run read the set
    #: (``0-0``: none), ``None`` when the run was not given that stream
    schedule_id: str | None = None

    def wait(self, longest: float = math.inf) -> float:
        """Seconds until the queue's delayed set is worth another look (at most ``longest``):
        0 when due members are left, else the time until the earliest member is due."""
        if self.more:
            return 0.0
        if self.next_due_ms is None:
            return longest
        return min(longest, max(0.0, (self.next_due_ms - self.now_ms) / 1000.0))


#: Add members to the delayed set KEYS[1].  ARGV: triples (``r`` or ``a``, ms, member):
#: ``r`` due ms after the server's clock now, ``a`` due at ms since the epoch.  With the
#: queue's schedule stream KEYS[2]: when the soonest member added is due before every
#: member that waited (or none waited), an entry ``due <ms>`` is added to it, which wakes
#: the queue's consumers (they wait on it); a member due later adds nothing (a consumer
#: looks at the set when its soonest member is due, and finds the others then).
#: Returns how many members were added.
SCHEDULE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local added = 0
local soonest = nil
for i = 1, #ARGV, 3 do
  local score = tonumber(ARGV[i + 1])
  if ARGV[i] == 'r' then score = now + score end
  added = added + redis.call('ZADD', KEYS[1], score, ARGV[i + 2])
  if soonest == nil or score < soonest then soonest = score end
end
if KEYS[2] and soonest and (head[2] == nil or soonest < tonumber(head[2])) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', SCHEDULE_KEPT, '*', 'due', string.format('%.0f', soonest))
end
return added
""".replace("SCHEDULE_KEPT", str(SCHEDULE_KEPT))

#: Move up to ARGV[1] due members (score <= the server's clock) of the delayed set KEYS[1],
#: earliest first, into the streams KEYS[2..n+1]: ARGV[5..] are the priority levels of
#: those n streams, in the same order; KEYS[n+2], when given, is the queue's schedule stream,
#: whose last entry id the reply carries (read in the same step as the set: an entry added
#: after it is news to the caller).  A member goes to the stream of its level, or of the highest
#: level below it when its own is not one of them (the queue was declared again with other
#: levels), or else of the lowest level.  Each becomes one stream entry whose field ARGV[2]
#: holds the envelope; a member not written by encode_member is moved whole to the lowest
#: level's stream, where the consumer reports it as bad input instead of it waiting forever.
#: ARGV[3] is the queue's consumer group and ARGV[4] its x-max-length ('' for none): with
#: one, the oldest messages not delivered yet are dropped (highest level first) while more
#: wait, as a publish into the queue drops them (``PUT_LIMITED``).
#: The script writes nothing to the schedule stream (a consumer's move wakes nobody).
#: Returns {moved, next due score or -1, the server's clock, 1 when due members are left,
#: the schedule stream's last entry id ('0-0': none; '' without the key)}.
MOVE_DUE = (
    _PRELUDE
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local field = ARGV[2]
local group = ARGV[3]
local max_length = tonumber(ARGV[4])
local levels = {}
local lowest = 2
local nstreams = #ARGV - 4
for i = 2, nstreams + 1 do
  local level = tonumber(ARGV[i + 3])
  levels[#levels + 1] = {level, KEYS[i]}
  if level < tonumber(ARGV[lowest + 3]) then lowest = i end
end
local function stream_for(level)
  local best, best_level = nil, nil
  for _, pair in ipairs(levels) do
    if pair[1] <= level and (best_level == nil or pair[1] > best_level) then
      best, best_level = pair[2], pair[1]
    end
  end
  return best or KEYS[lowest]
end
local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  local level, expires, body = string.match(member, '^(%-?%d+):%x+:(%d*):(.*)$')
  if level and expires ~= '' then
    redis.call('XADD', stream_for(tonumber(level)), '*', field, body, 'exp', expires)
  elseif level then
    redis.call('XADD', stream_for(tonumber(level)), '*', field, body)
  else
    redis.call('XADD', KEYS[lowest], '*', field, member)
  end
end
if #due > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #due - 1)
end
if #due > 0 and max_length then
  table.sort(levels, function(a, b) return a[1] > b[1] end)
  local ready = 0
  for _, pair in ipairs(levels) do
    if redis.call('EXISTS', pair[2]) == 1 then
      ready = ready + redis.call('XLEN', pair[2]) - pending_count(pair[2], group)
    end
  end
  local excess = ready - max_length
  for _, pair in ipairs(levels) do
    if excess <= 0 then break end
    if redis.call('EXISTS', pair[2]) == 1 then
      local start = '(' .. last_delivered(pair[2], group)
      for _, entry in ipairs(redis.call('XRANGE', pair[2], start, '+', 'COUNT', excess)) do
        redis.call('XDEL', pair[2], entry[1])
        excess = excess - 1
      end
    end
  end
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_due = -1
local more = 0
if head[2] then
  next_due = tonumber(head[2])
  if next_due <= now then more = 1 end
end
local heard = ''
if #KEYS > nstreams + 1 then
  heard = '0-0'
  local last = redis.call('XREVRANGE', KEYS[#KEYS], '+', '-', 'COUNT', 1)
  if last[1] then heard = last[1][1] end
end
return {#due, next_due, now, more, heard}
"""
)


#: Delete the delayed set KEYS[1]; returns how many members it held (one step: a member
#: scheduled meanwhile is either counted and deleted or kept).
PURGE_DELAYED = """
local held = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1])
return held
"""


@dataclass
class DelayedScripts:
    """The delayed-delivery scripts registered on one redis-py client (``redis.Redis`` or
    ``RedisCluster``); each call may be given a pipeline of that client instead."""

    client: Any

    def __post_init__(self) -> None:
        self._schedule = self.client.register_script(SCHEDULE)
        self._move_due = self.client.register_script(MOVE_DUE)
        self._purge = self.client.register_script(PURGE_DELAYED)

    def purge(self, delayed_key: str) -> int:
        """Delete the delayed set ``delayed_key``; how many messages it held."""
        return int(self._purge(keys=[delayed_key]))

    def schedule(
        self,
        delayed_key: str,
        items: Iterable[tuple[Delay, bytes]],
        pipeline: Any = None,
        schedule_key: str | None = None,
    ) -> None:
        """Add ``(delay, member)`` items to the delayed set ``delayed_key`` (one queue's),
        :data:`SCHEDULE_BATCH` a call, on ``pipeline`` when given (its caller executes it);
        the queue's consumers hear of a member due before the others on ``schedule_key``."""
        keys = [delayed_key] if schedule_key is None else [delayed_key, schedule_key]
        args: list[Any] = []
        for delay, member in items:
            args += ("r" if delay.relative else "a", delay.ms, member)
            if len(args) >= 3 * SCHEDULE_BATCH:
                self._schedule(keys=keys, args=args, client=pipeline or self.client)
                args = []
        if args:
            self._schedule(keys=keys, args=args, client=pipeline or self.client)

    def move_due(
        self,
        delayed_key: str,
        streams: Sequence[tuple[int, str]],
        field: str,
        count: int = MOVE_BATCH,
        max_length: int | None = None,
        schedule_key: str | None = None,
    ) -> MoveResult:
        """Move up to ``count`` due members of ``delayed_key`` into ``streams``
        (``(level, stream key)`` pairs of the same queue), earliest first; with
        ``max_length``, the queue then holds at most that many messages not delivered.
        With ``schedule_key`` the result carries that stream's last entry id."""
        if not streams:
            raise ValueError("move_due needs at least one stream to move into")
        limit = "" if max_length is None else max_length
        extra = [] if schedule_key is None else [schedule_key]
        reply = self._move_due(
            keys=[delayed_key, *(key for _, key in streams), *extra],
            args=[count, field, GROUP, limit, *(level for level, _ in streams)],
        )
        return parse_move_reply(reply)


def parse_move_reply(reply: Sequence[Any]) -> MoveResult:
    """A :class:`MoveResult` from :data:`MOVE_DUE`'s reply (for a caller that pipelines it)."""
    moved, next_due, now, more = (int(part) for part in reply[:4])
    heard = reply[4] if len(reply) > 4 else b""
    heard = heard.decode() if isinstance(heard, bytes) else str(heard)
    return MoveResult(moved, None if next_due < 0 else next_due, now, bool(more), heard or None)
