--[[ group_discard: remove a channel from a group (no-op for non-members).
  KEYS[1]  members     named: the tag's g:<group>; process-local: m:<a.b!><group>
  KEYS[2]  second      named: the tag's c:<group> (capacity overrides); process-local: the
                       tag's l:<group>, which the client leaves with its last member
  KEYS[3]  joined      process-local only: the cache of the client's joined member list
  ARGV[1]  member      the channel (named), or its suffix (process-local)
  ARGV[2]  head        the client's queue part a.b! of a process-local channel, '' if named
  Returns  1 removed | 0 was not a member
  Cost     O(log members)
]]
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('DEL', KEYS[3])
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('ZREM', KEYS[2], ARGV[2])
  end
end
return removed
