--[[ _helpers: shared functions, prepended to every script by scripts.py (not a script).
  Entry layout: 13-digit deadline (ms) | 2-digit suffix length | suffix | payload.
  A group_send to several process-local channels of one client writes one entry for all of
  them: the suffix length is then 99 (no suffix is that long), followed by a 6-digit byte
  length and the suffixes joined with ',' - then the payload.
]]
local MULTI = 99

local function entry_deadline(entry)
  return tonumber(string.sub(entry, 1, 13))
end

-- The process-local suffixes an entry is for: {} for a named channel.
local function entry_suffixes(entry)
  local suffix_len = tonumber(string.sub(entry, 14, 15))
  if suffix_len == 0 then
    return {}
  end
  if suffix_len ~= MULTI then
    return {string.sub(entry, 16, 15 + suffix_len)}
  end
  local list_len = tonumber(string.sub(entry, 16, 21))
  local suffixes = {}
  for suffix in string.gmatch(string.sub(entry, 22, 21 + list_len), '[^,]+') do
    suffixes[#suffixes + 1] = suffix
  end
  return suffixes
end

-- One message of a process-local channel left the count (delivered, dropped, expired).
local function release(counts_key, suffix)
  if redis.call('HINCRBY', counts_key, suffix, -1) <= 0 then
    redis.call('HDEL', counts_key, suffix)
  end
end

-- An entry left its queue without being delivered: release the counts of its channels.
local function release_entry(counts_key, entry)
  for _, suffix in ipairs(entry_suffixes(entry)) do
    release(counts_key, suffix)
  end
end

-- Remove expired entries wherever they sit in a queue, releasing their counts.
-- Returns how many were removed. O(queue length): only run when a channel looks full.
local function purge_expired(queue, counts_key, now_ms)
  local removed = 0
  for _, entry in ipairs(redis.call('LRANGE', queue, 0, -1)) do
    if entry_deadline(entry) <= now_ms and redis.call('LREM', queue, 1, entry) == 1 then
      release_entry(counts_key, entry)
      removed = removed + 1
    end
  end
  return removed
end

-- Append an entry if its channel has room. The write itself returns the new count (the list
-- length for a named channel, the suffix's count for a process-local one), so a send costs
-- one command, two for a process-local channel; a write past capacity is undone at once.
local function push_if_room(queue, counts_key, suffix, entry, capacity)
  if suffix == '' then
    if redis.call('RPUSH', queue, entry) <= capacity then
      return true
    end
    redis.call('RPOP', queue)
    return false
  end
  if redis.call('HINCRBY', counts_key, suffix, 1) <= capacity then
    redis.call('RPUSH', queue, entry)
    return true
  end
  release(counts_key, suffix)
  return false
end

-- push_if_room, and when the channel is full, drop expired entries (they never count) and
-- try once more. ``purged`` (a table, may be nil) remembers queues already purged by this
-- script run, so a group_send scans a shared queue once, not once per full member.
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
  if purge_expired(queue, counts_key, now_ms) == 0 then
    return false
  end
  return push_if_room(queue, counts_key, suffix, entry, capacity)
end

