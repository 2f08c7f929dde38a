--[[ group_add: add a channel to a group, or refresh its membership.
  KEYS[1]  group       sorted set member channel -> time of the latest group_add, ms
  KEYS[2]  capacities  hash channel -> capacity, for members whose capacity is not the default
  ARGV[1]  channel     the member
  ARGV[2]  now_ms      caller clock, ms
  ARGV[3]  ttl_s       group_expiry, s
  ARGV[4]  capacity    the member's capacity, '' when it is the layer's default
  Returns  1 added | 0 refreshed
  Cost     O(log members)
]]
local group, capacities = KEYS[1], KEYS[2]
local channel, ttl_s, capacity = ARGV[1], ARGV[3], ARGV[4]
local added = redis.call('ZADD', group, ARGV[2], channel)
redis.call('EXPIRE', group, ttl_s)
if capacity == '' then
  redis.call('HDEL', capacities, channel)
else
  redis.call('HSET', capacities, channel, capacity)
end
if redis.call('EXISTS', capacities) == 1 then
  redis.call('EXPIRE', capacities, ttl_s)
end
return added
