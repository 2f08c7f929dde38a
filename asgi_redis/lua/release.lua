--[[ release: lower the counts of process-local messages that left their process, once.
  KEYS[1]  applied     hash with field 'n': the releasing process's last applied batch number
                       (in the slot of the counts keys); a batch at or below it already ran
  KEYS[1+i] counts_i   hash suffix -> count of one client queue's process-local channels
  ARGV[1]  batch       this batch's number; a process numbers its batches 1, 2, 3... and
                       sends the next only after this one was acknowledged
  ARGV[2]  applied_s   how long the applied mark lives after this call, s
  ARGV[...] releases   pairs (i, suffix), one per message of channel suffix of counts_i that
                       was delivered or dropped
  Returns  1 applied | 0 this batch ran before (a retry after a lost reply: nothing changes)
  Cost     O(releases), a few commands per counts key and 1,000 suffixes
]]
local applied, batch = KEYS[1], tonumber(ARGV[1])
-- A retried batch whose first run's reply was lost must not lower the counts twice.
-- (A hash, not a string: HGET/HSET/EXPIRE are commands the strict ACL rule grants already.)
if (tonumber(redis.call('HGET', applied, 'n')) or 0) >= batch then
  return 0
end
local taken = {}
for pos = 3, #ARGV, 2 do
  local counts_key = KEYS[1 + tonumber(ARGV[pos])]
  local of_queue = taken[counts_key] or {}
  taken[counts_key] = of_queue
  of_queue[ARGV[pos + 1]] = (of_queue[ARGV[pos + 1]] or 0) + 1
end
redis.call('HSET', applied, 'n', batch)
redis.call('EXPIRE', applied, ARGV[2])
for counts_key, of_queue in pairs(taken) do
  release_many(counts_key, of_queue)
end
return 1
