--[[ group_send: enqueue one message to every live member of a group, skipping full ones.
  A group is stored per tag (see keys.py): the members whose channel has tag T are in
  <prefix>{T}g:<group> (sorted set channel -> time of the latest group_add, ms) and their
  non-default capacities in <prefix>{T}c:<group>; <prefix>{G}d:<group> lists the tags.
  KEYS[1]  first       with ARGV[9] = a tag: that tag's group key (Redis Cluster: one call per
                       tag, every key it touches in that tag's slot; the capacities hash,
                       which often does not exist, is derived, so that a slot migration never
                       finds the declared keys split); with ARGV[9] = '': the group's
                       directory, and the script walks every tag it lists (one server)
  ARGV[1]  now_ms      caller clock, ms
  ARGV[2]  prefix      the layer's key prefix
  ARGV[3]  group_ttl_s group_expiry: members added longer ago than this are skipped (group_add
                       removes them)
  ARGV[4]  header      13-digit deadline of the message, ms
  ARGV[5]  payload     the serialized message, sent once whatever the group size
  ARGV[6]  capacity    default capacity
  ARGV[7]  ttl_s       queue key lifetime after this send (the layer's expiry)
  ARGV[8]  group       the group's name
  ARGV[9]  tag         the one tag to deliver to, or '' for every tag in the directory
  ARGV[10] check       '' on a server; on Redis Cluster 'c' (every derived key must be
                       served by this node) or 'a' (sent after ASKING to a slot's import
                       target: every derived key must already exist here). A key failing the
                       check means a slot migration is moving the keys: the script answers
                       TRYAGAIN before writing anything.
  ARGV[11] beat_ms     the caller's heartbeat, ms (the unit of the dead-client rule)
  Derived  for member M of tag T with queue part H (M up to and including '!', else M):
           queue <prefix>{T}q:H and counts <prefix>{T}n:H; for a process-local member also
           its client's liveness key <prefix>{T}h:H, read once per client, and the tag's
           uptime clock <prefix>{T}u:clock, ticked once per tag (see _helpers.lua)
  Writes   one entry per named member; one entry per client queue for all its accepted
           process-local members (the multi-suffix form, see _helpers.lua)
  Drops    the process-local members of dead clients (client_is_dead in _helpers.lua) with
           their capacity overrides, and those clients' queue and counts; their liveness key
           then says 'dead' (their process, if it comes back, rejoins)
  Returns  {delivered, skipped_full, dropped_dead}
  Cost     O(members) plus one GET per client and a clock tick per tag; a full queue drops at most 100 expired
           entries from its head, once per call
]]
local now_ms, prefix, group_name = tonumber(ARGV[1]), ARGV[2], ARGV[8]
local header, payload = ARGV[4], ARGV[5]
local default_capacity, ttl_s = tonumber(ARGV[6]), ARGV[7]
local beat_ms = tonumber(ARGV[11])
local cutoff = now_ms - tonumber(ARGV[3]) * 1000
local tags = {ARGV[9]}
if ARGV[9] == '' then
  tags = redis.call('SMEMBERS', KEYS[1])
end

-- One entry for all accepted channels of a client queue (chunked to keep lists short).
local function push_local(queue, suffixes)
  for first = 1, #suffixes, 5000 do
    local chunk = {unpack(suffixes, first, math.min(first + 4999, #suffixes))}
    redis.call('RPUSH', queue, make_entry(header, chunk, payload))
  end
end

-- The live members of one tag's copy. Stale ones (added before the cutoff) are skipped, not
-- removed: group_add removes them from the copy it writes to, and a copy nobody adds to
-- expires whole group_expiry after its last add, so they never outlive that by more.
local function read_copy(base, group)
  local copy = {group = group or base .. 'g:' .. group_name,
                capacities = base .. 'c:' .. group_name,
                base = base, overrides = {}, dead = {}}
  copy.members = redis.call('ZRANGEBYSCORE', copy.group, '(' .. cutoff, '+inf')
  return copy
end

local function read_overrides(copy)
  copy.has_capacities = redis.call('EXISTS', copy.capacities) == 1
  if copy.has_capacities then
    for index, value in ipairs(read_fields(copy.capacities, copy.members)) do
      if value then
        copy.overrides[copy.members[index]] = tonumber(value)
      end
    end
  end
end

local purged, expire, clients, client_order = {}, {}, {}, {}

-- A client's keys and whether its process is alive: one EXISTS per client, not per member.
local function client_of(base, head)
  local client = clients[head]
  if not client then
    local alive_key = base .. 'h:' .. head
    client = {queue = base .. 'q:' .. head, counts = base .. 'n:' .. head, alive = alive_key,
              is_alive = not client_is_dead(alive_key, tag_uptime(base, beat_ms, true), beat_ms,
                                            true),
              suffixes = {}, capacities = {}, accepted = {}}
    clients[head] = client
    client_order[#client_order + 1] = client
  end
  return client
end

-- A process-local member joins its client's batch (counted in by take_room below), or the
-- dead list when its client is gone.
local function offer_local(copy, member, bang, capacity)
  local client = client_of(copy.base, string.sub(member, 1, bang))
  if not client.is_alive then
    copy.dead[#copy.dead + 1] = member
    return
  end
  client.suffixes[#client.suffixes + 1] = string.sub(member, bang + 1)
  client.capacities[#client.capacities + 1] = capacity
end

-- Count ``client``'s offered suffixes (at positions ``wanted``) in where their channel has
-- room: one HMGET and one HSET per 1,000 channels instead of a HINCRBY each. Returns the
-- positions that were full.
local function count_in(client, wanted)
  local suffixes = {}
  for index, position in ipairs(wanted) do
    suffixes[index] = client.suffixes[position]
  end
  local counts, updates, full = read_counts(client.counts, suffixes), {}, {}
  for index, position in ipairs(wanted) do
    if counts[index] < client.capacities[position] then
      updates[#updates + 1] = suffixes[index]
      updates[#updates + 1] = counts[index] + 1
      client.accepted[#client.accepted + 1] = suffixes[index]
    else
      full[#full + 1] = position
    end
  end
  in_chunks(updates, 2, function(...) redis.call('HSET', client.counts, ...) end)
  return full
end

-- Every alive client's batch: counted in, a full channel retried once after expired entries
-- left the queue's head, then one entry per client queue. Returns how many were full.
local function take_room(client)
  local wanted = {}
  for position = 1, #client.suffixes do
    wanted[position] = position
  end
  local full = count_in(client, wanted)
  if #full > 0 and purge_head(client.queue, client.counts, now_ms) > 0 then
    full = count_in(client, full)
  end
  if #client.accepted > 0 then
    push_local(client.queue, client.accepted)
    expire[client.queue] = client.counts
  end
  return #full
end

-- Cluster only: a derived key a migration has moved away (or not yet brought here) cannot be
-- written safely; the caller retries the whole call shortly, nothing has been written yet.
local check = ARGV[10] or ''
local function here(key)
  local found = redis.pcall('EXISTS', key)
  if type(found) == 'table' then
    return false
  end
  return check ~= 'a' or found == 1
end
local checked = {}
local function all_here(copy)
  -- The capacities hash is optional (only members with an override have a field), so on an
  -- import target its absence is no proof that it is still on the source: a missing one
  -- only costs the overrides during the move. Writes to it are HDELs, which create nothing.
  if type(redis.pcall('EXISTS', copy.capacities)) == 'table' then
    return false
  end
  for _, member in ipairs(copy.members) do
    local bang = string.find(member, '!', 1, true)
    local head = bang and string.sub(member, 1, bang) or member
    if not checked[head] then
      checked[head] = true
      if not here(copy.base .. 'q:' .. head) then
        return false
      end
      if bang and not (here(copy.base .. 'n:' .. head) and here(copy.base .. 'h:' .. head)
                       and here(copy.base .. CLOCK)) then
        return false
      end
    end
  end
  return true
end

local named_entry = make_entry(header, {}, payload)
local delivered, full, dropped = 0, 0, 0
local copies, capacity_keys = {}, {}
for index, tag in ipairs(tags) do
  if ARGV[9] == '' then
    copies[index] = read_copy(prefix .. '{' .. tag .. '}')
  else
    copies[index] = read_copy(prefix .. '{' .. tag .. '}', KEYS[1])
  end
  if check ~= '' and not all_here(copies[index]) then
    return redis.error_reply('TRYAGAIN keys of this group are being migrated')
  end
  capacity_keys[index] = copies[index].capacities
end
-- Most groups have no capacity override at all: one EXISTS over every copy's hash says so,
-- instead of one per copy.
if #copies > 0 and redis.call('EXISTS', unpack(capacity_keys)) > 0 then
  for _, copy in ipairs(copies) do
    read_overrides(copy)
  end
end
for _, copy in ipairs(copies) do
  for _, member in ipairs(copy.members) do
    local capacity = copy.overrides[member] or default_capacity
    local bang = string.find(member, '!', 1, true)
    if not bang then
      local queue = copy.base .. 'q:' .. member
      -- A named queue holds no process-local entries, so it never needs a counts key.
      if enqueue(queue, '', '', named_entry, now_ms, capacity, purged) then
        expire[queue] = false
        delivered = delivered + 1
      else
        full = full + 1
      end
    else
      offer_local(copy, member, bang, capacity)
    end
  end
end
for _, client in ipairs(client_order) do
  if client.is_alive then
    local skipped = take_room(client)
    full = full + skipped
    delivered = delivered + #client.suffixes - skipped
  end
end
for queue, counts_key in pairs(expire) do
  redis.call('EXPIRE', queue, ttl_s)
  if counts_key then
    redis.call('EXPIRE', counts_key, ttl_s)
  end
end
-- Dead clients leave the group at once (their queued messages have nobody to read them), but
-- only now: the first write must be one that grows memory, so that Redis refuses the whole
-- call when it is out of memory (it only checks a script's first write; after a deletion it
-- would let every enqueue through).
for _, copy in ipairs(copies) do
  local dead = copy.dead
  if #dead > 0 then
    in_chunks(dead, 1, function(...) redis.call('ZREM', copy.group, ...) end)
    if copy.has_capacities then
      in_chunks(dead, 1, function(...) redis.call('HDEL', copy.capacities, ...) end)
    end
  end
  dropped = dropped + #dead
end
for _, client in ipairs(client_order) do
  if not client.is_alive then
    redis.call('DEL', client.queue, client.counts)
    set_mark(client.alive, DEAD_MARK, beat_ms, false)
  end
end
return {delivered, full, dropped}
