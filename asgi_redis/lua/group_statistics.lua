--[[ group_statistics: count one group's members, and which clients are dead.
  KEYS[1]  first       with ARGV[5] = a tag: that tag's g: key (<prefix>{T}g:<group>); with
                       ARGV[5] = '': the group's directory <prefix>{G}d:<group>, every tag it
                       lists is read
  ARGV[1]  now_ms      caller clock, ms
  ARGV[2]  prefix      the layer's key prefix
  ARGV[3]  group_ttl_s group_expiry: members added longer ago than this are not counted
  ARGV[4]  group       the group's name
  ARGV[5]  tag         the one tag to read, or '' for every tag in the directory
  ARGV[6]  beat_ms     the caller's heartbeat, ms (the unit of the dead-client rule)
  Derived  for tag T: <prefix>{T}l:<group> and the uptime clock <prefix>{T}u:clock (read,
           not ticked); for each client H listed there, its members <prefix>{T}m:H<group>
           and its liveness key <prefix>{T}h:H
  Returns  {named, local, local_dead, clients, dead_clients}: named members, process-local
           members, process-local members whose client is dead (client_is_alive), clients
           with process-local members, and how many of those are dead
  Cost     O(named members + clients); reads only, drops nothing
]]
local now_ms, prefix, group_name = tonumber(ARGV[1]), ARGV[2], ARGV[4]
local beat_ms = tonumber(ARGV[6])
local cutoff = '(' .. (now_ms - tonumber(ARGV[3]) * 1000)

local named, local_members, local_dead, clients, dead_clients = 0, 0, 0, 0, 0
for _, tag in ipairs(tags_of_call(KEYS[1], ARGV[5])) do
  local base = tag_base(prefix, tag)
  named = named + redis.call('ZCOUNT', key_in(base, 'g', group_name), cutoff, '+inf')
  local heads = redis.call('ZRANGEBYSCORE', key_in(base, 'l', group_name), cutoff, '+inf')
  for _, head in ipairs(heads) do
    local count = redis.call('ZCOUNT', key_in(base, 'm', head .. group_name), cutoff, '+inf')
    if count > 0 then
      clients = clients + 1
      local_members = local_members + count
      if not client_is_alive(base, head, beat_ms, false) then
        dead_clients = dead_clients + 1
        local_dead = local_dead + count
      end
    end
  end
end
return {named, local_members, local_dead, clients, dead_clients}
