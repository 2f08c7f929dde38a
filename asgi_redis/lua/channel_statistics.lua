--[[ channel_statistics: live messages of one channel and the deadline of its oldest.
  KEYS[1]  queue       list of entries (shared by a client's process-local channels)
  KEYS[2]  counts      hash suffix -> count of that queue's process-local channels
  ARGV[1]  now_ms      caller clock, ms
  ARGV[2]  suffix      process-local part after '!', '' for a named channel
  Returns  {live, oldest_deadline_ms, counted}: live unexpired entries of the channel in the
           queue, the deadline of the first of them (-1 when none), and the count held against
           capacity (the list length for a named channel; for a local one its count of direct
           messages, popped but undelivered ones included, plus the slots its process
           reserved for group copies it holds)
           Malformed entries are skipped (statistics read only; send and receive drop them)
  Cost     O(queue length), reads only; payloads never leave the server
]]
local queue, counts_key = KEYS[1], KEYS[2]
local now_ms, suffix = tonumber(ARGV[1]), ARGV[2]
local live, oldest = 0, -1

-- Whether an entry's suffixes name this channel (a named queue holds only its own entries).
local function is_for(suffixes, wanted)
  if wanted == '' then
    return true
  end
  for _, suffix in ipairs(suffixes) do
    if suffix == wanted then
      return true
    end
  end
  return false
end

for _, entry in ipairs(redis.call('LRANGE', queue, 0, -1)) do
  local deadline, suffixes = parse_entry(entry)
  if deadline and deadline > now_ms and is_for(suffixes, suffix) then
    live = live + 1
    if oldest < 0 then
      oldest = deadline
    end
  end
end
local counted
if suffix == '' then
  counted = redis.call('LLEN', queue)
else
  local direct, reserved = unpack(redis.call('HMGET', counts_key, suffix, '+' .. suffix))
  counted = (tonumber(direct) or 0) + (tonumber(reserved) or 0)
end
return {live, oldest, counted}
