--[[ requeue: put popped entries back at the head of their queue, at most once per token.
  KEYS[1]  queue       list of entries the entries were popped from
  KEYS[2]  token       marker of this hand-back; present when it already ran
  ARGV[1]  token_ms    how long the marker lives, ms (the layer's expiry: entries are dead by then)
  ARGV[2]  ttl_s       queue key lifetime after this call (the layer's expiry)
  ARGV[3...] entries   the entries, oldest first; they end up first in the queue, in this order
  Returns  the number of entries pushed, 0 when this token was used before
  Cost     O(entries)
]]
local queue, token = KEYS[1], KEYS[2]
-- A retried hand-back whose first attempt ran (its reply was lost) must not push twice.
if not redis.call('SET', token, '1', 'PX', ARGV[1], 'NX') then
  return 0
end
local pushed = 0
for pos = #ARGV, 3, -1 do
  redis.call('LPUSH', queue, ARGV[pos])
  pushed = pushed + 1
end
redis.call('EXPIRE', queue, ARGV[2])
return pushed
