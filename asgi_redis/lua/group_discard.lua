--[[ group_discard: remove a channel from a group (no-op for non-members).
  KEYS[1]  group       sorted set of members
  KEYS[2]  capacities  hash channel -> capacity override
  ARGV[1]  channel     the member
  Returns  1 removed | 0 was not a member
  Cost     O(log members)
]]
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
