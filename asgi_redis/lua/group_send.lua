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
  ARGV[3]  group_ttl_s group_expiry: members added longer ago than this are removed
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
  Derived  for member M of tag T with queue part H (M up to and including '!', else M):
           queue <prefix>{T}q:H and counts <prefix>{T}n:H; for a process-local member also
           its client's liveness key <prefix>{T}h:H, read once per client
  Writes   one entry per named member; one entry per client queue for all its accepted
           process-local members (the multi-suffix form, see _helpers.lua)
  Drops    the process-local members of clients whose liveness key is gone (dead processes)
           with their capacity overrides, and those clients' queue, counts and liveness keys
  Returns  {delivered, skipped_full, dropped_dead}
  Cost     O(members) plus one EXISTS per client; a full queue drops at most 100 expired
           entries from its head, once per call
]]
local now_ms, prefix, group_name = tonumber(ARGV[1]), ARGV[2], ARGV[8]
local header, payload = ARGV[4], ARGV[5]
local default_capacity, ttl_s = tonumber(ARGV[6]), ARGV[7]
local cutoff = now_ms - tonumber(ARGV[3]) * 1000
local tags = {ARGV[9]}
if ARGV[9] == '' then
  tags = redis.call('SMEMBERS', KEYS[1])
end

-- Count a process-local member in; its entry is written once per client queue below.
local function count_in(counts_key, suffix, capacity)
  if redis.call('HINCRBY', counts_key, suffix, 1) <= capacity then
    return true
  end
  release(counts_key, suffix)
  return false
end

-- One entry for all accepted channels of a client queue (chunked to keep lists short).
local function push_local(queue, suffixes)
  for first = 1, #suffixes, 5000 do
    local chunk = {unpack(suffixes, first, math.min(first + 4999, #suffixes))}
    redis.call('RPUSH', queue, make_entry(header, chunk, payload))
  end
end

-- The members of one tag's copy (its capacity overrides are read by read_overrides).
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
    local members = copy.members
    for first = 1, #members, 1000 do
      local last = math.min(first + 999, #members)
      local values = redis.call('HMGET', copy.capacities, unpack(members, first, last))
      for offset, value in ipairs(values) do
        if value then
          copy.overrides[members[first + offset - 1]] = tonumber(value)
        end
      end
    end
  end
end

local purged, batches, expire, clients = {}, {}, {}, {}

-- A client's keys and whether its process is alive: one EXISTS per client, not per member.
local function client_of(base, head)
  local client = clients[head]
  if not client then
    local alive_key = base .. 'h:' .. head
    client = {base .. 'q:' .. head, base .. 'n:' .. head, alive_key,
              alive = redis.call('EXISTS', alive_key) == 1}
    clients[head] = client
  end
  return client
end

-- A process-local member: true accepted, false full, nil its client is dead.
local function offer_local(copy, member, bang, capacity)
  local client = client_of(copy.base, string.sub(member, 1, bang))
  if not client.alive then
    copy.dead[#copy.dead + 1] = member
    return nil
  end
  local queue, counts_key, suffix = client[1], client[2], string.sub(member, bang + 1)
  local accepted = count_in(counts_key, suffix, capacity)
  if not accepted and not purged[queue] then
    purged[queue] = true
    accepted = purge_head(queue, counts_key, now_ms) > 0 and count_in(counts_key, suffix, capacity)
  end
  if accepted then
    batches[queue] = batches[queue] or {}
    table.insert(batches[queue], suffix)
    expire[queue] = counts_key
  end
  return accepted
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
      if bang and not (here(copy.base .. 'n:' .. head) and here(copy.base .. 'h:' .. head)) then
        return false
      end
    end
  end
  return true
end

local named_entry = make_entry(header, {}, payload)
local delivered, full, dropped = 0, 0, 0
local copies = {}
for index, tag in ipairs(tags) do
  if ARGV[9] == '' then
    copies[index] = read_copy(prefix .. '{' .. tag .. '}')
  else
    copies[index] = read_copy(prefix .. '{' .. tag .. '}', KEYS[1])
  end
  if check ~= '' and not all_here(copies[index]) then
    return redis.error_reply('TRYAGAIN keys of this group are being migrated')
  end
  read_overrides(copies[index])
end
for _, copy in ipairs(copies) do
  for _, member in ipairs(copy.members) do
    local capacity = copy.overrides[member] or default_capacity
    local bang = string.find(member, '!', 1, true)
    local accepted
    if not bang then
      local queue = copy.base .. 'q:' .. member
      -- A named queue holds no process-local entries, so it never needs a counts key.
      accepted = enqueue(queue, '', '', named_entry, now_ms, capacity, purged)
      if accepted then
        expire[queue] = false
      end
    else
      accepted = offer_local(copy, member, bang, capacity)
    end
    if accepted then
      delivered = delivered + 1
    elseif accepted == false then
      full = full + 1
    end
  end
end
for queue, suffixes in pairs(batches) do
  push_local(queue, suffixes)
end
for queue, counts_key in pairs(expire) do
  redis.call('EXPIRE', queue, ttl_s)
  if counts_key then
    redis.call('EXPIRE', counts_key, ttl_s)
  end
end
-- Stale members are read past above and removed only now: the first write must be one that
-- grows memory, so that Redis refuses the whole call when it is out of memory (it only
-- checks a script's first write; after a deletion it would let every enqueue through).
for _, copy in ipairs(copies) do
  -- A copy without overrides needs no names of its stale members: one command per copy.
  if copy.has_capacities then
    local stale = redis.call('ZRANGEBYSCORE', copy.group, '-inf', cutoff)
    for first = 1, #stale, 1000 do
      redis.call('HDEL', copy.capacities, unpack(stale, first, math.min(first + 999, #stale)))
    end
  end
  redis.call('ZREMRANGEBYSCORE', copy.group, '-inf', cutoff)
  -- Dead clients leave the group at once; their queued messages have nobody to read them.
  local dead = copy.dead
  for first = 1, #dead, 1000 do
    local last = math.min(first + 999, #dead)
    redis.call('ZREM', copy.group, unpack(dead, first, last))
    if copy.has_capacities then
      redis.call('HDEL', copy.capacities, unpack(dead, first, last))
    end
  end
  dropped = dropped + #dead
end
for _, client in pairs(clients) do
  if not client.alive then
    redis.call('DEL', client[1], client[2], client[3])
  end
end
return {delivered, full, dropped}
