--[[ send: enqueue one message unless its channel is full.
  KEYS[1]  queue       list of entries (shared by a client's process-local channels)
  KEYS[2]  counts      hash suffix -> queued count; only for a process-local channel (a
                       named channel's send passes one key, so a slot migration that moved
                       its queue never finds its keys split)
  ARGV[1]  now_ms      caller clock, ms
  ARGV[2]  entry       full entry: deadline, suffix, payload (see _helpers.lua)
  ARGV[3]  capacity    messages the channel may hold
  ARGV[4]  ttl_s       key lifetime after this send (the layer's expiry)
  ARGV[5]  suffix      process-local part after '!', '' for a named channel
  Returns  1 queued | 0 full
  Cost     O(1); when the channel is full, at most 100 expired or malformed entries are dropped
           from the queue's head, never a scan of the queue
]]
local queue, counts_key = KEYS[1], KEYS[2] or ''
local now_ms = tonumber(ARGV[1])
local entry, capacity, ttl_s, suffix = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]

if not enqueue(queue, counts_key, suffix, entry, now_ms, capacity) then
  return 0
end
redis.call('EXPIRE', queue, ttl_s)
if suffix ~= '' then
  redis.call('EXPIRE', counts_key, ttl_s)
end
return 1
