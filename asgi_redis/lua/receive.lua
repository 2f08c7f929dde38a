--[[ receive: pop live messages from one or more queues, dropping expired ones.
  KEYS[2i-1]  queue_i     list of entries
  KEYS[2i]    counts_i    hash suffix -> count of that queue's process-local channels
  ARGV[1]     now_ms      caller clock, ms
  ARGV[1+i]   max_i       how many live entries to pop from queue_i (0 = none), i = 1..#KEYS/2
  ARGV[...]   releases    after the max_i: pairs (i, suffix), one per message of a process-local
                          channel that the caller delivered or dropped since its last call
  Returns  flat array {i, entry, i, entry, ...} in pop order; popped process-local entries stay
           counted until the caller releases them
  Cost     O(#KEYS + releases + popped + expired entries removed)
]]
local now_ms = tonumber(ARGV[1])
local queues = #KEYS / 2
local popped = {}

for pos = queues + 2, #ARGV, 2 do
  release(KEYS[2 * tonumber(ARGV[pos])], ARGV[pos + 1])
end

for i = 1, queues do
  local queue, counts_key = KEYS[2 * i - 1], KEYS[2 * i]
  local wanted = tonumber(ARGV[1 + i])
  local taken, expired = 0, 0
  while taken < wanted and expired < 10000 do
    local entry = redis.call('LPOP', queue)
    if not entry then
      break
    end
    if entry_deadline(entry) <= now_ms then
      release_entry(counts_key, entry)
      expired = expired + 1
    else
      popped[#popped + 1] = i
      popped[#popped + 1] = entry
      taken = taken + 1
    end
  end
end
return popped
