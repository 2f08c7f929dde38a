--[[ group_statistics: count one group's members on this server, and which clients are dead.
  KEYS[1]  group       sorted set member channel -> time of the latest group_add, ms
  ARGV[1]  now_ms      caller clock, ms
  ARGV[2]  prefix      the layer's key prefix
  ARGV[3]  group_ttl_s group_expiry: members added longer ago than this are not counted
  Derived  for a process-local member with queue part H (up to and including '!'): its
           client's liveness key ARGV[2]..'h:'..H, read once per client
  Returns  {named, local, local_dead, clients, dead_clients}: named members, process-local
           members, process-local members whose client's liveness key is gone, distinct
           clients of the process-local members, and how many of those are dead
  Cost     O(members) plus one EXISTS per client; reads only, drops nothing
]]
local group = KEYS[1]
local now_ms, prefix = tonumber(ARGV[1]), ARGV[2]
local cutoff = now_ms - tonumber(ARGV[3]) * 1000

-- group_send removes scores <= cutoff, so those members no longer count.
local members = redis.call('ZRANGEBYSCORE', group, '(' .. cutoff, '+inf')
local alive_of = {}
local named, local_members, local_dead, clients, dead_clients = 0, 0, 0, 0, 0
for _, member in ipairs(members) do
  local bang = string.find(member, '!', 1, true)
  if not bang then
    named = named + 1
  else
    local head = string.sub(member, 1, bang)
    local alive = alive_of[head]
    if alive == nil then
      alive = redis.call('EXISTS', prefix .. 'h:' .. head) == 1
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
return {named, local_members, local_dead, clients, dead_clients}
