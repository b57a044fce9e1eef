"""Lua scripts the Redis store runs; each is atomic on the server.

They touch only Kombu's key layout (see :mod:`.keys`), so a Kombu process working on the
same keys at the same time sees consistent state: its ``WATCH``/``MULTI`` restore aborts
when a script changed the unacked hash, and a script never sees half of Kombu's work.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

__all__ = ["FETCH", "REFRESH_BINDING", "RESTORE", "Script", "make_script"]


class Script(NamedTuple):
    """A Lua script and its SHA1 (what ``EVALSHA`` names it by)."""

    name: str
    source: str
    sha: str


def make_script(name: str, source: str) -> Script:
    """The :class:`Script` of Lua ``source`` (its SHA1 computed here)."""
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


_script = make_script


#: Take up to ARGV[1] messages from the lists KEYS[3..] (in that order) and record each in
#: the unacked hash KEYS[1] and index KEYS[2] in the same step, so a message is never
#: outside both its queue and the unacked hash.
#:
#: ARGV[2] is the delivery time (index score); ARGV[3] '1' to read every list it found
#: empty (LLEN) as the script's last step -- on a connection with ``CLIENT TRACKING``
#: on, that asks Redis to say when any of them changes, with no window between the look
#: and the watch; ARGV[4] and ARGV[6] what comes before and after a queue's name in its
#: dead-letter list's key, ARGV[5] '1' to record deliveries (ack emulation), ARGV[7 .. 6+N]
#: the queue name of each list, then pairs (list number, message) already taken by BRPOP
#: or received by pub/sub.  (With the cluster key layout every key is one queue's: KEYS
#: and the dead-letter list share its hash tag.)
#:
#: Returns {list number, message, status, delivery tag} per message: status 1 delivered;
#: 0 not a Kombu envelope, moved to the queue's dead-letter list; 2 the list could not be
#: read (the message is the error text).
FETCH = _script(
    "fetch",
    """
local left = tonumber(ARGV[1])
local score = ARGV[2]
local dead_prefix = ARGV[4]
local record = ARGV[5] == '1'
local dead_suffix = ARGV[6]
local lists = #KEYS - 2
local out = {}

local function take(i, raw)
  local queue = ARGV[6 + i]
  local ok, msg = pcall(cjson.decode, raw)
  local tag = nil
  if ok and type(msg) == 'table' and type(msg['properties']) == 'table' then
    tag = msg['properties']['delivery_tag']
  end
  if type(tag) ~= 'string' or tag == '' then
    redis.call('LPUSH', dead_prefix .. queue .. dead_suffix, raw)
    out[#out + 1] = {i, raw, 0, ''}
    return
  end
  if record then
    redis.call('HSET', KEYS[1], tag, '[' .. raw .. ',"",' .. cjson.encode(queue) .. ']')
    redis.call('ZADD', KEYS[2], score, tag)
  end
  out[#out + 1] = {i, raw, 1, tag}
  left = left - 1
end

for j = 7 + lists, #ARGV, 2 do
  take(tonumber(ARGV[j]), ARGV[j + 1])
end
local drained = {}
for i = 1, lists do
  -- pop again after entries that were not envelopes, so they never hide good ones
  while left > 0 do
    local items = redis.pcall('RPOP', KEYS[2 + i], left)
    if type(items) ~= 'table' then
      drained[#drained + 1] = KEYS[2 + i]
      break
    end
    if items['err'] then
      out[#out + 1] = {i, items['err'], 2, ''}
      break
    end
    for _, raw in ipairs(items) do take(i, raw) end
  end
end
if ARGV[3] == '1' then
  -- read each list found empty last, after every write, so the caller's tracking reports
  -- the next change to any of them (a list still holding messages is taken from again)
  for _, key in ipairs(drained) do redis.call('LLEN', key) end
end
return out
""",
)

#: Put one delivered message back: if delivery tag ARGV[1] is still recorded in the unacked
#: hash KEYS[1] (or ARGV[4] is '0'), forget it there and in the index KEYS[2] and push
#: ARGV[2] on every list KEYS[3..] -- at the consuming end when ARGV[3] is 'head'.
#: Returns 1 when the message was put back, 0 when someone else already acked or restored
#: it (so concurrent restorers never both put it back).
RESTORE = _script(
    "restore",
    """
if ARGV[4] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local push = 'LPUSH'
if ARGV[3] == 'head' then push = 'RPUSH' end
for i = 3, #KEYS do
  redis.call(push, KEYS[i], ARGV[2])
end
return 1
""",
)

#: Add binding ARGV[1] to table KEYS[1] and keep the table for ARGV[3] more milliseconds
#: (by the server clock) in Kombu's deadline set KEYS[2] under exchange name ARGV[2]; the
#: deadline only ever moves later.  Kombu's sweep deletes tables whose deadline passed.
REFRESH_BINDING = _script(
    "refresh_binding",
    """
redis.call('SADD', KEYS[1], ARGV[1])
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[2], 'GT', ms + tonumber(ARGV[3]), ARGV[2])
return 1
""",
)

ALL = (FETCH, RESTORE, REFRESH_BINDING)
