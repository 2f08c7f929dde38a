--[[ group_send_named: enqueue one message to every live named member of a group, if it has room.
  The named members whose channel has tag T are in <prefix>{T}g:<group> (sorted set channel ->
  time of the latest group_add, ms), their non-default capacities in <prefix>{T}c:<group>;
  <prefix>{G}d:<group> lists the tags (see keys.py).
  KEYS[1]  first       with ARGV[9] = a tag: that tag's g: key (Redis Cluster: one call per
                       tag); with ARGV[9] = '': the group's directory, whose tags are walked
  ARGV[1]  now_ms      caller clock, ms
  ARGV[2]  prefix      the layer's key prefix
  ARGV[3]  group_ttl_s group_expiry: members added longer ago are skipped (group_add removes
                       them)
  ARGV[4]  header      13-digit deadline of the message, ms
  ARGV[5]  payload     the serialized message; '' only counts the live members (a sender that
                       saw no named member in the group last time sends no payload here)
  ARGV[6]  capacity    default capacity
  ARGV[7]  ttl_s       queue key lifetime after this send (the layer's expiry)
  ARGV[8]  group       the group's name
  ARGV[9]  tag         the one tag to deliver to, or '' for every tag in the directory
  ARGV[10] check       '' on a server; on Redis Cluster 'c' or 'a' (see key_here): a derived
                       key failing it answers TRYAGAIN before anything is written
  Derived  for member M of tag T: its queue <prefix>{T}q:M; the tag's <prefix>{T}c:<group>
  Writes   one entry per member with room; nothing when the payload is ''
  Returns  {delivered, skipped_full, live_members}
  Cost     O(members); a full queue drops at most 100 expired entries from its head
]]
local now_ms, prefix, group_name = tonumber(ARGV[1]), ARGV[2], ARGV[8]
local default_capacity, ttl_s, check = tonumber(ARGV[6]), ARGV[7], ARGV[10]
local cutoff = now_ms - tonumber(ARGV[3]) * 1000
local entry = make_named_entry(ARGV[4], ARGV[5])

-- One tag's live members (stale ones are skipped; group_add removes them) and their keys.
local copies, capacity_keys = {}, {}
for _, tag in ipairs(tags_of_call(KEYS[1], ARGV[9])) do
  local base = tag_base(prefix, tag)
  local copy = {base = base, capacities = key_in(base, 'c', group_name), overrides = {}}
  copy.members = redis.call('ZRANGEBYSCORE', key_in(base, 'g', group_name), '(' .. cutoff, '+inf')
  if check ~= '' then
    -- The capacities hash is optional, so on an import target its absence proves nothing.
    local ok = key_here(copy.capacities, '')
    for _, member in ipairs(copy.members) do
      ok = ok and key_here(key_in(base, 'q', member), check)
    end
    if not ok then
      return redis.error_reply('TRYAGAIN keys of this group are being migrated')
    end
  end
  copies[#copies + 1] = copy
  capacity_keys[#capacity_keys + 1] = copy.capacities
end

local live = 0
for _, copy in ipairs(copies) do
  live = live + #copy.members
end
if ARGV[5] == '' then
  return {0, 0, live}
end

-- Most groups have no capacity override: one EXISTS over every copy's hash says so.
if #copies > 0 and redis.call('EXISTS', unpack(capacity_keys)) > 0 then
  for _, copy in ipairs(copies) do
    for index, value in ipairs(read_fields(copy.capacities, copy.members)) do
      if value then
        copy.overrides[copy.members[index]] = tonumber(value)
      end
    end
  end
end

local delivered, full, purged = 0, 0, {}
for _, copy in ipairs(copies) do
  for _, member in ipairs(copy.members) do
    local queue = key_in(copy.base, 'q', member)
    local capacity = copy.overrides[member] or default_capacity
    if enqueue(queue, '', '', entry, now_ms, capacity, purged) then
      redis.call('EXPIRE', queue, ttl_s)
      delivered = delivered + 1
    else
      full = full + 1
    end
  end
end
return {delivered, full, live}
