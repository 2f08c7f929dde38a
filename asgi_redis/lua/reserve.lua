--[[ reserve: set the slots a receiving process holds for group copies of its channels.
  A group copy is not counted when group_send writes it; the process that pops it gives it to
  a channel only within the slots reserved here, and a send counts them (field +<suffix>), so
  a channel never holds more than its capacity.
  KEYS[1]  counts      hash suffix -> direct messages counted, +suffix -> reserved slots, of
                       one client queue's process-local channels
  ARGV[1]  ttl_s       the counts key's lifetime after a reservation (the layer's expiry)
  ARGV[...] triples    (suffix, wanted, capacity): the slots the process wants for that channel
  Returns  the slots granted per triple, in order: ``wanted`` when lowering or when there is
           room, else what is left beside the direct messages (never below the current slots)
  Cost     O(triples): one HMGET per 500 triples, one HSET and one HDEL per 1,000
]]
local counts_key = KEYS[1]
local suffixes, fields = {}, {}
for pos = 2, #ARGV, 3 do
  suffixes[#suffixes + 1] = ARGV[pos]
  fields[#fields + 1] = ARGV[pos]
  fields[#fields + 1] = '+' .. ARGV[pos]
end
local values = read_fields(counts_key, fields)
local granted, kept, gone = {}, {}, {}
for index, suffix in ipairs(suffixes) do
  local pos = 3 * index - 1
  local wanted, capacity = tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2])
  local direct = tonumber(values[2 * index - 1]) or 0
  local current = tonumber(values[2 * index]) or 0
  local grant = wanted
  if wanted > current then
    grant = math.max(current, math.min(wanted, capacity - direct))
  end
  granted[index] = grant
  if grant > 0 then
    kept[#kept + 1] = '+' .. suffix
    kept[#kept + 1] = grant
  elseif current > 0 then
    gone[#gone + 1] = '+' .. suffix
  end
end
in_chunks(kept, 2, function(...) redis.call('HSET', counts_key, ...) end)
in_chunks(gone, 1, function(...) redis.call('HDEL', counts_key, ...) end)
if #kept > 0 then
  redis.call('EXPIRE', counts_key, ARGV[1])
end
return granted
