--[[ _helpers: shared functions, prepended to every script by scripts.py (not a script).
  Entry layout: 13-digit deadline (ms) | 2-digit suffix length | suffix | payload.
  A group_send to process-local channels of one client writes one group entry for all of
  them: 'G' instead of the suffix length, a 6-digit byte length and the suffixes joined with
  ',' - then the payload. Its copies are not counted here (the receiving process checks each
  channel's capacity). Suffix length 99 with the same list is the counted form of earlier
  versions, still read. An entry whose header does not parse that way is malformed: scripts
  drop it when they meet it (never delivered, never counted) and log a warning naming its
  queue.
  Keys: every key is <prefix>{<tag>}<kind>:<name> (keys.py); scripts derive keys only with
  key_in, from a tag's base <prefix>{<tag>}.
]]
local MULTI = 99
local GROUP_MARK = 'G'
-- At most this many expired or malformed entries leave a full queue's head per purge.
local PURGE_MAX = 100

-- Suffix characters: what Channels allows after '!' (ASCII letters, digits, '-', '_', '.').
local function valid_suffix(text)
  return string.find(text, '^[%w_%.%-]+$') ~= nil
end

-- A suffix list: valid suffixes joined with single commas, none empty.
local function valid_list(text)
  return string.find(text, '^[%w_%.%-,]+$') ~= nil
    and string.sub(text, 1, 1) ~= ',' and string.sub(text, -1) ~= ','
    and string.find(text, ',,', 1, true) == nil
end

-- The suffixes of a list whose 6-digit length starts at byte ``start``, or nil.
local function parse_list(entry, start)
  local list_len = string.match(entry, '^(%d%d%d%d%d%d)', start)
  if not list_len then
    return nil
  end
  list_len = tonumber(list_len)
  local list = string.sub(entry, start + 6, start + 5 + list_len)
  if list_len == 0 or #list ~= list_len or not valid_list(list) then
    return nil
  end
  local suffixes = {}
  for suffix in string.gmatch(list, '[^,]+') do
    suffixes[#suffixes + 1] = suffix
  end
  return suffixes
end

-- Parse an entry's header: (deadline_ms, suffixes, counted) with {} for a named channel, or
-- nil when the header is malformed; ``counted`` is false for a group entry (its copies are
-- not in any count). Mirrors keys.parse_entry.
local function parse_entry(entry)
  local deadline = string.match(entry, '^(%d%d%d%d%d%d%d%d%d%d%d%d%d)')
  if not deadline then
    return nil
  end
  if string.sub(entry, 14, 14) == GROUP_MARK then
    local suffixes = parse_list(entry, 15)
    if not suffixes then
      return nil
    end
    return tonumber(deadline), suffixes, false
  end
  local suffix_len = string.match(entry, '^(%d%d)', 14)
  if not suffix_len then
    return nil
  end
  suffix_len = tonumber(suffix_len)
  if suffix_len == 0 then
    return tonumber(deadline), {}, true
  end
  if suffix_len ~= MULTI then
    local suffix = string.sub(entry, 16, 15 + suffix_len)
    if #suffix ~= suffix_len or not valid_suffix(suffix) then
      return nil
    end
    return tonumber(deadline), {suffix}, true
  end
  local suffixes = parse_list(entry, 16)
  if not suffixes then
    return nil
  end
  return tonumber(deadline), suffixes, true
end

-- A named channel's entry (mirrors keys.make_entry); ``deadline`` is the 13-digit text.
local function make_named_entry(deadline, payload)
  return deadline .. '00' .. payload
end

-- A group entry for process-local channels of one client, ``list`` their suffixes joined
-- with ',' (mirrors keys.make_group_entry).
local function make_group_entry(deadline, list, payload)
  return deadline .. GROUP_MARK .. string.format('%06d', #list) .. list .. payload
end

-- The key of ``kind`` (one letter) and ``name`` in the tag whose base is ``base``
-- (<prefix>{<tag>}); mirrors keys.py, the only place scripts build key names.
local function key_in(base, kind, name)
  return base .. kind .. ':' .. name
end

-- The base <prefix>{<tag>} of every key of one tag.
local function tag_base(prefix, tag)
  return prefix .. '{' .. tag .. '}'
end


-- Name the queue that held a malformed entry in the server log (a bug or a foreign writer).
local function warn_malformed(queue)
  redis.log(redis.LOG_WARNING, 'asgi_redis: dropped a malformed entry from queue ' .. queue)
end

-- ``taken`` (default 1) messages of a process-local channel left the count (delivered,
-- dropped, expired); a count reaching 0 loses its field.
local function release(counts_key, suffix, taken)
  if redis.call('HINCRBY', counts_key, suffix, -(taken or 1)) <= 0 then
    redis.call('HDEL', counts_key, suffix)
  end
end

-- Fields per HMGET/HSET/HDEL call: unpack() has to fit Lua's C stack.
local FIELDS_MAX = 1000

-- The values of ``fields`` (a list) in the hash ``key``, in order, false where a field is
-- missing: one HMGET per FIELDS_MAX fields instead of one command per field.
local function read_fields(key, fields)
  local values = {}
  for first = 1, #fields, FIELDS_MAX do
    local last = math.min(first + FIELDS_MAX - 1, #fields)
    local chunk = redis.call('HMGET', key, unpack(fields, first, last))
    for offset = 1, last - first + 1 do
      values[first + offset - 1] = chunk[offset]
    end
  end
  return values
end

-- The counts of ``suffixes`` (a list) in ``counts_key``, as numbers (0 when absent).
local function read_counts(counts_key, suffixes)
  local counts = read_fields(counts_key, suffixes)
  for index = 1, #suffixes do
    counts[index] = tonumber(counts[index]) or 0
  end
  return counts
end

-- Pass the flat list ``args`` to ``call`` in pieces of FIELDS_MAX fields, ``width``
-- arguments per field.
local function in_chunks(args, width, call)
  local step = FIELDS_MAX * width
  for first = 1, #args, step do
    call(unpack(args, first, math.min(first + step - 1, #args)))
  end
end

-- Lower the counts of several channels of one client queue at once: ``taken`` maps suffix ->
-- messages that left. Counts reaching 0 lose their field. Two or three commands per
-- FIELDS_MAX suffixes, not two per message.
local function release_many(counts_key, taken)
  local suffixes = {}
  for suffix in pairs(taken) do
    suffixes[#suffixes + 1] = suffix
  end
  if #suffixes == 1 then
    -- One channel (a consumer keeping up with its messages): one HINCRBY is cheaper.
    release(counts_key, suffixes[1], taken[suffixes[1]])
    return
  end
  local counts = read_counts(counts_key, suffixes)
  local kept, gone = {}, {}
  for index, suffix in ipairs(suffixes) do
    local left = counts[index] - taken[suffix]
    if left > 0 then
      kept[#kept + 1] = suffix
      kept[#kept + 1] = left
    elseif counts[index] > 0 then
      gone[#gone + 1] = suffix
    end
  end
  in_chunks(kept, 2, function(...) redis.call('HSET', counts_key, ...) end)
  in_chunks(gone, 1, function(...) redis.call('HDEL', counts_key, ...) end)
end

-- An entry left its queue without being delivered: release the counts of its channels.
-- A named queue has no counts key ('') and nothing to release; a group entry (``counted``
-- false) was never counted.
local function release_suffixes(counts_key, suffixes, counted)
  if counts_key == '' or #suffixes == 0 or not counted then
    return
  end
  local taken = {}
  for _, suffix in ipairs(suffixes) do
    taken[suffix] = (taken[suffix] or 0) + 1
  end
  release_many(counts_key, taken)
end

-- Drop expired and malformed entries from the head of a queue, at most PURGE_MAX, releasing
-- their counts. Entries of one queue carry (nearly) the same expiry, so the expired ones sit
-- at the head: this never looks past the first live entry. Returns how many were dropped.
local function purge_head(queue, counts_key, now_ms)
  local removed = 0
  while removed < PURGE_MAX do
    local entry = redis.call('LINDEX', queue, 0)
    if not entry then
      break
    end
    local deadline, suffixes, counted = parse_entry(entry)
    if deadline and deadline > now_ms then
      break
    end
    redis.call('LPOP', queue)
    if deadline then
      release_suffixes(counts_key, suffixes, counted)
    else
      warn_malformed(queue)
    end
    removed = removed + 1
  end
  return removed
end

-- Append an entry if its channel has room. The write itself returns the new count (the list
-- length for a named channel, the suffix's count plus its reserved slots for a process-local
-- one), so a send costs one command, three for a process-local channel; a write past
-- capacity is undone at once.
local function push_if_room(queue, counts_key, suffix, entry, capacity)
  if suffix == '' then
    if redis.call('RPUSH', queue, entry) <= capacity then
      return true
    end
    redis.call('RPOP', queue)
    return false
  end
  -- The slots its receiving process reserved for group copies it holds count too.
  local reserved = tonumber(redis.call('HGET', counts_key, '+' .. suffix)) or 0
  if redis.call('HINCRBY', counts_key, suffix, 1) + reserved <= capacity then
    redis.call('RPUSH', queue, entry)
    return true
  end
  release(counts_key, suffix)
  return false
end

-- push_if_room, and when the channel is full, drop expired entries from the head (they never
-- count) and try once more. ``purged`` (a table, may be nil) remembers queues already purged
-- by this script run, so a group_send purges a shared queue once, not once per full member.
local function enqueue(queue, counts_key, suffix, entry, now_ms, capacity, purged)
  if push_if_room(queue, counts_key, suffix, entry, capacity) then
    return true
  end
  if purged then
    if purged[queue] then
      return false
    end
    purged[queue] = true
  end
  if purge_head(queue, counts_key, now_ms) == 0 then
    return false
  end
  return push_if_room(queue, counts_key, suffix, entry, capacity)
end

-- The tags one group call covers: ``tag``, or when it is '' every tag the group's directory
-- ``directory`` lists (one server walks them all; a cluster calls once per tag).
local function tags_of_call(directory, tag)
  if tag == '' then
    return redis.call('SMEMBERS', directory)
  end
  return {tag}
end

-- Cluster only: whether a key derived from stored data may be written here. ``check`` 'c':
-- this node must serve its slot; 'a' (after ASKING, on a slot's import target): it must
-- already exist here. A key failing it means a migration is moving the keys: the caller
-- answers TRYAGAIN before writing anything.
local function key_here(key, check)
  local found = redis.pcall('EXISTS', key)
  if type(found) == 'table' then
    return false
  end
  return check ~= 'a' or found == 1
end

-- Liveness (guarantee 12): is a client dead? Judged on the server's own uptime, never on
-- wall time, so a restart or a failover does not count against clients.
-- Each tag has an uptime clock <prefix>{T}u:clock (hash: 'up' = ms of uptime seen, 'at' = server
-- TIME of the last tick). A tick adds the time since the previous one, but at most one
-- heartbeat: every heartbeat and group_send ticks, so while the server is up and used ticks
-- are less than a heartbeat apart, and a restart, a failover or a quiet spell adds at most one
-- heartbeat however long it lasted. A client's liveness mark <prefix>{T}h:<head> holds the
-- clock's 'up' at its last beat (or 'dead' once a group_send dropped the client). A client is
-- dead when the clock has run BEATS_TO_DEATH heartbeats past its mark. A mark that is missing
-- (its wall-time lifetime ran out, e.g. during a long outage) says nothing: a group_send
-- records it as seen now, so its client gets BEATS_TO_DEATH more heartbeats of uptime.
local BEATS_TO_DEATH = 3
-- A mark's wall-time lifetime, in heartbeats (it only frees the memory of gone clients).
local MARK_BEATS = 12
local DEAD_MARK = 'dead'
-- The clock's key after <prefix>{T}.
local CLOCK = 'u:clock'

-- The server's clock, ms: read once per script run (a run lasts well under a millisecond,
-- and a group_send reaching clients of many tags would otherwise ask once per tag).
local server_now_ms
local function server_ms()
  if not server_now_ms then
    local time = redis.call('TIME')
    server_now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  end
  return server_now_ms
end

-- The uptime (ms) of tag clock ``clock_key`` now, one heartbeat ``beat_ms`` at most since its
-- last tick; and the server time. Reads only.
local function read_clock(clock_key, beat_ms)
  local state = redis.call('HMGET', clock_key, 'up', 'at')
  local now = server_ms()
  local up, at = tonumber(state[1]) or 0, tonumber(state[2])
  if at and now > at then
    up = up + math.min(now - at, beat_ms)
  end
  return up, now
end

-- Advance the tag clock to now (see above); returns its uptime, ms.
local function tick_clock(clock_key, beat_ms)
  local up, now = read_clock(clock_key, beat_ms)
  redis.call('HSET', clock_key, 'up', up, 'at', now)
  return up
end

-- Write a client's mark: seen at uptime ``up`` (or DEAD_MARK), for MARK_BEATS heartbeats.
local function set_mark(mark_key, value, beat_ms, only_if_missing)
  if only_if_missing then
    return redis.call('SET', mark_key, value, 'PX', MARK_BEATS * beat_ms, 'NX')
  end
  return redis.call('SET', mark_key, value, 'PX', MARK_BEATS * beat_ms)
end

-- THE rule: whether the client with mark ``mark_key`` is dead at tag uptime ``up``. With
-- ``record``, a missing mark is written as seen now (so it counts from now); without, the
-- call only reads. A mark that is not a number (an older layer's '1' is one) counts as seen
-- at that uptime.
local function client_is_dead(mark_key, up, beat_ms, record)
  local seen = redis.call('GET', mark_key)
  if not seen then
    if record then
      set_mark(mark_key, up, beat_ms, true)
    end
    return false
  end
  if seen == DEAD_MARK then
    return true
  end
  return up - (tonumber(seen) or 0) >= BEATS_TO_DEATH * beat_ms
end

local uptimes = {}
-- The uptime of the tag whose keys start with ``base`` (<prefix>{T}), ticked once per script
-- run (``tick`` false: read without writing).
local function tag_uptime(base, beat_ms, tick)
  if not uptimes[base] then
    if tick then
      uptimes[base] = tick_clock(base .. CLOCK, beat_ms)
    else
      uptimes[base] = read_clock(base .. CLOCK, beat_ms)
    end
  end
  return uptimes[base]
end

-- Whether the client owning the process-local queue part ``head`` (a.b!) of the tag whose
-- keys start with ``base`` is alive, by the rule above (client_is_dead). ``record``: tick the
-- tag clock and record a missing mark (group_send); without, read only (statistics).
local function client_is_alive(base, head, beat_ms, record)
  local mark = key_in(base, 'h', head)
  return not client_is_dead(mark, tag_uptime(base, beat_ms, record), beat_ms, record)
end
