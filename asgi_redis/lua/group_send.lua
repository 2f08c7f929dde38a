--[[ group_send: enqueue one message to every live member of a group, skipping full ones.
  KEYS[1]  group       sorted set member channel -> time of the latest group_add, ms
  KEYS[2]  capacities  hash channel -> capacity, for members whose capacity is not the default
  ARGV[1]  now_ms      caller clock, ms
  ARGV[2]  prefix      the layer's key prefix
  ARGV[3]  group_ttl_s group_expiry: members added longer ago than this are removed
  ARGV[4]  header      13-digit deadline of the message, ms
  ARGV[5]  payload     the serialized message, sent once whatever the group size
  ARGV[6]  capacity    default capacity
  ARGV[7]  ttl_s       queue key lifetime after this send (the layer's expiry)
  Derived  for member M with queue part H (M up to and including '!', else M):
           queue ARGV[2]..'q:'..H and counts ARGV[2]..'n:'..H
  Returns  {delivered, skipped_full}
  Cost     O(members * (1 + expired head entries))
]]
local group, capacities = KEYS[1], KEYS[2]
local now_ms, prefix = tonumber(ARGV[1]), ARGV[2]
local header, payload = ARGV[4], ARGV[5]
local default_capacity, ttl_s = tonumber(ARGV[6]), ARGV[7]

local cutoff = now_ms - tonumber(ARGV[3]) * 1000
local stale = redis.call('ZRANGEBYSCORE', group, '-inf', cutoff)
for first = 1, #stale, 1000 do
  redis.call('HDEL', capacities, unpack(stale, first, math.min(first + 999, #stale)))
end
redis.call('ZREMRANGEBYSCORE', group, '-inf', cutoff)

local members = redis.call('ZRANGE', group, 0, -1)
local overrides = {}
if redis.call('EXISTS', capacities) == 1 then
  for first = 1, #members, 1000 do
    local last = math.min(first + 999, #members)
    local values = redis.call('HMGET', capacities, unpack(members, first, last))
    for offset, value in ipairs(values) do
      if value then
        overrides[members[first + offset - 1]] = tonumber(value)
      end
    end
  end
end

local touched, cleaned = {}, {}
local named_entry = header .. '00' .. payload
local delivered, full = 0, 0
for _, member in ipairs(members) do
  local bang = string.find(member, '!', 1, true)
  local head, suffix = member, ''
  if bang then
    head, suffix = string.sub(member, 1, bang), string.sub(member, bang + 1)
  end
  local queue, counts_key = prefix .. 'q:' .. head, prefix .. 'n:' .. head
  if not cleaned[queue] then
    drop_expired_head(queue, counts_key, now_ms)
    cleaned[queue] = true
  end
  local capacity = overrides[member] or default_capacity
  if queued_count(queue, counts_key, suffix, now_ms, capacity) >= capacity then
    full = full + 1
  else
    local entry = named_entry
    if suffix ~= '' then
      entry = header .. string.format('%02d', #suffix) .. suffix .. payload
    end
    enqueue(queue, counts_key, suffix, entry)
    touched[queue] = counts_key
    delivered = delivered + 1
  end
end
for queue, counts_key in pairs(touched) do
  redis.call('EXPIRE', queue, ttl_s)
  if redis.call('EXISTS', counts_key) == 1 then
    redis.call('EXPIRE', counts_key, ttl_s)
  end
end
return {delivered, full}
