--[[ group_statistics: count one group's members, and which clients are dead.
  KEYS[1]  first       with ARGV[5] = a tag: that tag's group key (<prefix>{T}g:<group>); with
                       ARGV[5] = '': the group's directory <prefix>{G}d:<group>, every tag it
                       lists is read
  ARGV[1]  now_ms      caller clock, ms
  ARGV[2]  prefix      the layer's key prefix
  ARGV[3]  group_ttl_s group_expiry: members added longer ago than this are not counted
  ARGV[4]  group       the group's name
  ARGV[5]  tag         the one tag to read, or '' for every tag in the directory
  ARGV[6]  beat_ms     the caller's heartbeat, ms (the unit of the dead-client rule)
  Derived  for a process-local member of tag T with queue part H (up to and including '!'):
           its client's liveness key <prefix>{T}h:H, read once per client, and the tag's
           uptime clock <prefix>{T}u:clock (read, not ticked)
  Returns  {named, local, local_dead, clients, dead_clients}: named members, process-local
           members, process-local members of dead clients (client_is_dead), distinct
           clients of the process-local members, and how many of those are dead
  Cost     O(members) plus one GET per client; reads only, drops nothing
]]
local now_ms, prefix, group_name = tonumber(ARGV[1]), ARGV[2], ARGV[4]
local beat_ms = tonumber(ARGV[6])
local cutoff = now_ms - tonumber(ARGV[3]) * 1000
local tags = {ARGV[5]}
if ARGV[5] == '' then
  tags = redis.call('SMEMBERS', KEYS[1])
end

local alive_of = {}
local named, local_members, local_dead, clients, dead_clients = 0, 0, 0, 0, 0
for _, tag in ipairs(tags) do
  local base = prefix .. '{' .. tag .. '}'
  -- group_send removes scores <= cutoff, so those members no longer count.
  local members = redis.call('ZRANGEBYSCORE', base .. 'g:' .. group_name, '(' .. cutoff, '+inf')
  for _, member in ipairs(members) do
    local bang = string.find(member, '!', 1, true)
    if not bang then
      named = named + 1
    else
      local head = string.sub(member, 1, bang)
      local alive = alive_of[head]
      if alive == nil then
        alive = not client_is_dead(base .. 'h:' .. head, tag_uptime(base, beat_ms, false),
                                   beat_ms, false)
        alive_of[head] = alive
        clients = clients + 1
        if not alive then
          dead_clients = dead_clients + 1
        end
      end
      local_members = local_members + 1
      if not alive then
        local_dead = local_dead + 1
      end
    end
  end
end
return {named, local_members, local_dead, clients, dead_clients}
