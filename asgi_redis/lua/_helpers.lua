--[[ _helpers: shared functions, prepended to every script by scripts.py (not a script).
  Entry layout: 13-digit deadline (ms) | 2-digit suffix length | suffix | payload.
]]
local function entry_deadline(entry)
  return tonumber(string.sub(entry, 1, 13))
end

local function entry_suffix(entry)
  local suffix_len = tonumber(string.sub(entry, 14, 15))
  return string.sub(entry, 16, 15 + suffix_len)
end

-- One message of a process-local channel left the count (delivered, dropped, expired).
local function release(counts_key, suffix)
  if redis.call('HINCRBY', counts_key, suffix, -1) <= 0 then
    redis.call('HDEL', counts_key, suffix)
  end
end

-- An entry left its queue without being delivered: release its count if it has one.
local function release_entry(counts_key, entry)
  local suffix = entry_suffix(entry)
  if suffix ~= '' then
    release(counts_key, suffix)
  end
end

-- Pop expired entries off the head of a queue; returns how many were dropped.
local function drop_expired_head(queue, counts_key, now_ms)
  local dropped = 0
  while dropped < 10000 do
    local head = redis.call('LINDEX', queue, 0)
    if not head or entry_deadline(head) > now_ms then
      break
    end
    redis.call('LPOP', queue)
    release_entry(counts_key, head)
    dropped = dropped + 1
  end
  return dropped
end

-- Messages counted against a channel: the list length for a named channel, the per-suffix
-- count for a process-local one. At capacity, expired entries are removed from the queue
-- wherever they sit (releasing their counts), so they never count. O(queue length) then.
local function count_queued(queue, counts_key, suffix)
  if suffix ~= '' then
    return tonumber(redis.call('HGET', counts_key, suffix) or '0')
  end
  return redis.call('LLEN', queue)
end

local function queued_count(queue, counts_key, suffix, now_ms, capacity)
  local count = count_queued(queue, counts_key, suffix)
  if count < capacity then
    return count
  end
  for _, entry in ipairs(redis.call('LRANGE', queue, 0, -1)) do
    if entry_deadline(entry) <= now_ms and redis.call('LREM', queue, 1, entry) == 1 then
      release_entry(counts_key, entry)
    end
  end
  return count_queued(queue, counts_key, suffix)
end

-- Append one entry and count it; the caller refreshes the TTLs.
local function enqueue(queue, counts_key, suffix, entry)
  redis.call('RPUSH', queue, entry)
  if suffix ~= '' then
    redis.call('HINCRBY', counts_key, suffix, 1)
  end
end

