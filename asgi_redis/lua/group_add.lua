--[[ group_add: add a channel to a group, or refresh its membership.
  KEYS[1]  members     where the membership is stored: a named channel's tag's g:<group>
                       (channel -> time of the latest group_add, ms); for a process-local
                       channel its client's m:<a.b!><group> (suffix -> time)
  KEYS[2]  second      named: the tag's c:<group> (channel -> capacity, for members whose
                       capacity is not the default); process-local: the tag's l:<group>
                       (client a.b! -> time of the latest add of one of its channels)
  KEYS[3]  liveness    the member's client liveness key (see keys.heartbeat_key); only
                       touched for a process-local channel
  KEYS[4]  joined      process-local: the cache of its client's joined member list
                       (j:<a.b!><group>), deleted when a member is new; untouched if named
  KEYS[5]  directory   optional: the group's set of tags; given on a single server, where
                       adding the member's tag here makes the add atomic (on Redis Cluster
                       it lives in another slot and the caller adds the tag first)
  ARGV[1]  member      the channel (named), or its suffix after '!' (process-local)
  ARGV[2]  now_ms      caller clock, ms
  ARGV[3]  ttl_s       group_expiry, s: memberships added longer ago are removed here
                       (group_send only skips them)
  ARGV[4]  capacity    a named member's capacity, '' when it is the layer's default
  ARGV[5]  beat_ms     the caller's heartbeat, ms: a liveness key this script creates says
                       "seen now" on the tag's uptime clock (see _helpers.lua)
  ARGV[6]  tag         the member's tag (KEYS[1..4] are in it)
  ARGV[7]  head        the client's queue part a.b! of a process-local channel, '' if named
  Derived  the tag's uptime clock <prefix>{T}u:clock (the liveness key's prefix and tag),
           ticked when the liveness key is created
  Returns  1 added | 0 refreshed
  Cost     O(log members) plus the stale memberships removed
]]
local members, second, liveness = KEYS[1], KEYS[2], KEYS[3]
local member, now_ms, ttl_s, head = ARGV[1], ARGV[2], ARGV[3], ARGV[7]
local cutoff = tonumber(now_ms) - tonumber(ttl_s) * 1000
-- The ZADD first: a script's first write must be one that grows memory, for Redis to refuse
-- it when out of memory.
local added = redis.call('ZADD', members, now_ms, member)
redis.call('EXPIRE', members, ttl_s)
if head ~= '' then
  redis.call('ZADD', second, now_ms, head)
  redis.call('EXPIRE', second, ttl_s)
  -- A client none of whose channels was added within group_expiry leaves the list; its
  -- members key expires on its own (its TTL is that of its latest add).
  redis.call('ZREMRANGEBYSCORE', second, '-inf', cutoff)
  -- A new client is alive until its first heartbeat could have come; NX keeps a live
  -- client's own mark (its heartbeats own that key).
  if redis.call('EXISTS', liveness) == 0 then
    local beat_ms = tonumber(ARGV[5])
    set_mark(liveness, tick_clock(string.match(liveness, '^(.-})') .. CLOCK, beat_ms), beat_ms,
             true)
  end
  if added == 1 then
    redis.call('DEL', KEYS[4])
  end
elseif ARGV[4] == '' then
  redis.call('HDEL', second, member)
else
  redis.call('HSET', second, member, ARGV[4])
end
if head == '' and redis.call('EXISTS', second) == 1 then
  redis.call('EXPIRE', second, ttl_s)
  local stale = redis.call('ZRANGEBYSCORE', members, '-inf', cutoff)
  in_chunks(stale, 1, function(...) redis.call('HDEL', second, ...) end)
end
redis.call('ZREMRANGEBYSCORE', members, '-inf', cutoff)
if KEYS[5] then
  redis.call('SADD', KEYS[5], ARGV[6])
  redis.call('EXPIRE', KEYS[5], ttl_s)
end
return added
