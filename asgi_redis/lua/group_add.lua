--[[ group_add: add a channel to a group, or refresh its membership.
  KEYS[1]  group       sorted set member channel -> time of the latest group_add, ms, of
                       the members sharing the channel's tag
  KEYS[2]  capacities  hash channel -> capacity, for members whose capacity is not the default
  KEYS[3]  liveness    the member's client liveness key (see keys.heartbeat_key); only
                       touched for a process-local channel
  KEYS[4]  directory   optional: the group's set of tags; given on a single server, where
                       adding the member's tag here makes the add atomic (on Redis Cluster
                       it lives in another slot and the caller adds the tag first)
  ARGV[1]  channel     the member
  ARGV[2]  now_ms      caller clock, ms
  ARGV[3]  ttl_s       group_expiry, s: members of this tag's copy added longer ago are
                       removed here (group_send only skips them)
  ARGV[4]  capacity    the member's capacity, '' when it is the layer's default
  ARGV[5]  beat_ms     the caller's heartbeat, ms: a liveness key this script creates says
                       "seen now" on the tag's uptime clock (see _helpers.lua)
  ARGV[6]  tag         the member's tag (KEYS[1..3] are in it)
  Derived  the tag's uptime clock <prefix>{T}u:clock (the liveness key's prefix and tag),
           ticked when the liveness key is created
  Returns  1 added | 0 refreshed
  Cost     O(log members) plus the stale members removed
]]
local group, capacities, liveness = KEYS[1], KEYS[2], KEYS[3]
local channel, ttl_s, capacity = ARGV[1], ARGV[3], ARGV[4]
local added = redis.call('ZADD', group, ARGV[2], channel)
redis.call('EXPIRE', group, ttl_s)
if capacity == '' then
  redis.call('HDEL', capacities, channel)
else
  redis.call('HSET', capacities, channel, capacity)
end
local has_capacities = redis.call('EXISTS', capacities) == 1
if has_capacities then
  redis.call('EXPIRE', capacities, ttl_s)
end
-- Members not refreshed within group_expiry leave the copy (after the ZADD: a script's first
-- write must be one that grows memory, for Redis to refuse it when out of memory).
local cutoff = tonumber(ARGV[2]) - tonumber(ttl_s) * 1000
if has_capacities then
  local stale = redis.call('ZRANGEBYSCORE', group, '-inf', cutoff)
  in_chunks(stale, 1, function(...) redis.call('HDEL', capacities, ...) end)
end
redis.call('ZREMRANGEBYSCORE', group, '-inf', cutoff)
-- A new client is alive until its first heartbeat could have come; NX keeps a live
-- client's own TTL (its heartbeats own that key).
if string.find(channel, '!', 1, true) and redis.call('EXISTS', liveness) == 0 then
  local beat_ms = tonumber(ARGV[5])
  set_mark(liveness, tick_clock(string.match(liveness, '^(.-})') .. CLOCK, beat_ms), beat_ms, true)
end
if KEYS[4] then
  redis.call('SADD', KEYS[4], ARGV[6])
  redis.call('EXPIRE', KEYS[4], ttl_s)
end
return added
