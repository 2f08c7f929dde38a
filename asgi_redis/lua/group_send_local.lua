--[[ group_send_local: one group entry per live client with process-local members in a group.
  The clients of tag T with members in the group are in <prefix>{T}l:<group> (sorted set
  a.b! -> time of the latest group_add of one of its channels, ms); client H's members are in
  <prefix>{T}m:H<group> (sorted set suffix -> time of its latest group_add), and cached joined
  in <prefix>{T}j:H<group> ("count|chunk;chunk", a chunk being up to 5,000 suffixes joined
  with ','), so a group_send copies one string per client instead of reading every member.
  The receiving process gives each listed channel with room its copy (capacity is checked there).
  KEYS[1]  first       with ARGV[8] = a tag: that tag's l: key (Redis Cluster: one call per
                       tag); with ARGV[8] = '': the group's directory, whose tags are walked
  ARGV[1]  now_ms      caller clock, ms
  ARGV[2]  prefix      the layer's key prefix
  ARGV[3]  group_ttl_s group_expiry: clients and members added longer ago are skipped
  ARGV[4]  header      13-digit deadline of the message, ms
  ARGV[5]  payload     the serialized message, written once per client; '' only counts the
                       listed clients (a sender that saw none last time sends no payload)
  ARGV[6]  ttl_s       queue key lifetime after this send (the layer's expiry)
  ARGV[7]  group       the group's name
  ARGV[8]  tag         the one tag to deliver to, or '' for every tag in the directory
  ARGV[9]  check       '' on a server; on Redis Cluster 'c' or 'a' (see key_here): a derived
                       key failing it answers TRYAGAIN before anything is written
  ARGV[10] queue_max   a client queue already holding this many entries gets no entry
  ARGV[11] beat_ms     the caller's heartbeat, ms (the unit of the dead-client rule)
  Derived  for client H of tag T: <prefix>{T}m:H<group>, <prefix>{T}j:H<group>, its queue
           <prefix>{T}q:H and liveness key <prefix>{T}h:H; for a dead client its counts n:H;
           the tag's uptime clock <prefix>{T}u:clock, ticked once per tag (_helpers.lua)
  Writes   one group entry per live client (one per 5,000 members); the j: cache when missing
           (it expires when its oldest member would go stale; not written after ASKING)
  Drops    dead clients (client_is_alive): out of l:, their m: and j: keys, queue and counts
           deleted; their liveness key then says 'dead' (their process, if it comes back,
           rejoins)
  Returns  {copies, refused, dropped_dead, clients}: members written to, members of clients
           whose queue was at queue_max, members of dead clients dropped, clients listed
           (with an empty payload only the last, and nothing is written)
  Cost     per live client one GET of its cached members and one RPUSH per 5,000 members
           (the first push's reply is the bound check: a push past queue_max is popped again);
           per tag one read of l: and one clock tick; O(members) only to rebuild a missing cache
]]
local now_ms, prefix, group_name = tonumber(ARGV[1]), ARGV[2], ARGV[7]
local header, payload, ttl_s = ARGV[4], ARGV[5], ARGV[6]
local check, queue_max, beat_ms = ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
local group_ttl_ms = tonumber(ARGV[3]) * 1000
local cutoff = '(' .. (now_ms - group_ttl_ms)
local CHUNK = 5000

-- Every listed client of every tag: its keys, checked (cluster) before anything is written.
local clients = {}
for _, tag in ipairs(tags_of_call(KEYS[1], ARGV[8])) do
  local base = tag_base(prefix, tag)
  local listed = key_in(base, 'l', group_name)
  for _, head in ipairs(redis.call('ZRANGEBYSCORE', listed, cutoff, '+inf')) do
    local client = {base = base, head = head, listed = listed,
                    members = key_in(base, 'm', head .. group_name),
                    joined = key_in(base, 'j', head .. group_name),
                    queue = key_in(base, 'q', head)}
    if check ~= '' and not (key_here(client.members, check) and key_here(client.queue, check)
                            and key_here(client.joined, '')
                            and key_here(key_in(base, 'h', head), check)
                            and key_here(base .. CLOCK, check)) then
      return redis.error_reply('TRYAGAIN keys of this group are being migrated')
    end
    clients[#clients + 1] = client
  end
end

-- ``text`` split at every ``separator``. A plain find, not a pattern such as '[^;]+': Lua
-- matches a character class one character at a time, which cost 0.18 ms per group_send to a
-- client of 1,000 members.
local function split_plain(text, separator)
  local parts, start = {}, 1
  while true do
    local at = string.find(text, separator, start, true)
    if not at then
      parts[#parts + 1] = string.sub(text, start)
      return parts
    end
    parts[#parts + 1] = string.sub(text, start, at - 1)
    start = at + 1
  end
end

-- A client's live members: (count, list of chunks), from the cache or rebuilt.
local function joined_members(client)
  local cached = redis.call('GET', client.joined)
  local bar = cached and string.find(cached, '|', 1, true)
  if bar then
    return tonumber(string.sub(cached, 1, bar - 1)), split_plain(string.sub(cached, bar + 1), ';')
  end
  local suffixes = redis.call('ZRANGEBYSCORE', client.members, cutoff, '+inf')
  if #suffixes == 0 then
    return 0, {}
  end
  local chunks = {}
  for first = 1, #suffixes, CHUNK do
    chunks[#chunks + 1] = table.concat(suffixes, ',', first, math.min(first + CHUNK - 1, #suffixes))
  end
  -- An import target must not create a key the migration may still bring (MIGRATE would fail).
  if check ~= 'a' then
    local oldest = redis.call('ZRANGEBYSCORE', client.members, cutoff, '+inf', 'WITHSCORES',
                              'LIMIT', 0, 1)
    local ttl_ms = math.floor(tonumber(oldest[2]) + group_ttl_ms - now_ms)
    local joined = #suffixes .. '|' .. table.concat(chunks, ';')
    redis.call('SET', client.joined, joined, 'PX', math.max(ttl_ms, 1))
  end
  return #suffixes, chunks
end

if payload == '' then
  return {0, 0, 0, #clients}
end

local copies, refused, dead = 0, 0, {}
for _, client in ipairs(clients) do
  if not client_is_alive(client.base, client.head, beat_ms, true) then
    dead[#dead + 1] = client
  else
    local count, chunks = joined_members(client)
    local pushed = 0
    for _, chunk in ipairs(chunks) do
      local length = redis.call('RPUSH', client.queue, make_group_entry(header, chunk, payload))
      -- The push tells the length: one call instead of an LLEN first, undone when it was full.
      if pushed == 0 and length > queue_max then
        redis.call('RPOP', client.queue)
        break
      end
      pushed = pushed + 1
    end
    if pushed > 0 then
      redis.call('EXPIRE', client.queue, ttl_s)
      copies = copies + count
    else
      refused = refused + count
    end
  end
end
-- Dead clients leave only now: a script's first write must grow memory, for Redis to refuse
-- the whole call when it is out of memory (it checks only before the first write).
local dropped = 0
for _, client in ipairs(dead) do
  dropped = dropped + redis.call('ZCARD', client.members)
  redis.call('ZREM', client.listed, client.head)
  redis.call('DEL', client.members, client.joined, client.queue,
             key_in(client.base, 'n', client.head))
  set_mark(key_in(client.base, 'h', client.head), DEAD_MARK, beat_ms, false)
end
return {copies, refused, dropped, #clients}
