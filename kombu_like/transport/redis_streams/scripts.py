"""The Lua scripts of the Redis Streams transport.

Each script touches the keys of one queue only (they share the ``{queue}`` hash tag, so
one slot on a Redis Cluster), every key it touches is passed in ``KEYS``, and each runs
atomically: a message is never both in a stream and copied elsewhere, nor in neither.

Entries are field lists: ``payload`` (the JSON envelope), and where set ``exp`` (the time
it expires, ms since the epoch), ``r`` (``1``: redelivered) and ``n`` (deliveries it had
before this entry was written: a requeue or a lapsed lease writes a copy).
"""

from __future__ import annotations

__all__ = ["CLAIM", "DEAD", "PURGE", "PUT_LIMITED", "REQUEUE", "SIZE", "TAKE", "TAKE_OVER"]

#: shared helpers, prepended to every script
_PRELUDE = """
local function field_map(flat)
  local map = {}
  for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
  return map
end

-- the group's last-delivered-id ('0-0' when the group does not exist)
local function last_delivered(key, group)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', key)
  if not ok then return '0-0' end
  for _, flat in ipairs(groups) do
    local info = field_map(flat)
    if info['name'] == group then return info['last-delivered-id'] end
  end
  return '0-0'
end

local function pending_count(key, group)
  local ok, summary = pcall(redis.call, 'XPENDING', key, group)
  if not ok then return 0 end
  return tonumber(summary[1]) or 0
end

-- append a copy of entry fields to key; mark: '1' counts a delivery and sets redelivered
local function copy_entry(key, fields, mark)
  local out = {}
  local n = 0
  local r = nil
  for i = 1, #fields, 2 do
    local name = fields[i]
    if name == 'n' then n = tonumber(fields[i + 1]) or 0
    elseif name == 'r' then r = fields[i + 1]
    else out[#out + 1] = name; out[#out + 1] = fields[i + 1] end
  end
  if mark == '1' then n = n + 1; r = '1' end
  if r then out[#out + 1] = 'r'; out[#out + 1] = r end
  if n > 0 then out[#out + 1] = 'n'; out[#out + 1] = tostring(n) end
  return redis.call('XADD', key, '*', unpack(out))
end

-- a pending entry written again at its stream's tail, marked redelivered with one more
-- delivery counted, and the original acked and deleted; 1 when the entry was still there
local function redeliver(key, group, id)
  local found = redis.call('XRANGE', key, id, id)
  if #found > 0 then copy_entry(key, found[1][2], '1') end
  redis.call('XACK', key, group, id)
  redis.call('XDEL', key, id)
  return #found
end

local function expired(fields, now)
  for i = 1, #fields, 2 do
    if fields[i] == 'exp' then return tonumber(fields[i + 1]) <= now end
  end
  return false
end
"""

#: KEYS: a queue's level streams, highest priority first.  ARGV: group, consumer, count,
#: now (ms), '1' to dead-letter expired entries.  Takes up to count entries, highest level
#: first; expired ones are removed -- or, to be dead-lettered, taken too (up to
#: EXPIRED_BATCH of them) and returned with their key index negated.  Returns
#: {key index, id, fields} per entry taken.
TAKE = (
    _PRELUDE
    + """
local group, consumer, now = ARGV[1], ARGV[2], tonumber(ARGV[4])
local want = tonumber(ARGV[3])
local dead_letter, spare = ARGV[5] == '1', 1000
local out = {}
for index, key in ipairs(KEYS) do
  if want <= 0 or spare <= 0 then break end
  if redis.call('EXISTS', key) == 1 then
    while want > 0 do
      local ok, reply = pcall(redis.call, 'XREADGROUP', 'GROUP', group, consumer,
                              'COUNT', want, 'STREAMS', key, '>')
      if not ok then
        -- written before the queue was declared: the group starts at the stream's head
        redis.call('XGROUP', 'CREATE', key, group, '0')
        reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want, 'STREAMS', key, '>')
      end
      if not reply then break end
      local entries = reply[1][2]
      if #entries == 0 then break end
      for _, entry in ipairs(entries) do
        if not expired(entry[2], now) then
          out[#out + 1] = {index, entry[1], entry[2]}
          want = want - 1
        elseif dead_letter then
          out[#out + 1] = {-index, entry[1], entry[2]}
          spare = spare - 1
        else
          redis.call('XACK', key, group, entry[1])
          redis.call('XDEL', key, entry[1])
        end
      end
      if spare <= 0 then break end
    end
  end
end
return out
"""
)

#: KEYS: the stream an entry is in, the stream its copy goes to.  ARGV: group, mark
#: ('1': count a delivery, mark redelivered), ids...  Returns how many were copied.
REQUEUE = (
    _PRELUDE
    + """
local moved = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local found = redis.call('XRANGE', KEYS[1], id, id)
  if #found > 0 and redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    copy_entry(KEYS[2], found[1][2], ARGV[2])
    moved = moved + 1
  end
  redis.call('XDEL', KEYS[1], id)
end
return moved
"""
)

#: KEYS: the stream, the queue's dead-letter stream.  ARGV: group, reason, ids...
#: Moves the entries (still pending) into the dead-letter stream.  Returns how many.
DEAD = """
local moved = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local found = redis.call('XRANGE', KEYS[1], id, id)
  if #found > 0 and redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    local fields = found[1][2]
    fields[#fields + 1] = 'reason'
    fields[#fields + 1] = ARGV[2]
    redis.call('XADD', KEYS[2], '*', unpack(fields))
    moved = moved + 1
  end
  redis.call('XDEL', KEYS[1], id)
end
return moved
"""

#: KEYS: a stream.  ARGV: group, claimer, lease (ms), most entries, forget consumers idle
#: this long (ms).  Entries whose lease lapsed are copied to the tail, marked redelivered
#: with one more delivery counted; consumers holding nothing and idle long are forgotten.
#: Returns how many entries came back.
CLAIM = (
    _PRELUDE
    + """
local group, claimer = ARGV[1], ARGV[2]
local budget = tonumber(ARGV[4])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local moved = 0
local start = '0-0'
repeat
  local ok, reply = pcall(redis.call, 'XAUTOCLAIM', KEYS[1], group, claimer, ARGV[3], start,
                          'COUNT', math.min(budget, 100), 'JUSTID')
  if not ok then return moved end
  start = reply[1]
  for _, id in ipairs(reply[2]) do moved = moved + redeliver(KEYS[1], group, id) end
  budget = budget - #reply[2]
until start == '0-0' or budget <= 0
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], group)
for _, flat in ipairs(consumers) do
  local info = field_map(flat)
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > tonumber(ARGV[5]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], group, info['name'])
  end
end
return moved
"""
)

#: KEYS: a stream.  ARGV: group, a consumer that is gone, most entries.  The consumer's
#: pending entries are redelivered as lapsed leases are (whatever their idle time), and the
#: consumer is removed from the group once it holds none -- in this one script, since
#: XGROUP DELCONSUMER drops what the consumer still holds.  Returns {how many came back,
#: 1 when more are left for another call}.
TAKE_OVER = (
    _PRELUDE
    + """
local group, consumer, budget = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], group, '-', '+', budget, consumer)
if not ok then return {0, 0} end
local moved = 0
for _, entry in ipairs(pending) do moved = moved + redeliver(KEYS[1], group, entry[1]) end
if #pending >= budget then return {moved, 1} end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], group, consumer)
return {moved, 0}
"""
)

#: KEYS: a queue's level streams, highest priority first.  ARGV: group, now (ms), '1' to
#: count entry by entry (some may have expired: those are removed, unless ARGV[4] is '1':
#: their queue dead-letters them when taken).  Returns the number of entries not delivered
#: and not expired.
SIZE = (
    _PRELUDE
    + """
local group, now, scan, keep = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4] == '1'
local total = 0
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    if not scan then
      total = total + redis.call('XLEN', key) - pending_count(key, group)
    else
      local start = '(' .. last_delivered(key, group)
      while true do
        local entries = redis.call('XRANGE', key, start, '+', 'COUNT', 1000)
        if #entries == 0 then break end
        for _, entry in ipairs(entries) do
          if not expired(entry[2], now) then total = total + 1
          elseif not keep then redis.call('XDEL', key, entry[1]) end
        end
        start = '(' .. entries[#entries][1]
      end
    end
  end
end
return total
"""
)

#: KEYS: a queue's level streams, highest priority first.  ARGV: group, now (ms).
#: Removes every entry not delivered yet; returns how many had not expired.
PURGE = (
    _PRELUDE
    + """
local group, now = ARGV[1], tonumber(ARGV[2])
local total = 0
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local start = '(' .. last_delivered(key, group)
    while true do
      local entries = redis.call('XRANGE', key, start, '+', 'COUNT', 1000)
      if #entries == 0 then break end
      for _, entry in ipairs(entries) do
        if not expired(entry[2], now) then total = total + 1 end
        redis.call('XDEL', key, entry[1])
      end
      start = '(' .. entries[#entries][1]
    end
  end
end
return total
"""
)

#: KEYS: the stream to append to, then the queue's level streams highest priority first.
#: ARGV: group, max length, fields...  Appends, then drops the oldest entries not
#: delivered yet (highest level first, as RabbitMQ drops from the head) while more than
#: max length wait.  Returns how many were dropped.
PUT_LIMITED = (
    _PRELUDE
    + """
local group, limit = ARGV[1], tonumber(ARGV[2])
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[1], '*', unpack(fields))
local ready = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    ready = ready + redis.call('XLEN', KEYS[i]) - pending_count(KEYS[i], group)
  end
end
local excess = ready - limit
local dropped = 0
for i = 2, #KEYS do
  if excess <= 0 then break end
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local start = '(' .. last_delivered(KEYS[i], group)
    local entries = redis.call('XRANGE', KEYS[i], start, '+', 'COUNT', excess)
    for _, entry in ipairs(entries) do
      redis.call('XDEL', KEYS[i], entry[1])
      excess = excess - 1
      dropped = dropped + 1
    end
  end
end
return dropped
"""
)
